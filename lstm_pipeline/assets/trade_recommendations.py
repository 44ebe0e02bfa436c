"""``trade_recommendations``: what each symbol-window's forecast recommends, and the score of past recommendations.

Partition ``AAPL|2025-07-07-10:00`` holds the recommendation made from the forecast as of that window (a trade, or
``none`` with the rule that held it back and a sentence with the numbers; see ``lstm_pipeline.trading``). The same
run scores every stored buy/short whose exit window is one of the run's windows, into ``trade_outcomes``
(partitioned by that exit window, ``scored_window``), in the same transaction: re-running replaces both exactly.

The skill gate reads the model's recent MASE and its skill p-value from ``accuracy_metrics``: span ``month`` (the
last 546 validated targets: a week of overlapping week-ahead errors cannot tell skill from chance), every horizon
bucket (the gate judges a trade at the bucket of its exit: ``trading.recommendations``), the newest row at or
before each as-of window and at most ``MASE_MAX_AGE`` older: an older one, or none, is no evidence and holds the
trade back. The asset is thin: it reads through the store, calls
``recommend_trades`` and ``score_recommendations`` once for the whole run, and writes once.
"""

import time

import pandas as pd
from dagster import AssetDep, AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from lstm_pipeline.market.calendar import WINDOW
from lstm_pipeline.partitions import market_bars_partitions, requested_windows
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import get_settings
from lstm_pipeline.trading import recommend_trades, score_recommendations
from lstm_pipeline.trading.recommendations import BUY, NO_TRADE, SHORT, SKILL_COLUMNS, SKILL_SPAN

MASE_SPAN = SKILL_SPAN
MASE_HORIZON_BUCKET = "1_day"
"""The bucket a row without a trade reports; a trade is judged at its exit's bucket."""
MASE_MAX_AGE = pd.Timedelta(days=7)
"""A skill figure older than this is stale (the chain computes one every window): no evidence."""


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})"


def _among(frame: pd.DataFrame, window_column: str, keys: set[tuple[str, pd.Timestamp]]) -> pd.DataFrame:
    """The rows of ``frame`` whose (symbol, ``window_column``) is one of ``keys``."""
    pairs = zip(frame["symbol"].astype(str), frame[window_column], strict=True)
    mask = [(symbol, pd.Timestamp(window)) in keys for symbol, window in pairs]
    return frame[pd.Series(mask, index=frame.index, dtype=bool)]


def recent_mase(store: PipelineStore, wanted: dict[str, list[pd.Timestamp]]) -> pd.DataFrame:
    """The skill table ``recommend_trades`` reads (``SKILL_COLUMNS``): per (symbol, as_of_window) of ``wanted`` and
    horizon bucket, the newest ``accuracy_metrics`` MASE and skill p-value known as of it (a bucket with none has
    no row)."""
    empty = pd.DataFrame({name: pd.Series(dtype=object) for name in SKILL_COLUMNS})
    symbols = sorted(wanted)
    first = min(window for windows in wanted.values() for window in windows)
    last = max(window for windows in wanted.values() for window in windows)
    metrics = store.read_rows(
        "accuracy_metrics",
        where=[_in("symbol", symbols), "span = ?", "window_start >= ?", "window_start <= ?", "mase IS NOT NULL"],
        params=[*symbols, MASE_SPAN, first - MASE_MAX_AGE, last],
    )
    if metrics.empty:
        return empty
    origins = pd.DataFrame(
        [(symbol, window) for symbol, windows in wanted.items() for window in windows], columns=["symbol", "as_of"]
    )
    origins["as_of"] = pd.to_datetime(origins["as_of"], utc=True)
    origins = origins.sort_values("as_of")
    known = metrics[["symbol", "window_start", "horizon_bucket", "mase", "skill_p_value"]].assign(
        symbol=metrics["symbol"].astype(str), window_start=pd.to_datetime(metrics["window_start"], utc=True)
    )
    found = []
    for bucket, rows in known.groupby("horizon_bucket", sort=True):
        matched = pd.merge_asof(
            origins, rows[["symbol", "window_start", "mase", "skill_p_value"]].sort_values("window_start"),
            left_on="as_of", right_on="window_start", by="symbol", direction="backward", tolerance=MASE_MAX_AGE,
        ).dropna(subset=["mase"])
        found.append(pd.DataFrame({
            "symbol": matched["symbol"], "as_of_window": matched["as_of"], "horizon_bucket": str(bucket),
            "mase": matched["mase"].astype("float64"),
            "skill_p_value": pd.to_numeric(matched["skill_p_value"], errors="coerce").astype("float64"),
        }))
    return pd.concat(found, ignore_index=True) if found else empty


