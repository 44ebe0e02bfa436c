"""Backups of the store: every table's rows of a set of symbol-windows (or of the whole store), encrypted.

One backup is one folder ``<backups.dir>/<backup_id>/`` (the id is its UTC creation time, so names sort in time):

- ``<table>.parquet.enc`` per table: the rows as zstd Parquet, sealed with AES-256-GCM (``crypto.seal``);
- ``partitions.parquet.enc``: the ``(symbol, window_start)`` pairs the backup holds (what a restore replaces);
- ``pruned.parquet.enc``: the ``pruned_partitions`` rows of those pairs whose table had no rows left when the backup
  was made (retention had deleted them): the backup holds the symbol-window but not that table's rows of it, so
  neither a restore nor backup retention takes it for a copy of them (``held_partitions``);
- ``manifest.json``: tables, row counts, SHA-256 of each file as written and of its Parquet, a content checksum of
  each table's rows, the schema version, the time; ``manifest.sig`` authenticates it under the same key;
- ``verification.json``: written by ``verify_backup`` (retention deletes rows only under a verified backup).

Without a key the backup is refused in one sentence, unless ``backups.allow_unencrypted`` says otherwise: then the
files are plain ``.parquet`` and the manifest says ``"encrypted": false``. Such a backup carries no signature, so
while a key is configured it is read only if ``backups.allow_unencrypted`` is true: otherwise anyone able to write
to the backups folder could plant rows a restore would take. A folder is written under a temporary
name and renamed when complete, so a crash never leaves a half backup that looks whole. Model folders are saved
once per version under ``<backups.dir>/models/<SYMBOL>/<version>.tar[.enc]``. This module imports no Dagster.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.operations.crypto import (
    KEY_ENV_VAR,
    check_signature,
    open_sealed,
    parse_key,
    seal,
    sign,
)
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.store_layout import (
    NOT_BACKED_UP,
    WHOLE_TABLES,
    WINDOW_COLUMNS,
    content_checksum,
    holding_columns,
    open_store,
    partition_frame,
    partitions_in,
    rows_of_partitions,
    without,
)
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import SCHEMA_VERSION, TABLES, database_at

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
VERIFICATION = "verification.json"
PARTITIONS = "partitions"
PRUNED = "pruned"
MODELS_FOLDER = "models"
_BACKUP_ID = re.compile(r"^\d{8}T\d{12}Z(-\d+)?$")
_VERSION = r"(?!\.)[A-Za-z0-9_.\-]{1,128}"
"""A model version as a file name: no path separator, not hidden."""
_SYMBOL = r"[A-Z0-9][A-Z0-9.\-]{0,15}"


@dataclass(frozen=True)
class BackupResult:
    """What ``create_backup`` wrote."""

    backup_id: str
    path: Path
    encrypted: bool
    full: bool
    row_counts: dict[str, int]
    bytes_written: int
    partitions: int
    seconds: float


@dataclass(frozen=True)
class BackupInfo:
    """One backup as listed from its manifest (authenticated when a key is configured)."""

    backup_id: str
    path: Path
    created_at: pd.Timestamp
    encrypted: bool
    full: bool
    partitions: int
    row_counts: dict[str, int]
    verified: bool | None
    """True/False: the last verification's outcome; None: never verified."""
    size_bytes: int
    first_window: pd.Timestamp | None = None
    """The earliest window it holds (None: it holds none)."""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of restoring one backup into a scratch DuckDB and comparing it with its manifest."""

    backup_id: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class LoadedBackup:
    """A backup's authenticated contents."""

    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    partitions: pd.DataFrame
    pruned: pd.DataFrame | None = None
    """``pruned_partitions`` rows of held symbol-windows whose table's rows were gone (pruned) when the backup was
    made; None for a backup made before backups recorded them."""


# ------------------------------------------------------------------------------------------------------- keys


def _configured_secret(settings: Settings) -> str:
    return settings.backups.key.get_secret_value().strip() if settings.backups.key else ""


