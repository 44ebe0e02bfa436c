"""The great-expectations checks run on what market_bars wrote and block downstream assets when they fail."""

import pandas as pd
from dagster import AssetCheckSeverity, AssetKey, asset, materialize

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.market_bars_checks import market_bars_quality
from lstm_pipeline.partitions import market_bars_key, market_bars_partitions
from lstm_pipeline.resources.market_data import SimulatedMarketData
from tests.conftest import register_windows


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


def _materialize_ten_windows(instance, bars_store, market_data):
    keys = register_windows(instance, "2025-07-07", "2025-07-08")
    return materialize(
        [market_bars, market_bars_quality, downstream_of_bars],
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": str(market_bars_key("AAPL", keys[0])),
            "dagster/asset_partition_range_end": str(market_bars_key("AAPL", keys[9])),
        },
        resources={"market_data": market_data, "bars_store": bars_store},
        raise_on_error=False,
    )


def test_clean_bars_pass_every_check_and_downstream_runs(instance, bars_store):
    result = _materialize_ten_windows(instance, bars_store, SimulatedMarketData(seed=2))
    assert result.success
    checks = _check_results(result)
    assert checks and all(evaluation.passed for evaluation in checks.values()), {
        name: evaluation.description for name, evaluation in checks.items() if not evaluation.passed
    }
    assert result.asset_materializations_for_node("downstream_of_bars")


def test_broken_bar_fails_its_check_with_the_row_and_blocks_downstream(instance, bars_store):
    result = _materialize_ten_windows(instance, bars_store, CorruptingMarketData(seed=2))
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
    stored = bars_store.read_bars("AAPL")
    assert len(stored) == 9  # what the provider sent is kept for inspection, nothing invented
    assert pd.Timestamp("2025-07-07 10:00", tz="America/New_York") not in set(stored["window_start"])
