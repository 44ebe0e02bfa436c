"""Polygon.io 15-minute aggregates through the official ``polygon.RESTClient``, made safe for scheduled runs.

The library builds the URLs, sends the key, follows ``next_url`` pagination and parses the aggregates; this
module adds what a pipeline needs around it and the library lacks:

* one request per symbol and contiguous range (never one per window), every page counted against a rate cap,
  because the free tier allows 5 requests a minute and a burst is answered with HTTP 429;
* its own bounded retries (exponential backoff with full jitter, ``Retry-After`` honoured) instead of
  urllib3's silent ones, so each retry is logged with its wait and the number of attempts is deterministic;
  besides the number of retries, the total time one fetch may spend retrying is bounded (``fetch_max_s``), so an
  unreachable host or a server that never answers ends the run within that bound, saying how long it tried;
* a real timeout on every request: ``RESTClient`` stores ``connect_timeout``/``read_timeout`` but never passes
  them to urllib3, so a stalled connection would otherwise hang the run;
* all-or-nothing ranges: a page that fails after its retries fails the whole range, because the library's
  paginator would otherwise stop silently (and return what it had) on an unreadable page;
* only delayed-feed data that exists (windows closed at least 15 minutes ago), only regular-session windows,
  nothing invented for a window Polygon has no bar for;
* the API key never in a message, a log record or a repr: it travels only in the ``Authorization`` header,
  and only over https (plain http only to a loopback host, for tests).

It deliberately imports no Dagster, so it can be used and tested as plain Python.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd
import urllib3
from polygon import RESTClient
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from lstm_pipeline.market.bars import MarketDataError, conform_bars, empty_bars
from lstm_pipeline.market.calendar import NEW_YORK, WINDOW, WINDOW_MINUTES, closed_windows, to_new_york
from lstm_pipeline.settings import polygon_url_problem

logger = logging.getLogger("lstm_pipeline.market.polygon")

DEFAULT_BASE_URL = "https://api.polygon.io"
AGGS_LIMIT = 50000
"""Polygon's maximum page size for aggregates; fewer pages means fewer requests against the rate cap."""

_RETRYABLE_STATUSES = frozenset({429}) | frozenset(range(500, 600))
_KEY_REJECTED_STATUSES = frozenset({401, 403})
_TICKER_PATTERN = re.compile(r"[A-Za-z0-9.:\-]+")
_API_KEY_PARAM = re.compile(r"(?i)(apikey=)[^&\s\"']+")
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_REDACTED = "REDACTED"


# --- internal signals from the transport to fetch_bars (never shown to users as they are) -------------------


class _TransportError(Exception):
    """Raised inside the RESTClient's paginator by the transport; ``fetch_bars`` turns it into a clear error."""


class _KeyRejected(_TransportError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status)
        self.status = status
        self.detail = detail


class _NotFound(_TransportError):
    pass


class _Refused(_TransportError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status)
        self.status = status
        self.detail = detail


class _GaveUp(_TransportError):
    def __init__(self, attempts: int, last_failure: str, retried_s: float, out_of_time: bool) -> None:
        super().__init__(attempts)
        self.attempts = attempts
        self.last_failure = last_failure
        self.retried_s = retried_s
        self.out_of_time = out_of_time


@dataclass
class _FetchContext:
    symbol: str
    label: str
    page: int = 0
    retried_s: float = 0.0
    """Time this fetch has spent on failed attempts and the waits after them, against ``fetch_max_s``."""


