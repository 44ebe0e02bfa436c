"""PolygonBarsClient drives the real ``polygon.RESTClient`` against a local fake of Polygon's aggregates API.

The fake server listens on 127.0.0.1 only and answers ``/v2/aggs/ticker/{ticker}/range/15/minute/{from}/{to}``
with Polygon's JSON; sleeps and clocks are injected, so nothing waits on the wall clock.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
import urllib3.util.connection

from lstm_pipeline.market.bars import BAR_COLUMNS, MarketDataError
from lstm_pipeline.market.calendar import NEW_YORK, session_windows
from lstm_pipeline.market.polygon_source import PolygonBarsClient

NY = NEW_YORK
KEY = "pk_TEST_0123456789abcdefSECRET"
LATE = pd.Timestamp("2030-01-02 12:00", tz=NY)  # "now" long after every range below: all windows are closed

Reply = tuple[int, dict[str, str], Any]


@dataclass
class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    t: float = 1_000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float

    @property
    def range_ms(self) -> tuple[int, int]:
        parts = self.path.split("/")
        return int(parts[-2]), int(parts[-1])

    @property
    def ticker(self) -> str:
        return self.path.split("/")[4]


class FakePolygon:
    """What the server answers is ``responder(seen) -> (status, headers, json body or raw str)``."""

    def __init__(self, fake_time: FakeTime) -> None:
        self.fake_time = fake_time
        self.seen: list[Seen] = []
        self.responder: Callable[[Seen], Reply] = lambda seen: (200, {}, aggs_body(seen.ticker, []))
        self.delay_first_s = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                parts = urlsplit(self.path)
                seen = Seen(parts.path, parse_qs(parts.query), dict(self.headers.items()), owner.fake_time.t)
                owner.seen.append(seen)
                if owner.delay_first_s and len(owner.seen) == 1:
                    time.sleep(owner.delay_first_s)
                status, headers, body = owner.responder(seen)
                payload = (body if isinstance(body, str) else json.dumps(body)).encode()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def client(self, api_key: str | None = KEY, **kwargs: Any) -> PolygonBarsClient:
        options: dict[str, Any] = {
            "base_url": self.base_url,
            "requests_per_minute": 5.0,
            "sleep": self.fake_time.sleep,
            "clock": self.fake_time.clock,
            "now": lambda: LATE,
            "rng": random.Random(0),
        }
        options.update(kwargs)
        return PolygonBarsClient(api_key, **options)  # type: ignore[arg-type] - None is tested on purpose


def agg(stamp: str, price: float = 100.0, volume: int = 1_000) -> dict[str, Any]:
    """One Polygon aggregate for the window starting at ``stamp`` (New York)."""
    t = int(pd.Timestamp(stamp, tz=NY).tz_convert("UTC").value // 1_000_000)
    return {"v": float(volume), "vw": price + 0.01, "o": price, "c": price + 0.5, "h": price + 1, "l": price - 1,
            "t": t, "n": volume // 10}


def aggs_body(ticker: str, results: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"ticker": ticker, "queryCount": len(results), "resultsCount": len(results),
                            "adjusted": True, "status": "OK", "request_id": "req-1", "count": len(results)}
    if results:
        body["results"] = results
    if next_url:
        body["next_url"] = next_url
    return body


def full_day(day: str) -> list[dict[str, Any]]:
    """Polygon's answer for a day: extended hours 04:00-19:45 included, as the real API returns them."""
    stamps = pd.date_range(f"{day} 04:00", f"{day} 19:45", freq="15min")
    return [agg(str(s), 100.0 + i) for i, s in enumerate(stamps)]


