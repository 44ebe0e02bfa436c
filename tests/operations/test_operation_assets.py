"""The Dagster face of the operations: incremental nightly backups from lineage, the blocking restore check, the
restore job refusing to run beside another run, exports from the launchpad, retention's dry run."""

import datetime as dt
import json

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DagsterRun,
    DagsterRunStatus,
    Definitions,
    build_asset_check_context,
    evaluate_automation_conditions,
    materialize,
)

from lstm_pipeline.assets.backups import backups, backups_restore_verified
from lstm_pipeline.assets.exports import exports, exports_readable
from lstm_pipeline.jobs import WORKFLOW_CHAIN
from lstm_pipeline.market.calendar import window_key
from lstm_pipeline.operations.backups import create_backup, list_backups, load_backup, verify_backup
from lstm_pipeline.operations_jobs import restore_job, retention_job
from lstm_pipeline.partitions import market_bars_key, market_bars_partitions, register_session_windows
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.settings import get_settings
from lstm_pipeline.storage import database_at
from tests.helpers import range_tags
from tests.operations.synthetic import chain_rows, write_chain

SYMBOLS = ["AAPL", "MSFT"]


@pytest.fixture
def chain(env_settings, day_windows):
    """The first 3 windows of 2025-01-02 for AAPL and MSFT: rows in the store, keys registered, bars materialized."""
    windows = day_windows[:3]
    write_chain(env_settings.db_path, chain_rows(SYMBOLS, windows))
    return windows


def _report_bars(instance, symbol, window):
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key="market_bars", partition=str(market_bars_key(symbol, window_key(window))))
    )


def _requested(result) -> set[str]:
    (evaluated,) = [r for r in result.results if r.key == AssetKey("backups")]
    return set(evaluated.true_subset.expensively_compute_partition_keys())


def _run_backups(instance, store, keys: list[str]):
    symbols = sorted({key.split("|")[0] for key in keys}, key=SYMBOLS.index)
    windows = sorted({key.split("|")[1] for key in keys})
    return materialize(
        [backups, backups_restore_verified], instance=instance, resources={"store": store},
        tags=range_tags(symbols, windows),
    )


def test_nightly_backup_takes_exactly_the_new_and_stale_partitions(instance, env_settings, chain):
    keys = [window_key(window) for window in chain]
    register_session_windows(instance, keys)
    store = PipelineStore.for_path(env_settings.db_path)
    for symbol in SYMBOLS:
        for window in chain[:2]:
            _report_bars(instance, symbol, window)
    night = dt.datetime(2025, 1, 3, 7, 30, tzinfo=dt.UTC)  # 02:30 New York, after the 02:00 tick
    # The chain as specs with its partitions: its lineage is what the condition reads.
    upstream = [AssetSpec(name, partitions_def=market_bars_partitions) for name in WORKFLOW_CHAIN]
    defs = Definitions(assets=[*upstream, backups], resources={"store": store})

    before = evaluate_automation_conditions(defs, instance, evaluation_time=night - dt.timedelta(hours=1))
    assert _requested(before) == set()  # no tick passed yet
    first = evaluate_automation_conditions(defs, instance, evaluation_time=night, cursor=before.cursor)
    new = {f"{symbol}|{key}" for symbol in SYMBOLS for key in keys[:2]}
    assert _requested(first) == new  # never backed up; the third window has no bars yet

    result = _run_backups(instance, store, sorted(new))
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed

    # During the day one upstream partition is materialized again (new rows), and a new window's bars arrive.
    changed = chain_rows(["AAPL"], chain[:1], seed=9, price_shift=5.0)
    write_chain(env_settings.db_path, changed)
    _report_bars(instance, "AAPL", chain[0])
    _report_bars(instance, "MSFT", chain[2])
    day = evaluate_automation_conditions(
        defs, instance, evaluation_time=night + dt.timedelta(hours=10), cursor=first.cursor
    )
    assert _requested(day) == set()  # only at the nightly tick
    next_night = evaluate_automation_conditions(
        defs, instance, evaluation_time=night + dt.timedelta(days=1), cursor=day.cursor
    )
    assert _requested(next_night) == {f"AAPL|{keys[0]}", f"MSFT|{keys[2]}"}

    assert _run_backups(instance, store, [f"AAPL|{keys[0]}"]).success
    newest = list_backups(env_settings)[-1]
    loaded = load_backup(env_settings, newest.backup_id)
    assert list(zip(loaded.partitions["symbol"], loaded.partitions["window_start"], strict=True)) == [
        ("AAPL", chain[0])
    ]
    assert loaded.tables["market_bars"]["close"].tolist() == changed["market_bars"]["close"].tolist()


