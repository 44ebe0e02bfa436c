"""The bar-quality rules: clean bars pass every one; each kind of breakage fails exactly its rule, naming the row."""

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from lstm_pipeline.market.bars import BAR_COLUMNS, conform_bars, empty_bars
from lstm_pipeline.market.calendar import NEW_YORK, windows_for_session
from lstm_pipeline.market.quality import (
    BLOCKING_CHECK_NAMES,
    QUALITY_CHECK_NAMES,
    QualityOutcome,
    evaluate_bar_quality,
)

DAY = "2025-07-07"
SYMBOLS = ("AAPL", "MSFT")
WINDOWS = windows_for_session(DAY)  # 26 windows, 09:30 .. 15:45
EXPECTED = {symbol: WINDOWS for symbol in SYMBOLS}
RETURN_STD = 0.001


def _at(clock: str, day: str = DAY) -> pd.Timestamp:
    return pd.Timestamp(f"{day} {clock}", tz=NEW_YORK)


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    """One trading day of valid bars for two symbols: a Gaussian random walk with open = previous close."""
    rng = np.random.default_rng(11)
    frames = []
    for start_price, symbol in zip((100.0, 250.0), SYMBOLS, strict=True):
        closes = start_price * np.exp(np.cumsum(rng.normal(0.0, RETURN_STD, len(WINDOWS))))
        opens = np.concatenate([[start_price], closes[:-1]])
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "window_start": WINDOWS,
                    "open": opens,
                    "high": np.maximum(opens, closes) * 1.0004,
                    "low": np.minimum(opens, closes) * 0.9996,
                    "close": closes,
                    "volume": rng.integers(10_000, 50_000, len(WINDOWS)),
                    "vwap": (opens + closes) / 2,
                    "trade_count": rng.integers(100, 500, len(WINDOWS)),
                }
            )
        )
    return conform_bars(pd.concat(frames, ignore_index=True), source="test")


def _by_name(outcomes: list[QualityOutcome]) -> dict[str, QualityOutcome]:
    return {outcome.name: outcome for outcome in outcomes}


def _failing(outcomes: list[QualityOutcome]) -> set[str]:
    return {outcome.name for outcome in outcomes if not outcome.passed}


def _row(frame: pd.DataFrame, symbol: str, clock: str) -> int:
    hits = frame.index[(frame["symbol"] == symbol) & (frame["window_start"] == _at(clock))]
    assert len(hits) == 1
    return int(hits[0])


def _reasons_for(outcome: QualityOutcome, symbol: str | None, stamp: pd.Timestamp | None) -> list[str]:
    rows = outcome.failed_rows
    mask = rows["symbol"].isna() if symbol is None else rows["symbol"] == symbol
    mask &= rows["window_start"].isna() if stamp is None else rows["window_start"] == stamp
    return rows.loc[mask.fillna(False), "reason"].tolist()


def test_clean_bars_pass_every_check(clean):
    outcomes = evaluate_bar_quality(clean, EXPECTED)
    assert [outcome.name for outcome in outcomes] == list(QUALITY_CHECK_NAMES)
    assert {name for name in QUALITY_CHECK_NAMES if _by_name(outcomes)[name].severity == "ERROR"} == set(
        BLOCKING_CHECK_NAMES
    )
    assert not _failing(outcomes), {o.name: o.description for o in outcomes if not o.passed}
    for outcome in outcomes:
        assert outcome.failed_rows.empty and list(outcome.failed_rows.columns) == ["symbol", "window_start", "reason"]
        assert outcome.stats["failed_count"] == 0 and outcome.stats["rows_checked"] == len(clean)
    assert _by_name(outcomes)["price_jumps"].stats["rows_judged"] > 0  # the jump rule really looked at rows


# Each breaker takes a copy of the clean frame and returns the broken frame, the one check it must fail, and the
# offenders that check must name: (symbol, window_start, part of the reason); None for a column-level problem.
Offender = tuple[str | None, pd.Timestamp | None, str]
Breaker = Callable[[pd.DataFrame], tuple[pd.DataFrame, str, list[Offender]]]