class _RequestSpacer:
    """Starts requests at least ``60 / requests_per_minute`` seconds apart.

    Even spacing (rather than a bucket that allows a burst) guarantees that no more than ``requests_per_minute``
    requests start in any 60-second span, whichever way the provider counts its minute.
    """

    def __init__(self, requests_per_minute: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.interval_s = 60.0 / requests_per_minute
        self._clock = clock
        self._sleep = sleep
        self._next_start: float | None = None
        self._lock = threading.Lock()

    def next_start(self) -> float | None:
        """The earliest instant the next request may start (None before the first one)."""
        return self._next_start

    def acquire(self) -> float:
        """Block (via the injected sleep) until the next request may start; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            waited = 0.0
            if self._next_start is not None and now < self._next_start:
                waited = self._next_start - now
                self._sleep(waited)
                now = max(self._clock(), self._next_start)
            self._next_start = now + self.interval_s
            return waited


def _strip_api_key_param(url: str) -> str:
    """The URL without an ``apiKey`` query parameter: the key already travels in the Authorization header.

    Keeping it out of URLs keeps it out of urllib3's debug log, proxies' access logs and our own messages.
    """
    parts = urlsplit(url)
    if not parts.query or "apikey" not in parts.query.lower():
        return url
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "apikey"]
    return urlunsplit(parts._replace(query=urlencode(kept)))


class _GuardedTransport:
    """Stands in for the ``urllib3.PoolManager`` inside ``RESTClient``.

    The library's paginator calls ``request`` once per page (the first page and every ``next_url``), so this is
    the one place where every HTTP request can be rate-capped, timed out, retried and logged without reimplementing
    the library's URL building, auth or pagination.
    """

    def __init__(self, pool: urllib3.PoolManager, owner: PolygonBarsClient) -> None:
        self._pool = pool
        self._owner = owner
        self._local = threading.local()  # per-thread fetch context, so concurrent fetches log their own pages
        self._count_lock = threading.Lock()
        self.requests_sent = 0

    @property
    def context(self) -> _FetchContext | None:
        return getattr(self._local, "context", None)

    @context.setter
    def context(self, value: _FetchContext | None) -> None:
        self._local.context = value

    def request(
        self, method: str, url: str, fields: Any = None, headers: Any = None, **kwargs: Any
    ) -> urllib3.BaseHTTPResponse:
        owner = self._owner
        url = _strip_api_key_param(url)
        context = self.context or _FetchContext(symbol="?", label="?")
        context.page += 1
        attempts = owner.max_retries + 1
        failed_at: float | None = None  # when the previous (failed) attempt of this page started
        for attempt in range(1, attempts + 1):
            owner._spacer.acquire()
            started = owner._clock()
            if failed_at is not None:
                context.retried_s += started - failed_at
            # No attempt may outlast what is left of the fetch's retry budget, so a silent server cannot hold it.
            budget_s = max(owner.fetch_max_s - context.retried_s, 0.001)
            timeout = urllib3.Timeout(connect=min(owner.timeout_s, budget_s), read=min(owner.timeout_s, budget_s))
            with self._count_lock:
                self.requests_sent += 1
            logger.info(
                "Polygon aggregates request: %s %s page %d (attempt %d of %d) %s",
                context.symbol, context.label, context.page, attempt, attempts, owner._scrub(urlsplit(url).path),
            )
            retry_after: float | None = None
            try:
                response = self._pool.request(
                    method, url, fields=fields, headers=headers, retries=False, redirect=False,
                    timeout=timeout, **kwargs,
                )
            except (Urllib3TimeoutError, ProtocolError) as exc:
                # NewConnectionError (connection refused, unknown host) is a ConnectTimeoutError in urllib3
                failure = f"{type(exc).__name__} (no HTTP status)"
            else:
                status = response.status
                if status == 200:
                    try:
                        body = json.loads(response.data.decode("utf-8"))
                    except (ValueError, UnicodeDecodeError):
                        failure = "HTTP 200 with an unreadable JSON body"
                    else:
                        body = body if isinstance(body, dict) else {}
                        logger.debug(
                            "Polygon answered %s %s page %d: %s result(s)%s",
                            context.symbol, context.label, context.page, len(body.get("results") or []),
                            ", more pages follow" if body.get("next_url") else "",
                        )
                        return response
                elif status in _KEY_REJECTED_STATUSES:
                    raise _KeyRejected(status, owner._error_detail(response))
                elif status == 404:
                    raise _NotFound(status)
                elif status in _RETRYABLE_STATUSES:
                    failure = f"HTTP {status}"
                    retry_after = owner._retry_after_s(response.headers.get("Retry-After"))
                else:
                    raise _Refused(status, owner._error_detail(response))
            now = owner._clock()
            if attempt == attempts:
                raise _GaveUp(attempt, failure, context.retried_s + now - started, out_of_time=False)
            wait = owner._backoff_s(attempt, retry_after)
            next_start = owner._spacer.next_start() or now
            resume = max(now + wait, next_start)
            if context.retried_s + resume - started > owner.fetch_max_s:
                raise _GaveUp(attempt, failure, context.retried_s + now - started, out_of_time=True)
            failed_at = started
            logger.warning(
                "Polygon request for %s %s page %d failed with %s; retry %d of %d in %.2f s%s",
                context.symbol, context.label, context.page, failure, attempt, owner.max_retries, wait,
                " (Retry-After)" if retry_after is not None else "",
            )
            owner._sleep(wait)
        raise AssertionError("unreachable")  # the loop either returns or raises


class PolygonBarsClient:
    """Fetches regular-session 15-minute bars for one symbol and range from Polygon, politely and safely.

    One instance should serve a whole run (all symbols), so its rate cap spans every request the run makes.
    ``sleep``, ``clock``, ``now`` and ``rng`` are injectable so tests run without waiting or the wall clock.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        requests_per_minute: float = 5.0,
        max_retries: int = 5,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 30.0,
        fetch_max_s: float = 30.0,
        delay: timedelta = timedelta(minutes=15),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], pd.Timestamp] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        key = (api_key or "").strip()
        if not key:
            raise MarketDataError(
                "POLYGON_API_KEY is not set; export it with your key from https://polygon.io/dashboard/api-keys "
                "or choose the simulated market source."
            )
        if not requests_per_minute > 0:
            raise ValueError(
                f"requests_per_minute must be positive, got {requests_per_minute}; use 5 for the free tier."
            )
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}.")
        if not (backoff_initial_s >= 0 and backoff_max_s >= 0 and timeout_s > 0):
            raise ValueError("backoff_initial_s and backoff_max_s must be 0 or more and timeout_s positive.")
        if not (math.isfinite(fetch_max_s) and fetch_max_s > 0):
            raise ValueError(f"fetch_max_s must be a positive number of seconds, got {fetch_max_s}.")
        url_problem = polygon_url_problem(base_url)
        if url_problem:  # a second line of defence behind the settings check: the key goes in every request
            raise MarketDataError(f"The Polygon base URL is refused: {url_problem}; fix market_data.polygon_base_url.")
        self._api_key = key
        self.base_url = base_url.rstrip("/")
        self.requests_per_minute = float(requests_per_minute)
        self.max_retries = int(max_retries)
        self.backoff_initial_s = float(backoff_initial_s)
        self.backoff_max_s = float(backoff_max_s)
        self.timeout_s = float(timeout_s)
        self.fetch_max_s = float(fetch_max_s)
        self.delay = delay
        self._sleep = sleep
        self._clock = clock
        self._now = now if now is not None else (lambda: pd.Timestamp.now(tz=NEW_YORK))
        self._rng = rng if rng is not None else random.Random()
        self._spacer = _RequestSpacer(self.requests_per_minute, clock, sleep)
        # retries=0 turns off the library's urllib3 retries (it would otherwise retry 429/5xx itself, sleeping in
        # real time and invisibly); the transport below also passes retries=False on every request.
        self._rest = RESTClient(
            api_key=key,
            base=self.base_url,
            retries=0,
            connect_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            num_pools=1,
            pagination=True,
            verbose=False,
            trace=False,  # trace logs full URLs (query strings included); never turn it on
        )
        self._transport = _GuardedTransport(self._rest.client, self)
        self._rest.client = self._transport

    def __repr__(self) -> str:
        return (
            f"PolygonBarsClient(base_url={self.base_url!r}, requests_per_minute={self.requests_per_minute}, "
            f"max_retries={self.max_retries}, api_key=<redacted>)"
        )

    @property
    def requests_sent(self) -> int:
        """HTTP requests started so far (pages and retries included), for run metadata."""
        return self._transport.requests_sent

    def fetch_bars(self, symbol: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Bars of ``symbol`` for the session windows with ``start <= window_start < end`` that Polygon has.

        Only windows that closed at least ``delay`` ago are asked for (delayed feeds have nothing newer), in one
        ``list_aggs`` call over the whole range whose pages are all followed; pre- and post-market bars are
        dropped and a window Polygon has no bar for is simply absent. Either the whole range comes back or
        ``MarketDataError`` is raised.
        """
        if not isinstance(symbol, str) or not _TICKER_PATTERN.fullmatch(symbol):
            raise ValueError(f"Symbol {symbol!r} is not a Polygon ticker; use letters, digits, '.', ':' or '-'.")
        lo, hi = to_new_york(start), to_new_york(end)
        closed = closed_windows(self._now(), lo, self.delay)
        wanted = closed[closed < hi]
        label = f"[{lo.isoformat()}, {hi.isoformat()})"
        if wanted.empty:
            logger.info("Polygon: no closed, delayed session window of %s in %s; nothing requested", symbol, label)
            return empty_bars()
        from_ms = _epoch_ms(wanted[0])
        to_ms = _epoch_ms(wanted[-1] + WINDOW) - 1  # the last wanted window, never the one after it
        self._transport.context = _FetchContext(symbol=symbol, label=label)
        try:
            aggs = list(
                self._rest.list_aggs(
                    symbol, WINDOW_MINUTES, "minute", from_ms, to_ms, adjusted=True, sort="asc", limit=AGGS_LIMIT
                )
            )
        except _NotFound:
            logger.warning("Polygon answered 404 for %s %s; check the ticker symbol, returning no bars", symbol, label)
            return empty_bars()
        except _KeyRejected as exc:
            raise MarketDataError(self._key_rejected_message(exc, symbol, label)) from None
        except _Refused as exc:
            raise MarketDataError(
                f"Polygon refused the request for {symbol} bars {label} with HTTP {exc.status}{exc.detail}; "
                "check the symbol and the range."
            ) from None
        except _GaveUp as exc:
            tries = f"{exc.attempts} attempt{'s' if exc.attempts != 1 else ''} over {exc.retried_s:.1f} s"
            limit = (
                f"retrying longer would pass market_data.fetch_max_seconds ({self.fetch_max_s:g} s)"
                if exc.out_of_time
                else f"max_retries ({self.max_retries}) ran out"
            )
            raise MarketDataError(
                f"Polygon request for {symbol} bars {label} still failed after {tries} (last: {exc.last_failure}; "
                f"{limit}); check polygon_base_url and https://status.polygon.io, or lower requests_per_minute "
                "or raise max_retries and fetch_max_seconds if it persists."
            ) from None
        finally:
            pages = self._transport.context.page if self._transport.context else 0
            self._transport.context = None
        return self._to_bars(symbol, label, aggs, wanted, pages)

    # --- helpers -------------------------------------------------------------------------------------------

    def _to_bars(self, symbol: str, label: str, aggs: list[Any], wanted: pd.DatetimeIndex, pages: int) -> pd.DataFrame:
        """Map Polygon aggregates to the bar schema, keeping only the wanted session windows."""
        if not aggs:
            logger.warning(
                "Polygon returned no bars for %s %s (resultsCount 0); check the ticker symbol, returning no bars",
                symbol, label,
            )
            return empty_bars()
        frame = pd.DataFrame(
            {
                "timestamp": [a.timestamp for a in aggs],
                "open": [a.open for a in aggs],
                "high": [a.high for a in aggs],
                "low": [a.low for a in aggs],
                "close": [a.close for a in aggs],
                "volume": [a.volume for a in aggs],
                "vwap": [a.vwap for a in aggs],
                "trade_count": [a.transactions for a in aggs],
            }
        )
        frame = frame[frame["timestamp"].notna()].copy()
        stamps = pd.to_datetime(frame["timestamp"].astype("int64"), unit="ms", utc=True)
        frame["window_start"] = stamps.dt.tz_convert(NEW_YORK)
        kept = frame[frame["window_start"].isin(wanted)]
        duplicates = int(kept["window_start"].duplicated().sum())
        if duplicates:
            logger.warning(
                "Polygon returned %d duplicate bar(s) for %s %s; keeping the first", duplicates, symbol, label
            )
            kept = kept.drop_duplicates("window_start", keep="first")
        logger.info(
            "Polygon %s %s: kept %d of %d bar(s) over %d page(s); %d outside the regular session or the range dropped",
            symbol, label, len(kept), len(aggs), pages, len(aggs) - len(kept) - duplicates,
        )
        kept = kept.assign(symbol=symbol).drop(columns=["timestamp"])
        return conform_bars(kept, source="polygon")

    def _scrub(self, text: str) -> str:
        """``text`` with the API key (in any form the library or a URL may carry it) replaced."""
        text = text.replace(self._api_key, _REDACTED)
        text = _API_KEY_PARAM.sub(rf"\g<1>{_REDACTED}", text)
        return _BEARER.sub(rf"\g<1>{_REDACTED}", text)

    def _error_detail(self, response: urllib3.BaseHTTPResponse) -> str:
        """Polygon's own short explanation from an error body, scrubbed, as ' (…)' or ''."""
        try:
            body = json.loads(response.data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return ""
        if not isinstance(body, dict):
            return ""
        message = body.get("message") or body.get("error") or ""
        message = self._scrub(str(message)).strip().rstrip(".")[:200]
        return f" ({message})" if message else ""

    def _key_rejected_message(self, exc: _KeyRejected, symbol: str, label: str) -> str:
        if exc.status == 401:
            return (
                f"Polygon rejected the API key (HTTP 401{exc.detail}) when fetching {symbol} bars {label}; set "
                "POLYGON_API_KEY to a valid key from https://polygon.io/dashboard/api-keys."
            )
        return (
            f"Polygon refused the API key (HTTP 403{exc.detail}) for {symbol} bars {label}, so the key is wrong or "
            "its plan does not cover this data; set POLYGON_API_KEY to a key whose plan includes 15-minute stock "
            "aggregates for this period."
        )

    def _retry_after_s(self, header: str | None) -> float | None:
        """Seconds asked for by a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
        if not header:
            return None
        header = header.strip()
        try:
            seconds = float(header)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
            except (TypeError, ValueError):
                return None
            if when is None:
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (pd.Timestamp(when) - to_new_york(self._now())).total_seconds()
        if not math.isfinite(seconds):
            return None
        return max(0.0, seconds)

    def _backoff_s(self, attempt: int, retry_after: float | None) -> float:
        """Wait before retry number ``attempt``: ``Retry-After`` when given, else full-jitter exponential backoff.

        Both are capped at ``backoff_max_s`` so a bogus header cannot stall a run for hours; full jitter spreads
        retries of parallel runs so they do not hit the rate limit together again.
        """
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * (2 ** (attempt - 1)))
        return self._rng.uniform(0.0, ceiling)


def _epoch_ms(stamp: pd.Timestamp) -> int:
    return int(stamp.tz_convert("UTC").value // 1_000_000)
