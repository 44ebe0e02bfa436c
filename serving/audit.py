"""The audit trail: one JSON line per changing or refused request, beside the Dagster instance.

Append-only (a line is written whole under a lock, then flushed to the OS), rotated by size
(``api_audit.jsonl`` -> ``.1`` -> ... -> ``.N``, the oldest dropped), and read back newest first by ``GET /audit``.
It lives outside the pipeline's database so recording never waits on, or blocks, a Dagster run. An entry holds a
key id and role, never a key.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

AUDIT_FILE_NAME = "api_audit.jsonl"
ACCESS_FILE_NAME = "api_access.jsonl"
"""One line per request (time, method, path, endpoint, status, duration_ms, key_id): monitoring reads it."""
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFUSED_STATUSES = frozenset({401, 403, 429})


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
            full = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"), "id": uuid.uuid4().hex,
                    **entry}
            line = (json.dumps(full, default=str, separators=(",", ":")) + "\n").encode()
            if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
                self._rotate()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        return full

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

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry, newest first (a torn last line, from a crash mid-write, is skipped)."""
        for path in self.files():
            with self._lock:
                lines = path.read_bytes().splitlines()
            for raw in reversed(lines):
                try:
                    yield json.loads(raw)
                except ValueError:
                    continue
