"""The file source reads what real exports look like, refuses what would be stored wrong, and names file and line."""

import logging

import numpy as np
import pandas as pd
import pytest
from dagster import materialize

from lstm_pipeline.assets.market_bars import market_bars
from lstm_pipeline.market.bars import MarketDataError
from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.market.file_source import load_recorded_bars
from lstm_pipeline.resources.market_data import FileMarketData
from tests.helpers import range_tags, register_windows

HEADER = "Datetime,Open,High,Low,Close,Volume"


def session(day: str, freq: str = "15min", tz: str | None = NEW_YORK) -> pd.DatetimeIndex:
    """Bar starts of one regular session (09:30-16:00 New York) at ``freq``."""
    stamps = pd.date_range(f"{day} 09:30", f"{day} 15:59", freq=freq, tz=NEW_YORK)
    return stamps if tz == NEW_YORK else stamps.tz_convert(tz) if tz else stamps.tz_localize(None)


def bar_frame(stamps, text=None, close_from: float = 100.0, **extra) -> pd.DataFrame:
    """Bars whose close counts up from ``close_from`` by 1 per row, so a test can tell rows apart."""
    close = close_from + np.arange(len(stamps), dtype=float)
    frame = pd.DataFrame(
        {
            "Datetime": text if text is not None else [str(stamp) for stamp in stamps],
            "Open": close - 0.5,
            "High": close + 1.0,
            "Low": close - 1.0,
            "Close": close,
            "Volume": 1000,
        }
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


def fetch(folder, symbol: str, start: str, end: str, **options) -> pd.DataFrame:
    source = FileMarketData(path=str(folder), **options)
    return source.fetch_bars(symbol, pd.Timestamp(start, tz=NEW_YORK), pd.Timestamp(end, tz=NEW_YORK))


# --- timestamps -------------------------------------------------------------------------------------------------


def test_offset_stamps_across_a_dst_change_are_read(tmp_path):
    stamps = session("2025-03-07").append(session("2025-03-10"))  # -05:00 on Friday, -04:00 on Monday
    bar_frame(stamps, text=[stamp.isoformat() for stamp in stamps]).to_csv(tmp_path / "AAPL.csv", index=False)
    bars = fetch(tmp_path, "AAPL", "2025-03-07", "2025-03-11")
    assert len(bars) == 52
    assert bars["window_start"].tolist() == list(stamps)
    assert bars["close"].tolist() == [100.0 + i for i in range(52)]


def test_naive_stamps_are_new_york_time_unless_file_timezone_says_otherwise(tmp_path):
    stamps = session("2025-07-07", tz=None)
    bar_frame(stamps).to_csv(tmp_path / "AAPL.csv", index=False)
    bars = fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")
    assert bars["window_start"].tolist() == list(session("2025-07-07"))

    utc = session("2025-07-07", tz="UTC").tz_localize(None)  # 13:30-19:45 written without an offset
    bar_frame(utc).to_csv(tmp_path / "MSFT.csv", index=False)
    bars = fetch(tmp_path, "MSFT", "2025-07-07", "2025-07-08", timezone="UTC")
    assert bars["window_start"].tolist() == list(session("2025-07-07"))
    assert bars["close"].iloc[0] == 100.0


def test_naive_stamps_mostly_outside_the_session_in_the_assumed_zone_are_one_error(tmp_path):
    days = ["2025-07-07", "2025-07-08", "2025-07-09"]
    utc = pd.DatetimeIndex(np.concatenate([session(day, tz="UTC").tz_localize(None) for day in days]))
    bar_frame(utc).to_csv(tmp_path / "AAPL_1m.csv", index=False)
    with pytest.raises(MarketDataError) as raised:
        fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-10")
    message = str(raised.value)
    assert "AAPL_1m.csv" in message and "America/New_York" in message and "market_data.file_timezone" in message
    assert "62%" in message  # 13:30-15:45 stays inside, 16:00-19:45 (16 of 26 bars) falls outside
    assert "read as UTC, 0% would be" in message


def test_mixed_naive_and_offset_stamps_name_the_file_and_lines(tmp_path):
    text = ["2025-07-07 09:30:00", "2025-07-07 09:45:00-04:00", "2025-07-07 10:00:00"]
    bar_frame(session("2025-07-07")[:3], text=text).to_csv(tmp_path / "AAPL.csv", index=False)
    with pytest.raises(MarketDataError, match=r"AAPL\.csv mixes timestamps .*line 3.*line 2"):
        fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")


def test_unix_epoch_stamps_of_a_polygon_flat_file_are_read(tmp_path):
    stamps = session("2025-07-07")
    frame = pd.DataFrame(
        {
            "ticker": "AAPL",
            "volume": 500,
            "open": 1.0,
            "close": np.arange(26, dtype=float) + 2,
            "high": 40.0,
            "low": 0.5,
            "window_start": stamps.tz_convert("UTC").as_unit("ns").asi8,
            "transactions": 7,
        }
    )
    frame.to_csv(tmp_path / "2025-07-07.csv", index=False)
    bars = fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")
    assert bars["window_start"].tolist() == list(stamps)
    assert bars["trade_count"].tolist() == [7] * 26


# --- malformed rows -----------------------------------------------------------------------------------------------


def test_a_line_with_extra_fields_is_named_by_file_and_line(tmp_path):
    lines = [HEADER, "2025-07-07 09:30:00,1,2,0.5,1.5,100", "2025-07-07 09:45:00,1,2,0.5,1.5,100,oops"]
    (tmp_path / "MSFT.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MarketDataError, match=r"MSFT\.csv line 3 has 7 fields where the header has 6"):
        fetch(tmp_path, "MSFT", "2025-07-07", "2025-07-08")


def test_a_malformed_file_with_a_symbol_column_fails_only_its_symbol(tmp_path):
    stamps = session("2025-07-07", tz=None)
    bar_frame(stamps, Symbol="AAPL").to_csv(tmp_path / "AAPL_15m.csv", index=False)
    bar_frame(stamps, Symbol="MSFT").to_csv(tmp_path / "MSFT_15m.csv", index=False)
    with (tmp_path / "MSFT_15m.csv").open("a") as handle:
        handle.write("2025-07-07 16:00:00,1,2,0.5,1.5,100,MSFT,extra\n")
    assert len(fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")) == 26
    with pytest.raises(MarketDataError, match=r"MSFT_15m\.csv line 28 has 8 fields where the header has 7"):
        fetch(tmp_path, "MSFT", "2025-07-07", "2025-07-08")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("2025-07-07 09:45:00,1,2,0.5,abc,100", r"line 4 cannot be read: close 'abc' is not a number"),
        ("yesterday,1,2,0.5,1.5,100", r"line 4 cannot be read: the timestamp 'yesterday' is not a date and time"),
        ("2025-07-07 09:45:00,1,2,0.5,,100", r"line 4 cannot be read: close is empty"),
    ],
)
def test_unreadable_values_are_named_by_file_and_line(tmp_path, row, expected):
    # A blank line 3 still counts, so the line number is the one an editor shows.
    lines = [HEADER, "2025-07-07 09:30:00,1,2,0.5,1.5,100", "", row]
    (tmp_path / "AAPL.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MarketDataError, match=r"AAPL\.csv " + expected):
        fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")


def test_two_different_rows_for_one_window_are_an_error_identical_ones_are_dropped(tmp_path):
    stamps = session("2025-07-07", tz=None)
    frame = bar_frame(stamps)
    pd.concat([frame, frame.iloc[[2]]]).to_csv(tmp_path / "AAPL.csv", index=False)
    assert len(fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")) == 26

    clash = frame.iloc[[2]].assign(Close=999.0)
    pd.concat([frame, clash]).to_csv(tmp_path / "AAPL.csv", index=False)
    with pytest.raises(MarketDataError, match=r"AAPL\.csv has two different AAPL bars .*2025-07-07-10:00.*4 and 28"):
        fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")


# --- which file belongs to which symbol -------------------------------------------------------------------------


def test_a_file_without_a_symbol_column_belongs_only_to_the_symbol_its_name_gives(tmp_path):
    stamps = session("2025-07-07", tz=None)
    bar_frame(stamps).to_csv(tmp_path / "aapl_15min.csv", index=False)
    bar_frame(stamps, close_from=500.0).to_csv(tmp_path / "AAPLX.csv", index=False)  # another ticker's file
    bars = fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")
    assert bars["close"].iloc[0] == 100.0 and len(bars) == 26
    assert set(bars["source"]) == {"file:aapl_15min.csv"}
    with pytest.raises(MarketDataError) as raised:
        fetch(tmp_path, "MSFT", "2025-07-07", "2025-07-08")
    message = str(raised.value)
    assert str(tmp_path) in message and "MSFT.csv, MSFT_*.csv" in message and "symbol column" in message


def test_a_file_with_a_symbol_column_gives_each_symbol_its_own_rows(tmp_path):
    stamps = session("2025-07-07", tz=None)
    both = pd.concat(
        [bar_frame(stamps, Symbol="AAPL"), bar_frame(stamps, close_from=300.0, Symbol="msft")], ignore_index=True
    )
    both.sample(frac=1.0, random_state=1).to_csv(tmp_path / "all.csv", index=False)
    aapl = fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")
    msft = fetch(tmp_path, "MSFT", "2025-07-07", "2025-07-08")
    assert aapl["close"].tolist() == [100.0 + i for i in range(26)]
    assert msft["close"].tolist() == [300.0 + i for i in range(26)]
    assert set(msft["symbol"]) == {"MSFT"}


def test_parquet_files_with_timestamp_columns_are_read(tmp_path):
    stamps = session("2025-07-07")
    frame = bar_frame(stamps, Symbol="GOOGL").drop(columns="Datetime")
    frame.assign(window_start=stamps.tz_convert("UTC")).to_parquet(tmp_path / "bars.parquet")
    frame.drop(columns="Symbol").assign(Datetime=stamps.tz_localize(None)).to_parquet(tmp_path / "TSLA.parquet")
    assert fetch(tmp_path, "GOOGL", "2025-07-07", "2025-07-08")["window_start"].tolist() == list(stamps)
    assert fetch(tmp_path, "TSLA", "2025-07-07", "2025-07-08")["window_start"].tolist() == list(stamps)


# --- spacing ----------------------------------------------------------------------------------------------------


def test_one_minute_bars_are_aggregated_to_session_windows(tmp_path):
    minutes = session("2025-07-07", freq="1min", tz=None)
    premarket = pd.date_range("2025-07-07 08:00", "2025-07-07 09:29", freq="1min")
    stamps = premarket.append(minutes)
    price = 100.0 + 0.01 * np.arange(len(stamps))
    frame = pd.DataFrame(
        {
            "timestamp": stamps.astype(str),
            "open": price,
            "high": price + 0.05,
            "low": price - 0.05,
            "close": price + 0.01,
            "volume": np.arange(len(stamps)) + 1,
            "vwap": price + 0.02,
            "transactions": 3,
        }
    )
    frame.drop(index=frame.index[::7]).to_csv(tmp_path / "AAPL_1m.csv", index=False)  # thin: some minutes lack a row
    thin = pd.read_csv(tmp_path / "AAPL_1m.csv")  # the values as written, to compare exactly
    bars = fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")

    assert bars["window_start"].tolist() == list(session("2025-07-07"))
    first = thin[(thin["timestamp"] >= "2025-07-07 09:30") & (thin["timestamp"] < "2025-07-07 09:45")]
    got = bars.iloc[0]
    assert got["open"] == first["open"].iloc[0] and got["close"] == first["close"].iloc[-1]
    assert got["high"] == first["high"].max() and got["low"] == first["low"].min()
    assert got["volume"] == first["volume"].sum() and got["trade_count"] == 3 * len(first)
    assert got["vwap"] == pytest.approx((first["vwap"] * first["volume"]).sum() / first["volume"].sum())
    assert bars["volume"].sum() == thin["volume"].iloc[len(premarket) - len(premarket[::7]):].sum()


def test_five_minute_bars_are_aggregated_too(tmp_path):
    bar_frame(session("2025-07-07", freq="5min", tz=None)).to_csv(tmp_path / "AAPL_5m.csv", index=False)
    bars = fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")
    assert len(bars) == 26
    assert bars["close"].iloc[0] == 102.0 and bars["open"].iloc[0] == 99.5 and bars["volume"].iloc[0] == 3000


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        (pd.date_range("2025-07-07 09:00", "2025-07-07 16:00", freq="1h"), "1 hour apart, coarser than"),
        (pd.date_range("2025-06-02", "2025-07-07", freq="B"), "1 day apart, coarser than"),
        (pd.date_range("2025-07-07 09:30", "2025-07-07 15:59", freq="2min"), "2 minutes apart, which does not divide"),
            (
                session("2025-07-07", tz=None).append(pd.DatetimeIndex(["2025-07-07 10:07"])),
                r"15 minutes apart but 1 session bar\(s\) fall off that grid \(first: line 28",
            ),
    ],
    ids=["hourly", "daily", "two-minute", "irregular"],
)
def test_coarser_or_irregular_spacing_is_refused(tmp_path, stamps, expected):
    bar_frame(stamps).to_csv(tmp_path / "AAPL.csv", index=False)
    with pytest.raises(MarketDataError, match=r"AAPL\.csv holds bars " + expected):
        fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08")


def test_an_edited_file_is_read_again(tmp_path):
    stamps = session("2025-07-07", tz=None)
    bar_frame(stamps).to_csv(tmp_path / "AAPL.csv", index=False)
    args = (tmp_path, "AAPL", pd.Timestamp("2025-07-07", tz=NEW_YORK), pd.Timestamp("2025-07-08", tz=NEW_YORK))
    assert load_recorded_bars(*args)["close"].iloc[0] == 100.0
    bar_frame(stamps, close_from=1000.0).to_csv(tmp_path / "AAPL.csv", index=False)
    assert load_recorded_bars(*args)["close"].iloc[0] == 1000.0


def test_an_unknown_file_timezone_is_one_sentence(tmp_path):
    bar_frame(session("2025-07-07", tz=None)).to_csv(tmp_path / "AAPL.csv", index=False)
    with pytest.raises(MarketDataError, match="market_data.file_timezone 'Mars/Olympus' is not a timezone name"):
        fetch(tmp_path, "AAPL", "2025-07-07", "2025-07-08", timezone="Mars/Olympus")


# --- market_bars with a file source: one symbol's broken file costs only that symbol -----------------------------


def _stored(store) -> pd.DataFrame:
    rows = store.read_rows("market_bars")[["symbol", "window_start", "close"]]
    return rows.sort_values(["symbol", "window_start"], ignore_index=True)


def _write_symbols(folder, closes: dict[str, float]) -> None:
    for symbol, close_from in closes.items():
        frame = bar_frame(session("2025-07-07", tz=None), close_from=close_from)
        frame.to_csv(folder / f"{symbol}_15m.csv", index=False)


def test_market_bars_stores_the_other_symbols_when_one_file_is_malformed(instance, store, tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    keys = register_windows(instance, "2025-07-07", "2025-07-08")
    run = {
        "instance": instance,
        "tags": range_tags(["AAPL", "MSFT", "GOOGL"], keys),
        "resources": {"market_data": FileMarketData(path=str(folder)), "store": store},
    }
    _write_symbols(folder, {"AAPL": 100.0, "MSFT": 200.0, "GOOGL": 300.0})
    assert materialize([market_bars], **run).success
    before = _stored(store)
    assert before.groupby("symbol")["close"].min().to_dict() == {"AAPL": 100.0, "GOOGL": 300.0, "MSFT": 200.0}

    _write_symbols(folder, {"AAPL": 110.0, "GOOGL": 310.0})
    with (folder / "MSFT_15m.csv").open("a") as handle:
        handle.write("2025-07-07 16:00:00,1,2,0.5,1.5,100,extra\n")  # line 28: one field too many
    result = materialize([market_bars], **run)
    assert result.success
    after = _stored(store)
    assert after.groupby("symbol")["close"].min().to_dict() == {"AAPL": 110.0, "GOOGL": 310.0, "MSFT": 200.0}
    msft_after, msft_before = (rows[rows["symbol"] == "MSFT"].reset_index(drop=True) for rows in (after, before))
    pd.testing.assert_frame_equal(msft_after, msft_before)
    metadata = result.asset_materializations_for_node("market_bars")[0].metadata
    assert "| MSFT |" in metadata["failed_symbols"].value and "MSFT_15m.csv line 28" in metadata["failed_symbols"].value
    assert metadata["missing_windows"].value == 26
    assert metadata["row_count"].value == 52
    assert metadata["fetch_ranges"].value == 3
    errors = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.ERROR and "MSFT_15m.csv line 28" in entry.user_message
    ]
    assert len(errors) == 1


def test_market_bars_fails_with_every_sentence_when_every_symbol_fails(instance, store, tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    bar_frame(session("2025-07-07", tz=None)).to_csv(folder / "TSLA.csv", index=False)
    keys = register_windows(instance, "2025-07-07", "2025-07-08")
    result = materialize(
        [market_bars],
        instance=instance,
        tags=range_tags(["AAPL", "MSFT"], keys),
        resources={"market_data": FileMarketData(path=str(folder)), "store": store},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("market_bars").user_failure_data.description
    assert "No bars for AAPL" in failure and "No bars for MSFT" in failure
