"""Restore the store from backups: whole store, one table, or the state as of a point in time.

Each symbol-window comes from the newest backup that holds it (created at or before ``as_of`` when given); a full
backup's tables without symbol-windows come from the newest full backup. Tables that no backup holds, and (for a
one-table restore) every other table, are carried over from the current store, as are the ``pruned_partitions`` of
partitions that stay pruned. The result is written to a new DuckDB file beside the store, read back and compared
(row counts and content checksums) with what was meant to be written, and only then swapped in with one atomic
rename; the replaced file stays beside it as ``<db>.before-restore-<stamp>``. A store whose write lock another
process holds (a run writing) is never replaced: the restore is refused in one sentence. This module imports no
Dagster.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lstm_pipeline.operations.backups import (
    BackupInfo,
    compare_tables,
    list_backups,
    load_backup,
    write_tables,
)
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.store_layout import (
    NOT_BACKED_UP,
    WINDOW_COLUMNS,
    as_read,
    content_checksum,
    open_store,
)
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import TABLES, DatabaseLockedError, PipelineDatabase, StorageError, connect


@dataclass(frozen=True)
class RestoreResult:
    """What a restore wrote (or, with ``dry_run``, would write)."""

    path: Path
    row_counts: dict[str, int]
    tables_restored: list[str]
    backups_used: list[str]
    partitions_restored: int
    previous_path: Path | None
    dry_run: bool
    seconds: float
    carried_over: list[str] = field(default_factory=list)
    """Tables taken from the current store because no backup used holds them (or not asked to restore them)."""


def store_busy(settings: Settings) -> str | None:
    """Why the store cannot be replaced now (another process holds its write lock), or None."""
    path = Path(settings.db_path)
    if not path.exists():
        return None
    try:
        with connect(path, read_only=False, lock_timeout_seconds=0):
            return None
    except DatabaseLockedError as error:
        holder = re.search(r"locked by (process \d+|another process)", str(error))
        return f"{holder.group(1) if holder else 'another process'} holds its write lock"


def _chosen_backups(settings: Settings, as_of: pd.Timestamp | None) -> list[BackupInfo]:
    backups = list_backups(settings)
    if as_of is not None:
        cutoff = pd.Timestamp(as_of)
        cutoff = cutoff.tz_localize("UTC") if cutoff.tz is None else cutoff
        backups = [info for info in backups if info.created_at <= cutoff]
    if not backups:
        when = f" made at or before {pd.Timestamp(as_of).isoformat()}" if as_of is not None else ""
        raise OperationError(
            f"There is no backup{when} in {settings.backups.dir}; run a backup first or choose a later time."
        )
    return backups


def _restored_rows(
    settings: Settings, backups: list[BackupInfo], tables: list[str] | None
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, list[str]]:
    """Per table, the rows of the newest backup holding each symbol-window; the restored partitions; ids used."""
    loaded = {info.backup_id: load_backup(settings, info.path, tables) for info in backups}
    order = {info.backup_id: index for index, info in enumerate(backups)}
    held = pd.concat(
        [backup.partitions.assign(backup=order[backup_id]) for backup_id, backup in loaded.items()], ignore_index=True
    )
    owner = held.groupby(["symbol", "window_start"], sort=False)["backup"].max().reset_index()
    frames: dict[str, list[pd.DataFrame]] = {}
    used: set[str] = set()
    newest_full = max((order[info.backup_id] for info in backups if info.full), default=None)
    for backup_id, backup in loaded.items():
        owned = owner[owner["backup"] == order[backup_id]][["symbol", "window_start"]]
        for name, rows in backup.tables.items():
            if name not in TABLES or name in NOT_BACKED_UP:
                continue
            if name in WINDOW_COLUMNS:
                column = WINDOW_COLUMNS[name]
                rows = rows.merge(owned.rename(columns={"window_start": column}), on=["symbol", column])
            elif order[backup_id] != newest_full:
                continue
            frames.setdefault(name, []).append(rows)
            if len(rows) or (name not in WINDOW_COLUMNS):
                used.add(backup_id)
        if len(owned):
            used.add(backup_id)
    combined = {
        name: pd.concat([part for part in parts if len(part)] or parts[:1], ignore_index=True)
        for name, parts in frames.items()
    }
    return combined, owner[["symbol", "window_start"]], sorted(used)


def _still_pruned(current: pd.DataFrame, restored: dict[str, pd.DataFrame], partitions: pd.DataFrame) -> pd.DataFrame:
    """``pruned_partitions`` rows whose rows did not come back with this restore."""
    if current.empty:
        return current
    back = partitions.assign(_back=True)
    marked = current.merge(back, on=["symbol", "window_start"], how="left")
    came_back = marked["_back"].fillna(False).astype(bool) & marked["table_name"].isin(list(restored))
    return current[~came_back.to_numpy()].reset_index(drop=True)


def restore(
    settings: Settings,
    *,
    table: str | None = None,
    as_of: pd.Timestamp | None = None,
    dry_run: bool = False,
    busy: Callable[[], str | None] | None = None,
    now: pd.Timestamp | None = None,
) -> RestoreResult:
    """Restore the whole store (``table=None``) or one table from the backups, as of ``as_of`` (None: newest).

    ``busy`` says why the store must not be replaced (the Dagster job passes the runs in progress); the store's
    write lock is checked as well, before anything is read and again right before the swap.
    """
    started = time.perf_counter()
    store = open_store(settings)
    if not isinstance(store, PipelineDatabase):
        raise OperationError(
            "Restore swaps in a verified DuckDB file and the store is not DuckDB; restore with storage.backend set to "
            "duckdb and load the restored file into PostgreSQL."
        )
    if table is not None and (table not in TABLES or table in NOT_BACKED_UP):
        restorable = sorted(name for name in TABLES if name not in NOT_BACKED_UP)
        raise OperationError(f"Table {table!r} cannot be restored; choose one of {restorable}.")

    def refuse_if_busy() -> None:
        reason = (busy() if busy is not None else None) or store_busy(settings)
        if reason:
            raise OperationError(
                f"The store {settings.db_path} is being written ({reason.rstrip('.')}), so it is not replaced; wait "
                "for the run to finish (or stop it) and restore again."
            )

    refuse_if_busy()
    backups = _chosen_backups(settings, as_of)
    restored, partitions, used = _restored_rows(settings, backups, [table] if table is not None else None)
    if table is not None and table not in restored:
        raise OperationError(f"No backup chosen holds table {table}; make a backup of it first.")

    try:
        current_pruned = store.read_rows("pruned_partitions")
    except StorageError:
        current_pruned = pd.DataFrame()
    carried: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        if name in restored or name == "schema_version":
            continue
        try:
            carried[name] = store.read_rows(name)
        except StorageError:
            carried[name] = pd.DataFrame()
    if len(current_pruned):
        carried["pruned_partitions"] = _still_pruned(current_pruned, restored, partitions)
    contents = {**carried, **restored}

    db_path = Path(settings.db_path)
    stamp = (pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)).strftime("%Y%m%dT%H%M%S%f")
    new_path = db_path.with_name(f"{db_path.name}.restoring-{stamp}")
    new_path.unlink(missing_ok=True)
    try:
        write_tables(new_path, contents)
        expected = {
            name: {"rows": len(frame), "content_checksum": content_checksum(as_read(frame, name))}
            for name, frame in contents.items()
        }
        problems, counts = compare_tables(new_path, expected, f"The restored file {new_path.name}")
        if problems:
            raise OperationError(f"{problems[0]} The store was left unchanged; report this as a bug.")
        previous: Path | None = None
        if not dry_run:
            refuse_if_busy()
            if db_path.exists():
                previous = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
                try:
                    os.link(db_path, previous)
                except OSError:
                    shutil.copy2(db_path, previous)
                wal = db_path.with_name(db_path.name + ".wal")
                if wal.exists():
                    wal.rename(previous.with_name(previous.name + ".wal"))
            os.replace(new_path, db_path)
    finally:
        new_path.unlink(missing_ok=True)
        new_path.with_name(new_path.name + ".wal").unlink(missing_ok=True)
    return RestoreResult(
        path=db_path,
        row_counts=counts,
        tables_restored=sorted(restored),
        backups_used=used,
        partitions_restored=len(partitions),
        previous_path=previous,
        dry_run=dry_run,
        seconds=time.perf_counter() - started,
        carried_over=sorted(carried),
    )

