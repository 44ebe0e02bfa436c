"""The simulated market's optional predictable component: off by default (today's bars, bit for bit, and nothing
to beat naive with, so the skill gate withholds every trade), and at strength φ a persistent trend (lag-1
autocorrelation φ of the 15-minute returns) that a simple forecaster exploits one step and one day ahead, so the
skill gate, which judges the model at the horizon a trade exits and asks for more than chance, lets trades
through."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.assets.trade_recommendations import MASE_HORIZON_BUCKET, MASE_SPAN
from lstm_pipeline.evaluation.accuracy import SPAN_WINDOWS, accuracy_metrics
from lstm_pipeline.evaluation.validation import validate_predictions
from lstm_pipeline.market.calendar import NEW_YORK, session_windows
from lstm_pipeline.market.simulated import SIMULATION_END, SIMULATION_EPOCH, simulate_bars
from lstm_pipeline.resources import build_market_data
from lstm_pipeline.settings import ConfigError, Settings, load_settings
from lstm_pipeline.trading.recommendations import BUY, NO_SKILL, NO_TRADE, SKILL_COLUMNS, recommend_trades

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


def _momentum(close: np.ndarray, origins: np.ndarray, fit_until: int, steps: int) -> np.ndarray:
    """Predicted closes ``steps`` windows after each origin by a trend follower: beta times the exponentially
    weighted mean (one-session time constant) of the log returns up to the origin, beta fitted by least squares on
    the origins before ``fit_until``."""
    log_close = np.log(close)
    returns = np.diff(log_close)
    signal = np.r_[np.nan, pd.Series(returns).ewm(alpha=1 / 26, adjust=False).mean().to_numpy()]  # up to origin
    fit = np.arange(1, fit_until - steps)
    move = log_close[fit + steps] - log_close[fit]
    beta = float(signal[fit] @ move / (signal[fit] @ signal[fit]))
    return close[origins] * np.exp(beta * signal[origins])


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_a_trend_follower_fitted_on_the_first_half_beats_naive_one_day_ahead_only_when_predictable(symbol):
    for strength in (0.0, 0.3):
        close = simulate_bars(symbol, LONG_SPAN, seed=2, predictability=strength)["close"].to_numpy()
        half = len(close) // 2
        origins = np.arange(half, len(close) - 26)
        predicted = _momentum(close, origins, half, 26)
        actual, last = close[origins + 26], close[origins]
        mase = np.abs(predicted - actual).mean() / np.abs(last - actual).mean()
        if strength:
            assert mase < 0.97  # the trend persists to the horizon the skill gate judges
        else:
            assert mase == pytest.approx(1.0, abs=0.01)  # nothing to learn: at best a tie with naive


GATE_SESSIONS = 60
"""Sessions over which the skill gate is read: it judges a month of one-hour-ahead errors (about seventy independent
ones) and asks for a p-value below 5%, so a real but modest edge opens it at many origins, not all (a trend
follower's one-day edge at φ = 0.3, MASE about 0.95, is never significant over a month)."""


def _gate_evidence(symbol: str, strength: float, settings: Settings, steps: int = 4) -> pd.DataFrame:
    """The skill table the gate reads at the end of each of the last ``GATE_SESSIONS`` sessions (``accuracy_metrics``
    with the ``trade_recommendations`` asset's span, bucket ``1_hour``: the MASE and skill p-value of a month of
    targets, 4 steps ahead, where the simulated trend is easiest to exploit) of a forecaster validated by the live
    evaluation code: the naive-equal forecast with nothing predictable (what the best model can do then), a trend
    follower fitted on the months before otherwise."""
    windows = session_windows("2024-01-02", "2025-02-01")
    bars = simulate_bars(symbol, windows, seed=5, predictability=strength)
    close = bars["close"].to_numpy()
    span = GATE_SESSIONS * 26 + SPAN_WINDOWS[MASE_SPAN] + 26
    origins = np.arange(len(close) - span - steps, len(close) - steps)
    predicted = close[origins] if strength == 0.0 else _momentum(close, origins, origins[0], steps)
    stamps = bars["window_start"]
    forecasts = pd.DataFrame(
        {
            "symbol": symbol,
            "as_of_window": stamps.iloc[origins].to_numpy(),
            "horizon_step": steps,
            "target_window": stamps.iloc[origins + steps].to_numpy(),
            "predicted_close": predicted,
            "lower_80": np.nan, "upper_80": np.nan, "lower_95": np.nan, "upper_95": np.nan,
            "last_close": close[origins],
            "model_version": "trend" if strength else "naive",
        }
    )
    validations = validate_predictions(forecasts, bars, None, settings.validation_threshold).rows
    assert len(validations) == span
    session_ends = stamps[stamps.dt.date != stamps.shift(-1).dt.date].iloc[-GATE_SESSIONS - 1 : -1]
    as_of = pd.DataFrame({"symbol": symbol, "window_start": session_ends.to_numpy()})
    metrics = accuracy_metrics(validations, as_of).rows
    bucket = {4: "1_hour", 26: MASE_HORIZON_BUCKET}[steps]
    chosen = metrics[(metrics["span"] == MASE_SPAN) & (metrics["horizon_bucket"] == bucket)]
    assert len(chosen) == GATE_SESSIONS and (chosen["n"] == SPAN_WINDOWS[MASE_SPAN]).all()
    return chosen.rename(columns={"window_start": "as_of_window"})[list(SKILL_COLUMNS)].reset_index(drop=True)


def _tempting_forecasts(symbol: str, origins: pd.DatetimeIndex) -> pd.DataFrame:
    """Hour-ahead paths that clear every rule but the skill gate: +5% by the 4th step (a trade judged at
    ``1_hour``), high confidence."""
    rows = []
    for as_of in origins:
        targets = session_windows(as_of + pd.Timedelta(minutes=15), as_of + pd.Timedelta(days=7))[:4]
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
    gate = _gate_evidence(symbol, strength, settings)
    recommended = recommend_trades(_tempting_forecasts(symbol, pd.DatetimeIndex(gate["as_of_window"])), gate,
                                   settings)
    assert len(recommended) == GATE_SESSIONS
    mase, p_value = gate["mase"].to_numpy(), gate["skill_p_value"].to_numpy()
    opened = (mase < settings.workflow.skill_mase_max) & (p_value < settings.workflow.skill_significance)
    if strength == 0.0:
        assert mase == pytest.approx(1.0)
        assert (recommended["action"] == NO_TRADE).all() and (recommended["held_back_by"] == NO_SKILL).all()
        assert recommended["reason"].str.contains("does not beat the naive last-price forecast").all()
    else:
        # the trend persists an hour ahead: the trend follower's month of one-hour errors beats naive's, by more
        # than chance at a good share of the origins ...
        assert (mase < 1.0).mean() > 0.9 and opened.mean() > 0.5
        # ... and the gate passes exactly those origins, and says why it held back the others
        assert ((recommended["action"] == BUY).to_numpy() == opened).all()
        assert (recommended.loc[~opened, "held_back_by"] == "skill_not_significant").all()


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
