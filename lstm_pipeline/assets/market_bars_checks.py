"""Blocking data-quality checks on ``market_bars``, run with great-expectations 1.x.

dagster-ge supports only great-expectations < 1.0, so the rules live in ``lstm_pipeline.market.quality`` (which
imports great-expectations inside its function: ~6 s, paid by the check step, never by the code location) and
this multi-asset check turns each rule's outcome into one Dagster check result. The ERROR rules block assets
downstream of ``market_bars`` in the same run; missing windows and price jumps warn.
"""

from collections.abc import Iterable

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)

from lstm_pipeline.assets.market_bars import market_bars, requested_windows
from lstm_pipeline.market.calendar import WINDOW
from lstm_pipeline.market.quality import BLOCKING_CHECK_NAMES, QUALITY_CHECK_NAMES
from lstm_pipeline.resources.storage import MarketBarsStore

CHECK_DESCRIPTIONS = {
    "schema_and_types": "All bar columns are present with their types (float prices, integer volume, tz-aware time).",
    "ohlcv_not_null": "No nulls in open, high, low, close or volume.",
    "high_low_bounds": "high >= max(open, close), low <= min(open, close), and low > 0.",
    "volume_non_negative": "volume >= 0.",
    "one_row_per_window": "Exactly one row per symbol and window.",
    "timestamps_in_session": "Every window starts inside the NYSE regular session (holidays, early closes).",
    "complete_windows": "Every requested session window has a bar (warns: a missing window is reported, not hidden).",
    "price_jumps": "No close-to-close jump beyond N rolling standard deviations (warns).",
}


def _partitions_in_run(context: AssetCheckExecutionContext) -> list[str]:
    if context.has_partition_key_range or context.has_partition_key:
        return list(context.partition_keys)
    raise ValueError("market_bars checks run with the market_bars partitions they check; launch them with a run.")


def _failed_rows_markdown(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "none"
    lines = ["| symbol | window | reason |", "|---|---|---|"]
    for row in rows.head(50).itertuples(index=False):
        stamp = pd.Timestamp(row.window_start)
        when = stamp.strftime("%Y-%m-%d %H:%M %Z") if not pd.isna(stamp) else "?"
        lines.append(f"| {row.symbol} | {when} | {row.reason} |")
    return "\n".join(lines)


def quality_results(
    bars: pd.DataFrame, expected: dict[str, pd.DatetimeIndex], checked: Iterable[str]
) -> list[AssetCheckResult]:
    """Evaluate every rule on ``bars`` and shape one Dagster result per rule."""
    from lstm_pipeline.market.quality import evaluate_bar_quality

    wanted = set(checked)
    results = []
    for outcome in evaluate_bar_quality(bars, expected):
        if outcome.name not in wanted:
            continue
        results.append(
            AssetCheckResult(
                asset_key=market_bars.key,
                check_name=outcome.name,
                passed=outcome.passed,
                severity=AssetCheckSeverity.ERROR if outcome.severity == "ERROR" else AssetCheckSeverity.WARN,
                description=outcome.description,
                metadata={
                    "rows_checked": MetadataValue.int(len(bars)),
                    "failed_rows": MetadataValue.int(int(outcome.stats.get("failed_count", len(outcome.failed_rows)))),
                    "failures": MetadataValue.md(_failed_rows_markdown(outcome.failed_rows)),
                    **{f"stat_{k}": v for k, v in outcome.stats.items() if isinstance(v, int | float | str)},
                },
            )
        )
    return results


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            name,
            asset=market_bars,
            blocking=name in BLOCKING_CHECK_NAMES,
            description=CHECK_DESCRIPTIONS.get(name),
        )
        for name in QUALITY_CHECK_NAMES
    ],
    can_subset=True,
    name="market_bars_quality",
    description="great-expectations 1.x rules on the bars a run just wrote.",
)
def market_bars_quality(context: AssetCheckExecutionContext, bars_store: MarketBarsStore):
    wanted = requested_windows(_partitions_in_run(context))
    frames = []
    for symbol, windows in wanted.items():
        stored = bars_store.read_bars(symbol, windows[0], windows[-1] + WINDOW)
        frames.append(stored[stored["window_start"].isin(windows)])
    bars = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    expected = {symbol: pd.DatetimeIndex(windows) for symbol, windows in wanted.items()}
    checked = [key.name for key in context.selected_asset_check_keys]
    context.log.info(f"Checking {len(bars)} rows of {len(wanted)} symbol(s) against {len(checked)} rules.")
    yield from quality_results(bars, expected, checked)
