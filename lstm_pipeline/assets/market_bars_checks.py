"""Blocking data-quality checks on ``market_bars``, run with great-expectations 1.x.

dagster-ge supports only great-expectations < 1.0, so the rules live in ``lstm_pipeline.market.quality`` (which
imports great-expectations inside its function: ~6 s, paid by the check step, never by the code location) and
this multi-asset check turns each rule's outcome into one Dagster check result. The ERROR rules block assets
downstream of ``market_bars`` in the same run. ``market_bars`` writes its bars staged (unreadable by forecasting and
training); this check promotes the ones every blocking rule passed and quarantines the ones a rule failed
(``PipelineStore.record_checks``), so that no run ever forecasts or trains on an unchecked or failed bar, even one
that died between writing and checking; re-materializing those partitions replaces the rows and clears the flag.
Missing windows and price jumps warn.
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

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.market.bars import empty_bars
from lstm_pipeline.market.calendar import WINDOW
from lstm_pipeline.market.quality import BLOCKING_CHECK_NAMES, QUALITY_CHECK_NAMES, QualityOutcome
from lstm_pipeline.partitions import requested_windows
from lstm_pipeline.resources.storage import PipelineStore

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


def rejections(bars: pd.DataFrame, outcomes: Iterable[QualityOutcome]) -> pd.DataFrame:
    """The bars each failed blocking rule rejects: (symbol, window_start, check_name, reason), one row per pair.

    A rule that failed without naming rows (a whole column is wrong, or great-expectations could not evaluate
    it) rejects every checked bar: it cannot tell which ones are sound.
    """
    frames = []
    for outcome in outcomes:
        if outcome.passed or outcome.name not in BLOCKING_CHECK_NAMES:
            continue
        failed = outcome.all_failed_rows if outcome.all_failed_rows is not None else outcome.failed_rows
        named = failed.dropna(subset=["symbol", "window_start"])
        if len(named) < len(failed) or named.empty:
            named = bars[["symbol", "window_start"]].assign(reason=outcome.description)
        frames.append(named[["symbol", "window_start", "reason"]].assign(check_name=outcome.name))
    if not frames:
        return pd.DataFrame(columns=["symbol", "window_start", "check_name", "reason"])
    return pd.concat(frames, ignore_index=True)[["symbol", "window_start", "check_name", "reason"]]


def quality_results(
    bars: pd.DataFrame,
    outcomes: Iterable[QualityOutcome],
    checked: Iterable[str],
    quarantined: dict[str, int] | None = None,
) -> list[AssetCheckResult]:
    """Shape one Dagster result per checked rule; ``quarantined`` counts the stored bars each rule flagged."""
    wanted = set(checked)
    results = []
    for outcome in outcomes:
        if outcome.name not in wanted:
            continue
        extra = {}
        if outcome.name in BLOCKING_CHECK_NAMES:
            extra["quarantined_rows"] = MetadataValue.int((quarantined or {}).get(outcome.name, 0))
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
                    **extra,
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
def market_bars_quality(context: AssetCheckExecutionContext, store: PipelineStore):
    from lstm_pipeline.market.quality import evaluate_bar_quality

    wanted = requested_windows(_partitions_in_run(context))
    frames = []
    for symbol, windows in wanted.items():
        # Rejected bars are read too: re-running the checks on them must fail again, not see nothing.
        stored = store.read_bars(symbol, windows[0], windows[-1] + WINDOW, include_rejected=True)
        frames.append(stored[stored["window_start"].isin(windows)])
    bars = pd.concat(frames, ignore_index=True) if frames else empty_bars()
    expected = {symbol: pd.DatetimeIndex(windows) for symbol, windows in wanted.items()}
    checked = [key.name for key in context.selected_asset_check_keys]
    context.log.info(f"Checking {len(bars)} rows of {len(wanted)} symbol(s) against {len(checked)} rules.")
    outcomes = [outcome for outcome in evaluate_bar_quality(bars, expected) if outcome.name in checked]
    rejected = rejections(bars, outcomes)
    # Bars are written staged; they become readable only once every blocking rule has judged them.
    every_blocking_rule = set(BLOCKING_CHECK_NAMES) <= set(checked)
    checked_bars = zip(bars["symbol"].astype(str), bars["window_start"], strict=True)
    flagged = store.record_checks(checked_bars, rejected, promote=every_blocking_rule)
    quarantined: dict[str, int] = {}
    if len(rejected):
        quarantined = rejected.groupby("check_name").size().astype(int).to_dict()
        context.log.warning(
            f"Quarantined {flagged} stored bar(s) that failed a blocking check; forecasting and training will not "
            "read them until their market_bars partitions are re-materialized with sound data."
        )
    if not every_blocking_rule:
        context.log.warning(
            "Only some blocking rules ran, so the bars they passed stay staged (unread by forecasting and "
            "training); run all of market_bars' blocking checks to promote them."
        )
    yield from quality_results(bars, outcomes, checked, quarantined)
