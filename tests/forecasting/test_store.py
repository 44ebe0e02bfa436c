"""Model folders: save -> load gives identical forecasts; the seed's layout loads only with pickle allowed; every
broken folder gives one clear sentence naming the symbol, the file, the problem and the fix."""

import json
import shutil
import threading

import numpy as np
import pytest

from lstm_pipeline.forecasting.config import ModelConfig
from lstm_pipeline.forecasting.forecaster import forecast_prices
from lstm_pipeline.forecasting.scaler import fit_standard_scaler
from lstm_pipeline.forecasting.store import (
    CONFIG_FILE,
    LEGACY_SCALER_FILE,
    LEGACY_WEIGHTS_FILE,
    SCALER_FILE,
    WEIGHTS_FILE,
    ModelLoadError,
    content_version,
    load_model,
    model_version,
    save_model,
)
from tests.forecasting.conftest import finite, random_network, saved_model, sim_bars, tiny_config
from tests.forecasting.test_scaler import sklearn_pickle

SEED_CONFIG = {
    "model_type": "LSTM",
    "sequence_length": 10,
    "features": ["Close", "Volume"],
    "lstm_units": [16, 16],
    "dense_units": [8],
    "prediction_horizon": 672,
    "training_period": "2023-01-01/2024-06-30",
}


@pytest.fixture
def bars():
    return sim_bars("AAPL", "2025-06-02", "2025-06-20")


@pytest.fixture
def saved(tmp_path, bars):
    return saved_model(tmp_path, "AAPL", tiny_config("AAPL", "recursive"), seed=1, bars=bars)


def _rewrite_config(folder, **changes):
    path = folder / CONFIG_FILE
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def _acknowledge(folder):
    """What a user does after editing a config on purpose: record the files' new content hash as the version."""
    _rewrite_config(folder, version=content_version(folder, folder.name))


def test_save_load_round_trip_gives_identical_forecasts(tmp_path, bars, saved):
    first = forecast_prices([saved], {"AAPL": bars})["AAPL"]
    again = load_model(saved.folder)
    assert again.version == saved.version == model_version(saved.folder, "AAPL")
    assert again.config == saved.config
    second = forecast_prices([again], {"AAPL": bars})["AAPL"]
    assert np.array_equal(first.predicted_close, second.predicted_close)
    assert first.target_window.equals(second.target_window)
    assert set(first.to_frame()["model_version"]) == {saved.version}


def test_version_is_a_content_hash(tmp_path, bars, saved):
    config = tiny_config("AAPL", "recursive")
    scaler = saved.scaler
    _, same = save_model(tmp_path / "again", config, saved.network, scaler)
    _, other = save_model(tmp_path / "other", config, random_network(config, seed=2), scaler)
    assert len({saved.version, other}) == 2
    assert load_model(tmp_path / "again" / "AAPL").version == same


def _legacy_folder(tmp_path, monkeypatch, bars, allow_pickle: bool):
    """The seed's layout: a full-model ``model_weights.h5``, a pickled MinMaxScaler, the seed's config keys."""
    import keras

    folder = tmp_path / "AAPL"
    folder.mkdir()
    keras.utils.set_random_seed(5)
    inputs = keras.Input((10, 2))
    hidden = keras.layers.LSTM(16, return_sequences=True)(inputs)
    hidden = keras.layers.Dropout(0.2)(hidden)
    hidden = keras.layers.LSTM(16)(hidden)
    hidden = keras.layers.Dense(8)(hidden)
    keras.Model(inputs, keras.layers.Dense(2)(hidden)).save(folder / LEGACY_WEIGHTS_FILE)
    close, volume = bars["close"].to_numpy(), bars["volume"].to_numpy()
    low, high = np.array([close.min(), volume.min()]), np.array([close.max(), volume.max()])
    data = sklearn_pickle(
        monkeypatch, "MinMaxScaler", scale_=1.0 / (high - low), min_=-low / (high - low), data_min_=low, data_max_=high
    )
    (folder / LEGACY_SCALER_FILE).write_bytes(data)
    (folder / CONFIG_FILE).write_text(json.dumps({**SEED_CONFIG, "allow_pickle": allow_pickle}))
    return folder


def test_legacy_folder_loads_only_with_pickle_allowed(tmp_path, monkeypatch, bars):
    folder = _legacy_folder(tmp_path, monkeypatch, bars, allow_pickle=False)
    with pytest.raises(ModelLoadError) as refused:
        load_model(folder)
    message = str(refused.value)
    assert message.startswith("Model for AAPL: ") and str(folder / LEGACY_SCALER_FILE) in message
    assert "pickle" in message and '"allow_pickle": true' in message

    _rewrite_config(folder, allow_pickle=True)
    model = load_model(folder)
    assert model.legacy and model.config.forecast_mode == "recursive" and model.config.horizon_steps == 672
    assert model.config.features == ("close", "volume") and model.config.dense_units == (8,)
    forecast = forecast_prices([model], {"AAPL": bars}, horizon_steps=672)["AAPL"]
    assert len(forecast.predicted_close) == 672 and finite(forecast.predicted_close)
    assert (forecast.predicted_close > 0).all()


