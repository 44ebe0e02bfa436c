"""The great-expectations checks run on what market_bars wrote and block downstream assets when they fail."""

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    MaterializeResult,
    asset,
    materialize,
)

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.market_bars_checks import market_bars_quality, rejections
from lstm_pipeline.market.quality import QualityOutcome
from lstm_pipeline.partitions import market_bars_key, market_bars_partitions
from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.resources.storage import PipelineStore
from tests.helpers import register_windows

NY = "America/New_York"


class CorruptingMarketData(SimulatedMarketData):
    """A provider that sends one bar whose high is below its close, and drops another window."""

    def _fetch(self, symbol, start, end):
        bars = super()._fetch(symbol, start, end)
        if len(bars) > 2:
            bars.loc[1, "high"] = bars.loc[1, "close"] - 1.0
            bars = bars.drop(index=2).reset_index(drop=True)
        return bars


@asset(partitions_def=market_bars_partitions, deps=[market_bars])
def downstream_of_bars() -> None:
    """Stands for any consumer of market_bars (predictions, models)."""


def _check_results(result):
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def _materialize_ten_windows(instance, store, market_data):
    keys = register_windows(instance, "2025-07-07", "2025-07-08")
    return materialize(
        [market_bars, market_bars_quality, downstream_of_bars],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": str(market_bars_key("AAPL", keys[0])),
            "dagster/asset_partition_range_end": str(market_bars_key("AAPL", keys[9])),
        },
        resources={"market_data": market_data, "store": store},
        raise_on_error=False,
    )


def test_clean_bars_pass_every_check_and_downstream_runs(instance, store):
    result = _materialize_ten_windows(instance, store, SimulatedMarketData(seed=2))
    assert result.success
    checks = _check_results(result)
    assert checks and all(evaluation.passed for evaluation in checks.values()), {
        name: evaluation.description for name, evaluation in checks.items() if not evaluation.passed
    }
    assert result.asset_materializations_for_node("downstream_of_bars")


def test_broken_bar_fails_its_check_with_the_row_and_blocks_downstream(instance, store):
    result = _materialize_ten_windows(instance, store, CorruptingMarketData(seed=2))
    assert not result.success
    checks = _check_results(result)
    bounds = checks["high_low_bounds"]
    assert not bounds.passed and bounds.severity == AssetCheckSeverity.ERROR
    assert "2025-07-07 09:45" in bounds.metadata["failures"].value
    missing = checks["complete_windows"]
    assert not missing.passed and missing.severity == AssetCheckSeverity.WARN
    assert "2025-07-07 10:00" in missing.metadata["failures"].value
    assert not result.asset_materializations_for_node("downstream_of_bars")
    assert instance.get_latest_materialization_event(AssetKey("downstream_of_bars")) is None
    stored = store.read_bars("AAPL", include_rejected=True)
    assert len(stored) == 9  # what the provider sent is kept for inspection, nothing invented
    assert pd.Timestamp("2025-07-07 10:00", tz="America/New_York") not in set(stored["window_start"])
    assert bounds.metadata["quarantined_rows"].value == 1
    assert store.read_rejected_bars("AAPL")["window_start"].tolist() == [pd.Timestamp("2025-07-07 09:45", tz=NY)]
    assert len(store.read_bars("AAPL")) == 8  # the bar that failed a blocking check is never read by default


class PoisonedMarketData(SimulatedMarketData):
    """A provider that sends a NaN close, a high below its low and a negative price among sound bars."""

    def _fetch(self, symbol, start, end):
        bars = super()._fetch(symbol, start, end)
        bars.loc[1, "close"] = float("nan")
        bars.loc[3, ["high", "low"]] = bars.loc[3, "low"] - 1.0, bars.loc[3, "high"] + 1.0
        bars.loc[5, ["open", "low"]] = -1.0
        return bars


@asset(partitions_def=market_bars_partitions, deps=[market_bars])
def forecast_inputs(store: PipelineStore) -> MaterializeResult:
    """Stands for a later predictions-only or training run: reads the bars the way they do."""
    bars = store.read_bars("AAPL")
    return MaterializeResult(
        metadata={"rows": len(bars), "finite_sound": bool(np.isfinite(bars["close"]).all() and (bars["low"] > 0).all()
                                                     and (bars["high"] >= bars["low"]).all())}
    )


