"""``ReadSnapshot``: what the REST service reads the pipeline's tables through, without ever holding up Dagster.

DuckDB lets one process write a file or any number of processes read it, never both: a service that kept the
pipeline's file open (or opened it per request) would make Dagster's writers wait, and a writer would make the
service wait. So on the DuckDB backend the service never queries the pipeline's file. It serves a private copy:

- On every read (and every ``api.snapshot_poll_seconds`` from a background thread, once ``start()`` is called) it
  compares the file's identity (inode, size, modification and change times, the same of its ``.wal``) with the
  copy's: two ``stat`` calls, microseconds.
- Only when it changed does it take DuckDB's own shared lock on the file (the POSIX ``fcntl`` read lock a read-only
  DuckDB connection takes) without waiting: if a writer holds the file, it keeps serving the previous copy and
  tries again ``busy_retry_seconds`` later. Holding the lock, it copies the file (and any ``.wal``) byte for byte
  (``copy_file_range``: a reflink where the filesystem offers one) into a private folder, re-checks the identity
  (a change means a torn copy, thrown away) and lets go. A writer is held up for the copy only (about 1 ms per
  MB from the page cache; DuckDB writers retry on their own), at most once per change, and copies that take
  longer than 10 ms are spaced out so that the service holds the file at most 10 % of the time.
- The copy is opened read-only and swapped in atomically; reads in flight finish on the copy they started with,
  which is closed and deleted after the last of them. Answers are cached per copy (``cache.*`` settings: at most
  ``max_size_mb``, ``ttl_minutes`` old, dropped with the copy they were read from). ``cache.enable_data_cache: false``
  turns the cache off; ``cache.enable_prediction_cache: false`` keeps reads of ``predictions`` out of it (every
  forecast answer is read from the copy). Each read tells the request's ``CacheTally`` (``CACHE_TALLY``, a context
  variable the service sets per request) whether the cache answered it.

Freshness: an answer reflects every write committed before the request, unless a writer held the file at that
moment or the served copy is younger than ``api.snapshot_min_copy_seconds`` (0.5 s: requests bring in at most one
copy per interval, so a writer committing many times a second costs one copy and one cold cache per interval, not
per commit); then it reflects the state of the served copy, and the next read after the writer lets go and the
interval has passed (or the poll thread within ``snapshot_poll_seconds``) serves the new state. Answers built from
the copy (``derived``) are built once: concurrent requests for the same answer wait for the first.
``freshness_bound_seconds`` (poll interval + 1.5 s + 10 x the longest copy's lock hold) is the stated bound on how
much older than the last completed materialization an answer may be.
``as_of`` is the last moment the served copy was known to equal the file. Memory: DuckDB's buffer pool over the
copy is capped at ``cache.max_size_mb`` and so is the answer cache; the copy itself costs disk (the file's size),
and each change costs one copy (time proportional to the file's size: the price of never blocking a writer for
longer than that). The copies go beside the DuckDB file (a hidden folder) or, if that folder is read-only, in the
system temp folder. On the PostgreSQL backend there is no single-writer rule: reads go straight to the database.

Caveat: POSIX locks belong to the process, so an in-process DuckDB writer (a test writing the file from the
service's own process) neither blocks the copy nor is blocked by it; a torn copy is still detected by the identity
re-check. Production writers are Dagster run processes.
"""

from __future__ import annotations

import contextvars
import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.settings import Settings, get_settings
from lstm_pipeline.storage.migrations import check_not_newer, existing_columns, stored_version
from lstm_pipeline.storage.rows import empty_frame
from lstm_pipeline.storage.tables import TABLES, Table

LOGGER = logging.getLogger("serving.snapshot")

Identity = tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int] | None]
"""(inode, size, mtime_ns, ctime_ns) of the DuckDB file and of its ``.wal``; None where missing."""

_COPY_DUTY_FACTOR = 9
"""After a copy that held the file for t seconds, the next copy waits 9 t: writers get the file >= 90 % of the time."""
_NEGLIGIBLE_HOLD_SECONDS = 0.01
"""Copies that held the file for less than this (files of up to ~10 MB) are not spaced out."""
_SETTLE_SECONDS = 0.1
"""A file whose modification time is younger than this when copied is copied again on the next check: a write in
the same clock tick could leave its ``stat`` unchanged."""


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _identity(path: Path) -> Identity:
    return (_stat(path), _stat(_wal(path)))