def backups_refused(settings: Settings) -> str | None:
    """Why a backup would be refused under ``settings`` (one sentence), or None when backups can be written.

    The nightly sensor asks this before launching anything, so an unconfigured key skips the night quietly instead
    of failing a run every night; a backup asked for by hand raises the same sentence.
    """
    if _configured_secret(settings) or settings.backups.allow_unencrypted:
        return None
    return (
        f"No backup key is configured, so the backup is refused; set {KEY_ENV_VAR} to urlsafe base64 of 32 random "
        "bytes (see lstm_pipeline.operations.crypto.generate_key) or set backups.allow_unencrypted to true to "
        "write unencrypted backups."
    )


def backup_key(settings: Settings, *, for_writing: bool) -> bytes | None:
    """The configured key's bytes; None when there is none and (for writing) unencrypted backups are allowed."""
    secret = _configured_secret(settings)
    if secret:
        return parse_key(secret)
    if for_writing and (refusal := backups_refused(settings)) is not None:
        raise OperationError(refusal)
    return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buffer, engine="pyarrow", compression="zstd", index=False)
    return buffer.getvalue()


def _new_backup_id(folder: Path, now: pd.Timestamp) -> str:
    stamp = now.tz_convert("UTC").strftime("%Y%m%dT%H%M%S%fZ")
    candidate, suffix = stamp, 1
    while (folder / candidate).exists():
        candidate, suffix = f"{stamp}-{suffix}", suffix + 1
    return candidate


def _now(now: pd.Timestamp | None) -> pd.Timestamp:
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


# ----------------------------------------------------------------------------------------------------- create


def create_backup(
    settings: Settings,
    partitions: Iterable[tuple[str, Any]] | None = None,
    *,
    now: pd.Timestamp | None = None,
    run_id: str | None = None,
) -> BackupResult:
    """Back up the rows of the given symbol-windows of every partitioned table; ``None``: the whole store.

    Reads through the storage layer (any backend). Nothing is verified here: ``verify_backup`` does that.
    """
    started = time.perf_counter()
    key = backup_key(settings, for_writing=True)
    created = _now(now)
    store = open_store(settings)
    full = partitions is None
    if full:
        names = [name for name in TABLES if name not in NOT_BACKED_UP]
        tables = {name: store.read_rows(name) for name in names}
        held = partition_frame(
            pd.concat([partitions_in(name, tables[name]) for name in WINDOW_COLUMNS if name in tables],
                      ignore_index=True)
        )
    else:
        held = partition_frame(partitions)
        tables = {name: rows_of_partitions(store, name, held) for name in WINDOW_COLUMNS if name in TABLES}
    pruned = _pruned_without_rows(store, tables, held)

    folder = Path(settings.backups.dir)
    folder.mkdir(parents=True, exist_ok=True)
    backup_id = _new_backup_id(folder, created)
    partial = Path(tempfile.mkdtemp(prefix=f".{backup_id}.", dir=folder))
    suffix = ".parquet.enc" if key is not None else ".parquet"
    try:
        written = 0
        entries: dict[str, dict[str, Any]] = {}
        for name, frame in [*tables.items(), (PARTITIONS, held), (PRUNED, pruned)]:
            parquet = _to_parquet(frame)
            file_name = f"{name}{suffix}"
            data = seal(key, parquet, f"{backup_id}/{file_name}") if key is not None else parquet
            (partial / file_name).write_bytes(data)
            written += len(data)
            entries[name] = {
                "file": file_name,
                "rows": len(frame),
                "sha256": _sha256(data),
                "parquet_sha256": _sha256(parquet),
                "content_checksum": content_checksum(frame),
            }
        windows = held["window_start"]
        manifest = {
            "format": FORMAT_VERSION,
            "backup_id": backup_id,
            "created_at": created.isoformat(),
            "schema_version": SCHEMA_VERSION,
            "encrypted": key is not None,
            "cipher": "AES-256-GCM" if key is not None else None,
            "full": full,
            "run_id": run_id,
            "partitions": {
                **entries.pop(PARTITIONS),
                "symbols": sorted(set(held["symbol"])),
                "first_window": windows.min().isoformat() if len(windows) else None,
                "last_window": windows.max().isoformat() if len(windows) else None,
            },
            PRUNED: entries.pop(PRUNED),
            "tables": entries,
        }
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        (partial / MANIFEST).write_bytes(manifest_bytes)
        written += len(manifest_bytes)
        if key is not None:
            (partial / SIGNATURE).write_bytes(sign(key, manifest_bytes, f"{backup_id}/{MANIFEST}"))
        target = folder / backup_id
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return BackupResult(
        backup_id=backup_id,
        path=target,
        encrypted=key is not None,
        full=full,
        row_counts={name: entry["rows"] for name, entry in entries.items()},
        bytes_written=written,
        partitions=len(held),
        seconds=time.perf_counter() - started,
    )