def test_truncated_weights_name_the_file(saved):
    weights = saved.folder / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=r"^Model for AAPL: .*model\.keras is truncated or corrupt .*; retrain"):
        load_model(saved.folder)


def test_wrong_input_shape_names_both_shapes(saved):
    _rewrite_config(saved.folder, lookback_steps=12)
    _acknowledge(saved.folder)
    with pytest.raises(ModelLoadError) as error:
        load_model(saved.folder)
    message = str(error.value)
    assert "model.keras was saved for input windows of shape (8, 5)" in message
    assert "declares (12, 5)" in message and "lookback_steps" in message


def test_weights_of_another_architecture_are_refused(tmp_path, bars, saved):
    wider = ModelConfig.from_dict({**saved.config.to_dict(), "architecture": {"lstm_units": [8, 7]}}, "AAPL")
    shutil.copy(saved.folder / WEIGHTS_FILE, tmp_path / "w.keras")
    save_model(tmp_path, wider, random_network(wider, seed=0), saved.scaler)
    shutil.copy(tmp_path / "w.keras", tmp_path / "AAPL" / WEIGHTS_FILE)
    _acknowledge(tmp_path / "AAPL")
    with pytest.raises(ModelLoadError, match=r"model\.keras does not fit the architecture declared in model_config"):
        load_model(tmp_path / "AAPL")


def test_missing_scaler_and_missing_model_are_clear(tmp_path, saved):
    (saved.folder / SCALER_FILE).unlink()
    with pytest.raises(ModelLoadError, match=r"^Model for AAPL: .*scaler\.json is missing.*; retrain it \(materialize"):
        load_model(saved.folder)
    with pytest.raises(ModelLoadError, match=r"^Model for MSFT: .*MSFT does not exist; train MSFT first"):
        load_model(tmp_path / "MSFT")


def test_edited_files_and_broken_config_are_refused(saved):
    _rewrite_config(saved.folder, horizon_steps=200)
    edited = content_version(saved.folder, "AAPL")
    with pytest.raises(ModelLoadError, match=rf'changed after it was saved .*set its "version" to "{edited}"'):
        load_model(saved.folder)
    _acknowledge(saved.folder)
    assert load_model(saved.folder).config.horizon_steps == 200  # an on-purpose edit, acknowledged
    (saved.folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"model_config\.json is not valid JSON"):
        load_model(saved.folder)


def test_a_config_without_its_version_loads_no_weights(tmp_path, saved):
    """Deleting the version entry no longer makes any weights load: the model is refused, by the loader, by the
    version the store caches on, and by the resource that serves it."""
    from lstm_pipeline.resources.model_store import LocalModelStore

    document = json.loads((saved.folder / CONFIG_FILE).read_text())
    del document["version"]
    (saved.folder / CONFIG_FILE).write_text(json.dumps(document))
    pattern = r'^Model for AAPL: .*model_config\.json records no "version".*; retrain it .*set its "version" to "'
    with pytest.raises(ModelLoadError, match=pattern):
        load_model(saved.folder)
    with pytest.raises(ModelLoadError, match=pattern):
        model_version(saved.folder, "AAPL")
    loaded, failed = LocalModelStore(models_dir=str(tmp_path)).load_available(["AAPL"])
    assert loaded == {} and "records no" in str(failed["AAPL"])


def test_non_finite_weights_fail_the_health_check(tmp_path, bars):
    config = tiny_config("AAPL", "direct")
    network = random_network(config, seed=0)
    head = network.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * np.nan, bias])
    scaler = fit_standard_scaler(np.random.default_rng(0).random((50, 5)), config.features)
    save_model(tmp_path, config, network, scaler)
    with pytest.raises(ModelLoadError, match=r"gives non-finite outputs on a probe window"):
        load_model(tmp_path / "AAPL")


def test_a_failed_save_leaves_the_previous_model(tmp_path, bars, saved, monkeypatch):
    before = {path.name: path.read_bytes() for path in saved.folder.iterdir()}

    class Broken:
        def get_weights(self):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model(tmp_path, saved.config, Broken(), saved.scaler)
    assert {path.name: path.read_bytes() for path in saved.folder.iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["AAPL"]  # no half-written staging folder
    assert load_model(saved.folder).version == saved.version


def test_a_load_during_another_workers_save_waits_for_the_swap_instead_of_failing(tmp_path, saved):
    from lstm_pipeline.resources.model_store import LocalModelStore

    # save_model's two renames, caught in between: the symbol has no folder, the retired one sits beside it.
    retired = tmp_path / ".AAPL.replaced-0000"
    saved.folder.rename(retired)
    putting_back = threading.Timer(0.3, lambda: retired.rename(saved.folder))
    putting_back.start()
    try:
        assert LocalModelStore(models_dir=str(tmp_path)).load("AAPL").version == saved.version
    finally:
        putting_back.join()

    # No save in progress: a missing model fails at once, in one sentence.
    saved.folder.rename(tmp_path / "elsewhere")
    with pytest.raises(ModelLoadError):
        LocalModelStore(models_dir=str(tmp_path)).load("AAPL")
