"""``alerts``: the conditions the spec's ``alert_thresholds`` watch, one open alert per condition and symbol.

Partitioned like ``market_bars`` and run last in the chain; each symbol of a run is judged as of its latest window.
The asset is thin: a few reads through the store (validations, the as-of forecast's confidence, trade outcomes, the
latest bars, the open alerts), one call of ``evaluation.alerting.evaluate_alerts`` for the whole run, one write. A
condition that still holds updates its open row (same ``alert_key``, same first-raised window); one that clears gets
``resolved_at``. Open rows of the run-status sensors (``runs``: failed and canceled runs; ``checks``: asset checks
that did not pass) are counted in ``open_alerts_by_level`` here, never rewritten.
"""

import time

import pandas as pd
from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from lstm_pipeline.evaluation.alerting import (
    ACCURACY_SPAN,
    CHECKS_SOURCE,
    RUNS_SOURCE,
    STALE_LOOKBACK,
    TRADE_SPAN,
    WORKFLOW_SOURCE,
    evaluate_alerts,
    open_alerts_by_level,
)
from lstm_pipeline.market.calendar import NEW_YORK, WINDOW
from lstm_pipeline.partitions import market_bars_partitions, requested_windows
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import get_settings


def _per_symbol(column: str, ends: dict[str, pd.Timestamp], span: pd.Timedelta | None) -> tuple[str, list[object]]:
    """One SQL clause: each symbol's rows with ``column`` in (end - span, end] (or = end without a span)."""
    clauses, params = [], []
    for symbol, end in ends.items():
        if span is None:
            clauses.append(f"(symbol = ? AND {column} = ?)")
            params += [symbol, end]
        else:
            clauses.append(f"(symbol = ? AND {column} > ? AND {column} <= ?)")
            params += [symbol, end - span, end]
    return "(" + " OR ".join(clauses) + ")", params


def _markdown(rows: pd.DataFrame) -> str:
    lines = ["| level | symbol | kind | since | message |", "|---|---|---|---|---|"]
    for row in rows.itertuples(index=False):
        since = pd.Timestamp(row.as_of_window).tz_convert(NEW_YORK)
        lines.append(f"| {row.level} | {row.symbol} | {row.kind} | {since:%Y-%m-%d %H:%M} | {row.message} |")
    return "\n".join(lines)


@asset(
    partitions_def=market_bars_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=["trade_recommendations"],
    group_name="monitoring",
    kinds={"duckdb"},
    description=(
        "Alerts from the spec's alert_thresholds (prediction error high/critical, confidence low/critical, model "
        "accuracy low, trade success rate low) and stale data: one open row per condition and symbol (alert_key), "
        "updated while it holds and resolved (resolved_at) when it clears."
    ),
)
def alerts(context: AssetExecutionContext, store: PipelineStore) -> MaterializeResult:
    wanted = requested_windows(list(context.partition_keys))
    ends = {symbol: windows[-1] for symbol, windows in wanted.items()}
    as_of = pd.DataFrame(
        [(symbol, window) for symbol, windows in wanted.items() for window in windows],
        columns=["symbol", "window_start"],
    )
    symbols = sorted(ends)
    placeholders = ", ".join("?" for _ in symbols)

    started = time.perf_counter()
    validations = store.read_rows("validations", *_clause(_per_symbol("target_window", ends, ACCURACY_SPAN)))
    predictions = store.read_rows("predictions", *_clause(_per_symbol("as_of_window", ends, None)))
    outcomes = store.read_rows("trade_outcomes", *_clause(_per_symbol("scored_window", ends, TRADE_SPAN)))
    bars = store.read_bars(symbols=symbols, start=min(ends.values()) - STALE_LOOKBACK, end=max(ends.values()) + WINDOW)
    # Open alerts that have a lifecycle (this asset's, and the run-status sensors' for runs and checks); the
    # per-window rows of ``predictions`` are replaced with their partition instead and are not counted here.
    stored_alerts = store.read_rows(
        "alerts",
        [f"(source = ? AND symbol IN ({placeholders}) OR source IN (?, ?))", "resolved_at IS NULL"],
        [WORKFLOW_SOURCE, *symbols, RUNS_SOURCE, CHECKS_SOURCE],
    )
    read_seconds = time.perf_counter() - started

    started = time.perf_counter()
    evaluation = evaluate_alerts(
        as_of,
        validations,
        predictions,
        outcomes,
        bars[["symbol", "window_start"]],
        stored_alerts[stored_alerts["source"] == WORKFLOW_SOURCE],
        get_settings().alert_thresholds,
        now=pd.Timestamp.now(tz="UTC"),
        run_id=context.run_id,
    )
    evaluate_seconds = time.perf_counter() - started
    rows = evaluation.rows
    if len(rows):
        store.replace_tables({"alerts": (evaluation.keys, rows)})

    untouched = stored_alerts[
        (stored_alerts["source"] != WORKFLOW_SOURCE) | ~stored_alerts["alert_key"].isin(set(rows["alert_key"]))
    ]
    now_open = pd.concat([untouched, evaluation.upserts], ignore_index=True) if len(evaluation.upserts) else untouched
    by_level = open_alerts_by_level(now_open)
    raised = len(evaluation.raised_keys)
    for row in evaluation.upserts.itertuples(index=False):
        if row.alert_key in evaluation.raised_keys:
            context.log.warning(f"{row.level} {row.alert_key}: {row.message}")
    context.log.info(
        f"Judged {len(ends)} symbol(s): raised {raised}, still open {len(evaluation.upserts) - raised}, resolved "
        f"{len(evaluation.resolutions)}; open by level {by_level}."
    )
    workflow_open = evaluation.upserts.sort_values(["symbol", "kind"]) if len(evaluation.upserts) else None
    return MaterializeResult(
        metadata={
            "open_alerts_by_level": MetadataValue.json(by_level),
            "raised": MetadataValue.int(raised),
            "still_open": MetadataValue.int(len(evaluation.upserts) - raised),
            "resolved": MetadataValue.int(len(evaluation.resolutions)),
            "not_evaluated": MetadataValue.json(
                {
                    f"{kind}: {reason}": int(count)
                    for (kind, reason), count in evaluation.not_evaluated.groupby(["kind", "reason"]).size().items()
                }
            ),
            "open_alerts": MetadataValue.md(_markdown(workflow_open)) if workflow_open is not None
            else MetadataValue.text("none"),
            "read_seconds": MetadataValue.float(round(read_seconds, 3)),
            "evaluate_seconds": MetadataValue.float(round(evaluate_seconds, 3)),
        }
    )


def _clause(clause_and_params: tuple[str, list[object]]) -> tuple[list[str], list[object]]:
    clause, params = clause_and_params
    return [clause], params