def _pruned_without_rows(store: Any, tables: dict[str, pd.DataFrame], held: pd.DataFrame) -> pd.DataFrame:
    """The ``pruned_partitions`` rows of the held symbol-windows whose table has no rows in this backup."""
    recorded = store.read_rows("pruned_partitions")
    if recorded.empty or held.empty:
        return recorded.iloc[0:0]
    recorded = recorded.assign(window_start=_new_york(recorded["window_start"]))
    recorded = recorded.merge(held, on=["symbol", "window_start"], how="inner")
    present = [
        partitions_in(name, frame).assign(table_name=name) for name, frame in tables.items() if name in WINDOW_COLUMNS
    ]
    if present:
        recorded = without(recorded, pd.concat(present, ignore_index=True), ["table_name", "symbol", "window_start"])
    return recorded.reset_index(drop=True)


def _new_york(stamps: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(stamps)
    return (stamps.dt.tz_localize(NEW_YORK) if stamps.dt.tz is None else stamps.dt.tz_convert(NEW_YORK))


# ------------------------------------------------------------------------------------------------------ read


def backup_path(settings: Settings, backup: str | Path) -> Path:
    """The folder of a backup given by id or path; one sentence when there is none."""
    path = Path(backup)
    if not path.is_absolute() and not path.exists():
        path = Path(settings.backups.dir) / str(backup)
    if not (path / MANIFEST).is_file():
        raise OperationError(
            f"There is no backup {backup} in {settings.backups.dir}; list the backups (lstm-pipeline backup --list) "
            "and name one of them."
        )
    return path


def _refuse_unsigned_while_keyed(settings: Settings, what: str) -> None:
    """Refuse an unencrypted (so unauthenticated) backup while a key is configured, unless the config allows them."""
    if _configured_secret(settings) and not settings.backups.allow_unencrypted:
        raise OperationError(
            f"The {what} is not encrypted while a backup key is configured, so it is refused (nothing proves who "
            "wrote it); remove it from the backups folder, or set backups.allow_unencrypted to true if you made it "
            "yourself without a key."
        )


def read_manifest(settings: Settings, path: Path) -> dict[str, Any]:
    """A backup's manifest, authenticated when the backup is encrypted (or carries a signature)."""
    manifest_bytes = (path / MANIFEST).read_bytes()
    signature = path / SIGNATURE
    try:
        manifest = json.loads(manifest_bytes)
    except json.JSONDecodeError:
        manifest = None
    encrypted = signature.exists() or not isinstance(manifest, dict) or manifest.get("encrypted", True)
    if not encrypted:
        _refuse_unsigned_while_keyed(settings, f"backup folder {path}")
    if encrypted:
        key = backup_key(settings, for_writing=False)
        if key is None:
            raise OperationError(
                f"Backup {path.name} is encrypted and no backup key is configured; set {KEY_ENV_VAR} to the key it was "
                "made with."
            )
        if not signature.exists():
            raise OperationError(
                f"The manifest of backup {path.name} fails authentication: its signature file {SIGNATURE} is missing; "
                "restore from another backup."
            )
        check_signature(
            key, manifest_bytes, signature.read_bytes(), f"{path.name}/{MANIFEST}",
            f"The manifest of backup {path.name}",
        )
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise OperationError(
            f"The manifest of backup {path.name} is not a format-{FORMAT_VERSION} backup manifest; restore from "
            "another backup."
        )
    return manifest


def _read_file(
    settings: Settings, path: Path, manifest: dict[str, Any], name: str, entry: dict[str, Any]
) -> pd.DataFrame:
    file_path = path / entry["file"]
    where = f"The file {entry['file']} of backup {path.name}"
    if not file_path.is_file():
        raise OperationError(f"{where} is missing; restore from another backup.")
    data = file_path.read_bytes()
    if manifest["encrypted"]:
        key = backup_key(settings, for_writing=False)
        assert key is not None  # read_manifest refused an encrypted backup without a key
        parquet = open_sealed(key, data, f"{path.name}/{entry['file']}", where)
    else:
        parquet = data
    if _sha256(data) != entry["sha256"] or _sha256(parquet) != entry["parquet_sha256"]:
        raise OperationError(
            f"{where} fails its SHA-256 check (modified or truncated after it was written); restore from another "
            "backup."
        )
    frame = pd.read_parquet(io.BytesIO(parquet), engine="pyarrow")
    if len(frame) != entry["rows"]:
        raise OperationError(
            f"{where} holds {len(frame)} rows where its manifest says {entry['rows']}; restore from another backup."
        )
    return frame


def load_backup(settings: Settings, backup: str | Path, tables: Iterable[str] | None = None) -> LoadedBackup:
    """A backup's rows (all tables, or ``tables``) and partitions, each file authenticated and checked."""
    path = backup_path(settings, backup)
    manifest = read_manifest(settings, path)
    wanted = set(manifest["tables"]) if tables is None else set(tables) & set(manifest["tables"])
    frames = {
        name: _read_file(settings, path, manifest, name, entry)
        for name, entry in manifest["tables"].items()
        if name in wanted
    }
    partitions = _read_file(settings, path, manifest, PARTITIONS, manifest["partitions"])
    pruned = _read_file(settings, path, manifest, PRUNED, manifest[PRUNED]) if PRUNED in manifest else None
    return LoadedBackup(manifest=manifest, tables=frames, partitions=partition_frame(partitions), pruned=pruned)


def with_table(settings: Settings, backup: str | Path, loaded: LoadedBackup, table: str) -> LoadedBackup:
    """``loaded`` (a ``load_backup`` of the same backup) holding ``table``'s rows only (when the backup has the
    table), authenticated and checked: one table at a time without reading the partitions again."""
    path = backup_path(settings, backup)
    entry = loaded.manifest["tables"].get(table)
    tables = {} if entry is None else {table: _read_file(settings, path, loaded.manifest, table, entry)}
    return LoadedBackup(manifest=loaded.manifest, tables=tables, partitions=loaded.partitions, pruned=loaded.pruned)


def held_partitions(backup: LoadedBackup, table: str) -> pd.DataFrame:
    """The partitions (columns ``holding_columns(table)``) whose rows of ``table`` this backup holds.

    A chain table's are the backup's symbol-windows, less those whose rows retention had deleted before the backup
    was made (an empty partition otherwise is held: the table had no rows there). A backup made before backups
    recorded pruned partitions counts only the symbol-windows it has rows of (``table`` must be loaded). A whole
    table's are the partitions a full backup has rows of.
    """
    columns = holding_columns(table)
    if table in WINDOW_COLUMNS:
        if backup.pruned is None:
            held = partitions_in(table, backup.tables[table])
        else:
            gone = backup.pruned[backup.pruned["table_name"] == table]
            held = without(backup.partitions, gone, ["symbol", "window_start"])
        return held.rename(columns={"window_start": WINDOW_COLUMNS[table]})[columns]
    if not backup.manifest.get("full") or table not in backup.tables:
        return pd.DataFrame({column: [] for column in columns})
    return backup.tables[table][columns].drop_duplicates().reset_index(drop=True)


def load_holdings(settings: Settings, backup: str | Path) -> dict[str, pd.DataFrame]:
    """Per table, ``held_partitions`` of one backup, reading only the files that takes (no chain rows unless the
    backup predates the pruned record)."""
    path = backup_path(settings, backup)
    manifest = read_manifest(settings, path)
    needed = [name for name in manifest["tables"]
              if name in WHOLE_TABLES or (name in WINDOW_COLUMNS and PRUNED not in manifest)]
    loaded = load_backup(settings, path, needed)
    return {name: held_partitions(loaded, name) for name in manifest["tables"] if name in TABLES}


def write_tables(db_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Insert every frame into the (new, empty) DuckDB file at ``db_path`` in one transaction."""
    replacements = {}
    for name, frame in tables.items():
        if name not in TABLES or frame.empty:
            continue
        keys = frame[list(TABLES[name].partition)].drop_duplicates()
        replacements[name] = (keys, frame[[column for column in frame.columns if column in TABLES[name].column_names]])
    database_at(db_path).replace_tables(replacements)


def compare_tables(db_path: Path, expected: dict[str, dict[str, Any]], what: str) -> tuple[list[str], dict[str, int]]:
    """Problems (one sentence each) where the file's tables differ from ``{table: {rows, content_checksum}}``."""
    problems, counts = [], {}
    database = database_at(db_path)
    for name, entry in expected.items():
        rows = database.read_rows(name)
        counts[name] = len(rows)
        if len(rows) != entry["rows"]:
            problems.append(f"{what}: table {name} has {len(rows)} rows where {entry['rows']} were expected.")
        elif content_checksum(rows) != entry["content_checksum"]:
            problems.append(f"{what}: table {name} has the right row count but different contents (checksum).")
    return problems, counts


def verify_backup(settings: Settings, backup: str | Path, *, now: pd.Timestamp | None = None) -> VerifyResult:
    """Restore a backup into a scratch DuckDB and compare row counts and content checksums with its manifest.

    Records the outcome in the backup's ``verification.json``: retention trusts only verified backups.
    """
    started = time.perf_counter()
    path = backup_path(settings, backup)
    problems: list[str] = []
    counts: dict[str, int] = {}
    try:
        loaded = load_backup(settings, path)
        with tempfile.TemporaryDirectory(prefix="lstm-backup-verify-") as scratch:
            scratch_db = Path(scratch) / "scratch.duckdb"
            write_tables(scratch_db, loaded.tables)
            problems, counts = compare_tables(
                scratch_db, loaded.manifest["tables"], f"Backup {path.name} restored into a scratch DuckDB"
            )
    except OperationError as error:
        problems = [str(error)]
    result = VerifyResult(
        backup_id=path.name, ok=not problems, problems=problems, row_counts=counts,
        seconds=time.perf_counter() - started,
    )
    (path / VERIFICATION).write_text(
        json.dumps({"verified_at": _now(now).isoformat(), "ok": result.ok, "problems": problems}, indent=2)
    )
    return result


def _verified(path: Path) -> bool | None:
    try:
        return bool(json.loads((path / VERIFICATION).read_text())["ok"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def list_backups(settings: Settings) -> list[BackupInfo]:
    """Every complete backup in ``backups.dir``, oldest first (manifests authenticated when encrypted)."""
    folder = Path(settings.backups.dir)
    if not folder.is_dir():
        return []
    infos = []
    for path in sorted(folder.iterdir()):
        if not (path.is_dir() and _BACKUP_ID.match(path.name) and (path / MANIFEST).is_file()):
            continue
        manifest = read_manifest(settings, path)
        infos.append(
            BackupInfo(
                backup_id=path.name,
                path=path,
                created_at=pd.Timestamp(manifest["created_at"]).tz_convert("UTC"),
                encrypted=bool(manifest["encrypted"]),
                full=bool(manifest["full"]),
                partitions=int(manifest["partitions"]["rows"]),
                row_counts={name: int(entry["rows"]) for name, entry in manifest["tables"].items()},
                verified=_verified(path),
                size_bytes=sum(item.stat().st_size for item in path.iterdir() if item.is_file()),
                first_window=(pd.Timestamp(manifest["partitions"]["first_window"])
                              if manifest["partitions"].get("first_window") else None),
            )
        )
    return sorted(infos, key=lambda info: (info.created_at, info.backup_id))


def delete_backup(settings: Settings, backup_id: str) -> None:
    """Remove one backup folder (retention decides which)."""
    shutil.rmtree(backup_path(settings, backup_id))


# ---------------------------------------------------------------------------------------------------- models


def backup_models(settings: Settings) -> list[str]:
    """Save each model folder ``models/<SYMBOL>/`` not yet saved, by version; returns ``SYMBOL/version`` saved."""
    if not settings.backups.include_models:
        return []
    key = backup_key(settings, for_writing=True)
    models_dir = Path(settings.models_dir)
    if not models_dir.is_dir():
        return []
    saved = []
    for folder in sorted(models_dir.iterdir()):
        config = folder / "model_config.json"
        if folder.name.startswith(".") or not config.is_file():
            continue
        files = sorted(item for item in folder.rglob("*") if item.is_file())
        try:
            version = str(json.loads(config.read_text()).get("version") or "")
        except (OSError, ValueError, AttributeError):
            version = ""
        if not re.fullmatch(_VERSION, version):
            version = "content-" + _sha256(b"".join(item.read_bytes() for item in files))[:16]
        target_dir = Path(settings.backups.dir) / MODELS_FOLDER / folder.name
        name = f"{version}.tar.enc" if key is not None else f"{version}.tar"
        if (target_dir / name).exists():
            continue
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for item in files:
                archive.add(item, arcname=str(item.relative_to(folder)))
        data = buffer.getvalue()
        if key is not None:
            data = seal(key, data, f"{MODELS_FOLDER}/{folder.name}/{name}")
        target_dir.mkdir(parents=True, exist_ok=True)
        temporary = target_dir / f".{name}.partial"
        temporary.write_bytes(data)
        temporary.rename(target_dir / name)
        saved.append(f"{folder.name}/{version}")
    return saved


def list_model_backups(settings: Settings) -> dict[str, list[str]]:
    """Saved model versions per symbol (oldest saved first)."""
    folder = Path(settings.backups.dir) / MODELS_FOLDER
    if not folder.is_dir():
        return {}
    saved: dict[str, list[str]] = {}
    for symbol_dir in sorted(item for item in folder.iterdir() if item.is_dir()):
        files = sorted((item for item in symbol_dir.iterdir() if item.name.endswith((".tar", ".tar.enc"))),
                       key=lambda item: item.stat().st_mtime)
        saved[symbol_dir.name] = [item.name.removesuffix(".enc").removesuffix(".tar") for item in files]
    return saved


def restore_model(settings: Settings, symbol: str, version: str | None = None) -> Path:
    """Put a saved model version (None: the newest saved) back as ``models/<SYMBOL>/``; the folder it replaces is
    kept beside it as ``.<SYMBOL>.before-restore-<time>``."""
    if not re.fullmatch(_SYMBOL, symbol) or not (version is None or re.fullmatch(_VERSION, version)):
        raise OperationError(
            f"{symbol}@{version} does not name a saved model; give SYMBOL or SYMBOL@VERSION as listed in "
            f"{Path(settings.backups.dir) / MODELS_FOLDER}."
        )
    folder = Path(settings.backups.dir) / MODELS_FOLDER / symbol
    if version is None:
        saved = list_model_backups(settings).get(symbol)
        if not saved:
            raise OperationError(
                f"No model of {symbol} has been saved in {folder.parent}; back the models up first (lstm-pipeline "
                "backup) or check the symbol."
            )
        version = saved[-1]
    sealed, plain = folder / f"{version}.tar.enc", folder / f"{version}.tar"
    if sealed.is_file():
        key = backup_key(settings, for_writing=False)
        if key is None:
            raise OperationError(
                f"Model backup {symbol}/{version} is encrypted and no backup key is configured; set {KEY_ENV_VAR}."
            )
        data = open_sealed(key, sealed.read_bytes(), f"{MODELS_FOLDER}/{symbol}/{sealed.name}",
                           f"The model backup {symbol}/{sealed.name}")
    elif plain.is_file():
        _refuse_unsigned_while_keyed(settings, f"model backup {plain}")
        data = plain.read_bytes()
    else:
        raise OperationError(
            f"There is no saved model {symbol}/{version} in {folder.parent}; choose one of "
            f"{list_model_backups(settings).get(symbol, [])}."
        )
    target = Path(settings.models_dir) / symbol
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{symbol}.restoring-", dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as archive:
            archive.extractall(staging, filter="data")
        if target.exists():
            # Microseconds: two restores within one second must not collide on the kept folder's name.
            stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%f")
            target.rename(target.with_name(f".{symbol}.before-restore-{stamp}"))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
