"""Replay of recorded bars from a folder (or one file) of CSV or Parquet files.

Which files a symbol reads: a file without a symbol column belongs only to the symbol its name gives
(``<SYMBOL>.csv``, ``<SYMBOL>_*.csv``, any case, ``.csv`` or ``.parquet``); a file with a symbol (or ticker)
column gives rows to every symbol in it, whatever its name. A symbol no file holds is one error naming the folder
and the names looked for, never another symbol's rows. Columns map to the bar schema by a configurable map
(defaults cover ``Datetime, Open, High, Low, Close, Volume, Symbol`` and Polygon's flat files); rows outside the
NYSE regular session are dropped (recorded pre- and post-market rows often carry zero volume). Reading and
checking a file (``bar_files``) and aggregating finer bars (``bar_resampling``) live beside this module; a parsed
file is cached by path and modification stamp, so a run fetching many ranges reads each file once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from lstm_pipeline.market.bar_files import (
    BarFile,
    column_names,
    read_bar_file,
    source_columns,
    symbols_in,
)
from lstm_pipeline.market.bar_resampling import VALUE_COLUMNS, session_window_bars
from lstm_pipeline.market.bars import MarketDataError, conform_bars
from lstm_pipeline.market.calendar import NEW_YORK, session_windows, window_key

BAR_FILE_SUFFIXES = (".csv", ".parquet")

_Signature = tuple[int, int, int]
"""A file's modification time, size and inode: cached reads are keyed by it, so an edited file is read again."""
_ColumnMap = tuple[tuple[str, str], ...]


def load_recorded_bars(
    folder: str | Path,
    symbol: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    column_map: Mapping[str, str] | None = None,
    timezone: str = NEW_YORK,
) -> pd.DataFrame:
    """Recorded session bars of ``symbol`` with ``start <= window_start < end``, in the bar schema.

    Raises ``MarketDataError`` (one sentence naming the file, and the line where one is at fault) when no file
    holds ``symbol`` or a file it reads is malformed, mixes timestamp kinds, has naive stamps that do not fit
    ``timezone``, repeats a bar with different values, or has a spacing other than 15 minutes or a divisor of it.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise MarketDataError(
            f"The bar folder {root} does not exist; set market_data.file_path (or LSTM_PIPELINE_DATA_FILE) to a "
            "folder of CSV or Parquet bars."
        )
    try:
        ZoneInfo(timezone)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise MarketDataError(
            f"market_data.file_timezone {timezone!r} is not a timezone name; use one such as America/New_York or UTC."
        ) from None
    mapping = tuple(sorted((str(k), str(v)) for k, v in (column_map or {}).items()))
    files = _files_holding(root, symbol, mapping)
    per_file = [_window_bars(str(path), _signature(path), mapping, timezone, symbol.upper()) for path in files]
    bars = _merge(per_file, files, symbol)
    bars = bars[bars["window_start"].isin(session_windows(start, end))]
    return conform_bars(bars.drop(columns=["line", "file"]).assign(symbol=symbol))


def named_for(path: Path, symbol: str) -> bool:
    """Whether a file's name gives ``symbol``: ``<SYMBOL>.<ext>`` or ``<SYMBOL>_<anything>.<ext>``, any case."""
    stem, wanted = path.stem.upper(), symbol.upper()
    return stem == wanted or stem.startswith(f"{wanted}_")


