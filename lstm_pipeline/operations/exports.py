"""Exports for people: the chain's results for chosen symbols and windows as CSV, JSON, Excel or Parquet.

One export is a folder ``<exports.dir>/<export_id>/`` with one file per table (predictions, validations,
accuracy_metrics, trade_recommendations, alerts) and ``manifest.json`` (format, symbols, window range, per file
its table, row count and SHA-256). ``verify_export`` re-reads every file and compares; ``read_export`` reads an
export back into frames with the store's column types, so every format round-trips. Timestamps are written as ISO
8601 with their New York offset (Excel cannot hold time zones; the text keeps the instant). openpyxl is imported only
when an Excel file is written or read. This module imports no Dagster.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK
from lstm_pipeline.operations.errors import OperationError
from lstm_pipeline.operations.store_layout import WINDOW_COLUMNS, as_read, open_store
from lstm_pipeline.settings import Settings
from lstm_pipeline.storage import TABLES

FORMATS: tuple[str, ...] = ("csv", "json", "excel", "parquet")
EXTENSIONS = {"csv": "csv", "json": "json", "excel": "xlsx", "parquet": "parquet"}
EXPORTED_TABLES: tuple[str, ...] = ("predictions", "validations", "accuracy_metrics", "trade_recommendations", "alerts")
MANIFEST = "manifest.json"
_EXPORT_ID = re.compile(r"^\d{8}T\d{6}\d*Z-[a-z]+(-\d+)?$")


@dataclass(frozen=True)
class ExportResult:
    """What ``create_export`` wrote."""

    export_id: str
    path: Path
    fmt: str
    files: dict[str, Path]
    row_counts: dict[str, int]
    manifest_path: Path


@dataclass(frozen=True)
class ExportInfo:
    """One export as listed from its manifest."""

    export_id: str
    path: Path
    created_at: pd.Timestamp
    fmt: str
    row_counts: dict[str, int]


def _stamp(value: Any, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise OperationError(f"The export's {name} {value!r} is not a time; give e.g. 2025-01-02T09:30.") from None
    return stamp.tz_localize(NEW_YORK) if stamp.tz is None else stamp.tz_convert(NEW_YORK)


def _rows(store: Any, table: str, symbols: Sequence[str] | None, start: pd.Timestamp | None,
          end: pd.Timestamp | None) -> pd.DataFrame:
    column = WINDOW_COLUMNS[table]
    where: list[str] = []
    params: list[object] = []
    if symbols is not None:
        where.append(f"symbol IN ({', '.join('?' for _ in symbols)})" if symbols else "FALSE")
        params += list(symbols)
    if start is not None:
        where.append(f"{column} >= ?")
        params.append(start)
    if end is not None:
        where.append(f"{column} <= ?")
        params.append(end)
    return store.read_rows(table, where, params)


def _text_stamps(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Timestamp columns as ISO 8601 text in New York time (with offset); nulls stay null."""
    out = frame.copy()
    for column in TABLES[table].columns:
        if column.sql_type == "TIMESTAMPTZ":
            stamps = out[column.name]
            out[column.name] = [None if pd.isna(value) else value.isoformat() for value in stamps]
    return out


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _encode(frame: pd.DataFrame, table: str, fmt: str) -> bytes:
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, engine="pyarrow", compression="zstd", index=False)
        return buffer.getvalue()
    text = _text_stamps(frame, table)
    if fmt == "csv":
        return text.to_csv(index=False).encode("utf-8")
    if fmt == "json":
        records = [
            {name: _json_value(value) for name, value in zip(text.columns, row, strict=True)}
            for row in text.itertuples(index=False, name=None)
        ]
        return json.dumps(records, indent=1).encode("utf-8")
    import openpyxl  # noqa: F401  (Excel only: imported when an Excel export is written)

    buffer = io.BytesIO()
    text.astype(object).where(text.notna(), None).to_excel(buffer, index=False, sheet_name=table, engine="openpyxl")
    return buffer.getvalue()


def _decode(data: bytes, table: str, fmt: str) -> pd.DataFrame:
    if fmt == "parquet":
        frame = pd.read_parquet(io.BytesIO(data), engine="pyarrow")
    elif fmt == "csv":
        frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_values=[""])
    elif fmt == "json":
        frame = pd.DataFrame(json.loads(data), columns=TABLES[table].column_names)
    else:
        frame = pd.read_excel(io.BytesIO(data), sheet_name=table, engine="openpyxl")
    return as_read(frame, table)