def _trades_markdown(recommended: pd.DataFrame, limit: int = 20) -> str:
    lines = [
        "| symbol | as of | action | entry | exit | predicted % | confidence | MASE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in recommended.head(limit).itertuples():
        lines.append(
            f"| {row.symbol} | {row.as_of_window:%Y-%m-%d %H:%M} | {row.action} | {row.entry_price:.2f} "
            f"({row.entry_window:%m-%d %H:%M}) | {row.exit_price:.2f} ({row.exit_window:%m-%d %H:%M}) | "
            f"{row.predicted_return_pct:.2f} | {row.confidence:.2f} | {row.recent_mase:.2f} |"
        )
    return "\n".join(lines)


@asset(
    partitions_def=market_bars_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    # The skill gate's MASE comes from accuracy_metrics (same symbol-window partition, so a chain run orders it
    # first); the forecasts and older rows are read through the store.
    deps=[AssetDep("accuracy_metrics")],
    group_name="trading",
    kinds={"duckdb"},
    description=(
        "The trade each symbol-window's week-ahead forecast recommends (buy at the predicted low before the "
        "predicted high, net of round-trip costs), or which rule held it back: no skill against the naive "
        "forecast, a flat path, too little profit, too little confidence. Scores past recommendations whose exit "
        "window is in the run into trade_outcomes."
    ),
)
def trade_recommendations(context: AssetExecutionContext, store: PipelineStore) -> MaterializeResult:
    settings = get_settings()
    wanted = requested_windows(list(context.partition_keys))
    symbols = sorted(wanted)
    origins = [(symbol, window) for symbol, windows in wanted.items() for window in windows]
    first, last = min(w for _, w in origins), max(w for _, w in origins)

    forecasts = store.read_rows(
        "predictions", where=[_in("symbol", symbols), "as_of_window >= ?", "as_of_window <= ?"],
        params=[*symbols, first, last],
    )
    run_windows = set(origins)  # a range run spans a rectangle of symbols x windows: keep exactly the run's
    forecasts = _among(forecasts, "as_of_window", run_windows)
    mase = recent_mase(store, wanted)

    started = time.perf_counter()
    recommendations = recommend_trades(forecasts, mase, settings, origins=origins)
    recommend_seconds = time.perf_counter() - started

    # Scoring: every recommended trade (stored earlier, or made in this very run) whose exit window is in the run.
    stored = store.read_rows(
        "trade_recommendations",
        where=[_in("symbol", symbols), "exit_window >= ?", "exit_window <= ?", "action <> ?"],
        params=[*symbols, first, last, NO_TRADE],
    )
    stored = stored.drop(index=_among(stored, "as_of_window", run_windows).index)  # replaced by this run's
    made_now = recommendations[recommendations["action"].isin([BUY, SHORT])]
    candidates = made_now if stored.empty else pd.concat([stored[made_now.columns], made_now], ignore_index=True)
    candidates = _among(candidates, "exit_window", run_windows)
    bars = (
        store.read_bars(symbols=sorted(set(candidates["symbol"].astype(str))),
                        start=candidates["entry_window"].min(), end=candidates["exit_window"].max() + WINDOW)
        if len(candidates) else pd.DataFrame(columns=["symbol", "window_start", "close"])
    )
    started = time.perf_counter()
    outcomes = score_recommendations(candidates, bars, settings)
    score_seconds = time.perf_counter() - started

    origin_keys = pd.DataFrame(origins, columns=["symbol", "as_of_window"])
    store.replace_tables({
        "trade_recommendations": (origin_keys, recommendations),
        "trade_outcomes": (origin_keys.rename(columns={"as_of_window": "scored_window"}), outcomes),
    })

    history = store.read_rows("trade_outcomes", where=[_in("symbol", symbols), "hit IS NOT NULL"], params=symbols)
    recommended = recommendations[recommendations["action"] != NO_TRADE]
    counts_by_action = recommendations["action"].value_counts().sort_index().to_dict()
    counts_by_rule = recommendations["held_back_by"].dropna().value_counts().sort_index().to_dict()
    context.log.info(
        f"{len(recommended)} trade(s) recommended of {len(recommendations)} symbol-windows; held back: "
        f"{counts_by_rule or 'none'}; {len(outcomes)} past recommendation(s) scored."
    )
    metadata = {
        "recommendations": MetadataValue.int(len(recommendations)),
        "by_action": MetadataValue.json({str(k): int(v) for k, v in counts_by_action.items()}),
        "held_back_by": MetadataValue.json({str(k): int(v) for k, v in counts_by_rule.items()}),
        "outcomes_scored": MetadataValue.int(len(outcomes)),
        "outcomes_hits": MetadataValue.int(int(outcomes["hit"].sum())) if len(outcomes) else MetadataValue.int(0),
        "scored_so_far": MetadataValue.int(len(history)),
        "recommend_seconds": MetadataValue.float(round(recommend_seconds, 4)),
        "score_seconds": MetadataValue.float(round(score_seconds, 4)),
        "round_trip_cost_bps": MetadataValue.float(float(settings.workflow.round_trip_cost_bps)),
    }
    if len(recommended):
        metadata["mean_predicted_return_pct"] = MetadataValue.float(
            round(float(recommended["predicted_return_pct"].mean()), 4)
        )
        metadata["recommended_trades"] = MetadataValue.md(_trades_markdown(recommended))
    if len(history):
        metadata["success_rate_so_far"] = MetadataValue.float(round(float(history["hit"].astype(bool).mean()), 4))
        metadata["mean_realized_return_pct_so_far"] = MetadataValue.float(
            round(float(history["realized_return_pct"].mean()), 4)
        )
    return MaterializeResult(metadata=metadata)
