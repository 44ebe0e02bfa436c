"""A scripted trading day: the market sensor ticks window by window on the simulated market (injected clock), each
requested run executes in-process, a price shock makes validations fail, the reprediction sensor asks for exactly
one reprediction, and re-running any partition changes no row count.

The runs are executed as the daemon would: dynamic partitions from the sensor result registered first, then each
run request's job executed with the request's tags (plus the sensor-name tag the daemon adds), one at a time, on a
temporary DuckDB and the shipped models (no training).
"""

import pandas as pd
import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    Definitions,
    RunRequest,
    SensorResult,
    build_sensor_context,
    in_process_executor,
)

from lstm_pipeline.assets.accuracy_metrics import accuracy_metrics
from lstm_pipeline.assets.alerts import alerts
from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.assets.market_bars_checks import market_bars_quality
from lstm_pipeline.assets.predictions import predictions
from lstm_pipeline.assets.trade_recommendations import trade_recommendations
from lstm_pipeline.assets.validations import validations
from lstm_pipeline.evaluation.lifecycle import ACTIVE, SUPERSEDED, prediction_lifecycle
from lstm_pipeline.jobs import market_bars_update_job, reprediction_job
from lstm_pipeline.market.calendar import NEW_YORK, parse_window_key, week_ahead_windows
from lstm_pipeline.partitions import PARTITION_RANGE_END_TAG as END_TAG
from lstm_pipeline.partitions import PARTITION_RANGE_START_TAG as START_TAG
from lstm_pipeline.partitions import split_market_bars_key
from lstm_pipeline.resources.market_data import SimulatedMarketData
from lstm_pipeline.resources.model_store import LocalModelStore
from lstm_pipeline.sensors.market_windows import build_market_windows_sensor
from lstm_pipeline.sensors.repredictions import VALIDATION_ERROR, build_reprediction_sensor
from lstm_pipeline.settings import PROJECT_ROOT, MarketDataSettings, Settings
from tests.helpers import FrozenClock

SYMBOLS = ["AAPL", "MSFT"]  # the first two configured symbols: a range AAPL..MSFT resolves to exactly them
SHOCKED = "AAPL"
DAY = "2025-06-17"  # a quiet morning for both symbols on the simulated market (seed 0)
SHOCK_FROM = f"{DAY} 10:30"  # AAPL's prices jump 15% from this window on
WORKFLOW_TABLES = (
    "market_bars",
    "predictions",
    "validations",
    "accuracy_metrics",
    "trade_recommendations",
    "trade_outcomes",
    "alerts",
)


