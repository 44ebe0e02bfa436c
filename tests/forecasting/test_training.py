"""Training on the simulated market: chronological spans, a training-span-only scaler, finite test metrics at 1
step / 1 day / 1 week, a mode chosen on validation, a model that loads back and forecasts, reproducible by seed."""

import dataclasses

import numpy as np
import pytest

from lstm_pipeline.forecasting.features import DEFAULT_FEATURES, bar_features
from lstm_pipeline.forecasting.forecaster import forecast_prices
from lstm_pipeline.forecasting.store import load_model, save_model
from lstm_pipeline.forecasting.training import TrainingDataError, train_symbol
from tests.forecasting.conftest import TINY_SETTINGS, finite, sim_bars

pytestmark = pytest.mark.slow  # every test here trains (or reads a trained) LSTM


def test_scaler_statistics_are_those_of_the_training_span_alone(tiny_trained, aapl_bars):
    trained, _ = tiny_trained
    features = bar_features(aapl_bars)[list(DEFAULT_FEATURES)]
    train_last = trained.config.record["training"]["spans"]["train"][1]
    train_rows = features.loc[:train_last].to_numpy()
    assert 0 < len(train_rows) < len(features)
    np.testing.assert_allclose(trained.scaler.center, train_rows.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(trained.scaler.scale, train_rows.std(axis=0), rtol=1e-12)
    assert not np.allclose(trained.scaler.center, features.to_numpy().mean(axis=0), rtol=1e-6, atol=0)
    assert trained.scaler.fitted_on["rows"] == len(train_rows)


def test_spans_are_chronological_and_metrics_are_on_the_test_span(tiny_trained):
    trained, _ = tiny_trained
    spans = trained.config.record["training"]["spans"]
    assert spans["train"][1] < spans["validation"][0] <= spans["validation"][1] < spans["test"][0]
    assert trained.metrics["test_span"] == spans["test"]
    assert trained.metrics["span"] == "test"


def test_training_yields_finite_metrics_at_one_step_one_day_one_week(tiny_trained):
    trained, lines = tiny_trained
    horizons = trained.metrics["horizons"]
    assert list(horizons) == ["1_step", "1_day", "1_week"]
    assert [horizons[name]["steps"] for name in horizons] == [1, 26, 130]
    for values in horizons.values():
        assert finite(list(values.values()))
        assert values["origins"] >= TINY_SETTINGS.min_origins
        assert 0 <= values["directional_accuracy"] <= 1 and 0 <= values["up_share"] <= 1
        assert values["mase"] == pytest.approx(values["mae"] / values["naive_mae"])
    record = trained.config.record
    assert record["trained_on"] == "simulated market (seed 0)"
    selection = record["mode_selection"]
    assert set(selection["validation_log_price_rmse"]) == {"recursive", "direct", "naive"}
    assert selection["chosen"] == trained.config.forecast_mode
    assert selection["chosen"] == min(("recursive", "direct"), key=selection["validation_log_price_rmse"].get)
    assert trained.plot_png.startswith(b"\x89PNG")
    # One progress line per epoch of each mode, as the asset logs them.
    assert any(line.startswith("recursive epoch 1/2") for line in lines)
    assert any(line.startswith("direct epoch 1/2") for line in lines)


def test_intervals_state_their_coverage_and_widen_with_confidence(tiny_trained):
    intervals = tiny_trained[0].config.intervals
    assert intervals["coverage"] == [0.8, 0.95]
    narrow, wide = (np.asarray(intervals["halfwidth_log_price"][key]) for key in ("0.8", "0.95"))
    assert len(narrow) == len(wide) == 130 and (narrow > 0).all() and (wide >= narrow).all()
    assert set(intervals["test_coverage"]["0.8"]) == {"1", "26", "130"}


def test_trained_model_loads_back_and_forecasts_with_intervals(tiny_trained, aapl_bars, tmp_path):
    trained, _ = tiny_trained
    folder, version = save_model(tmp_path, trained.config, trained.network, trained.scaler)
    model = load_model(folder)
    assert model.version == version and model.config.forecast_mode == trained.config.forecast_mode
    forecast = forecast_prices([model], {"AAPL": aapl_bars})["AAPL"]
    assert finite(forecast.predicted_close)
    lower80, upper80 = forecast.intervals["0.8"]
    lower95, upper95 = forecast.intervals["0.95"]
    assert (lower95 <= lower80).all() and (lower80 < forecast.predicted_close).all()
    assert (forecast.predicted_close < upper80).all() and (upper80 <= upper95).all()
    assert {"lower_80", "upper_80", "lower_95", "upper_95", "model_version"} <= set(forecast.to_frame().columns)


def test_training_is_reproducible_from_the_seed(aapl_bars):
    settings = dataclasses.replace(TINY_SETTINGS, modes=("recursive",), max_epochs=1)
    first = train_symbol("AAPL", aapl_bars, settings).network.get_weights()
    second = train_symbol("AAPL", aapl_bars, settings).network.get_weights()
    other = train_symbol("AAPL", aapl_bars, dataclasses.replace(settings, seed=1)).network.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_too_few_bars_is_one_clear_error():
    bars = sim_bars("MSFT", "2025-03-03", "2025-03-10")
    with pytest.raises(TrainingDataError, match=r"^MSFT has \d+ usable session bars; .* backfill more market_bars"):
        train_symbol("MSFT", bars, TINY_SETTINGS)
