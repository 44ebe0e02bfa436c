"""One recorded bar file (CSV or Parquet) read into checked rows, each remembering the line it came from.

What users get wrong in exports is caught here and named by file and line: rows with extra fields, numbers that
do not parse, empty required values, missing columns; timestamps are read and judged in ``bar_timestamps``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lstm_pipeline.market.bar_timestamps import check_session_share, parse_stamps
from lstm_pipeline.market.bars import MarketDataError

DEFAULT_COLUMN_MAP: dict[str, str] = {
    "window_start": "window_start",
    "datetime": "window_start",
    "timestamp": "window_start",
    "date": "window_start",
    "time": "window_start",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
    "vwap": "vwap",
    "trade_count": "trade_count",
    "transactions": "trade_count",
    "symbol": "symbol",
    "ticker": "symbol",
}
"""Lower-cased file column -> bar column; ``market_data.file_column_map`` adds to (and wins over) it."""

REQUIRED_NUMBERS = ("open", "high", "low", "close", "volume")
OPTIONAL_NUMBERS = ("vwap", "trade_count")
_BAD_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


@dataclass(frozen=True)
class BarFile:
    """The rows of one file: ``line``, ``symbol`` (when the file has that column), ``stamp`` (UTC), the numbers,
    and ``problem`` (why a row cannot be used, or null); a symbol reading a row with a problem fails."""

    path: Path
    rows: pd.DataFrame
    has_symbol_column: bool
    line_label: str

    def at(self, line: int) -> str:
        return f"{self.path} {self.line_label} {line}"


def column_names(path: Path) -> list[str]:
    """The file's column names as written (header only)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # noqa: BLE001 - any reader failure is one sentence about the file
            raise MarketDataError(f"{path} cannot be read as Parquet ({exc}); replace or remove it.") from None
    return list(_read_csv(path, nrows=0).columns)


def source_columns(names: list[str], column_map: Mapping[str, str]) -> dict[str, list[str]]:
    """Bar column -> the file columns that map to it, user-mapped ones first."""
    user = {key.strip().lower(): value for key, value in column_map.items()}
    found: dict[str, list[str]] = {}
    for preferred in (True, False):
        for name in names:
            key = str(name).strip().lower()
            target = user.get(key) if preferred else (DEFAULT_COLUMN_MAP.get(key) if key not in user else None)
            if target:
                found.setdefault(target, []).append(name)
    return found


def symbols_in(path: Path, column: str) -> set[str]:
    """Upper-cased symbols of a file's symbol column (malformed lines are skipped here and reported on reading)."""
    if path.suffix.lower() == ".parquet":
        values = pd.read_parquet(path, columns=[column])[column]
    else:
        values = _read_csv(path, usecols=[column], dtype=str, on_bad_lines="skip")[column]
    return set(values.dropna().astype(str).str.strip().str.upper())


def read_bar_file(path: Path, column_map: Mapping[str, str], timezone: str) -> BarFile:
    """Every row of ``path`` with its stamp in UTC and its numbers parsed; raises for a file-wide fault."""
    if path.suffix.lower() == ".parquet":
        try:
            raw = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001
            raise MarketDataError(f"{path} cannot be read as Parquet ({exc}); replace or remove it.") from None
        label, first_line = "row", 1
    else:
        raw = _read_csv(path, skip_blank_lines=False, dtype=None)
        raw = raw[raw.notna().any(axis=1)]  # blank lines, kept so far only to number lines as an editor does
        label, first_line = "line", 2
    raw = raw.reset_index(drop=False).rename(columns={"index": "__position"})
    columns = source_columns([c for c in raw.columns if c != "__position"], column_map)
    if "window_start" not in columns:
        raise MarketDataError(
            f"{path} has no timestamp column (columns: {[c for c in raw.columns if c != '__position']}); map one to "
            "window_start with market_data.file_column_map."
        )
    missing = [name for name in REQUIRED_NUMBERS if name not in columns]
    if missing:
        raise MarketDataError(
            f"{path} has no {', '.join(missing)} column; map the file's columns with market_data.file_column_map."
        )
    rows = pd.DataFrame({"line": raw["__position"].to_numpy() + first_line}, index=raw.index)
    problem = pd.Series(None, index=raw.index, dtype=object)
    has_symbol = "symbol" in columns
    if has_symbol:
        symbol = raw[columns["symbol"][0]].astype("string").str.strip().str.upper()
        rows["symbol"] = symbol
        problem = problem.mask(symbol.isna() | (symbol == ""), "the symbol is empty")
    located = BarFile(path, rows, has_symbol, label)
    stamps, naive, stamp_problem = parse_stamps(_stamp_text(raw, columns["window_start"]), located, timezone)
    rows["stamp"] = stamps
    problem = _first_problem(problem, stamp_problem)
    for name in REQUIRED_NUMBERS + OPTIONAL_NUMBERS:
        value, value_problem = _parse_numbers(raw, columns.get(name, []), name, required=name in REQUIRED_NUMBERS)
        rows[name] = value
        problem = _first_problem(problem, value_problem)
    rows["problem"] = problem
    if naive is not None:
        usable = problem.isna()
        check_session_share(path, stamps[usable], naive[usable], rows["volume"][usable], timezone)
    return located


def _first_problem(found: pd.Series, more: pd.Series) -> pd.Series:
    return found.mask(found.isna() & more.notna(), more)


def _read_csv(path: Path, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path, encoding="utf-8-sig", keep_default_na=False, na_values=[""], low_memory=False, **options
        )
    except pd.errors.EmptyDataError:
        raise MarketDataError(f"{path} is empty; remove it or export the bars again.") from None
    except pd.errors.ParserError as exc:
        bad = _BAD_FIELDS.search(str(exc))
        if bad:
            expected, line, saw = bad.groups()
            raise MarketDataError(
                f"{path} line {line} has {saw} fields where the header has {expected}; fix or remove that line."
            ) from None
        raise MarketDataError(f"{path} cannot be read as CSV ({exc}); fix the file.") from None
    except UnicodeDecodeError:
        raise MarketDataError(f"{path} is not UTF-8 text; export it as UTF-8 CSV or Parquet.") from None


def _stamp_text(raw: pd.DataFrame, names: list[str]) -> pd.Series:
    """The timestamp column, or a separate date and time column joined (``Date,Time,...`` exports)."""
    lowered = {str(name).strip().lower(): name for name in names}
    if "date" in lowered and "time" in lowered and not {"datetime", "timestamp", "window_start"} & set(lowered):
        return raw[lowered["date"]].astype("string") + " " + raw[lowered["time"]].astype("string")
    return raw[names[0]]


def _parse_numbers(raw: pd.DataFrame, names: list[str], bar_column: str, required: bool) -> tuple[pd.Series, pd.Series]:
    problem = pd.Series(None, index=raw.index, dtype=object)
    if not names:
        return pd.Series(np.nan, index=raw.index, dtype="float64"), problem
    text = raw[names[0]]
    value = pd.to_numeric(text, errors="coerce").astype("float64")
    present = text.notna() & (text.astype("string").str.strip() != "")
    unreadable = present & ~np.isfinite(value)
    if unreadable.any():
        problem[unreadable] = f"{bar_column} " + text[unreadable].astype("string").map(repr) + " is not a number"
    if required:
        problem = problem.mask(~present, f"{bar_column} is empty")
    return value, problem