def test_bars_failing_a_blocking_check_are_quarantined_until_re_materialized(instance, store):
    poisoned = _materialize_ten_windows(instance, store, PoisonedMarketData(seed=2))
    assert not poisoned.success
    checks = _check_results(poisoned)
    assert not checks["ohlcv_not_null"].passed and not checks["high_low_bounds"].passed
    assert checks["ohlcv_not_null"].metadata["quarantined_rows"].value == 1
    assert checks["high_low_bounds"].metadata["quarantined_rows"].value == 2
    windows = [pd.Timestamp(f"2025-07-07 {time}", tz=NY) for time in ("09:45", "10:15", "10:45")]
    rejected = store.read_rejected_bars()
    assert rejected["window_start"].tolist() == windows
    assert rejected["rejected_check"].tolist() == ["ohlcv_not_null", "high_low_bounds", "high_low_bounds"]
    assert "close is null" in rejected["rejected_reason"].iloc[0]
    assert len(store.read_bars("AAPL", include_rejected=True)) == 10

    # A later run that only forecasts or trains (market_bars not in it, so nothing blocks it) never sees them.
    later = materialize(
        [forecast_inputs], instance=instance, partition_key=str(market_bars_key("AAPL", "2025-07-07-11:45")),
        resources={"store": store},
    )
    metadata = later.asset_materializations_for_node("forecast_inputs")[0].metadata
    assert metadata["rows"].value == 7 and metadata["finite_sound"].value is True
    assert not set(windows) & set(store.read_bars("AAPL")["window_start"])

    # The repair: re-fetch sound bars for those partitions; the rows are replaced and the flags clear.
    repaired = _materialize_ten_windows(instance, store, SimulatedMarketData(seed=2))
    assert repaired.success
    assert store.read_rejected_bars().empty and len(store.read_bars("AAPL")) == 10


def _outcome(name, passed, failed, severity="ERROR"):
    rows = pd.DataFrame(failed, columns=["symbol", "window_start", "reason"])
    return QualityOutcome(name, passed, severity, f"{name} failed.", rows.head(1), {}, rows)


def test_a_blocking_rule_rejects_every_row_it_names_and_all_bars_when_it_names_none():
    windows = pd.date_range(pd.Timestamp("2025-07-07 09:30", tz=NY), periods=3, freq="15min")
    bars = pd.DataFrame({"symbol": "AAPL", "window_start": windows})
    named = _outcome("high_low_bounds", False, [("AAPL", windows[0], "high below low"), ("AAPL", windows[2], "x")])
    whole_column = _outcome("schema_and_types", False, [(None, pd.NaT, "column 'close' has dtype object")])
    warning = _outcome("price_jumps", False, [("AAPL", windows[1], "jump")], severity="WARN")
    passed = _outcome("ohlcv_not_null", True, [])
    rejected = rejections(bars, [named, whole_column, warning, passed])
    assert rejected.groupby("check_name")["window_start"].apply(list).to_dict() == {
        "high_low_bounds": [windows[0], windows[2]],  # every failing row, not only the first listed
        "schema_and_types": list(windows),  # it cannot tell which bars are sound
    }
    assert rejections(bars, [warning, passed]).empty


def test_more_failing_bars_than_the_check_lists_are_all_quarantined():
    from lstm_pipeline.market.quality import MAX_FAILED_ROWS, evaluate_bar_quality

    bars = SimulatedMarketData(seed=2).fetch_bars(
        "AAPL", pd.Timestamp("2025-07-07 09:30", tz=NY), pd.Timestamp("2025-07-10 16:00", tz=NY)
    )
    bars["close"] = float("nan")
    outcomes = evaluate_bar_quality(bars)
    (nulls,) = [outcome for outcome in outcomes if outcome.name == "ohlcv_not_null"]
    assert len(bars) > MAX_FAILED_ROWS and len(nulls.failed_rows) == MAX_FAILED_ROWS  # the metadata table is capped
    assert set(rejections(bars, outcomes)["window_start"]) == set(bars["window_start"])  # the quarantine is not


def test_bars_stay_unread_until_every_blocking_check_has_passed_them(instance, store):
    """A run that dies between writing bars and checking them leaves them staged, never read by a forecast."""
    keys = register_windows(instance, "2025-07-07", "2025-07-08")
    tags = {
        "dagster/asset_partition_range_start": str(market_bars_key("AAPL", keys[0])),
        "dagster/asset_partition_range_end": str(market_bars_key("AAPL", keys[9])),
    }
    resources = {"market_data": SimulatedMarketData(seed=2), "store": store}
    unchecked = materialize([market_bars], instance=instance, tags=tags, resources=resources)
    assert unchecked.success
    staged = store.read_bars("AAPL", include_rejected=True)
    assert len(staged) == 10
    assert store.read_bars("AAPL").empty  # written, but not checked: forecasting and training see nothing
    assert set(store.read_rejected_bars("AAPL")["rejected_check"]) == {"awaiting_checks"}

    one_rule = AssetSelection.assets(market_bars).without_checks() | AssetSelection.checks(
        AssetCheckKey(market_bars.key, "ohlcv_not_null")
    )
    partial = materialize(
        [market_bars, market_bars_quality], selection=one_rule, instance=instance, tags=tags, resources=resources
    )
    assert partial.success
    assert store.read_bars("AAPL").empty  # one blocking rule is not all of them: still staged

    checked = materialize([market_bars, market_bars_quality], instance=instance, tags=tags, resources=resources)
    assert checked.success
    assert len(store.read_bars("AAPL")) == 10
    assert store.read_rejected_bars("AAPL").empty