@pytest.fixture(autouse=True)
def only_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt beyond 127.0.0.1 (say, to api.polygon.io via next_url) fails the test."""
    real = urllib3.util.connection.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        assert address[0] == "127.0.0.1", f"test tried to reach {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def polygon(fake_time: FakeTime):
    server = FakePolygon(fake_time)
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def ms(stamp: str) -> int:
    return int(pd.Timestamp(stamp, tz=NY).tz_convert("UTC").value // 1_000_000)


# --- pagination and mapping ---------------------------------------------------------------------------------


def test_two_pages_are_followed_via_next_url_and_concatenated(polygon: FakePolygon) -> None:
    first = [agg("2025-07-07 09:30", 10), agg("2025-07-07 09:45", 11), agg("2025-07-07 10:00", 12)]
    second = [agg("2025-07-07 10:15", 13), agg("2025-07-07 10:30", 14)]

    def respond(seen: Seen) -> Reply:
        if "cursor" not in seen.query:
            # Polygon's next_url names its own host; the client must keep talking to base_url
            return 200, {}, aggs_body("AAPL", first, "https://api.polygon.io/v2/aggs/ticker/AAPL/range/15/minute/"
                                      "1751895000000/1751923799999?cursor=YWJjZA%3D%3D")
        return 200, {}, aggs_body("AAPL", second)

    polygon.responder = respond
    client = polygon.client()
    bars = client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))

    assert len(polygon.seen) == 2 and client.requests_sent == 2
    page1, page2 = polygon.seen
    assert page1.path == f"/v2/aggs/ticker/AAPL/range/15/minute/{ms('2025-07-07 09:30')}/{ms('2025-07-07 16:00') - 1}"
    assert page1.query == {"adjusted": ["true"], "sort": ["asc"], "limit": ["50000"]}
    assert page2.query == {"cursor": ["YWJjZA=="]}
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert {name: str(dtype) for name, dtype in bars.dtypes.items()} == BAR_COLUMNS
    assert bars["window_start"].dt.strftime("%H:%M").tolist() == ["09:30", "09:45", "10:00", "10:15", "10:30"]
    assert bars["open"].tolist() == [10, 11, 12, 13, 14]
    row = bars.iloc[3]
    assert (row["symbol"], row["source"]) == ("AAPL", "polygon")
    assert (row["high"], row["low"], row["close"], row["volume"]) == (14, 12, 13.5, 1_000)
    assert row["vwap"] == pytest.approx(13.01) and row["trade_count"] == 100


def test_one_request_per_symbol_for_a_multi_day_range(polygon: FakePolygon) -> None:
    days = ["2025-07-07", "2025-07-08", "2025-07-09", "2025-07-10", "2025-07-11"]
    polygon.responder = lambda seen: (200, {}, aggs_body(seen.ticker, [a for d in days for a in full_day(d)]))
    client = polygon.client()
    start, end = pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-14", tz=NY)

    frames = {symbol: client.fetch_bars(symbol, start, end) for symbol in ("AAPL", "MSFT")}

    assert [seen.ticker for seen in polygon.seen] == ["AAPL", "MSFT"]
    windows = session_windows(start, end)
    assert len(windows) == 5 * 26
    for seen in polygon.seen:
        assert seen.range_ms == (ms("2025-07-07 09:30"), ms("2025-07-11 16:00") - 1)
    for frame in frames.values():
        assert pd.DatetimeIndex(frame["window_start"]).equals(windows)


# --- session and delay ------------------------------------------------------------------------------------


def test_out_of_session_bars_are_dropped_and_undelayed_windows_not_requested(polygon: FakePolygon) -> None:
    # Polygon answers with the whole extended-hours day plus an off-grid stamp; only closed session windows count.
    polygon.responder = lambda seen: (200, {}, aggs_body("AAPL", full_day("2025-07-07") + [agg("2025-07-07 09:37")]))
    now = pd.Timestamp("2025-07-07 10:31", tz=NY)  # 10:00-10:15 closed 16 minutes ago; 10:15 is still delayed
    client = polygon.client(now=lambda: now)

    bars = client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))

    assert bars["window_start"].dt.strftime("%H:%M").tolist() == ["09:30", "09:45", "10:00"]
    assert polygon.seen[0].range_ms == (ms("2025-07-07 09:30"), ms("2025-07-07 10:15") - 1)


def test_nothing_is_requested_before_any_window_is_available(polygon: FakePolygon) -> None:
    client = polygon.client(now=lambda: pd.Timestamp("2025-07-07 09:59", tz=NY))
    bars = client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    weekend = client.fetch_bars("AAPL", pd.Timestamp("2025-07-05", tz=NY), pd.Timestamp("2025-07-07", tz=NY))
    assert bars.empty and weekend.empty and list(bars.columns) == list(BAR_COLUMNS)
    assert polygon.seen == []


def test_missing_windows_stay_missing(polygon: FakePolygon) -> None:
    polygon.responder = lambda seen: (200, {}, aggs_body("AAPL", [agg("2025-07-07 09:30"), agg("2025-07-07 10:15")]))
    bars = polygon.client().fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    assert bars["window_start"].dt.strftime("%H:%M").tolist() == ["09:30", "10:15"]


@pytest.mark.parametrize(
    "reply",
    [(200, {}, {"ticker": "NOPE", "queryCount": 0, "resultsCount": 0, "adjusted": True, "status": "OK",
                "request_id": "r"}),
     (404, {}, {"status": "NOT_FOUND", "request_id": "r", "message": "Data not found."})],
    ids=["results-count-0", "http-404"],
)
def test_unknown_ticker_gives_an_empty_frame_and_a_warning(polygon: FakePolygon, caplog, reply: Reply) -> None:
    polygon.responder = lambda seen: reply
    caplog.set_level(logging.INFO, logger="lstm_pipeline.market.polygon")
    bars = polygon.client().fetch_bars("NOPE", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    assert bars.empty and list(bars.columns) == list(BAR_COLUMNS)
    assert len(polygon.seen) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("NOPE" in message and "ticker" in message for message in warnings)


# --- retries --------------------------------------------------------------------------------------------------


def test_429_with_retry_after_is_waited_out_then_succeeds(polygon: FakePolygon, fake_time: FakeTime, caplog) -> None:
    def respond(seen: Seen) -> Reply:
        if len(polygon.seen) == 1:
            return 429, {"Retry-After": "7"}, {"status": "ERROR", "error": "You've exceeded the maximum requests"}
        return 200, {}, aggs_body("AAPL", [agg("2025-07-07 09:30")])

    polygon.responder = respond
    caplog.set_level(logging.INFO, logger="lstm_pipeline.market.polygon")
    client = polygon.client(requests_per_minute=600.0)  # 0.1 s spacing, well under the 7 s asked for
    bars = client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))

    assert len(bars) == 1 and len(polygon.seen) == 2
    assert fake_time.sleeps == [7.0]
    assert polygon.seen[1].at - polygon.seen[0].at == 7.0
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 1 and "HTTP 429" in retries[0] and "7.00 s" in retries[0] and "AAPL" in retries[0]


def test_retry_after_is_capped_and_http_dates_are_understood(polygon: FakePolygon, fake_time: FakeTime) -> None:
    now = pd.Timestamp("2030-01-02 12:00", tz=NY)
    replies = iter([
        (503, {"Retry-After": "3600"}, "maintenance"),
        (503, {"Retry-After": (now + pd.Timedelta(seconds=20)).tz_convert("UTC").strftime("%a, %d %b %Y %H:%M:%S GMT")},
         "maintenance"),
        (200, {}, aggs_body("AAPL", [agg("2025-07-07 09:30")])),
    ])
    polygon.responder = lambda seen: next(replies)
    client = polygon.client(requests_per_minute=6000.0, backoff_max_s=30.0, fetch_max_s=60.0, now=lambda: now)
    assert len(client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))) == 1
    assert fake_time.sleeps == [30.0, 20.0]


def test_500s_until_retries_run_out_raise_a_clear_error(polygon: FakePolygon, fake_time: FakeTime, caplog) -> None:
    polygon.responder = lambda seen: (500, {}, {"status": "ERROR", "error": "internal"})
    caplog.set_level(logging.DEBUG)
    client = polygon.client(requests_per_minute=6000.0, max_retries=3, backoff_initial_s=2.0, backoff_max_s=5.0)

    with pytest.raises(MarketDataError) as raised:
        client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))

    assert len(polygon.seen) == 4  # the first attempt and 3 retries, no hidden urllib3 retries
    message = str(raised.value)
    assert "AAPL" in message and "2025-07-07" in message and "HTTP 500" in message and "4 attempts" in message
    assert "requests_per_minute" in message and "status.polygon.io" in message
    assert message.count(". ") == 0 and KEY not in message  # one sentence, no key
    # full jitter: each wait is drawn from [0, min(max, initial * 2**n)]
    assert len(fake_time.sleeps) == 3
    for n, wait in enumerate(fake_time.sleeps):
        assert 0.0 <= wait <= min(5.0, 2.0 * 2**n)
    assert sum(r.levelno == logging.WARNING and "retry" in r.getMessage() for r in caplog.records) == 3


def test_a_failing_later_page_fails_the_whole_range(polygon: FakePolygon) -> None:
    def respond(seen: Seen) -> Reply:
        if "cursor" not in seen.query:
            return 200, {}, aggs_body("AAPL", [agg("2025-07-07 09:30")],
                                      "https://api.polygon.io/v2/aggs/ticker/AAPL/range/15/minute/1/2?cursor=p2")
        return 502, {}, "<html>bad gateway</html>"

    polygon.responder = respond
    client = polygon.client(max_retries=2)
    result = None
    with pytest.raises(MarketDataError, match="HTTP 502"):
        result = client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    assert result is None
    assert len(polygon.seen) == 4 and all(seen.query == {"cursor": ["p2"]} for seen in polygon.seen[1:])


def test_an_unreadable_page_is_retried_not_silently_truncated(polygon: FakePolygon) -> None:
    replies = iter([(200, {}, '{"results": [tru'), (200, {}, aggs_body("AAPL", [agg("2025-07-07 09:30")]))])
    polygon.responder = lambda seen: next(replies)
    bars = polygon.client().fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    assert len(bars) == 1 and len(polygon.seen) == 2


def test_a_timeout_is_retried(polygon: FakePolygon) -> None:
    polygon.delay_first_s = 1.0
    polygon.responder = lambda seen: (200, {}, aggs_body("AAPL", [agg("2025-07-07 09:30")]))
    client = polygon.client(timeout_s=0.2)
    started = time.monotonic()
    bars = client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    assert len(bars) == 1 and len(polygon.seen) == 2
    assert time.monotonic() - started < 0.9  # the client's read timeout, not the server, ended the first attempt


def _refused_port() -> int:
    """A loopback port nothing listens on, so connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_server_fails_within_fetch_max_s_saying_how_long_it_tried(fake_time: FakeTime) -> None:
    # Issue #16: with the defaults, connection refused took 62 s (six attempts 12 s apart, the rate cap's spacing).
    client = PolygonBarsClient(
        KEY, base_url=f"http://127.0.0.1:{_refused_port()}", requests_per_minute=5.0, max_retries=5,
        fetch_max_s=30.0, sleep=fake_time.sleep, clock=fake_time.clock, now=lambda: LATE, rng=random.Random(0),
    )
    started = fake_time.t
    with pytest.raises(MarketDataError) as raised:
        client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    message = str(raised.value)
    # attempts at 0, 12 and 24 s; a fourth could not start before 36 s, past the 30 s bound
    assert "still failed after 3 attempts over 24.0 s" in message
    assert "NewConnectionError" in message and "fetch_max_seconds (30 s)" in message and "polygon_base_url" in message
    assert fake_time.t - started == 24.0 and client.requests_sent == 3
    assert message.count(". ") == 0 and KEY not in message


