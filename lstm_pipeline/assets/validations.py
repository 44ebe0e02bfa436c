"""``validations``: every stored forecast of a window judged once that window's actual bar has arrived.

Partition ``AAPL|2025-07-07-10:00`` is the window whose bar just arrived: every stored prediction of AAPL whose
``target_window`` is that window (up to ~130, one per earlier as-of window within the week before) is compared
with the actual close and given a status (``valid``, ``needs_reprediction``, ``invalid``; the rule is documented in
``lstm_pipeline.evaluation.validation``). The asset is thin: one read of the run's predictions and one of its bars
(usable and rejected together) through the store, one call of ``validate_predictions`` for the whole run, one
transaction replacing the run's (symbol, target_window) partitions, so a re-run replaces rows and never adds any.
"""

import time

import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.predictions import predictions
from lstm_pipeline.evaluation.validation import (
    HORIZON_BUCKETS,
    INVALID,
    NEEDS_REPREDICTION,
    STATUSES,
    horizon_bucket,
    validate_predictions,
)
from lstm_pipeline.market.calendar import WINDOW
from lstm_pipeline.partitions import market_bars_partitions, requested_windows
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import get_settings


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})"


def _bucket_table(rows: pd.DataFrame) -> tuple[dict[str, float | None], str]:
    """Share of rows needing reprediction per horizon bucket, as JSON and as a markdown table."""
    buckets = horizon_bucket(rows["horizon_step"])
    judged = rows["status"] != INVALID
    shares: dict[str, float | None] = {}
    lines = ["| horizon bucket | validated | needs reprediction | share |", "|---|---|---|---|"]
    for name in HORIZON_BUCKETS:
        chosen = judged & (buckets == name)
        count = int(chosen.sum())
        flagged = int((rows.loc[chosen, "status"] == NEEDS_REPREDICTION).sum())
        shares[name] = round(flagged / count, 4) if count else None
        lines.append(f"| {name} | {count} | {flagged} | {'' if not count else f'{flagged / count:.1%}'} |")
    return shares, "\n".join(lines)


@asset(
    partitions_def=market_bars_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetDep(predictions), AssetDep(market_bars)],
    group_name="evaluation",
    kinds={"duckdb", "pandas"},
    description=(
        "Every stored forecast of a symbol-window judged once that window's actual bar arrived: signed and absolute "
        "error %, the naive forecast's error, inside the 80%/95% interval, and a status: needs_reprediction when "
        "the error exceeds both validation_threshold and the forecast's own 95% interval, invalid when the bar is "
        "bad, else valid."
    ),
)
def validations(context: AssetExecutionContext, store: PipelineStore) -> MaterializeResult:
    threshold = float(get_settings().validation_threshold)
    wanted = requested_windows(list(context.partition_keys))
    symbols = sorted(wanted)
    first = min(windows[0] for windows in wanted.values())
    last = max(windows[-1] for windows in wanted.values())

    stored = store.read_rows(
        "predictions",
        [_in("symbol", symbols), "target_window >= ?", "target_window <= ?"],
        [*symbols, first, last],
    )
    bars = store.read_rows(
        "market_bars",
        [_in("symbol", symbols), "window_start >= ?", "window_start < ?"],
        [*symbols, first, last + WINDOW],
    )
    # A single-run range may span windows of symbols outside the run: keep exactly the run's (symbol, window) pairs.
    run_pairs = pd.DataFrame(
        [(symbol, window) for symbol, windows in wanted.items() for window in windows],
        columns=["symbol", "target_window"],
    )
    run_pairs["target_window"] = pd.to_datetime(run_pairs["target_window"]).astype(stored["target_window"].dtype)
    stored = stored.merge(run_pairs, on=["symbol", "target_window"], how="inner")
    flagged = bars["rejected_check"].notna()

    started = time.perf_counter()
    result = validate_predictions(stored, bars[~flagged], bars[flagged], threshold)
    seconds = time.perf_counter() - started

    store.replace_tables({"validations": (run_pairs, result.rows)})

    counts = result.rows["status"].value_counts().reindex(list(STATUSES), fill_value=0).astype(int).to_dict()
    shares, table = _bucket_table(result.rows)
    pending = result.not_validated
    pending_reasons = pending["reason"].value_counts().astype(int).to_dict()
    for reason, count in pending_reasons.items():
        context.log.info(f"{count} prediction(s) not validated: {reason}")
    context.log.info(
        f"Validated {len(result.rows)} prediction(s) of {len(run_pairs)} symbol-window(s) in {seconds:.3f} s: "
        + ", ".join(f"{count} {status}" for status, count in counts.items())
        + "."
    )
    return MaterializeResult(
        metadata={
            "rows": MetadataValue.int(len(result.rows)),
            "status_counts": MetadataValue.json(counts),
            "needs_reprediction_share_by_horizon": MetadataValue.json(shares),
            "by_horizon_bucket": MetadataValue.md(table),
            "not_validated": MetadataValue.int(len(pending)),
            "not_validated_reasons": MetadataValue.json(pending_reasons),
            "validation_threshold": MetadataValue.float(threshold),
            "validate_seconds": MetadataValue.float(round(seconds, 4)),
        }
    )
