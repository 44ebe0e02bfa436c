"""The audit trail and the access record: JSON lines beside the Dagster instance.

The audit trail (``api_audit.jsonl``) holds one line per changing or refused request; the access record
(``api_access.jsonl``) one line per request (what monitoring's ``api_performance`` reads). Both are append-only
(a line is written whole under a lock), rotated by size (``api_audit.jsonl`` -> ``.1`` -> ... -> ``.N``, the oldest
dropped), and live outside the pipeline's database, so recording never waits on, or blocks, a Dagster run. An
entry holds a key id and role, never a key.

The access record is written by a background thread (``BackgroundLog``): a request only puts its line on a queue,
so no request waits on the disk; the thread writes what has queued up in one go, and ``close`` (the app's
shutdown) writes everything still queued before it returns.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import logging
import os
import queue
import threading
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

AUDIT_FILE_NAME = "api_audit.jsonl"
ACCESS_FILE_NAME = "api_access.jsonl"
"""One line per request (time, method, path, endpoint, status, duration_ms, key_id, cache): monitoring reads it."""
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFUSED_STATUSES = frozenset({401, 403, 429})
LOGGER = logging.getLogger("serving.audit")


def _stamped(entry: dict[str, Any]) -> dict[str, Any]:
    return {"time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), "id": uuid.uuid4().hex, **entry}


def _line(entry: dict[str, Any]) -> bytes:
    return (json.dumps(entry, default=str, separators=(",", ":")) + "\n").encode()


class AuditLog:
    def __init__(self, path: Path, *, max_bytes: int = 10_000_000, backups: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append ``entry`` (``time`` and ``id`` added); returns what was written."""
        with self._lock:  # the time is taken under the lock, so the file is in time order
            full = _stamped(entry)
            self._append([_line(full)])
        return full

    def append_lines(self, lines: list[bytes]) -> None:
        """Append whole lines (already stamped, in time order), rotating whenever the next line would not fit."""
        with self._lock:
            self._append(lines)

    def _append(self, lines: list[bytes]) -> None:
        size = self.path.stat().st_size if self.path.exists() else 0
        chunk: list[bytes] = []
        for line in lines:
            if size and size + len(line) > self.max_bytes:
                self._write(b"".join(chunk))
                chunk, size = [], 0
                self._rotate()
            chunk.append(line)
            size += len(line)
        self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        if not data:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn last line must not swallow this entry
                data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        oldest = self._rotated(self.backups)
        oldest.unlink(missing_ok=True)
        for index in range(self.backups - 1, 0, -1):
            if self._rotated(index).exists():
                os.replace(self._rotated(index), self._rotated(index + 1))
        os.replace(self.path, self._rotated(1))

    def _rotated(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def files(self) -> list[Path]:
        """Every file of the trail, newest first."""
        paths = [self.path, *(self._rotated(i) for i in range(1, self.backups + 1))]
        return [p for p in paths if p.exists()]

    def entries(self, malformed: list[str] | None = None) -> Iterator[dict[str, Any]]:
        """Every entry, newest first.

        The files are opened together under the lock that rotation takes, so a rotation while they are read can
        neither hide nor repeat entries, and a file another process rotated away in between is skipped. A line
        that is not a JSON object (a torn last line from a crash mid-write, a hand edit) is skipped and named in
        ``malformed`` (``file:line``)."""
        handles: list[tuple[str, IO[bytes]]] = []
        with self._lock:
            for path in [self.path, *(self._rotated(i) for i in range(1, self.backups + 1))]:
                try:
                    handles.append((path.name, open(path, "rb")))  # noqa: SIM115 - closed below
                except FileNotFoundError:
                    continue
        try:
            for name, handle in handles:
                lines = handle.read().splitlines()
                for number in range(len(lines), 0, -1):
                    try:
                        entry = json.loads(lines[number - 1])
                    except ValueError:
                        entry = None
                    if isinstance(entry, dict):
                        yield entry
                    elif malformed is not None:
                        malformed.append(f"{name}:{number}")
        finally:
            for _, handle in handles:
                handle.close()


class BackgroundLog:
    """Entries stamped when they happen and written by one background thread, so the caller never waits on the
    disk; the thread writes whatever has queued up in one append. ``close`` writes what is left and stops it."""

    def __init__(self, log: AuditLog, *, max_batch: int = 2000) -> None:
        self.log = log
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def path(self) -> Path:
        return self.log.path

    def record(self, entry: dict[str, Any]) -> None:
        """Queue ``entry`` (``time`` and ``id`` added now); after ``close`` it is written at once instead."""
        line = _line(_stamped(entry))
        with self._lock:  # nothing is queued behind close's stop marker
            if not self._closed:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=f"{self.path.name}-writer", daemon=True)
                    self._thread.start()
                    reference = weakref.ref(self)
                    atexit.register(lambda: (log := reference()) is not None and log.close())
                self._queue.put(line)
                return
        self.log.append_lines([line])

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[bytes] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while len(batch) < self.max_batch:
                try:
                    line = self._queue.get_nowait()
                except queue.Empty:
                    break
                if line is None:
                    stop = True
                    continue
                batch.append(line)
            try:
                self.log.append_lines(batch)
            except OSError as error:  # the record is best effort: a full disk must not stop the service
                LOGGER.warning("The access record %s could not be written (%s).", self.path, error)
            if stop:
                return

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Write every queued entry, then stop the thread (idempotent)."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_seconds)
        leftover = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                leftover.append(line)
        if leftover:
            self.log.append_lines(leftover)
