"""The daily report (the spec's "dashboard export"): one self-contained HTML page of a day's accuracy,
recommendations and alerts, with its charts also as PNG files.

``build_daily_report`` reads the day's rows through the store (validations of the windows that day targeted,
recommendations made that day, alerts raised or resolved that day), summarizes them per symbol and draws three
charts with matplotlib (imported here, inside the function, with the non-interactive Agg backend). The HTML embeds
the charts as data URIs, so the one file can be mailed or archived. Plain module: no Dagster import.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lstm_pipeline.settings import Settings

LEVEL_ORDER = ["CRITICAL", "ERROR", "WARNING", "INFO"]


@dataclass
class DailyReport:
    day: dt.date
    html: str
    charts: dict[str, bytes] = field(default_factory=dict)
    """PNG bytes by file name (``accuracy.png``, ``recommendations.png``, ``alerts.png``)."""
    summary: dict[str, Any] = field(default_factory=dict)


def _bounds(day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(day).tz_localize("America/New_York")
    return start, start + pd.Timedelta(days=1)


def _accuracy(validations: pd.DataFrame) -> pd.DataFrame:
    judged = validations[validations["status"].isin(["valid", "needs_reprediction"])]
    if judged.empty:
        return pd.DataFrame(columns=["symbol", "validations", "within_threshold", "mean_abs_error_pct",
                                     "naive_abs_error_pct", "coverage_80"])
    return (
        judged.assign(ok=judged["status"] == "valid", inside=judged["inside_80"].astype("float64"))
        .groupby("symbol")
        .agg(validations=("ok", "size"), within_threshold=("ok", "mean"),
             mean_abs_error_pct=("abs_error_pct", "mean"), naive_abs_error_pct=("naive_abs_error_pct", "mean"),
             coverage_80=("inside", "mean"))
        .reset_index()
    )


def _recommendations(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=["symbol", "buy", "short", "none"])
    counts = rows.groupby(["symbol", "action"]).size().unstack(fill_value=0)
    for action in ("buy", "short", "none"):
        if action not in counts:
            counts[action] = 0
    return counts[["buy", "short", "none"]].reset_index()


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _charts(accuracy: pd.DataFrame, recommendations: pd.DataFrame, alerts: pd.DataFrame) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    charts = {}
    figure, axis = plt.subplots(figsize=(7, 3.5))
    if len(accuracy):
        positions = range(len(accuracy))
        axis.bar([p - 0.2 for p in positions], accuracy["mean_abs_error_pct"], width=0.4, label="model")
        axis.bar([p + 0.2 for p in positions], accuracy["naive_abs_error_pct"], width=0.4, label="naive")
        axis.set_xticks(list(positions), list(accuracy["symbol"]))
        axis.legend()
    else:
        axis.text(0.5, 0.5, "no validated forecast this day", ha="center", va="center", transform=axis.transAxes)
    axis.set_ylabel("mean absolute error (%)")
    axis.set_title("Forecast error of the day's windows")
    charts["accuracy.png"] = _png(figure)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 3.5))
    if len(recommendations):
        bottom = pd.Series(0, index=recommendations.index)
        for action in ("buy", "short", "none"):
            axis.bar(recommendations["symbol"], recommendations[action], bottom=bottom, label=action)
            bottom = bottom + recommendations[action]
        axis.legend()
    else:
        axis.text(0.5, 0.5, "no recommendation this day", ha="center", va="center", transform=axis.transAxes)
    axis.set_ylabel("recommendations")
    axis.set_title("Recommendations by action")
    charts["recommendations.png"] = _png(figure)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 3.0))
    counts = alerts["level"].value_counts() if len(alerts) else pd.Series(dtype="int64")
    axis.bar(LEVEL_ORDER, [int(counts.get(level, 0)) for level in LEVEL_ORDER],
             color=["#7b1fa2", "#c62828", "#f9a825", "#1565c0"])
    axis.set_ylabel("alerts")
    axis.set_title("Alerts raised this day by level")
    charts["alerts.png"] = _png(figure)
    plt.close(figure)
    return charts


def _table(frame: pd.DataFrame, empty: str) -> str:
    if frame.empty:
        return f"<p><em>{html.escape(empty)}</em></p>"
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else f"{v:.4g}")
        elif isinstance(shown[column].dtype, pd.DatetimeTZDtype):
            shown[column] = shown[column].dt.tz_convert("America/New_York").dt.strftime("%Y-%m-%d %H:%M")
    return shown.to_html(index=False, escape=True, border=0, classes="data", na_rep="-")


def build_daily_report(store: Any, settings: Settings, day: dt.date) -> DailyReport:
    """The report of ``day`` (New York calendar day)."""
    start, end = _bounds(day)
    validations = store.read_rows("validations", ["target_window >= ?", "target_window < ?"], [start, end])
    recommendations = store.read_rows("trade_recommendations", ["as_of_window >= ?", "as_of_window < ?"],
                                      [start, end])
    alerts = store.read_rows("alerts", ["created_at >= ?", "created_at < ?"], [start, end])
    if len(alerts):
        from lstm_pipeline.operations.alert_channels import with_levels

        alerts = with_levels(alerts)
    accuracy = _accuracy(validations)
    actions = _recommendations(recommendations)
    trades = recommendations[recommendations["action"] != "none"] if len(recommendations) else recommendations
    charts = _charts(accuracy, actions, alerts)

    summary = {
        "day": day.isoformat(),
        "validations": int(accuracy["validations"].sum()) if len(accuracy) else 0,
        "within_threshold": float((accuracy["within_threshold"] * accuracy["validations"]).sum()
                                  / accuracy["validations"].sum()) if len(accuracy) else None,
        "recommendations": int(len(recommendations)),
        "trades": int(len(trades)),
        "alerts_raised": int(len(alerts)),
        "alerts_by_level": {level: int((alerts["level"] == level).sum()) if len(alerts) else 0
                            for level in LEVEL_ORDER},
    }
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        f"</figure>"
        for name, data in charts.items()
    )
    within = "-" if summary["within_threshold"] is None else f"{summary['within_threshold']:.1%}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>LSTM pipeline report {day.isoformat()}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table.data{{border-collapse:collapse;margin:1em 0}}
table.data td,table.data th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}
figure{{display:inline-block;margin:0 1em 1em 0}}</style></head>
<body>
<h1>Daily report {day.isoformat()}</h1>
<p>Symbols: {html.escape(", ".join(settings.symbols))}. {summary['validations']} forecast(s) of this day's windows
validated ({within} within the validation threshold); {summary['recommendations']} recommendation(s), of which
{summary['trades']} trade(s); {summary['alerts_raised']} alert(s) raised.</p>
{images}
<h2>Accuracy of the day's windows</h2>
{_table(accuracy, "No forecast of this day's windows was validated.")}
<h2>Recommendations</h2>
{_table(trades[["symbol", "as_of_window", "action", "entry_window", "entry_price", "exit_window", "exit_price",
                "predicted_return_pct", "confidence"]] if len(trades) else trades,
        "No trade was recommended this day.")}
{_table(actions, "No recommendation was made this day.")}
<h2>Alerts raised</h2>
{_table(alerts[["level", "alert_key", "created_at", "resolved_at", "message"]] if len(alerts) else alerts,
        "No alert was raised this day.")}
</body></html>
"""
    return DailyReport(day=day, html=page, charts=charts, summary=summary)
