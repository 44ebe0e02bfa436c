"""The Dagster side: ``lstm_model`` trains from stored bars into the model store with metrics and a plot, its
blocking check loads the model back, and the ``ModelStore`` resource caches by content hash."""

import base64
from pathlib import Path

import pytest
from dagster import materialize

from lstm_pipeline.assets.models import lstm_model, lstm_model_loads
from lstm_pipeline.forecasting.store import CONFIG_FILE, WEIGHTS_FILE, ModelLoadError, model_version, save_model
from lstm_pipeline.resources.model_store import LocalModelStore, cached_versions, clear_model_cache
from tests.forecasting.conftest import random_network, saved_model, sim_bars, tiny_config

TINY_RUN = {
    "ops": {
        "lstm_model": {
            "config": {
                "history_sessions": 30,
                "lookback_steps": 8,
                "horizon_steps": 130,
                "lstm_units": [8],
                "max_epochs": 2,
                "patience": 1,
            }
        }
    }
}


def train_aapl(instance, store, model_store):
    """Stores six weeks of simulated AAPL bars (seed 7) and runs lstm_model with its check on them."""
    bars = sim_bars("AAPL", "2025-03-03", "2025-04-15", seed=7)
    store.replace_bars(bars, zip(bars["symbol"], bars["window_start"], strict=True))
    return materialize(
        [lstm_model, lstm_model_loads],
        instance=instance,
        partition_key="AAPL",
        resources={"store": store, "model_store": model_store},
        run_config=TINY_RUN,
        raise_on_error=False,
    )


@pytest.mark.slow
def test_lstm_model_trains_from_stored_bars_and_its_check_loads_it(instance, store, tmp_path):
    result = train_aapl(instance, store, LocalModelStore(models_dir=str(tmp_path / "models")))
    assert result.success
    metadata = result.asset_materializations_for_node("lstm_model")[0].metadata
    folder = tmp_path / "models" / "AAPL"
    assert metadata["model_version"].value == model_version(folder, "AAPL")
    assert metadata["trained_on"].value == "simulated market (seed 7)"
    for name in ("1_step", "1_day", "1_week"):
        assert metadata[f"test_{name}_mase"].value > 0
    image = metadata["forecast_vs_actual"].value
    assert image.startswith("![AAPL forecast vs actual](data:image/png;base64,")
    assert base64.b64decode(image.split("base64,")[1].rstrip(")")).startswith(b"\x89PNG")
    assert "| 1 week | 130 |" in metadata["test_metrics"].value
    logs = [event.message for event in instance.all_logs(result.run_id) if event.message]
    assert any("recursive epoch 2/2" in message for message in logs)
    checks = result.get_asset_check_evaluations()
    assert [check.passed for check in checks] == [True]
    assert checks[0].metadata["model_version"].value == metadata["model_version"].value
    assert '"trained_on": "simulated market (seed 7)"' in (folder / CONFIG_FILE).read_text()


class CorruptingModelStore(LocalModelStore):
    """Saves, then damages the weights: what a full disk or a bad copy would leave behind."""

    def save(self, trained):
        location, version = super().save(trained)
        weights = Path(location) / WEIGHTS_FILE
        weights.write_bytes(weights.read_bytes()[:1000])
        return location, version


@pytest.mark.slow
def test_a_damaged_saved_model_fails_the_blocking_check(instance, store, tmp_path):
    result = train_aapl(instance, store, CorruptingModelStore(models_dir=str(tmp_path / "models")))
    failed = result.get_asset_check_evaluations()
    assert [check.passed for check in failed] == [False]
    description = failed[0].description
    assert description.startswith("Model for AAPL: ") and "model.keras is truncated or corrupt" in description


def test_lstm_model_without_bars_fails_with_one_clear_sentence(instance, store, tmp_path):
    result = materialize(
        [lstm_model],
        instance=instance,
        partition_key="MSFT",
        resources={"store": store, "model_store": LocalModelStore(models_dir=str(tmp_path))},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "No market_bars are stored for MSFT; materialize market_bars for MSFT" in message


def test_model_store_loads_once_per_version_and_reports_broken_models(tmp_path):
    clear_model_cache()
    bars = sim_bars("AAPL", "2025-06-02", "2025-06-20")
    config = tiny_config("AAPL", "recursive")
    first_saved = saved_model(tmp_path, "AAPL", config, seed=0, bars=bars)
    store = LocalModelStore(models_dir=str(tmp_path))
    first = store.load("AAPL")
    assert store.load("AAPL") is first  # cached: loaded once
    save_model(tmp_path, config, random_network(config, seed=9), first_saved.scaler)  # retrained
    second = store.load("AAPL")
    assert second.version != first.version and second is not first
    assert [version for _, version in cached_versions()] == [second.version]

    loaded, failed = store.load_available(["AAPL", "MSFT"])
    assert list(loaded) == ["AAPL"] and list(failed) == ["MSFT"]
    assert isinstance(failed["MSFT"], ModelLoadError) and str(failed["MSFT"]).startswith("Model for MSFT: ")
