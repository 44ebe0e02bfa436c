"""The backtest's report as text: a table per symbol and pooled, one JSON object, and a Markdown file with PNG plots.

Matplotlib is imported inside the plotting functions (the package stays cheap to import).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lstm_pipeline.evaluation.accuracy import HORIZON_BUCKETS

REPORT_FILE = "backtest_report.md"
INTERVAL_PLOT = "interval_scores.png"
ACCURACY_PLOT = "accuracy.png"

_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("n", "n", "{:.0f}"),
    ("MASE", "mase", "{:.3f}"),
    ("dir.acc", "directional_accuracy", "{:.3f}"),
    ("up", "up_share", "{:.3f}"),
    ("cov80", "coverage_80", "{:.3f}"),
    ("cov95", "coverage_95", "{:.3f}"),
    ("IS80%", "interval_score_80", "{:.3f}"),
    ("naive80", "naive_band_interval_score_80", "{:.3f}"),
    ("tod80", "tod_band_interval_score_80", "{:.3f}"),
    ("IS95%", "interval_score_95", "{:.3f}"),
    ("naive95", "naive_band_interval_score_95", "{:.3f}"),
    ("tod95", "tod_band_interval_score_95", "{:.3f}"),
)
"""Table columns: header, report key, format. Interval scores (IS) are mean Winkler scores in % of the as-of close,
the model's beside the naive and time-of-day bands' on the same origins."""


def _cell(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return pattern.format(value)


def json_ready(value: Any) -> Any:
    """The report with NaN and infinities as None, so ``json.dumps`` writes strict JSON (null)."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy scalars
        return json_ready(value.item())
    return value


def report_json(report: Mapping[str, Any]) -> str:
    """The one JSON object ``{"symbols": {...}, "pooled": {...}}`` the CLI prints with ``--json``."""
    return json.dumps(json_ready(report), allow_nan=False, sort_keys=False)


def _rows(entry: Mapping[str, Any]) -> list[list[str]]:
    return [
        [bucket] + [_cell(entry["horizons"][bucket].get(key), pattern) for _, key, pattern in _COLUMNS]
        for bucket in HORIZON_BUCKETS
    ]


def _recommendation_line(entry: Mapping[str, Any]) -> str:
    trades = entry["recommendations"]
    held = ", ".join(f"{rule} {count}" for rule, count in trades["withheld_by_rule"].items() if count)
    return (
        f"reprediction rate {_cell(entry['reprediction_rate'], '{:.3f}')}; recommendations {trades['count']} "
        f"(scored {trades['scored']}, hit rate {_cell(trades['hit_rate'], '{:.3f}')}, mean net return "
        f"{_cell(trades['mean_net_return_pct'], '{:+.3f}')}%); withheld: {held or 'none'}"
    )


def text_table(report: Mapping[str, Any]) -> str:
    """A fixed-width table per symbol and one pooled, each followed by its reprediction rate and trades."""
    header = ["bucket"] + [name for name, _, _ in _COLUMNS]
    parts = []
    sections = [*report["symbols"].items(), ("pooled", report["pooled"])]
    for name, entry in sections:
        rows = [header, *_rows(entry)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"== {name} =="]
        lines += ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
        lines.append(_recommendation_line(entry))
        parts.append("\n".join(lines))
    parts.append(
        "IS = mean interval (Winkler) score in % of the as-of close (lower is better); naive/tod = the baseline "
        "bands' scores on the same origins."
    )
    return "\n\n".join(parts)


def _markdown_table(entry: Mapping[str, Any]) -> str:
    header = ["bucket"] + [name for name, _, _ in _COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(entry)]
    return "\n".join(lines)


def _confidence_table(entry: Mapping[str, Any]) -> str:
    table = entry.get("error_by_confidence") or {}
    lines = ["| confidence level | n | mean abs error % | MASE | coverage 95 |", "|---|---|---|---|---|"]
    for level, values in (table.get("levels") or {}).items():
        lines.append(
            f"| {level} | {values['n']} | {_cell(values['mean_abs_error_pct'], '{:.3f}')} | "
            f"{_cell(values['mase'], '{:.3f}')} | {_cell(values['coverage_95'], '{:.3f}')} |"
        )
    separates = table.get("separates")
    verdict = {True: "yes (the highest level's MASE is below the lowest's)",
               False: "no (the highest level's MASE is not below the lowest's)",
               None: "unknown (fewer than two scored levels)"}[separates]
    return "\n".join(lines) + f"\n\nDoes confidence separate good forecasts from bad? {verdict}."


