"""The whole chain on both storage backends: the scripted trading day (tests/workflow/test_scripted_day.py) driven
through the market and reprediction sensors onto the DuckDB file and onto a PostgreSQL database, with the same rows
stored in every table on both.

Quiet windows forecast once per symbol, a price shock makes validations fail and asks for exactly one reprediction,
and re-running partitions (a tick's run, the reprediction, the whole day in one run) changes no row count.
"""

import pandas as pd
import pytest
from dagster import RunRequest, instance_for_test

from lstm_pipeline.market.calendar import NEW_YORK, parse_window_key, week_ahead_windows
from lstm_pipeline.partitions import PARTITION_RANGE_END_TAG as END_TAG
from lstm_pipeline.partitions import PARTITION_RANGE_START_TAG as START_TAG
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.storage import TABLES
from tests.workflow.test_scripted_day import DAY, SHOCK_FROM, SHOCKED, SYMBOLS, WORKFLOW_TABLES, Day

UNREPEATABLE = {"run_id", "resolved_at", "acknowledged_at", "escalated_at"}
"""Columns that differ between two identical runs (run ids, wall-clock times); ``DEFAULT``-filled columns too."""


def _scripted_day(store: PipelineStore) -> dict[str, pd.DataFrame]:
    """Run the scripted day on ``store`` (asserting what a user relies on at each step); every table's rows."""
    with instance_for_test() as instance:
        day = Day(instance, store)
        assert day.market_tick(f"{DAY} 10:00:30")  # three warm-up sessions and the day's first window
        assert len(day.market_tick(f"{DAY} 10:45:30")) == 3  # catching up 09:45 .. 10:15 in one run
        rows = day.forecasts()
        made = rows.groupby(["symbol", "as_of_window"])["horizon_step"].count()
        assert len(made) == 4 * len(SYMBOLS)  # one forecast per symbol per window, nothing else
        assert all(count == len(week_ahead_windows(window)) for (_, window), count in made.items())
        assert day.reprediction_tick() == []

        shock_window = parse_window_key(day.market_tick(f"{DAY} 11:00:30")[0])
        assert shock_window == pd.Timestamp(SHOCK_FROM, tz=NEW_YORK)
        judged = store.read_rows("validations", ["target_window = ?"], [shock_window])
        status = judged.groupby("symbol")["status"].agg(set).to_dict()
        assert status == {SHOCKED: {"needs_reprediction"}, "MSFT": {"valid"}}
        (request,) = day.reprediction_tick()
        assert request.partition_key == f"{SHOCKED}|{DAY}-10:30"
        day.execute("reprediction", request, day.reprediction_sensor.name)
        after = day.forecasts()
        repredicted = after[(after["symbol"] == SHOCKED) & (after["as_of_window"] == shock_window)]
        assert set(repredicted["reason"]) == {"reprediction: validation_error"}

        counts = day.row_counts()
        assert all(counts[table] > 0 for table in WORKFLOW_TABLES if table != "trade_outcomes")
        day.execute("market_bars_update", day.chain_requests[1], day.market_sensor.name)
        day.execute("reprediction", request, day.reprediction_sensor.name)
        first, last = day.chain_requests[0].tags, day.chain_requests[-1].tags
        day.execute("market_bars_update", RunRequest(tags={START_TAG: first[START_TAG], END_TAG: last[END_TAG]}), None)
        assert day.row_counts() == counts  # re-runs duplicate nothing
        return {table: store.read_rows(table) for table in WORKFLOW_TABLES}


@pytest.fixture(scope="module")
def stored_by_backend() -> dict[str, dict[str, pd.DataFrame]]:
    """Each backend's tables after its scripted day, filled by the tests below (each day runs once)."""
    return {}


@pytest.fixture
def chain_store(request, tmp_path) -> PipelineStore:
    if request.param == "duckdb":
        return PipelineStore.for_path(tmp_path / "chain.duckdb")
    return PipelineStore.for_postgres(request.getfixturevalue("postgres_url"), files_beside=tmp_path / "beside.duckdb")


@pytest.mark.slow
@pytest.mark.parametrize("chain_store", ["duckdb", "postgres"], indirect=True)
def test_the_scripted_day_runs_the_whole_chain_on_each_backend(chain_store, stored_by_backend):
    stored_by_backend[chain_store.backend] = _scripted_day(chain_store)


@pytest.mark.slow
def test_both_backends_store_the_same_rows(stored_by_backend, tmp_path, postgres_url):
    for backend, store in (
        ("duckdb", PipelineStore.for_path(tmp_path / "chain.duckdb")),
        ("postgres", PipelineStore.for_postgres(postgres_url)),
    ):
        if backend not in stored_by_backend:  # this test run alone
            stored_by_backend[backend] = _scripted_day(store)
    duck, postgres = stored_by_backend["duckdb"], stored_by_backend["postgres"]
    for table in WORKFLOW_TABLES:
        varying = [c.name for c in TABLES[table].columns if c.default is not None or c.name in UNREPEATABLE]
        pd.testing.assert_frame_equal(
            duck[table].drop(columns=varying), postgres[table].drop(columns=varying), obj=table, check_exact=False,
            rtol=1e-9,
        )