def test_a_server_that_never_answers_fails_within_fetch_max_s() -> None:
    # It accepts the connection (the kernel completes the handshake) and never sends a byte back. The read
    # timeout is real time, so this test takes about fetch_max_s; before the bound it took 6 x 30 s.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = PolygonBarsClient(
            KEY, base_url=f"http://127.0.0.1:{silent.getsockname()[1]}", requests_per_minute=6000.0, max_retries=5,
            timeout_s=30.0, fetch_max_s=0.5, now=lambda: LATE, rng=random.Random(0),
        )
        started = time.monotonic()
        with pytest.raises(MarketDataError) as raised:
            client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
        elapsed = time.monotonic() - started
    message = str(raised.value)
    assert re.search(r"still failed after 1 attempt over \d+\.\d s \(last: ReadTimeoutError", message)
    assert "fetch_max_seconds (0.5 s)" in message
    assert elapsed < 5.0


def test_the_retry_bound_counts_failures_not_the_rate_caps_spacing(polygon: FakePolygon, fake_time: FakeTime) -> None:
    # Four pages 12 s apart (36 s of polite spacing) and one retried 500 fit a 13 s retry bound.
    def respond(seen: Seen) -> Reply:
        page = int(seen.query.get("cursor", ["1"])[0])
        if page == 3 and sum(s.query.get("cursor") == ["3"] for s in polygon.seen) == 1:
            return 500, {}, {"status": "ERROR"}
        following = f"https://api.polygon.io/v2/aggs/ticker/AAPL/range/15/minute/1/2?cursor={page + 1}"
        return 200, {}, aggs_body("AAPL", [agg(f"2025-07-07 0{8 + page}:45")], following if page < 4 else None)

    polygon.responder = respond
    client = polygon.client(requests_per_minute=5.0, fetch_max_s=13.0)
    bars = client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    assert len(bars) == 4 and len(polygon.seen) == 5
    assert sum(fake_time.sleeps) == pytest.approx(48.0)  # of which only the 12 s after the failure count