def create_export(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    start: Any = None,
    end: Any = None,
    fmt: str | None = None,
    tables: Sequence[str] = EXPORTED_TABLES,
    now: pd.Timestamp | None = None,
) -> ExportResult:
    """Export the chosen tables' rows of ``symbols`` (None: all) with windows in ``[start, end]`` (None: open)."""
    fmt = fmt or settings.exports.default_format
    if fmt not in FORMATS:
        raise OperationError(f"Export format {fmt!r} is not supported; choose one of {list(FORMATS)}.")
    unknown = [name for name in tables if name not in WINDOW_COLUMNS]
    if unknown:
        raise OperationError(f"Table(s) {unknown} cannot be exported; choose from {list(EXPORTED_TABLES)}.")
    if symbols is not None:
        symbols = [str(symbol).upper() for symbol in symbols]
        unknown_symbols = sorted(set(symbols) - set(settings.symbols))
        if unknown_symbols:
            raise OperationError(
                f"Symbol(s) {unknown_symbols} are not configured; choose from {list(settings.symbols)}."
            )
    first, last = _stamp(start, "start"), _stamp(end, "end")
    if first is not None and last is not None and last < first:
        raise OperationError(f"The export's window range {first} .. {last} ends before it starts; swap them.")
    created = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    store = open_store(settings)
    folder = Path(settings.exports.dir)
    folder.mkdir(parents=True, exist_ok=True)
    export_id = f"{created:%Y%m%dT%H%M%S%f}Z-{fmt}"
    suffix = 1
    while (folder / export_id).exists():
        export_id, suffix = f"{created:%Y%m%dT%H%M%S%f}Z-{fmt}-{suffix}", suffix + 1
    partial = Path(tempfile.mkdtemp(prefix=f".{export_id}.", dir=folder))
    try:
        entries = {}
        for table in tables:
            frame = _rows(store, table, symbols, first, last)
            data = _encode(frame, table, fmt)
            file_name = f"{table}.{EXTENSIONS[fmt]}"
            (partial / file_name).write_bytes(data)
            entries[table] = {"file": file_name, "rows": len(frame), "sha256": hashlib.sha256(data).hexdigest()}
        manifest = {
            "export_id": export_id,
            "created_at": created.isoformat(),
            "format": fmt,
            "symbols": list(symbols) if symbols is not None else list(settings.symbols),
            "start": first.isoformat() if first is not None else None,
            "end": last.isoformat() if last is not None else None,
            "tables": entries,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
        target = folder / export_id
        partial.rename(target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return ExportResult(
        export_id=export_id,
        path=target,
        fmt=fmt,
        files={table: target / entry["file"] for table, entry in entries.items()},
        row_counts={table: entry["rows"] for table, entry in entries.items()},
        manifest_path=target / MANIFEST,
    )


def _manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        raise OperationError(
            f"{path} is not an export folder (no readable {MANIFEST}); name an export folder."
        ) from None


def verify_export(path: str | Path) -> list[str]:
    """Re-read every file of an export and compare its SHA-256 and row count with the manifest; problems found."""
    folder = Path(path)
    manifest = _manifest(folder)
    problems = []
    for table, entry in manifest["tables"].items():
        file_path = folder / entry["file"]
        if not file_path.is_file():
            problems.append(f"Export file {entry['file']} is missing.")
            continue
        data = file_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"Export file {entry['file']} fails its SHA-256 check (changed after it was written).")
            continue
        try:
            rows = len(_decode(data, table, manifest["format"]))
        except Exception as error:  # noqa: BLE001 - any unreadable file is a problem to report, not to raise
            problems.append(f"Export file {entry['file']} cannot be read back ({type(error).__name__}: {error}).")
            continue
        if rows != entry["rows"]:
            problems.append(
                f"Export file {entry['file']} reads back {rows} rows where its manifest says {entry['rows']}."
            )
    return problems


def read_export(path: str | Path) -> dict[str, pd.DataFrame]:
    """An export's tables, with the store's columns and types."""
    folder = Path(path)
    manifest = _manifest(folder)
    return {
        table: _decode((folder / entry["file"]).read_bytes(), table, manifest["format"])
        for table, entry in manifest["tables"].items()
    }


def list_exports(settings: Settings) -> list[ExportInfo]:
    """Every complete export in ``exports.dir``, oldest first."""
    folder = Path(settings.exports.dir)
    if not folder.is_dir():
        return []
    infos = []
    for path in sorted(folder.iterdir()):
        if not (path.is_dir() and _EXPORT_ID.match(path.name) and (path / MANIFEST).is_file()):
            continue
        manifest = _manifest(path)
        infos.append(
            ExportInfo(
                export_id=path.name,
                path=path,
                created_at=pd.Timestamp(manifest["created_at"]).tz_convert("UTC"),
                fmt=manifest["format"],
                row_counts={table: int(entry["rows"]) for table, entry in manifest["tables"].items()},
            )
        )
    return sorted(infos, key=lambda info: (info.created_at, info.export_id))


def expired_exports(settings: Settings, max_age_days: float, now: pd.Timestamp | None = None) -> list[Path]:
    """Export folders older than ``max_age_days``."""
    current = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    cutoff = current - pd.Timedelta(days=max_age_days)
    return [info.path for info in list_exports(settings) if info.created_at < cutoff]


def clean_exports(settings: Settings, max_age_days: float, now: pd.Timestamp | None = None) -> list[Path]:
    """Delete export folders older than ``max_age_days``; returns what was deleted."""
    removed = expired_exports(settings, max_age_days, now)
    for path in removed:
        shutil.rmtree(path)
    return removed