def test_the_check_fails_on_a_tampered_backup(instance, env_settings, chain):
    keys = [window_key(window) for window in chain]
    register_session_windows(instance, keys)
    store = PipelineStore.for_path(env_settings.db_path)
    assert _run_backups(instance, store, [f"AAPL|{key}" for key in keys]).success
    (backup,) = list_backups(env_settings)
    target = backup.path / "validations.parquet.enc"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x80
    target.write_bytes(bytes(data))

    result = backups_restore_verified(build_asset_check_context(instance=instance), store=store)

    assert not result.passed
    assert "validations.parquet.enc" in result.description and "fails authentication" in result.description


def test_a_failing_check_fails_the_backup_run(instance, env_settings, chain, monkeypatch):
    keys = [window_key(window) for window in chain]
    register_session_windows(instance, keys)
    store = PipelineStore.for_path(env_settings.db_path)
    from lstm_pipeline.operations import backups as backup_module

    real_create = backup_module.create_backup

    def create_then_truncate(*args, **kwargs):
        result = real_create(*args, **kwargs)
        target = result.path / "market_bars.parquet.enc"
        target.write_bytes(target.read_bytes()[:20])
        return result

    monkeypatch.setattr("lstm_pipeline.assets.backups.create_backup", create_then_truncate)
    result = materialize(
        [backups, backups_restore_verified], instance=instance, resources={"store": store},
        tags=range_tags(["AAPL"], keys), raise_on_error=False,
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and "fails authentication" in check.description
    assert not result.success  # blocking: the run fails


def test_restore_job_refuses_while_another_run_is_in_progress(instance, env_settings, chain):
    keys = [window_key(window) for window in chain]
    register_session_windows(instance, keys)
    store = PipelineStore.for_path(env_settings.db_path)
    assert _run_backups(instance, store, [f"AAPL|{key}" for key in keys]).success
    instance.add_run(DagsterRun(job_name="market_bars_update", run_id="busy-run", status=DagsterRunStatus.STARTED))

    result = restore_job.execute_in_process(instance=instance, resources={"store": store}, raise_on_error=False)

    assert not result.success
    failure = result.failure_data_for_node("restore_store")
    assert "busy-run" in failure.user_failure_data.description
    assert "restore again" in failure.user_failure_data.description


def test_restore_job_restores_one_table(instance, env_settings, chain):
    keys = [window_key(window) for window in chain]
    register_session_windows(instance, keys)
    store = PipelineStore.for_path(env_settings.db_path)
    assert _run_backups(instance, store, [f"{symbol}|{key}" for symbol in SYMBOLS for key in keys]).success
    before = database_at(env_settings.db_path).read_rows("validations")
    write_chain(env_settings.db_path, {"validations": chain_rows(SYMBOLS, chain, seed=5)["validations"]})

    result = restore_job.execute_in_process(
        instance=instance, resources={"store": store},
        run_config={"ops": {"restore_store": {"config": {"table": "validations"}}}},
    )

    assert result.success
    pd.testing.assert_frame_equal(database_at(env_settings.db_path).read_rows("validations"), before)


def test_export_from_the_launchpad_config(instance, env_settings, chain):
    store = PipelineStore.for_path(env_settings.db_path)
    config = {"symbols": ["MSFT"], "start": chain[0].isoformat(), "end": chain[1].isoformat(), "format": "json"}
    result = materialize(
        [exports, exports_readable], instance=instance, resources={"store": store},
        run_config={"ops": {"exports": {"config": config}}},
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.passed
    rows = result.asset_materializations_for_node("exports")[0].metadata["rows"].value
    assert rows["trade_recommendations"] == 2 and rows["predictions"] == 2 * 4


def test_retention_dry_run_job_deletes_nothing(instance, make_settings, env_settings, chain):
    store = PipelineStore.for_path(env_settings.db_path)
    before = len(database_at(env_settings.db_path).read_rows("market_bars"))
    result = retention_job.execute_in_process(
        instance=instance, resources={"store": store},
        run_config={"ops": {"apply_store_retention": {"config": {"dry_run": True}}}},
    )
    assert result.success
    assert len(database_at(env_settings.db_path).read_rows("market_bars")) == before


def test_the_export_schedule_exports_the_days_session(instance, env_settings, chain):
    from dagster import RunRequest, build_schedule_context

    from lstm_pipeline.schedules.operations import build_export_schedule

    schedule = build_export_schedule(env_settings)
    close = dt.datetime(2025, 1, 2, 22, 30, tzinfo=dt.UTC)  # 17:30 New York
    request = schedule(build_schedule_context(instance=instance, scheduled_execution_time=close))
    assert isinstance(request, RunRequest)
    result = materialize(
        [exports, exports_readable], instance=instance,
        resources={"store": PipelineStore.for_path(env_settings.db_path)}, run_config=request.run_config,
    )
    assert result.success
    rows = result.asset_materializations_for_node("exports")[0].metadata["rows"].value
    assert rows["trade_recommendations"] == len(SYMBOLS) * len(chain)  # every window of that session
    holiday = dt.datetime(2025, 1, 1, 22, 30, tzinfo=dt.UTC)
    assert "not an NYSE trading day" in schedule(
        build_schedule_context(instance=instance, scheduled_execution_time=holiday)
    ).skip_message


def test_retention_marks_pruned_partitions_with_one_observation_per_asset(
    instance, env_settings, chain, monkeypatch, tmp_path
):
    config = tmp_path / "retention_config.json"
    config.write_text(json.dumps({"symbols": SYMBOLS, "retention": {"raw_bars_days": 7, "predictions_days": 7}}))
    monkeypatch.setenv("LSTM_PIPELINE_CONFIG", str(config))
    get_settings.cache_clear()
    settings = get_settings()
    assert verify_backup(settings, create_backup(settings).backup_id).ok
    store = PipelineStore.for_path(env_settings.db_path)

    result = retention_job.execute_in_process(instance=instance, resources={"store": store})

    assert result.success
    observations = result.asset_observations_for_node("apply_store_retention")
    by_asset = {observation.asset_key.to_user_string(): observation for observation in observations}
    # Six symbol-windows pruned from three assets: three events, not one per partition.
    assert sorted(by_asset) == ["market_bars", "predictions", "trade_recommendations"]
    bars = by_asset["market_bars"].metadata
    assert bars["pruned_partitions"].value == len(SYMBOLS) * len(chain) and bars["pruned_rows"].value == 6
    end = (chain[-1] + pd.Timedelta(minutes=15)).isoformat()
    assert bars["pruned_windows"].value == {symbol: [[chain[0].isoformat(), end]] for symbol in SYMBOLS}
    assert by_asset["predictions"].metadata["pruned_rows"].value == 6 * 4
    records = instance.fetch_observations(AssetKey("market_bars"), limit=10).records
    assert len(records) == 1 and "no data in the store" in records[0].asset_observation.description
    # Nothing more to delete: no further marks.
    again = retention_job.execute_in_process(instance=instance, resources={"store": store})
    assert again.asset_observations_for_node("apply_store_retention") == []


def test_restore_job_says_what_no_backup_held(instance, env_settings, chain):
    keys = [window_key(window) for window in chain]
    register_session_windows(instance, keys)
    store = PipelineStore.for_path(env_settings.db_path)
    assert _run_backups(instance, store, [f"AAPL|{key}" for key in keys]).success  # MSFT's windows: no backup

    result = restore_job.execute_in_process(instance=instance, resources={"store": store})

    assert result.success
    warnings = [event.user_message for event in instance.all_logs(result.run_id) if event.level == 30]
    assert any(message.startswith("Kept ") and "(market_bars 3," in message for message in warnings)
    assert len(database_at(env_settings.db_path).read_rows("market_bars")) == len(SYMBOLS) * len(chain)