@pytest.mark.parametrize(
    "url", ["api.polygon.io", "api.polygon.io:443", "http://api.polygon.io", "http://192.168.1.20:8080"]
)
def test_the_client_refuses_to_send_the_key_over_plain_http(polygon: FakePolygon, url: str) -> None:
    with pytest.raises(MarketDataError, match=r"^The Polygon base URL is refused: .*polygon_base_url\.$"):
        polygon.client(base_url=url)
    assert polygon.seen == []


def test_a_key_from_the_config_file_is_read_when_the_run_starts(polygon: FakePolygon, tmp_path, monkeypatch) -> None:
    from lstm_pipeline.resources import build_market_data
    from lstm_pipeline.settings import get_settings, load_settings

    secret = "pk_FROM_CONFIG_FILE_0042"
    config = tmp_path / "realtime_config.json"
    config.write_text(json.dumps({"polygon_api_key": secret, "market_data": {
        "polygon_base_url": polygon.base_url, "requests_per_minute": 6000, "max_retries": 0}}))
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    monkeypatch.setenv("LSTM_PIPELINE_CONFIG", str(config))
    get_settings.cache_clear()
    polygon.responder = lambda seen: (200, {}, aggs_body(seen.ticker, [agg("2025-07-07 09:30")]))
    try:
        resource = build_market_data(load_settings())
        bars = resource.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY),
                                   now=LATE)
    finally:
        get_settings.cache_clear()
    assert len(bars) == 1 and polygon.seen[0].headers.get("Authorization") == f"Bearer {secret}"
    assert "POLYGON_API_KEY" not in os.environ


