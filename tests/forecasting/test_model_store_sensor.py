"""The model-store sensor records models that reached the store without a run, once per version, and never a
folder whose files no longer match the version its config records."""

import json

from dagster import build_sensor_context

from lstm_pipeline.forecasting.store import CONFIG_FILE, save_model
from lstm_pipeline.resources.model_store import LocalModelStore
from lstm_pipeline.sensors.model_store import build_model_store_sensor, recorded_version
from lstm_pipeline.settings import load_settings
from tests.forecasting.conftest import random_network, saved_model, sim_bars, tiny_config


def tick(instance, store, cursor=None):
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"model_store": store})
    result = build_model_store_sensor(load_settings(environ={}))(context)  # the default symbols
    for event in result.asset_events:  # what the sensor daemon does with them
        instance.report_runless_asset_event(event)
    return context, result


def test_a_model_found_in_the_store_is_recorded_once_per_version(instance, tmp_path):
    bars = sim_bars("AAPL", "2025-06-02", "2025-06-20")
    config = tiny_config("AAPL", "recursive")
    first = saved_model(tmp_path, "AAPL", config, seed=0, bars=bars)
    store = LocalModelStore(models_dir=str(tmp_path))

    context, result = tick(instance, store)
    (event,) = result.asset_events  # the other default symbols have no folder here
    assert event.partition == "AAPL" and event.metadata["model_version"].value == first.version
    assert event.tags["dagster/data_version"] == first.version
    assert "not trained by a Dagster run" in event.description
    assert recorded_version(context, "AAPL") == first.version
    assert json.loads(result.cursor) == {"AAPL": first.version}

    _, again = tick(instance, store, cursor=result.cursor)
    assert again.asset_events == [] and again.skip_reason.skip_message.startswith("Every stored model")
    assert "Model for MSFT: " in again.skip_reason.skip_message  # missing models are said, not hidden

    # A fresh sensor (no cursor) finds the version already recorded and does not report it twice.
    _, fresh = tick(instance, store)
    assert fresh.asset_events == [] and json.loads(fresh.cursor) == {"AAPL": first.version}

    # Retrained outside Dagster: the new version is recorded.
    _, second_version = save_model(tmp_path, config, random_network(config, seed=5), first.scaler)
    _, retrained = tick(instance, store, cursor=result.cursor)
    assert [event.metadata["model_version"].value for event in retrained.asset_events] == [second_version]


def test_a_folder_changed_after_saving_is_not_recorded(instance, tmp_path):
    bars = sim_bars("AAPL", "2025-06-02", "2025-06-20")
    saved_model(tmp_path, "AAPL", tiny_config("AAPL", "recursive"), seed=0, bars=bars)
    path = tmp_path / "AAPL" / CONFIG_FILE
    document = json.loads(path.read_text())
    document["trained_on"] = "edited by hand"
    path.write_text(json.dumps(document))

    _, result = tick(instance, LocalModelStore(models_dir=str(tmp_path)))
    assert result.asset_events == []
    assert "changed after it was saved" in result.skip_reason.skip_message
    assert json.loads(result.cursor) == {}


def test_a_folder_whose_config_lost_its_version_is_not_recorded(instance, tmp_path):
    bars = sim_bars("AAPL", "2025-06-02", "2025-06-20")
    saved_model(tmp_path, "AAPL", tiny_config("AAPL", "recursive"), seed=0, bars=bars)
    path = tmp_path / "AAPL" / CONFIG_FILE
    document = json.loads(path.read_text())
    del document["version"]
    path.write_text(json.dumps(document))

    _, result = tick(instance, LocalModelStore(models_dir=str(tmp_path)))
    assert result.asset_events == []
    assert 'Model for AAPL: ' in result.skip_reason.skip_message
    assert 'records no "version"' in result.skip_reason.skip_message
    assert json.loads(result.cursor) == {}