def write_report(
    report: Mapping[str, Any], folder: str | Path, parameters: Mapping[str, Any], timings: Mapping[str, float]
) -> Path:
    """Write ``backtest_report.md`` with its PNG plots into ``folder`` (created); returns the Markdown file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    interval_plot(report, folder / INTERVAL_PLOT)
    accuracy_plot(report, folder / ACCURACY_PLOT)
    lines = ["# Walk-forward backtest", ""]
    lines += [f"- {name}: {value}" for name, value in parameters.items()]
    lines += [f"- {name}: {value}" for name, value in timings.items()]
    lines += [
        "",
        "IS = mean interval (Winkler) score in % of the as-of close, lower is better; `naive` and `tod` are the "
        "walk-forward baseline bands (last close x exp(+-q sigma sqrt(h)), and the same with a time-of-day "
        "volatility profile) on the same origins and targets. MASE below 1 beats the last close held flat.",
        "",
        f"![interval scores and coverage]({INTERVAL_PLOT})",
        "",
        f"![MASE and directional accuracy]({ACCURACY_PLOT})",
        "",
    ]
    for name, entry in [("pooled", report["pooled"]), *report["symbols"].items()]:
        lines += [f"## {name}", "", _markdown_table(entry), "", _recommendation_line(entry), "",
                  _confidence_table(entry), ""]
    path = folder / REPORT_FILE
    path.write_text("\n".join(lines))
    return path


def _figure(rows: int, columns: int) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * columns, 3.6 * rows), dpi=80)
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=False)


def interval_plot(report: Mapping[str, Any], path: Path) -> None:
    """Pooled interval score and coverage per bucket: the model's intervals beside both baseline bands."""
    import numpy as np

    pooled = report["pooled"]["horizons"]
    figure, axes = _figure(2, 2)
    x = np.arange(len(HORIZON_BUCKETS))
    series = (("model", ""), ("naive band", "naive_band_"), ("tod band", "tod_band_"))
    for column, level in enumerate((80, 95)):
        score_axis, coverage_axis = axes[0][column], axes[1][column]
        for offset, (label, prefix) in enumerate(series):
            scores = [pooled[b].get(f"{prefix}interval_score_{level}") for b in HORIZON_BUCKETS]
            coverage = [pooled[b].get(f"{prefix}coverage_{level}") for b in HORIZON_BUCKETS]
            score_axis.bar(x + (offset - 1) * 0.27, [v if v is not None else np.nan for v in scores], 0.27,
                           label=label)
            coverage_axis.bar(x + (offset - 1) * 0.27, [v if v is not None else np.nan for v in coverage], 0.27,
                              label=label)
        coverage_axis.axhline(level / 100, color="black", linewidth=0.8, linestyle="--")
        for axis, title in ((score_axis, f"{level}% interval score (% of close)"), (coverage_axis,
                                                                                    f"{level}% coverage")):
            axis.set_xticks(x, list(HORIZON_BUCKETS))
            axis.set_title(f"pooled: {title}")
            axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, format="png")


def accuracy_plot(report: Mapping[str, Any], path: Path) -> None:
    """MASE and directional accuracy per bucket, per symbol and pooled (MASE 1 and accuracy 0.5: no skill)."""
    import numpy as np

    figure, axes = _figure(1, 2)
    sections = [*report["symbols"].items(), ("pooled", report["pooled"])]
    x = np.arange(len(HORIZON_BUCKETS))
    width = 0.8 / max(len(sections), 1)
    for axis, key, line in ((axes[0][0], "mase", 1.0), (axes[0][1], "directional_accuracy", 0.5)):
        for offset, (name, entry) in enumerate(sections):
            values = [entry["horizons"][b].get(key) for b in HORIZON_BUCKETS]
            axis.bar(x + offset * width - 0.4 + width / 2, [v if v is not None else np.nan for v in values], width,
                     label=name)
        axis.axhline(line, color="black", linewidth=0.8, linestyle="--")
        axis.set_xticks(x, list(HORIZON_BUCKETS))
        axis.set_title(key.replace("_", " "))
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, format="png")


__all__ = ["json_ready", "report_json", "text_table", "write_report"]