# --- the API key --------------------------------------------------------------------------------------------


def test_401_is_a_clear_bad_key_error_without_retries(polygon: FakePolygon) -> None:
    polygon.responder = lambda seen: (401, {}, {"status": "ERROR", "request_id": "r", "error": "Unknown API Key"})
    with pytest.raises(MarketDataError) as raised:
        polygon.client().fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    message = str(raised.value)
    assert "rejected the API key" in message and "HTTP 401" in message and "POLYGON_API_KEY" in message
    assert "Unknown API Key" in message and KEY not in message
    assert len(polygon.seen) == 1


def test_403_names_the_plan(polygon: FakePolygon) -> None:
    polygon.responder = lambda seen: (403, {}, {"status": "NOT_AUTHORIZED", "request_id": "r",
                                                "message": "You are not entitled to this data."})
    with pytest.raises(MarketDataError, match="HTTP 403.*plan"):
        polygon.client().fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))


@pytest.mark.parametrize("key", ["", "   ", None])
def test_a_missing_key_fails_before_any_request(polygon: FakePolygon, key: str | None) -> None:
    with pytest.raises(MarketDataError, match="^POLYGON_API_KEY is not set;"):
        polygon.client(api_key=key)
    assert polygon.seen == []


def test_the_key_is_sent_as_a_bearer_header_and_never_logged_or_shown(
    polygon: FakePolygon, caplog, capsys
) -> None:
    def respond(seen: Seen) -> Reply:
        if "cursor" not in seen.query:
            # as the brief warns, a next_url may carry apiKey; it must not end up in a URL we send or log
            return 200, {}, aggs_body("AAPL", [agg("2025-07-07 09:30")],
                                      f"https://api.polygon.io/v2/aggs/ticker/AAPL/page2?cursor=c2&apiKey={KEY}")
        if len([s for s in polygon.seen if "cursor" in s.query]) == 1:
            return 429, {}, {"status": "ERROR", "error": f"too many requests for apiKey={KEY}"}
        return 200, {}, aggs_body("AAPL", [agg("2025-07-07 09:45")])

    polygon.responder = respond
    caplog.set_level(logging.DEBUG)  # every logger, urllib3's request lines included
    # (explicitly for urllib3 too: importing the kubernetes client, as dagster-k8s does, sets it to WARNING)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    client = polygon.client()
    bars = client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))

    assert len(bars) == 2 and len(polygon.seen) == 3
    assert all(seen.headers.get("Authorization") == f"Bearer {KEY}" for seen in polygon.seen)
    assert all("apiKey" not in seen.query and KEY not in seen.path for seen in polygon.seen)
    assert polygon.seen[1].query == {"cursor": ["c2"]}

    polygon.responder = lambda seen: (500, {}, {"status": "ERROR", "error": f"boom {KEY}"})
    with pytest.raises(MarketDataError) as raised:
        client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))
    polygon.responder = lambda seen: (403, {}, {"status": "NOT_AUTHORIZED", "message": f"key {KEY} not entitled"})
    with pytest.raises(MarketDataError) as rejected:
        client.fetch_bars("AAPL", pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY))

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "aggregates request" in logged and "urllib3" in {r.name.split(".")[0] for r in caplog.records}
    assert KEY not in logged
    printed = capsys.readouterr()
    assert KEY not in printed.out and KEY not in printed.err
    for error in (raised.value, rejected.value):
        assert KEY not in str(error) and KEY not in repr(error)
        assert error.__cause__ is None and error.__suppress_context__
    assert KEY not in repr(client) and "redacted" in repr(client)


