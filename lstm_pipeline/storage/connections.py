"""Opening the DuckDB file: read-only for readers, a bounded and logged wait for another process's lock.

DuckDB lets one process write a file, or any number of processes read it read-only, never both. A connection
refused because another process holds the file is retried with backoff for at most ``lock_timeout_seconds``,
logging the wait every few seconds, then fails with one sentence naming the file, the holder's PID and what to
do. Anything else (permission denied, a folder, a file that is not a database) fails at once: waiting would not
help. This module imports no Dagster.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

LOGGER = logging.getLogger("lstm_pipeline.storage")
DEFAULT_LOCK_TIMEOUT_SECONDS = 30.0
LOG_WAIT_EVERY_SECONDS = 5.0
_MAX_RETRY_DELAY_SECONDS = 1.0
_LOCK_PID = re.compile(r"\(PID (\d+)\)")


class StorageError(RuntimeError):
    """The DuckDB file cannot be used; the message names the file and the fix."""


class DatabaseLockedError(StorageError):
    """Another process held the DuckDB file for longer than the lock timeout."""


class DatabaseAccessError(StorageError):
    """The DuckDB file cannot be opened or created at all (permissions, a folder in the way, not a database)."""


def is_memory(path: str | os.PathLike[str]) -> bool:
    return str(path) == ":memory:"


def lock_holder_pid(message: str) -> int | None:
    """The PID DuckDB names in a "Conflicting lock is held in ... (PID 1234)" message, if any."""
    match = _LOCK_PID.search(message)
    return int(match.group(1)) if match else None


def _is_lock_conflict(message: str) -> bool:
    return "Could not set lock" in message or "Conflicting lock" in message


def writable_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a writer could not create or write the DuckDB file at ``path`` (one sentence), or None if it can.

    Checked without opening the file, so that it can run when the code location loads even while a run holds
    the file's lock.
    """
    if is_memory(path):
        return None
    target = Path(path).expanduser()
    fix = "set db_path (or LSTM_PIPELINE_DB_PATH) to a file in a folder this user can write"
    if target.exists():
        if target.is_dir():
            return f"The DuckDB path {target} is a folder, not a file; {fix}."
        if not os.access(target, os.R_OK | os.W_OK):
            return f"The DuckDB file {target} is not writable by this user; fix its permissions or {fix}."
        folder = target.parent
    else:
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        return f"The DuckDB file {target} cannot be created because {folder} is a file, not a folder; {fix}."
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"The DuckDB file {target} cannot be created because the folder {folder} is not writable; {fix}."
    return None


def _refused(path: str, message: str) -> DatabaseAccessError:
    if "Permission denied" in message or "Read-only file system" in message:
        return DatabaseAccessError(
            f"The DuckDB file {path} cannot be opened: permission denied; fix the file's and its folder's "
            "permissions or set db_path (or LSTM_PIPELINE_DB_PATH) to a file this user can write."
        )
    detail = message.removeprefix("IO Error: ").rstrip(".")
    return DatabaseAccessError(
        f"The DuckDB file {path} cannot be opened ({detail}); set db_path (or LSTM_PIPELINE_DB_PATH) to a DuckDB "
        "file or to a path where one can be created."
    )


@contextmanager
def connect(
    path: str | os.PathLike[str],
    *,
    read_only: bool,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    config: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    connect_fn: Callable[..., duckdb.DuckDBPyConnection] = duckdb.connect,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the DuckDB file at ``path`` whose session time zone is UTC, closed on exit.

    Writers create the file's folder; readers must check that the file exists first (DuckDB cannot open a
    missing file read-only). ``clock``, ``sleep`` and ``connect_fn`` are injectable for tests.
    """
    log = logger or LOGGER
    database = str(path) if is_memory(path) else str(Path(path).expanduser())
    if not read_only and not is_memory(path):
        problem = writable_problem(database)
        if problem is not None:
            raise DatabaseAccessError(problem)
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    started = clock()
    last_logged: float | None = None
    attempt = 0
    while True:
        try:
            conn = connect_fn(database=database, read_only=read_only, config=dict(config or {}))
            break
        except duckdb.Error as error:
            message = str(error)
            if not (isinstance(error, duckdb.IOException) and _is_lock_conflict(message)):
                raise _refused(database, message) from None
            pid = lock_holder_pid(message)
            holder = f"process {pid}" if pid is not None else "another process"
            waited = clock() - started
            if waited >= lock_timeout_seconds:
                raise DatabaseLockedError(
                    f"The DuckDB file {database} is locked by {holder} (still after {waited:.0f} s); stop that "
                    f"process{f' (kill {pid})' if pid is not None else ''} or, if it is a reader such as a "
                    "notebook or the DuckDB CLI, close its connection, then run again."
                ) from None
            if last_logged is None or waited - last_logged >= LOG_WAIT_EVERY_SECONDS:
                log.warning(
                    f"Waiting for the DuckDB file {database}: {holder} holds its lock "
                    f"({waited:.0f} s of at most {lock_timeout_seconds:g} s)."
                )
                last_logged = waited
            delay = min(0.05 * 2**attempt, _MAX_RETRY_DELAY_SECONDS, max(lock_timeout_seconds - waited, 0.0))
            attempt += 1
            sleep(delay)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        yield conn
    finally:
        conn.close()