class ShockedMarket(SimulatedMarketData):
    """The simulated market with one symbol's prices multiplied by ``factor`` from ``shock_from`` on (every price
    column, so the bar stays a consistent OHLC bar and passes the blocking checks: only the move is abnormal)."""

    shock_symbol: str
    shock_from: str
    factor: float

    def _fetch(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        bars = super()._fetch(symbol, start, end)
        if symbol == self.shock_symbol:
            shocked = bars["window_start"] >= pd.Timestamp(self.shock_from, tz=NEW_YORK)
            for column in ("open", "high", "low", "close", "vwap"):
                bars.loc[shocked, column] = bars.loc[shocked, column] * self.factor
        return bars


class Day:
    """The instance, store, definitions and both sensors of one scripted day, with the run history it made."""

    def __init__(self, instance, store) -> None:
        self.instance, self.store = instance, store
        self.clock = FrozenClock(f"{DAY} 09:00")
        settings = Settings(
            symbols=SYMBOLS,
            # Three sessions of history before the day: the shipped models look back 48 windows.
            market_data=MarketDataSettings(source="simulated", history_start="2025-06-10", warmup_sessions=3),
        )
        self.market_sensor = build_market_windows_sensor(settings, self.clock)
        self.reprediction_sensor = build_reprediction_sensor(settings, self.clock)
        self.defs = Definitions(
            assets=[market_bars, predictions, validations, accuracy_metrics, trade_recommendations, alerts],
            asset_checks=[market_bars_quality],
            jobs=[market_bars_update_job, reprediction_job],
            resources={
                "store": store,
                "model_store": LocalModelStore(models_dir=str(PROJECT_ROOT / "models")),
                "market_data": ShockedMarket(seed=0, shock_symbol=SHOCKED, shock_from=SHOCK_FROM, factor=1.15),
            },
            executor=in_process_executor,
        )
        self.reprediction_cursor: str | None = None
        self.run_keys: list[str] = []
        self.chain_requests: list = []

    def execute(self, job_name: str, request, sensor_name: str | None) -> None:
        """Execute a run request's job in-process, as the daemon would (a sensor's run carries the sensor's name)."""
        tags = dict(request.tags)
        if sensor_name:
            tags["dagster/sensor_name"] = sensor_name
        result = self.defs.resolve_job_def(job_name).execute_in_process(
            instance=self.instance,
            partition_key=request.partition_key,
            tags=tags,
            asset_selection=request.asset_selection,
        )
        assert result.success

    def market_tick(self, at: str) -> list[str]:
        """One market-sensor tick at ``at``: register the new windows, run what it requests; the fetched window keys."""
        self.clock.set(at)
        with build_sensor_context(instance=self.instance) as context:
            result = self.market_sensor(context)
        assert isinstance(result, SensorResult)
        for request in result.dynamic_partitions_requests:
            assert isinstance(request, AddDynamicPartitionsRequest)  # windows arrive in time order: nothing to move
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        fetched: list[str] = []
        for request in result.run_requests:
            self.run_keys.append(request.run_key)
            self.execute("market_bars_update", request, self.market_sensor.name)
            if not request.asset_selection:
                self.chain_requests.append(request)
                first = split_market_bars_key(request.tags[START_TAG])[1]
                last = split_market_bars_key(request.tags[END_TAG])[1]
                fetched += [
                    key for key in self.instance.get_dynamic_partitions("session_windows") if first <= key <= last
                ]
        return fetched

    def reprediction_tick(self) -> list:
        with build_sensor_context(
            instance=self.instance, cursor=self.reprediction_cursor, resources={"store": self.store}
        ) as context:
            result = self.reprediction_sensor(context)
        assert isinstance(result, SensorResult)
        self.reprediction_cursor = result.cursor
        return list(result.run_requests)

    def forecasts(self) -> pd.DataFrame:
        return self.store.read_rows("predictions")

    def row_counts(self) -> dict[str, int]:
        return {table: len(self.store.read_rows(table)) for table in WORKFLOW_TABLES}


@pytest.mark.slow
def test_a_scripted_day_forecasts_each_window_repredicts_a_shock_once_and_reruns_duplicate_nothing(instance, store):
    day = Day(instance, store)
    forecast_windows: set[tuple[str, pd.Timestamp]] = set()

    # Four quiet ticks, one per closed window (09:30 .. 10:15): each forecasts every symbol once for its new window.
    for at in ("10:00:30", "10:15:30", "10:30:30", "10:45:30"):
        fetched = day.market_tick(f"{DAY} {at}")
        assert len(fetched) == 1
        forecast_windows |= {(symbol, parse_window_key(fetched[0])) for symbol in SYMBOLS}
        rows = day.forecasts()
        made = rows.groupby(["symbol", "as_of_window"])["horizon_step"].count()
        assert set(made.index) == forecast_windows  # one forecast per symbol per window, nothing else
        assert all(count == len(week_ahead_windows(window)) for (_, window), count in made.items())  # 104: Juneteenth
        assert set(rows["reason"]) == {"schedule"}
        assert day.reprediction_tick() == []  # a quiet market needs no reprediction

    # The first tick also fetched three warm-up sessions (bars only) before the day's first window.
    assert day.run_keys[0].startswith("market_bars_warmup:2025-06-12-09:30")

    # The shock: AAPL's 10:30 bar (due at 11:00) is 15% above what every earlier forecast of that window expected.
    shock_window = parse_window_key(day.market_tick(f"{DAY} 11:00:30")[0])
    assert shock_window == pd.Timestamp(SHOCK_FROM, tz=NEW_YORK)
    judged = store.read_rows("validations", ["target_window = ?"], [shock_window])
    status = judged.groupby("symbol")["status"].agg(set).to_dict()
    assert status[SHOCKED] == {"needs_reprediction"}
    assert status["MSFT"] == {"valid"}
    assert len(judged[judged["symbol"] == SHOCKED]) == 4  # the forecasts as of 09:30 .. 10:15

    (request,) = day.reprediction_tick()
    assert request.partition_key == f"{SHOCKED}|{DAY}-10:30"
    assert request.run_key == f"reprediction:{SHOCKED}:{VALIDATION_ERROR}:{DAY}-10:30"
    before = day.forecasts()
    day.execute("reprediction", request, day.reprediction_sensor.name)
    after = day.forecasts()

    repredicted = after[(after["symbol"] == SHOCKED) & (after["as_of_window"] == shock_window)]
    assert len(repredicted) == len(week_ahead_windows(shock_window))
    assert set(repredicted["reason"]) == {"reprediction: validation_error"}
    untouched = after[~((after["symbol"] == SHOCKED) & (after["as_of_window"] == shock_window))]
    assert set(untouched["reason"]) == {"schedule"} and len(after) == len(before)
    lifecycle = prediction_lifecycle(after, now=day.clock()).set_index(["symbol", "as_of_window"])
    assert lifecycle.loc[(SHOCKED, shock_window), "status"] == ACTIVE
    flagged_newest = judged.loc[judged["symbol"] == SHOCKED, "as_of_window"].max()  # the 10:15 forecast
    assert lifecycle.loc[(SHOCKED, flagged_newest), "status"] == SUPERSEDED
    assert lifecycle.loc[(SHOCKED, flagged_newest), "superseded_by"] == shock_window

    # The next window is still shocked (stale forecasts fail again) but the cooldown holds: no second request.
    day.market_tick(f"{DAY} 11:15:30")
    flagged_again = store.read_rows("validations", ["symbol = ?", "status = ?"], [SHOCKED, "needs_reprediction"])
    assert flagged_again["target_window"].max() > shock_window
    assert day.reprediction_tick() == []
    assert len(day.run_keys) == len(set(day.run_keys))  # no tick requested the same run twice

    # Re-running partitions (a tick's run, the reprediction, the whole day in one run) duplicates nothing.
    counts = day.row_counts()
    assert all(counts[table] > 0 for table in WORKFLOW_TABLES if table != "trade_outcomes")
    day.execute("market_bars_update", day.chain_requests[2], day.market_sensor.name)
    assert day.row_counts() == counts
    day.execute("reprediction", request, day.reprediction_sensor.name)
    assert day.row_counts() == counts
    first, last = day.chain_requests[0].tags, day.chain_requests[-1].tags
    whole_day = RunRequest(tags={START_TAG: first[START_TAG], END_TAG: last[END_TAG]})
    day.execute("market_bars_update", whole_day, sensor_name=None)
    assert day.row_counts() == counts