def _to_utc(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        stamp = value.tz_localize(NEW_YORK) if value.tz is None else value
        return stamp.tz_convert("UTC").floor("us").to_pydatetime()
    return value


@dataclass
class CacheTally:
    """How one request's reads were answered: ``hits`` from the answer cache, ``misses`` read from the copy (reads
    the cache does not keep count as neither)."""

    hits: int = 0
    misses: int = 0

    @property
    def outcome(self) -> str | None:
        """``"hit"`` when the cache answered every cacheable read, ``"miss"`` when one was read from the copy, None
        when the request made no cacheable read."""
        if self.misses:
            return "miss"
        return "hit" if self.hits else None


CACHE_TALLY: contextvars.ContextVar[CacheTally | None] = contextvars.ContextVar("serving_cache_tally", default=None)
"""The current request's tally (set by the service's recording middleware; None outside a request)."""


def _tally(hit: bool) -> None:
    tally = CACHE_TALLY.get()
    if tally is not None:
        if hit:
            tally.hits += 1
        else:
            tally.misses += 1


MISSING = object()
"""What ``ReadSnapshot.lookup`` returns when the answer is not cached."""


class _Busy(Exception):
    """A writer holds the pipeline's file (or it changed while being copied): keep the previous copy."""


@dataclass
class _Generation:
    """One copy of the file, opened read-only, with the number of reads using it."""

    number: int
    identity: Identity
    folder: Path | None
    connection: duckdb.DuckDBPyConnection | None
    columns: dict[str, list[str]] = field(default_factory=dict)
    copied_at: float = 0.0
    readers: int = 0
    retired: bool = False

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class ReadSnapshot:
    """The pipeline's tables as the REST service reads them (see the module docstring for the design)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        poll_seconds: float | None = None,
        busy_retry_seconds: float = 0.02,
        min_copy_seconds: float | None = None,
        snapshot_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or get_settings()
        self.poll_seconds = float(
            poll_seconds if poll_seconds is not None else getattr(self.settings.api, "snapshot_poll_seconds", 0.5)
        )
        self.busy_retry_seconds = busy_retry_seconds
        self.min_copy_seconds = float(
            min_copy_seconds if min_copy_seconds is not None
            else getattr(self.settings.api, "snapshot_min_copy_seconds", 0.5)
        )
        self.clock = clock
        self._direct = self._direct_database(self.settings)
        self.path = Path(self.settings.db_path).expanduser()
        self._snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self._folder: Path | None = None
        self._lock = threading.Lock()  # guards _current, generation counters and readers
        self._refreshing = threading.Lock()  # one copy at a time; others keep serving
        self._current = _Generation(0, (None, None), None, None)
        self._verified_at: float | None = None
        self._busy_until = 0.0  # a writer held the file: per-request reads wait this long before trying again
        self._spaced_until = 0.0  # after a long copy or an error: no copy at all before this
        self._recheck = True
        self._problem: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.copy_seconds_last: float | None = None
        self.lock_hold_seconds_last: float | None = None
        self.lock_hold_seconds_max = 0.0
        self.copies = 0
        cache = self.settings.cache
        self._cache: OrderedDict[Any, tuple[pd.DataFrame, int, float]] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit_bytes = int(cache.max_size_mb * 1e6) if cache.enable_data_cache else 0
        self._building: dict[Any, threading.Lock] = {}  # derived answers being computed, one lock each
        self._copied_at = -float("inf")  # when the served copy was made (clock time); None-file generations excluded
        self._cache_ttl_seconds = cache.ttl_minutes * 60.0
        self._uncached_tables = frozenset() if cache.enable_prediction_cache else frozenset({"predictions"})
        self.cache_hits = 0
        if self._direct is None:
            self.refresh()

    # ------------------------------------------------------------------------------------------------ public

    @property
    def backend(self) -> str:
        return "duckdb" if self._direct is None else "postgres"

    @property
    def freshness_bound_seconds(self) -> float:
        """How much older than the newest committed write an answer may be, writers permitting (see module doc)."""
        if self._direct is not None:
            return 0.0
        return self.poll_seconds + 1.5 + (_COPY_DUTY_FACTOR + 1) * self.lock_hold_seconds_max

    @property
    def as_of(self) -> pd.Timestamp | None:
        """When the data served was last known to equal the store (None before the first successful look)."""
        if self._direct is not None:
            return pd.Timestamp(self.clock(), unit="s", tz="UTC")
        verified = self._verified_at
        return None if verified is None else pd.Timestamp(verified, unit="s", tz="UTC")

    @property
    def generation(self) -> int:
        """Increases with every new copy served: a cache keyed on it drops answers as soon as new data lands."""
        return self._current.number

    def read_rows(self, table: str, where: Sequence[str] = (), params: Sequence[object] = ()) -> pd.DataFrame:
        """Rows of the registered ``table`` matching every clause of ``where`` (``?`` placeholders), ordered by its
        key, timestamps in New York time: the storage layer's ``read_rows`` contract."""
        if table not in TABLES:
            raise ValueError(f"Unknown table {table!r}; the registered tables are {sorted(TABLES)}.")
        if self._direct is not None:
            return self._direct.read_rows(table, list(where), list(params))
        self.refresh(blocking=False)
        generation = self._acquire()
        try:
            values = [_to_utc(p) for p in params]
            key = self._cache_key(generation, table, where, values)
            cached = self._cached(key)
            if key is not None:
                _tally(cached is not None)
            if cached is not None:
                return cached
            frame = self._query(generation, TABLES[table], where, values)
            self._store(key, frame)
            return frame.copy()
        finally:
            self._release(generation)

    def lookup(self, name: str, args: tuple[Any, ...], tables: Sequence[str] = ()) -> Any:
        """A cached ``derived`` answer of the copy served now, or ``MISSING``: no I/O, no refresh (the poll thread
        and the next miss bring a new copy in), so it is safe on the event loop."""
        found = self._fresh_entry(self._derived_key(name, args, tables))
        if found is not MISSING:
            _tally(True)
        return found

    def derived(self, name: str, args: tuple[Any, ...], compute: Callable[[], Any],
                tables: Sequence[str] = ()) -> Any:
        """``compute()`` (an answer built from ``read_rows``: a sorted page source, a forecast path, a response
        body), cached like a read: per copy, at most ``cache.ttl_minutes`` old, dropped as soon as a newer copy is
        swapped in, within ``cache.max_size_mb``, never when the cache is off or one of ``tables`` is kept out of
        it. Callers must not modify what it returns (it is shared). On PostgreSQL there is no copy to key on:
        computed every time."""
        if self._direct is not None:
            return compute()
        self.refresh(blocking=False)
        key = self._derived_key(name, args, tables)
        if key is None:
            return compute()
        # One computation per answer: requests arriving while it is built wait for it instead of each building it
        # (after every new copy, a burst of requests would otherwise compete for the CPU with the same work).
        with self._lock:
            gate = self._building.setdefault(key, threading.Lock())
        try:
            with gate:
                found = self._fresh_entry(key)
                if found is not MISSING:
                    _tally(True)
                    return found
                _tally(False)
                value = compute()
                self._store(key, value)
                return value
        finally:
            with self._lock:
                if self._building.get(key) is gate and not gate.locked():
                    del self._building[key]

    def _derived_key(self, name: str, args: tuple[Any, ...], tables: Sequence[str]) -> Any:
        if self._direct is not None:
            return None
        generation = self._current
        if (not self._cache_limit_bytes or generation.connection is None
                or any(table in self._uncached_tables for table in tables)):
            return None
        return (generation.number, "derived", name, args)

    def health(self) -> tuple[bool, str]:
        """Whether the store is readable, in one sentence."""
        if self._direct is not None:
            try:
                self._direct.read_rows("schema_version")
            except Exception as error:  # noqa: BLE001 - reported, not raised
                return False, f"The PostgreSQL store cannot be read: {error}"
            return True, "The PostgreSQL store is readable."
        self.refresh(blocking=False)
        if self._problem is not None:
            return False, self._problem
        if self._current.connection is None:
            if self.path.exists():
                return False, f"The DuckDB file {self.path} has not been read yet (a writer holds it); retrying."
            return True, f"The DuckDB file {self.path} does not exist yet (nothing materialized); reads are empty."
        age = self.clock() - (self._verified_at or self.clock())
        return True, f"Serving a copy of {self.path} checked {age:.1f} s ago (generation {self.generation})."

    def start(self) -> ReadSnapshot:
        """Keep the copy fresh from a background thread as well (the app's lifespan calls this)."""
        if self._direct is None and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._poll, name="read-snapshot", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and delete the copies."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            current, self._current = self._current, _Generation(self._current.number, (None, None), None, None)
            current.retired = True
            if current.readers == 0:
                current.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> ReadSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self, blocking: bool = True) -> bool:
        """Copy the file if it changed and no writer holds it; True if a new copy is now served.

        ``blocking=False`` (each request) returns at once when another thread is already refreshing, and tries a
        file a writer held only ``busy_retry_seconds`` after the last try; a blocking call (the poll thread, an
        explicit refresh) tries at once. Both respect the spacing after a long copy or an error.
        """
        if self._direct is not None:
            return False
        if not self._refreshing.acquire(blocking=blocking):
            return False
        try:
            now = self.clock()
            identity = _identity(self.path)
            if identity == self._current.identity and not self._recheck:
                self._verified_at = now
                return False
            if now < self._spaced_until or (not blocking and now < self._busy_until):
                return False
            if not blocking and now - self._copied_at < self.min_copy_seconds:
                return False  # requests bring in one copy per min_copy_seconds; the poll thread catches up
            try:
                fresh = self._copy(identity)
            except _Busy:
                self._busy_until = now + self.busy_retry_seconds
                return False
            except Exception as error:  # noqa: BLE001 - served as health, the previous copy stays
                self._problem = str(error) if str(error).endswith(".") else f"{error}."
                self._spaced_until = now + max(self.poll_seconds, 1.0)
                LOGGER.warning(self._problem)
                return False
            self._problem = None
            self._swap(fresh)
            if fresh.connection is not None:
                self._copied_at = now
            # Hold the writers' file at most 1/(factor+1) of the time, however big the file: the next copy waits.
            hold = self.lock_hold_seconds_last or 0.0
            if hold > _NEGLIGIBLE_HOLD_SECONDS:
                self._spaced_until = now + _COPY_DUTY_FACTOR * hold
            return True
        finally:
            self._refreshing.release()

    # ---------------------------------------------------------------------------------------------- internals

    def _cache_key(self, generation: _Generation, table: str, where: Sequence[str], params: list[object]) -> Any:
        if not self._cache_limit_bytes or generation.connection is None or table in self._uncached_tables:
            return None
        key = (generation.number, table, tuple(where), tuple(params))
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def _cached(self, key: Any) -> pd.DataFrame | None:
        frame = self._fresh_entry(key)
        return None if frame is MISSING else frame.copy()

    def _fresh_entry(self, key: Any) -> Any:
        """The cached value under ``key`` unless it is older than the TTL (then dropped), or ``MISSING``."""
        if key is None:
            return MISSING
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return MISSING
            value, _, stored_at = entry
            if self.clock() - stored_at > self._cache_ttl_seconds:
                self._drop(key)
                return MISSING
            self._cache.move_to_end(key)
            self.cache_hits += 1
        return value

    def _store(self, key: Any, frame: Any) -> None:
        if key is None:
            return
        size = _size_of(frame)
        if size > self._cache_limit_bytes // 8:
            return
        with self._lock:
            if key[0] != self._current.number:
                return  # a newer copy landed while this was read: do not keep an answer about the older one
            if key in self._cache:
                self._drop(key)
            self._cache[key] = (frame, size, self.clock())
            self._cache_bytes += size
            while self._cache_bytes > self._cache_limit_bytes and self._cache:
                self._drop(next(iter(self._cache)))

    def _drop(self, key: Any) -> None:
        _, size, _ = self._cache.pop(key)
        self._cache_bytes -= size

    @staticmethod
    def _direct_database(settings: Settings) -> Any:
        storage = getattr(settings, "storage", None)
        if storage is None or getattr(storage, "backend", "duckdb") != "postgres":
            return None
        from lstm_pipeline.storage import database_for  # type: ignore[attr-defined]

        return database_for(settings)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            now = self.clock()
            busy = now < self._busy_until and now >= self._spaced_until
            self._stop.wait(self.busy_retry_seconds if busy else self.poll_seconds)

    def _copy_folder(self) -> Path:
        if self._folder is None:
            base = self._snapshot_dir
            if base is None:
                beside = self.path.parent
                base = beside if os.access(beside, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())
            base.mkdir(parents=True, exist_ok=True)
            prefix = f".{self.path.name}.read-snapshot-"
            _remove_orphans(base, prefix)
            self._folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))
        return self._folder

    def _copy(self, seen: Identity) -> _Generation:
        """A new generation copied from the file under DuckDB's shared lock (raises _Busy if a writer holds it)."""
        number = self._current.number + 1
        if seen[0] is None:
            self._recheck = False
            return _Generation(number, seen, None, None, copied_at=self.clock())
        started = time.perf_counter()
        try:
            source = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise _Busy from None
        folder = self._copy_folder() / f"g{number}"
        locked_at: float | None = None
        try:
            try:
                fcntl.lockf(source, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                raise _Busy from None
            locked_at = time.perf_counter()
            identity = _identity(self.path)
            stamp = self.clock()
            folder.mkdir()
            target = folder / self.path.name
            _copy_bytes(source, target)
            if identity[1] is not None:
                try:
                    shutil.copyfile(_wal(self.path), _wal(target))
                except FileNotFoundError:
                    pass
            if _identity(self.path) != identity:
                raise _Busy
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            os.close(source)  # releases the shared lock
            if locked_at is not None:
                self.lock_hold_seconds_last = time.perf_counter() - locked_at
                self.lock_hold_seconds_max = max(self.lock_hold_seconds_max, self.lock_hold_seconds_last)
        try:
            connection = duckdb.connect(
                str(target),
                read_only=True,
                config={"memory_limit": f"{int(self.settings.cache.max_size_mb)}MB", "threads": 1},
            )
            connection.execute("SET TimeZone = 'UTC'")
            check_not_newer(stored_version(connection), str(self.path))
            columns = {name: existing_columns(connection, name) for name in TABLES}
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.copy_seconds_last = time.perf_counter() - started
        self.copies += 1
        mtime = identity[0][2] / 1e9 if identity[0] is not None else 0.0
        self._recheck = time.time() - mtime < _SETTLE_SECONDS
        return _Generation(number, identity, folder, connection, columns, copied_at=stamp)

    def _swap(self, fresh: _Generation) -> None:
        with self._lock:
            old, self._current = self._current, fresh
            self._verified_at = fresh.copied_at
            self._cache.clear()  # every cached answer was about the older copy
            self._cache_bytes = 0
            old.retired = True
            idle = old.readers == 0
        if idle:
            old.close()

    def _acquire(self) -> _Generation:
        with self._lock:
            generation = self._current
            generation.readers += 1
            return generation

    def _release(self, generation: _Generation) -> None:
        with self._lock:
            generation.readers -= 1
            idle = generation.retired and generation.readers == 0
        if idle:
            generation.close()

    @staticmethod
    def _query(generation: _Generation, table: Table, where: Sequence[str], params: list[object]) -> pd.DataFrame:
        present = generation.columns.get(table.name) or []
        if generation.connection is None or not present:
            return empty_frame(table)
        projection = []
        for column in table.columns:
            if column.name in present:
                projection.append(column.name)
                continue
            earlier = next((name for name in column.renamed_from if name in present), None)
            source = earlier if earlier is not None else f"CAST(NULL AS {column.sql_type})"
            projection.append(f"{source} AS {column.name}")
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        if projection == table.column_names:  # the current layout: no aliasing subquery needed (half the cost)
            source = f"SELECT {', '.join(projection)} FROM {table.name} AS t"
        else:
            source = f"SELECT * FROM (SELECT {', '.join(projection)} FROM {table.name}) AS t"
        sql = f"{source} {condition} ORDER BY {', '.join(table.key)}"
        cursor = generation.connection.cursor()
        try:
            frame = cursor.execute(sql, params).df()
        finally:
            cursor.close()
        if frame.empty:
            return empty_frame(table)
        for column in table.columns:
            values = frame[column.name]
            if column.sql_type == "TIMESTAMPTZ":
                values = pd.to_datetime(values, utc=True).dt.tz_convert(NEW_YORK)
            if str(values.dtype) != column.pandas_dtype:
                values = values.astype(column.pandas_dtype)
            if values is not frame[column.name]:
                frame[column.name] = values
        return frame


def _size_of(value: Any) -> int:
    """Bytes a cached answer holds (frames measured deeply; a tuple or list by its parts)."""
    if isinstance(value, pd.DataFrame):
        return int(value.memory_usage(index=True, deep=True).sum())
    if isinstance(value, bytes | str):
        return 64 + len(value)
    if isinstance(value, tuple | list):
        return 64 + sum(_size_of(part) for part in value)
    if isinstance(value, dict):
        return 64 + sum(_size_of(part) for part in value.values()) + 64 * len(value)
    return 64


def _remove_orphans(base: Path, prefix: str) -> None:
    """Delete copy folders left by service processes that died without closing (their PID is in the name)."""
    for folder in base.glob(f"{prefix}*"):
        pid_text = folder.name.removeprefix(prefix).split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def _copy_bytes(source: int, target: Path) -> None:
    """Copy the open file ``source`` to ``target`` without closing ``source`` (closing any descriptor of a file
    drops this process's POSIX locks on it) — by reflink/``copy_file_range`` where the filesystem offers it."""
    size = os.fstat(source).st_size
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        offset = 0
        try:
            while offset < size:
                copied = os.copy_file_range(source, out, size - offset, offset, offset)
                if copied == 0:
                    break
                offset += copied
        except OSError:
            offset = 0
            os.lseek(out, 0, os.SEEK_SET)
            os.ftruncate(out, 0)
        while offset < size:
            chunk = os.pread(source, min(8 << 20, size - offset), offset)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
            offset += len(chunk)
    finally:
        os.close(out)