# --- the rate cap -------------------------------------------------------------------------------------------


def test_the_rate_cap_spaces_every_request_pages_included(polygon: FakePolygon, fake_time: FakeTime) -> None:
    def respond(seen: Seen) -> Reply:
        if seen.ticker == "AAPL" and "cursor" not in seen.query:
            return 200, {}, aggs_body("AAPL", [agg("2025-07-07 09:30")],
                                      "https://api.polygon.io/v2/aggs/ticker/AAPL/range/15/minute/1/2?cursor=2")
        return 200, {}, aggs_body(seen.ticker, [agg("2025-07-07 09:45")])

    polygon.responder = respond
    client = polygon.client(requests_per_minute=5.0)
    start, end = pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY)
    for symbol in ("AAPL", "MSFT", "NVDA", "AMZN", "META", "TSLA"):
        client.fetch_bars(symbol, start, end)

    assert len(polygon.seen) == 7  # AAPL's two pages and one each for the other five
    assert fake_time.sleeps == [12.0] * 6  # 60 s / 5, before every request but the first
    starts = [seen.at for seen in polygon.seen]
    assert all(sum(t <= s < t + 60 for s in starts) <= 5 for t in starts)


def test_the_rate_cap_does_not_wait_when_requests_are_already_spread(polygon: FakePolygon, fake_time: FakeTime) -> None:
    polygon.responder = lambda seen: (200, {}, aggs_body(seen.ticker, [agg("2025-07-07 09:30")]))
    client = polygon.client(requests_per_minute=5.0)
    start, end = pd.Timestamp("2025-07-07", tz=NY), pd.Timestamp("2025-07-08", tz=NY)
    client.fetch_bars("AAPL", start, end)
    fake_time.t += 5.0  # the caller spent 5 s elsewhere
    client.fetch_bars("MSFT", start, end)
    fake_time.t += 30.0
    client.fetch_bars("NVDA", start, end)
    assert fake_time.sleeps == [7.0]


# --- through Dagster: the resource, the asset and the store -------------------------------------------------


def test_market_bars_from_polygon_then_an_outage_keeps_the_stored_rows(polygon: FakePolygon, store) -> None:
    from dagster import instance_for_test, materialize

    from lstm_pipeline.assets.market_bars import market_bars
    from lstm_pipeline.partitions import market_bars_key
    from lstm_pipeline.resources.market_data import PolygonMarketData
    from tests.helpers import register_windows

    polygon.responder = lambda seen: (200, {}, aggs_body(seen.ticker, full_day("2025-07-07")))
    resources = {
        "market_data": PolygonMarketData(
            api_key=KEY, base_url=polygon.base_url, requests_per_minute=600, max_retries=0
        ),
        "store": store,
    }
    tags = {"dagster/asset_partition_range_start": str(market_bars_key("AAPL", "2025-07-07-09:30")),
            "dagster/asset_partition_range_end": str(market_bars_key("MSFT", "2025-07-07-15:45"))}
    with instance_for_test() as instance:
        register_windows(instance, "2025-07-07", "2025-07-08")
        assert materialize([market_bars], instance=instance, tags=tags, resources=resources).success
        before = store.read_bars(include_rejected=True)  # staged: no checks in this run
        assert len(before) == 2 * 26 and set(before["source"]) == {"polygon"}
        assert len(polygon.seen) == 2  # one request per symbol for the whole session

        polygon.responder = lambda seen: (500, {}, {"status": "ERROR", "error": "upstream down"})
        failed = materialize([market_bars], instance=instance, tags=tags, resources=resources, raise_on_error=False)
        assert not failed.success
        failure = failed.get_step_failure_events()[0].event_specific_data.error.to_string()
        assert "Polygon request for AAPL bars" in failure and "HTTP 500" in failure
        assert KEY not in failure
        pd.testing.assert_frame_equal(store.read_bars(include_rejected=True), before)