def _rising_row(frame: pd.DataFrame, symbol: str) -> int:
    """A row whose close is clearly above its open, so 'high below close' and 'low above open' are unambiguous."""
    rising = frame.index[(frame["symbol"] == symbol) & (frame["close"] - frame["open"] > 0.05)]
    return int(rising[0])


def _null_close(frame):
    frame.loc[_row(frame, "AAPL", "10:00"), "close"] = np.nan
    return frame, "ohlcv_not_null", [("AAPL", _at("10:00"), "close is null")]


def _high_below_close(frame):
    i = _rising_row(frame, "AAPL")
    frame.loc[i, "high"] = high = round((frame.loc[i, "open"] + frame.loc[i, "close"]) / 2, 2)
    return frame, "high_low_bounds", [("AAPL", frame.loc[i, "window_start"], f"high {high:g} is below close ")]


def _low_above_open(frame):
    i = _rising_row(frame, "MSFT")
    frame.loc[i, "low"] = low = round((frame.loc[i, "open"] + frame.loc[i, "close"]) / 2, 2)
    return frame, "high_low_bounds", [("MSFT", frame.loc[i, "window_start"], f"low {low:g} is above open ")]


def _negative_volume(frame):
    frame.loc[_row(frame, "MSFT", "12:15"), "volume"] = -250
    return frame, "volume_non_negative", [("MSFT", _at("12:15"), "volume -250 is negative")]


def _duplicated_window(frame):
    frame = pd.concat([frame, frame.loc[[_row(frame, "AAPL", "10:15")]]], ignore_index=True)
    return frame, "one_row_per_window", [("AAPL", _at("10:15"), "2 rows for AAPL at 2025-07-07 10:15")]


def _outside_session(frame):
    """Extra rows (copies of the 09:30 bar, so no price moves) at starts that are no session window."""
    reasons = {
        _at("09:00"): "09:00 is before the 09:30 open",
        _at("10:00", "2025-07-05"): "2025-07-05 is a Saturday, not a trading day",
        _at("10:00", "2025-07-04"): "2025-07-04 is an NYSE holiday",
        _at("13:00", "2025-07-03"): "13:00 is at or after the 13:00 close (early close)",
        _at("09:37"): "09:37 is not on the 15-minute grid",
    }
    template = frame.loc[[_row(frame, "AAPL", "09:30")]]
    extra = [template.assign(window_start=stamp) for stamp in reasons]
    frame = pd.concat([frame, *extra], ignore_index=True)
    return frame, "timestamps_in_session", [("AAPL", stamp, text) for stamp, text in reasons.items()]


def _missing_window(frame):
    frame = frame.drop(index=_row(frame, "MSFT", "11:00"))
    return frame, "complete_windows", [("MSFT", _at("11:00"), "no bar for this window")]


def _string_prices(frame):
    frame["open"] = frame["open"].astype(object)
    i = _row(frame, "MSFT", "09:45")
    frame.loc[i, "open"] = text = f"{frame.loc[i, 'open']:.4f}"
    return frame, "schema_and_types", [("MSFT", _at("09:45"), f"open '{text}' is a str, not a float")]


def _string_dtype_column(frame):
    frame["close"] = frame["close"].astype(str).astype("string")
    return frame, "schema_and_types", [(None, None, "column 'close' has dtype string, expected float64")]


def _naive_timestamps(frame):
    frame["window_start"] = frame["window_start"].dt.tz_localize(None)
    return frame, "schema_and_types", [(None, None, "expected a timezone-aware datetime")]


def _missing_column(frame):
    return frame.drop(columns=["vwap"]), "schema_and_types", [(None, None, "column 'vwap' is missing")]


BREAKERS: dict[str, Breaker] = {
    "null close": _null_close,
    "high below close": _high_below_close,
    "low above open": _low_above_open,
    "negative volume": _negative_volume,
    "duplicated window": _duplicated_window,
    "pre-market, weekend, holiday, early-close and off-grid windows": _outside_session,
    "missing window": _missing_window,
    "string prices": _string_prices,
    "string dtype column": _string_dtype_column,
    "naive timestamps": _naive_timestamps,
    "missing column": _missing_column,
}