def _files_holding(root: Path, symbol: str, mapping: _ColumnMap) -> list[Path]:
    candidates = [root] if root.is_file() else sorted(
        path for path in root.iterdir() if path.is_file() and path.suffix.lower() in BAR_FILE_SUFFIXES
    )
    wanted = symbol.upper()
    files: list[Path] = []
    unreadable: list[str] = []
    named_without_rows: list[str] = []
    with_symbol_column = 0
    for path in candidates:
        named = named_for(path, symbol)
        try:
            symbols = _symbols(str(path), _signature(path), mapping)
        except MarketDataError as exc:
            if named:
                raise
            unreadable.append(f"{path.name} ({exc})")
            continue
        if symbols is None:
            if named:
                files.append(path)
            continue
        with_symbol_column += 1
        if wanted in symbols:
            files.append(path)
        elif named:
            named_without_rows.append(path.name)
    if files:
        return files
    looked = f"{symbol}.csv, {symbol}_*.csv, {symbol}.parquet or {symbol}_*.parquet (any case)"
    notes = []
    if with_symbol_column:
        notes.append(f"no {symbol} rows in the symbol column of {with_symbol_column} file(s)")
    if named_without_rows:
        notes.append(f"{', '.join(named_without_rows)} has a symbol column without {symbol}")
    if unreadable:
        notes.append(f"unreadable: {'; '.join(unreadable)}")
    where = f"the bar file {root}" if root.is_file() else f"the bar folder {root}"
    raise MarketDataError(
        f"No bars for {symbol} in {where}: looked for {looked} or a symbol column holding {symbol}"
        f"{' (' + '; '.join(notes) + ')' if notes else ''}; add a file for {symbol} or remove it from the symbols."
    )


def _signature(path: Path) -> _Signature:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


@functools.lru_cache(maxsize=256)
def _symbols(path: str, signature: _Signature, mapping: _ColumnMap) -> set[str] | None:
    """The symbols in a file's symbol column, or None when it has none (its name then says whose it is)."""
    names = column_names(Path(path))
    columns = source_columns(names, dict(mapping)).get("symbol")
    if not columns:
        return None
    try:
        return symbols_in(Path(path), columns[0])
    except MarketDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is one sentence about the file
        raise MarketDataError(f"{path} cannot be read ({exc}); fix or remove it.") from None


@functools.lru_cache(maxsize=8)
def _bar_file(path: str, signature: _Signature, mapping: _ColumnMap, timezone: str) -> BarFile:
    return read_bar_file(Path(path), dict(mapping), timezone)


@functools.lru_cache(maxsize=64)
def _window_bars(
    path: str, signature: _Signature, mapping: _ColumnMap, timezone: str, symbol: str
) -> pd.DataFrame:
    """One file's bars of ``symbol`` per session window (cached: callers must not modify the frame)."""
    located = _bar_file(path, signature, mapping, timezone)
    rows = located.rows
    if located.has_symbol_column:
        held_by = rows["symbol"].fillna("")
        rows = rows[(held_by == symbol) | (held_by == "")]
    broken = rows[rows["problem"].notna()]
    if not broken.empty:
        first = broken.iloc[0]
        more = f" ({len(broken)} such rows in all)" if len(broken) > 1 else ""
        raise MarketDataError(
            f"{located.at(first['line'])} cannot be read: {first['problem']}{more}; fix or remove that row."
        )
    return session_window_bars(located, rows[rows["stamp"].notna()], symbol)


def _merge(per_file: list[pd.DataFrame], files: list[Path], symbol: str) -> pd.DataFrame:
    """One bar per window across files: the same bar twice is kept once, two different bars are an error."""
    bars = pd.concat(
        [frame.assign(file=path.name) for frame, path in zip(per_file, files, strict=True)], ignore_index=True
    )
    repeated = bars[bars.duplicated("window_start", keep=False)]
    if not repeated.empty:
        distinct = repeated.drop_duplicates(["window_start", *VALUE_COLUMNS])
        clashing = distinct[distinct.duplicated("window_start", keep=False)]
        if not clashing.empty:
            first = clashing[clashing["window_start"] == clashing["window_start"].iloc[0]]
            sources = " and ".join(
                f"{row.file} {'row' if row.file.lower().endswith('.parquet') else 'line'} {row.line}"
                for row in first.iloc[:2].itertuples()
            )
            raise MarketDataError(
                f"Two different {symbol} bars for the window {window_key(first['window_start'].iloc[0])} ({sources}) "
                f"in {files[0].parent}; keep one of them."
            )
        bars = bars.drop_duplicates(["window_start", *VALUE_COLUMNS])
    bars["source"] = "file:" + bars["file"]
    return bars.sort_values("window_start", kind="stable")
