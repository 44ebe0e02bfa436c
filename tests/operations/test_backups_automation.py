"""The nightly backup sensor on the README's default run (no backup key, unencrypted backups not allowed) skips with
one sentence and launches nothing; with a key it launches the nightly backfill; a backup asked for by hand without a
key still fails with the same sentence."""

import datetime as dt

import pytest
from dagster import AssetMaterialization, AssetSpec, Definitions, build_sensor_context, materialize
from dagster._core.test_utils import freeze_time

from lstm_pipeline.assets.backups import backups, backups_restore_verified
from lstm_pipeline.jobs import WORKFLOW_CHAIN
from lstm_pipeline.market.calendar import window_key
from lstm_pipeline.partitions import market_bars_key, market_bars_partitions, register_session_windows
from lstm_pipeline.resources.storage import PipelineStore
from lstm_pipeline.sensors.backups_automation import build_backups_automation_sensor
from lstm_pipeline.settings import get_settings
from tests.helpers import range_tags
from tests.operations.synthetic import chain_rows, write_chain

SYMBOLS = ["AAPL", "MSFT"]
NIGHT = dt.datetime(2025, 1, 3, 7, 30, tzinfo=dt.UTC)  # 02:30 New York, after the 02:00 tick


def _nightly_tick(instance, sensor, store):
    """The sensor's evaluation after the nightly cron tick (following one an hour before it, as the daemon's are)."""
    upstream = [AssetSpec(name, partitions_def=market_bars_partitions) for name in WORKFLOW_CHAIN]
    defs = Definitions(assets=[*upstream, backups], sensors=[sensor], resources={"store": store})
    cursor = None
    for when in (NIGHT - dt.timedelta(hours=1), NIGHT):
        with freeze_time(when), build_sensor_context(
            instance=instance, repository_def=defs.get_repository_def(), cursor=cursor, sensor_name=sensor.name
        ) as context:
            result = sensor.evaluate_tick(context)
            cursor = result.cursor
    return result


@pytest.fixture
def bars_of_three_windows(instance, settings, day_windows):
    windows = day_windows[:3]
    write_chain(settings.db_path, chain_rows(SYMBOLS, windows))
    keys = [window_key(window) for window in windows]
    register_session_windows(instance, keys)
    for symbol in SYMBOLS:
        for key in keys:
            instance.report_runless_asset_event(
                AssetMaterialization(asset_key="market_bars", partition=str(market_bars_key(symbol, key)))
            )
    return keys


def test_without_a_key_the_nightly_sensor_skips_with_one_sentence_and_launches_nothing(
    instance, make_settings, bars_of_three_windows
):
    settings = make_settings(key=None)
    sensor = build_backups_automation_sensor(lambda: settings)
    result = _nightly_tick(instance, sensor, PipelineStore.for_path(settings.db_path))
    assert result.run_requests == [] and not instance.get_runs() and not instance.get_backfills()
    message = result.skip_message
    assert "LSTM_PIPELINE_BACKUP_KEY" in message and "backups.allow_unencrypted" in message
    assert message.endswith(".") and message.count(". ") == 0  # one sentence


def test_with_a_key_or_unencrypted_allowed_the_nightly_sensor_requests_the_new_partitions(
    instance, make_settings, bars_of_three_windows
):
    for settings in (make_settings(), make_settings(key=None, backups={"allow_unencrypted": True})):
        sensor = build_backups_automation_sensor(lambda settings=settings: settings)
        result = _nightly_tick(instance, sensor, PipelineStore.for_path(settings.db_path))
        assert result.skip_message is None
        (request,) = result.run_requests  # one single-run backfill of every new partition
        requested = set(request.asset_graph_subset.iterate_asset_partitions())
        assert {partition.partition_key for partition in requested} == {
            market_bars_key(symbol, key) for symbol in SYMBOLS for key in bars_of_three_windows
        }


def test_a_backup_asked_for_by_hand_without_a_key_fails_with_the_same_sentence(
    instance, env_settings, monkeypatch, day_windows
):
    monkeypatch.delenv("LSTM_PIPELINE_BACKUP_KEY")
    get_settings.cache_clear()
    windows = day_windows[:1]
    write_chain(env_settings.db_path, chain_rows(SYMBOLS, windows))
    register_session_windows(instance, [window_key(windows[0])])
    result = materialize(
        [backups, backups_restore_verified], instance=instance, raise_on_error=False,
        resources={"store": PipelineStore.for_path(env_settings.db_path)},
        tags=range_tags(SYMBOLS, [window_key(windows[0])]),
    )
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("No backup key is configured, so the backup is refused;")
    assert "LSTM_PIPELINE_BACKUP_KEY" in description and description.count(". ") == 0
    sensor = build_backups_automation_sensor()  # the process settings, as the code location's
    store = PipelineStore.for_path(env_settings.db_path)
    defs = Definitions(assets=[backups], sensors=[sensor.with_attributes(metadata={})], resources={"store": store})
    with build_sensor_context(instance=instance, repository_def=defs.get_repository_def()) as context:
        skipped = defs.get_sensor_def(sensor.name).evaluate_tick(context).skip_message
        assert skipped == f"Nightly backups are off: {description}"