@pytest.mark.parametrize("breaker", list(BREAKERS.values()), ids=list(BREAKERS))
def test_each_breakage_fails_exactly_its_check_and_names_the_row(clean, breaker):
    frame, check, offenders = breaker(clean.copy())
    outcomes = evaluate_bar_quality(frame, EXPECTED)
    assert _failing(outcomes) == {check}, {o.name: o.description for o in outcomes if not o.passed}
    outcome = _by_name(outcomes)[check]
    assert outcome.severity == ("WARN" if check == "complete_windows" else "ERROR")
    assert (outcome.severity == "ERROR") == (check in BLOCKING_CHECK_NAMES)
    assert outcome.stats["failed_count"] == len(outcome.failed_rows) >= len(offenders)
    for symbol, stamp, text in offenders:
        reasons = _reasons_for(outcome, symbol, stamp)
        assert any(text in reason for reason in reasons), (symbol, stamp, text, outcome.failed_rows.to_dict("records"))
    assert any(text in outcome.description for _, _, text in offenders)  # the description quotes an offender


def test_a_twenty_sigma_jump_warns_without_blocking(clean):
    frame = clean.copy()
    aapl = frame.index[frame["symbol"] == "AAPL"]
    at = 20  # 14:30, with 19 prior returns of history
    log_returns = np.log(frame.loc[aapl, "close"]).diff().to_numpy()
    prior_std = np.std(log_returns[1:at], ddof=1)
    shift = 20.0 * prior_std - log_returns[at]  # a level shift from this bar on: only its own return jumps
    prices = ["open", "high", "low", "close", "vwap"]
    frame.loc[aapl[at:], prices] *= np.exp(shift)
    frame.loc[aapl[at], "open"] = frame.loc[aapl[at - 1], "close"]
    frame.loc[aapl[at], "high"] = frame.loc[aapl[at], "close"] * 1.0004
    frame.loc[aapl[at], "low"] = frame.loc[aapl[at - 1], "close"] * 0.9996
    outcomes = evaluate_bar_quality(frame, EXPECTED)
    assert _failing(outcomes) == {"price_jumps"}
    jumps = _by_name(outcomes)["price_jumps"]
    assert jumps.severity == "WARN" and "price_jumps" not in BLOCKING_CHECK_NAMES
    assert jumps.stats["failed_count"] == 1 and jumps.stats["max_sigmas"] == pytest.approx(20.0, rel=1e-6)
    (reason,) = _reasons_for(jumps, "AAPL", _at("14:30"))
    assert "20.0 sigma" in reason and "limit 8" in reason
    # A looser threshold lets the same move through.
    assert _by_name(evaluate_bar_quality(frame, EXPECTED, jump_sigmas=25.0))["price_jumps"].passed


def test_empty_frame_passes_row_checks_and_reports_every_expected_window_missing():
    outcomes = evaluate_bar_quality(empty_bars(), EXPECTED)
    assert _failing(outcomes) == {"complete_windows"}
    missing = _by_name(outcomes)["complete_windows"]
    assert missing.stats["failed_count"] == len(SYMBOLS) * len(WINDOWS) == missing.stats["expected_windows"]
    assert len(missing.failed_rows) == 50  # capped; the count above is complete
    assert set(missing.failed_rows["reason"]) == {"no bar for this window"}
    assert missing.failed_rows.iloc[0][["symbol", "window_start"]].tolist() == ["AAPL", _at("09:30")]


def test_a_frame_without_columns_fails_schema_without_crashing():
    outcomes = evaluate_bar_quality(pd.DataFrame())
    assert _failing(outcomes) == {"schema_and_types"}
    schema = _by_name(outcomes)["schema_and_types"]
    assert schema.stats["failed_count"] == len(BAR_COLUMNS)
    assert "column 'symbol' is missing" in set(schema.failed_rows["reason"])
