"""The simulated market's optional predictable component: off by default (today's bars, bit for bit, and nothing
to beat naive with, so the skill gate withholds every trade), and at strength φ an AR(1) of the 15-minute returns
that a simple forecaster can exploit."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.evaluation.accuracy import accuracy_metrics
from lstm_pipeline.evaluation.validation import validate_predictions
from lstm_pipeline.market.calendar import NEW_YORK, session_windows
from lstm_pipeline.market.simulated import SIMULATION_END, SIMULATION_EPOCH, simulate_bars
from lstm_pipeline.resources import build_market_data
from lstm_pipeline.settings import ConfigError, Settings, load_settings
from lstm_pipeline.trading.recommendations import BUY, NO_SKILL, NO_TRADE, recommend_trades

LONG_SPAN = session_windows("2020-01-02", "2026-01-01")  # about 39,000 windows: six simulated years
SYMBOLS = ("AAPL", "TSLA", "SPY")


def _digest(bars: pd.DataFrame) -> str:
    digest = hashlib.sha256(str(len(bars)).encode())
    for column in ("open", "high", "low", "close", "vwap", "volume", "trade_count"):
        digest.update(np.ascontiguousarray(bars[column].to_numpy(dtype=np.float64)).tobytes())
    return digest.hexdigest()


def _returns(bars: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(bars["close"].to_numpy()))


def _lag1_autocorrelation(returns: np.ndarray) -> float:
    return float(np.corrcoef(returns[1:], returns[:-1])[0, 1])


def test_default_strength_leaves_todays_bars_unchanged_bit_for_bit():
    everything = session_windows(SIMULATION_EPOCH, SIMULATION_END)
    default = simulate_bars("AAPL", everything, seed=0)
    # Digest of the whole 2020-2027 path taken from the code before the predictable component existed.
    assert _digest(default) == "169ce179edc94ab2520d72498cb6e1c5ba57d2ddf58bbe720ace69e5bf40cbf2"
    pd.testing.assert_frame_equal(simulate_bars("AAPL", everything, seed=0, predictability=0.0), default)
    assert default["source"].iloc[0] == "simulated(seed=0)"


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_strength_is_the_lag1_autocorrelation_of_15_minute_returns(symbol):
    plain = _returns(simulate_bars(symbol, LONG_SPAN, seed=1))
    predictable = _returns(simulate_bars(symbol, LONG_SPAN, seed=1, predictability=0.3))
    assert abs(_lag1_autocorrelation(plain)) < 0.05
    assert abs(_lag1_autocorrelation(predictable) - 0.3) < 0.05
    # the component reorders the same shocks in time; it does not make the symbol more volatile
    assert predictable.std() == pytest.approx(plain.std(), rel=0.05)


def _ar1_one_step(returns: np.ndarray) -> tuple[float, np.ndarray]:
    """φ fitted by least squares on the first half, and the one-step log-return forecasts over the second half."""
    half = len(returns) // 2
    lagged, following = returns[: half - 1], returns[1:half]
    phi = float(lagged @ following / (lagged @ lagged))
    return phi, phi * returns[half - 1 : -1]


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_an_ar1_forecast_fitted_on_the_first_half_beats_naive_on_the_second(symbol):
    for strength, beats in ((0.0, False), (0.3, True)):
        close = simulate_bars(symbol, LONG_SPAN, seed=2, predictability=strength)["close"].to_numpy()
        returns = np.diff(np.log(close))
        phi, predicted = _ar1_one_step(returns)
        half = len(returns) // 2
        last, actual = close[half:-1], close[half + 1 :]
        mase = np.abs(last * np.exp(predicted) - actual).mean() / np.abs(last - actual).mean()
        if beats:
            assert phi == pytest.approx(0.3, abs=0.05)
            assert mase < 0.97
        else:
            assert mase == pytest.approx(1.0, abs=0.005)  # nothing to learn: at best a tie with naive


def _recent_mase(symbol: str, strength: float, settings: Settings) -> float:
    """The 1-step MASE over the last month of a forecaster validated and scored by the live evaluation code: the
    naive-equal forecast with nothing predictable (what the best model can do then), an AR(1) fitted on the year
    before the month otherwise."""
    windows = session_windows("2024-01-02", "2025-02-01")
    bars = simulate_bars(symbol, windows, seed=5, predictability=strength)
    close = bars["close"].to_numpy()
    returns = np.diff(np.log(close))
    month = 21 * 26
    origins = np.arange(len(close) - month - 1, len(close) - 1)
    if strength == 0.0:
        predicted = close[origins]
    else:
        fit = returns[: origins[0] - 1]
        phi = float(fit[:-1] @ fit[1:] / (fit[:-1] @ fit[:-1]))
        predicted = close[origins] * np.exp(phi * returns[origins - 1])
    stamps = bars["window_start"]
    forecasts = pd.DataFrame(
        {
            "symbol": symbol,
            "as_of_window": stamps.iloc[origins].to_numpy(),
            "horizon_step": 1,
            "target_window": stamps.iloc[origins + 1].to_numpy(),
            "predicted_close": predicted,
            "lower_80": np.nan, "upper_80": np.nan, "lower_95": np.nan, "upper_95": np.nan,
            "last_close": close[origins],
            "model_version": "ar1" if strength else "naive",
        }
    )
    validations = validate_predictions(forecasts, bars, None, settings.validation_threshold).rows
    assert len(validations) == month
    as_of = pd.DataFrame({"symbol": [symbol], "window_start": [stamps.iloc[-1]]})
    metrics = accuracy_metrics(validations, as_of).rows
    chosen = metrics[(metrics["span"] == "month") & (metrics["horizon_bucket"] == "1_step")]
    return float(chosen["mase"].iloc[0])


def _tempting_forecasts(symbol: str) -> pd.DataFrame:
    """Week-ahead paths that clear every rule but the skill gate: +5% by the end, high confidence."""
    origins = session_windows("2025-01-27", "2025-01-28")[:5]
    rows = []
    for as_of in origins:
        targets = session_windows(as_of + pd.Timedelta(minutes=15), as_of + pd.Timedelta(days=7))
        for step, target in enumerate(targets, start=1):
            rows.append({
                "symbol": symbol, "as_of_window": as_of, "target_window": target, "last_close": 100.0,
                "predicted_close": 100.0 * (1 + 0.05 * step / len(targets)), "confidence": 0.9,
                "confidence_level": "very high", "model_version": "m",
            })
    return pd.DataFrame(rows)


@pytest.mark.parametrize("strength", [0.0, 0.3])
def test_the_skill_gate_withholds_every_trade_only_when_nothing_is_predictable(strength):
    settings = Settings()
    symbol = "AAPL"
    mase = _recent_mase(symbol, strength, settings)
    recommended = recommend_trades(_tempting_forecasts(symbol), {symbol: mase}, settings)
    assert len(recommended) == 5
    if strength == 0.0:
        assert mase == pytest.approx(1.0)
        assert (recommended["action"] == NO_TRADE).all() and (recommended["held_back_by"] == NO_SKILL).all()
        assert recommended["reason"].str.contains("does not beat the naive last-price forecast").all()
    else:
        assert mase < 0.97
        assert (recommended["action"] == BUY).all() and recommended["held_back_by"].isna().all()


def test_the_setting_reaches_the_simulated_source(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"market_data": {"source": "simulated", "simulation_seed": 4, "simulation_predictability": 0.2}}')
    source = build_market_data(load_settings(path, environ={}))
    assert source.predictability == 0.2 and source.source_name == "simulated(seed=4, predictability=0.2)"
    start, end = pd.Timestamp("2025-06-02 09:30", tz=NEW_YORK), pd.Timestamp("2025-06-03 16:00", tz=NEW_YORK)
    fetched = source.fetch_bars("MSFT", start, end, now=pd.Timestamp("2025-07-01", tz=NEW_YORK))
    expected = simulate_bars("MSFT", session_windows(start, end), seed=4, predictability=0.2)
    pd.testing.assert_frame_equal(fetched.reset_index(drop=True), expected.reset_index(drop=True))
    assert Settings().market_data.simulation_predictability == 0.0


@pytest.mark.parametrize("bad", [-0.1, 0.6, "strong", "NaN"])
def test_an_out_of_range_strength_is_refused_in_one_sentence_naming_the_key(tmp_path, bad):
    path = tmp_path / "config.json"
    value = f'"{bad}"' if bad == "strong" else bad
    path.write_text(f'{{"market_data": {{"simulation_predictability": {value}}}}}')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "'market_data.simulation_predictability' is invalid" in message
    assert message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize("bad", [-0.01, 0.51, float("nan"), float("inf")])
def test_simulate_bars_refuses_an_out_of_range_strength(bad):
    refusal = r"^The simulated market's predictability is invalid: .* from 0 \(off\) to 0\.5"
    with pytest.raises(ValueError, match=refusal):
        simulate_bars("AAPL", session_windows("2025-06-02", "2025-06-03"), predictability=bad)
