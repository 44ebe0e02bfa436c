"""Restore the store from backups: whole store, one table, or the state as of a point in time.

Each table's partition (a symbol-window of a chain table; a registered partition of a table without one) comes from
the newest backup (made at or before ``as_of`` when given) that holds that table's rows of it: a backup made after
retention deleted a table's rows of a symbol-window holds the symbol-window but not those rows, so an older backup
that has them brings them back (``backups.held_partitions``). Tables without symbol-windows come from full backups.

Nothing in the current store is dropped silently. A latest-state restore keeps, from the current store (when it can
be read), the rows of every partition no backup holds (today's windows under nightly backups, alerts about runs) and
says how many; a point-in-time restore says how many current partitions are not in the restored state (they stay
in the replaced file). A table no chosen backup holds at all, and (for a one-table restore) every other table, is
carried over whole, as are the ``pruned_partitions`` of partitions whose rows do not come back.

The result is written to a new DuckDB file beside the store, read back and compared (row counts and content
checksums) with what was meant to be written, and only then swapped in with one atomic rename, while this process
holds the store's write lock, so no writer can open the old file between the last check and the swap; the replaced
file stays beside it as ``<db>.before-restore-<stamp>``. A store whose write lock another process holds (a run
writing), or that ``busy`` says a run is using, is never replaced: the restore is refused in one sentence. This
module imports no Dagster.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lstm_pipeline.operations.backups import (
    BackupInfo,
    LoadedBackup,
    compare_tables,
    held_partitions,
    list_backups,
    load_backup,
    with_table,
    write_tables,
)
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.store_layout import (
    NOT_BACKED_UP,
    WINDOW_COLUMNS,
    as_read,
    content_checksum,
    holding_columns,
    open_store,
    without,
)
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import (
    TABLES,
    DatabaseAccessError,
    DatabaseLockedError,
    PipelineDatabase,
    StorageError,
    connect,
)
from lstm_pipeline.storage.rows import empty_frame

_PRUNED_KEY = ["table_name", "symbol", "window_start"]


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
    """Tables taken whole from the current store: no chosen backup holds them (or not asked to restore them)."""
    carried_over_rows: dict[str, int] = field(default_factory=dict)
    """Latest-state restore: per restored table, rows kept from the current store because no backup holds their
    partition."""
    partitions_not_restored: dict[str, int] = field(default_factory=dict)
    """Point-in-time restore: per restored table, partitions of the current store that no chosen backup holds, so
    they are not in the restored state (they stay in the replaced file)."""
    current_store_readable: bool = True
    """False when the current store could not be read: nothing could be carried over from it."""

    def warnings(self) -> list[str]:
        """One sentence per thing an operator must know about what the restored store does not hold."""
        notes = []
        kept = sum(self.carried_over_rows.values())
        if kept:
            notes.append(f"Kept {kept} row(s) from the current store whose partitions no backup holds "
                         f"({', '.join(f'{name} {count}' for name, count in self.carried_over_rows.items())}).")
        missing = sum(self.partitions_not_restored.values())
        if missing:
            where = f" (they stay in {self.previous_path})" if self.previous_path else ""
            notes.append(f"{missing} partition(s) of the current store are not in the restored state "
                         f"({', '.join(f'{name} {count}' for name, count in self.partitions_not_restored.items())})"
                         f"{where}.")
        if not self.current_store_readable:
            notes.append("The current store could not be read, so nothing was carried over from it.")
        return notes


def _lock_holder(error: Exception) -> str:
    holder = re.search(r"locked by (process \d+|another process)", str(error))
    return f"{holder.group(1) if holder else 'another process'} holds its write lock"


def store_busy(settings: Settings) -> str | None:
    """Why the store cannot be replaced now (another process holds its write lock), or None."""
    path = Path(settings.db_path)
    if not path.exists():
        return None
    try:
        with connect(path, read_only=False, lock_timeout_seconds=0):
            return None
    except DatabaseLockedError as error:
        return _lock_holder(error)
    except DatabaseAccessError:
        return None  # not a database any writer could open: nothing is writing it


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


@dataclass(frozen=True)
class _TableRestore:
    rows: pd.DataFrame
    """The restored rows (latest state: with the current rows of partitions no backup holds)."""
    owned: pd.DataFrame
    """Holding columns and ``backup``: the backup each restored partition comes from."""
    unheld_rows: int
    unheld_partitions: int


def _restore_table(
    table: str, loaded: list[LoadedBackup], current: pd.DataFrame | None, keep_unheld: bool
) -> _TableRestore:
    """``table``'s rows from the newest backup holding each partition, plus (``keep_unheld``) the current rows of
    partitions no backup holds."""
    columns = holding_columns(table)
    held = [held_partitions(backup, table).assign(backup=index) for index, backup in enumerate(loaded)]
    holders = pd.concat([frame for frame in held if len(frame)] or held, ignore_index=True)
    owned = holders.groupby(columns, sort=False)["backup"].max().reset_index()
    parts = [
        backup.tables[table].merge(owned[owned["backup"] == index][columns], on=columns, how="inner")
        for index, backup in enumerate(loaded)
        if table in backup.tables and (owned["backup"] == index).any()
    ]
    unheld = without(current, owned, columns) if current is not None else None
    unheld_partitions = len(unheld[columns].drop_duplicates()) if unheld is not None else 0
    if keep_unheld and unheld is not None and len(unheld):
        parts.append(unheld)
    non_empty = [part for part in parts if len(part)]
    rows = pd.concat(non_empty, ignore_index=True) if non_empty else empty_frame(TABLES[table])
    return _TableRestore(
        rows=rows,
        owned=owned,
        unheld_rows=len(unheld) if unheld is not None and keep_unheld else 0,
        unheld_partitions=unheld_partitions,
    )


def _readable(store: PipelineDatabase) -> bool:
    """Whether the current store can be read (a missing file reads as empty)."""
    try:
        store.read_rows("pruned_partitions")
    except StorageError:
        return False
    return True


def _read_table(store: PipelineDatabase, name: str) -> pd.DataFrame | None:
    """``name`` as the current store holds it; None if it cannot be read."""
    try:
        return store.read_rows(name)
    except StorageError:
        return None


def _pruned_after(
    current: pd.DataFrame | None, loaded: list[LoadedBackup], restored: dict[str, pd.DataFrame]
) -> pd.DataFrame | None:
    """``pruned_partitions`` of the restored store: the current ones and those the backups recorded (of restored
    tables), less those whose rows come back with this restore."""
    recorded = [current] if current is not None and len(current) else []
    recorded += [
        backup.pruned[backup.pruned["table_name"].isin(list(restored))]
        for backup in loaded if backup.pruned is not None and len(backup.pruned)
    ]
    if not recorded:
        return current
    entries = pd.concat(recorded, ignore_index=True)
    entries = entries.assign(window_start=pd.to_datetime(entries["window_start"], utc=True))
    entries = entries.drop_duplicates(_PRUNED_KEY, keep="first")
    back = [
        rows[["symbol", WINDOW_COLUMNS[name]]].rename(columns={WINDOW_COLUMNS[name]: "window_start"})
        .assign(table_name=name)
        for name, rows in restored.items() if name in WINDOW_COLUMNS and len(rows)
    ]
    if back:
        came_back = pd.concat(back, ignore_index=True)
        came_back = came_back.assign(window_start=pd.to_datetime(came_back["window_start"], utc=True))
        entries = without(entries, came_back, _PRUNED_KEY)
    return entries


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

    ``busy`` says why the store must not be replaced (the Dagster job and the CLI pass the runs in progress); it and
    the store's write lock are checked before anything is read and again, holding that lock, right before the swap.
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

    def refusal(reason: str) -> OperationError:
        return OperationError(
            f"The store {settings.db_path} is being written ({reason.rstrip('.')}), so it is not replaced; wait "
            "for the run to finish (or stop it) and restore again."
        )

    reason = (busy() if busy is not None else None) or store_busy(settings)
    if reason:
        raise refusal(reason)
    backups = _chosen_backups(settings, as_of)
    asked = [table] if table is not None else [name for name in TABLES if name not in NOT_BACKED_UP]
    # One table at a time (its rows from every chosen backup and the current store, written, checksummed, then
    # let go): a year of 10 symbols is ~17 million rows, and holding every table of every backup at once took more
    # than 24 GiB. The backups' partitions and pruned records are small and read once.
    bases = [load_backup(settings, info.path, []) for info in backups]
    current_readable = _readable(store)
    if not current_readable and table is not None:
        raise OperationError(
            f"The store {settings.db_path} cannot be read, so its other tables cannot be kept around a one-table "
            "restore; restore the whole store instead (no --table)."
        )

    def current_of(name: str) -> pd.DataFrame | None:
        return _read_table(store, name) if current_readable else None

    restored: dict[str, pd.DataFrame] = {}  # per restored table, its rows' partition columns only
    expected: dict[str, dict[str, object]] = {}
    carried_rows: dict[str, int] = {}
    not_restored: dict[str, int] = {}
    used: set[int] = set()
    windows: list[pd.DataFrame] = []

    db_path = Path(settings.db_path)
    stamp = (pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)).strftime("%Y%m%dT%H%M%S%f")
    new_path = db_path.with_name(f"{db_path.name}.restoring-{stamp}")
    new_path.unlink(missing_ok=True)
    previous: Path | None = None

    def write(name: str, frame: pd.DataFrame) -> None:
        write_tables(new_path, {name: frame})
        expected[name] = {"rows": len(frame), "content_checksum": content_checksum(as_read(frame, name))}

    try:
        for name in asked:
            if not any(name in base.manifest["tables"] and (name in WINDOW_COLUMNS or base.manifest.get("full"))
                       for base in bases):
                continue  # no backup holds this table: carried over whole below
            loaded = [with_table(settings, info.path, base, name) for base, info in zip(bases, backups, strict=True)]
            result = _restore_table(name, loaded, current_of(name), keep_unheld=as_of is None)
            del loaded
            write(name, result.rows)
            keys = ["symbol", WINDOW_COLUMNS[name]] if name in WINDOW_COLUMNS else []
            restored[name] = result.rows[keys]
            used |= set(result.owned["backup"])
            if result.unheld_rows:
                carried_rows[name] = result.unheld_rows
            if as_of is not None and result.unheld_partitions:
                not_restored[name] = result.unheld_partitions
            if name in WINDOW_COLUMNS:
                windows.append(result.owned[holding_columns(name)].set_axis(["symbol", "window_start"], axis=1))
            del result
        if table is not None and table not in restored:
            raise OperationError(f"No backup chosen holds table {table}; make a backup of it first.")

        carried = [
            name for name in TABLES
            if name not in restored and name not in ("schema_version", "pruned_partitions") and current_readable
        ]
        for name in carried:
            frame = current_of(name)
            if frame is not None:
                write(name, frame)
        pruned = _pruned_after(current_of("pruned_partitions"), bases, restored)
        if pruned is not None:
            write("pruned_partitions", pruned)

        problems, counts = compare_tables(new_path, expected, f"The restored file {new_path.name}")
        if problems:
            raise OperationError(f"{problems[0]} The store was left unchanged; report this as a bug.")
        if not dry_run:
            previous = _swap_in(new_path, db_path, stamp, busy, refusal)
    finally:
        new_path.unlink(missing_ok=True)
        new_path.with_name(new_path.name + ".wal").unlink(missing_ok=True)
    restored_windows = pd.concat(windows, ignore_index=True).drop_duplicates() if windows else pd.DataFrame()
    return RestoreResult(
        path=db_path,
        row_counts=counts,
        tables_restored=sorted(restored),
        backups_used=sorted(backups[index].backup_id for index in used),
        partitions_restored=len(restored_windows),
        previous_path=previous,
        dry_run=dry_run,
        seconds=time.perf_counter() - started,
        carried_over=sorted(carried),
        carried_over_rows=carried_rows,
        partitions_not_restored=not_restored,
        current_store_readable=current_readable,
    )


def _swap_in(
    new_path: Path,
    db_path: Path,
    stamp: str,
    busy: Callable[[], str | None] | None,
    refusal: Callable[[str], OperationError],
) -> Path | None:
    """Swap the verified file in, holding the current file's write lock from the last check to the rename."""
    with ExitStack() as held:
        previous: Path | None = None
        if db_path.exists():
            try:
                lock = held.enter_context(connect(db_path, read_only=False, lock_timeout_seconds=0))
                lock.execute("CHECKPOINT")  # the WAL folded into the file the replaced copy keeps
            except DatabaseLockedError as error:
                raise refusal(_lock_holder(error)) from None
            except DatabaseAccessError:
                pass  # not a database: no writer can open it either, so there is no lock to hold
        reason = busy() if busy is not None else None
        if reason:
            raise refusal(reason)
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
    return previous
