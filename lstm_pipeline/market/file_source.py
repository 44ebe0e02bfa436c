"""Replay of recorded bars from a folder of CSV or Parquet files.

Files are matched per symbol (``<SYMBOL>*.csv`` / ``.parquet``, or any file with a symbol column); columns are
mapped to the bar schema by a configurable map (defaults cover ``Datetime, Open, High, Low, Close, Volume,
Symbol`` as exported by common tools); bars outside the NYSE regular session are dropped (recorded pre- and
post-market rows often carry zero volume).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from lstm_pipeline.market.bars import MarketDataError, conform_bars, empty_bars
from lstm_pipeline.market.calendar import NEW_YORK, session_windows

DEFAULT_COLUMN_MAP: dict[str, str] = {
    "datetime": "window_start",
    "timestamp": "window_start",
    "date": "window_start",
    "time": "window_start",
    "window_start": "window_start",
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


def _read(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def _files_for(folder: Path, symbol: str) -> list[Path]:
    patterns = [f"{symbol}.*", f"{symbol}_*", f"{symbol.lower()}_*", f"{symbol.lower()}.*"]
    suffixes = {".csv", ".parquet"}
    found = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.suffix.lower() in suffixes})
    if found:
        return found
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in {".csv", ".parquet"})


def load_recorded_bars(
    folder: str | Path,
    symbol: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    column_map: Mapping[str, str] | None = None,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """Recorded session bars of ``symbol`` with ``start <= window_start < end``, in the bar schema."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise MarketDataError(
            f"The bar folder {root} does not exist; set market_data.file_path (or LSTM_PIPELINE_DATA_FILE) to a "
            "folder of CSV or Parquet bars."
        )
    files = [root] if root.is_file() else _files_for(root, symbol)
    mapping = {**DEFAULT_COLUMN_MAP, **{k.lower(): v for k, v in (column_map or {}).items()}}
    frames = []
    for path in files:
        raw = _read(path)
        renamed = raw.rename(columns={c: mapping[c.lower()] for c in raw.columns if c.lower() in mapping})
        renamed = renamed.loc[:, ~renamed.columns.duplicated()]
        if "window_start" not in renamed.columns:
            raise MarketDataError(
                f"{path} has no timestamp column (columns: {list(raw.columns)}); map one to window_start with "
                "market_data.file_column_map."
            )
        if "symbol" not in renamed.columns:
            renamed["symbol"] = symbol
        frames.append(renamed[renamed["symbol"].astype(str).str.upper() == symbol])
    if not frames or all(f.empty for f in frames):
        return empty_bars()
    frame = pd.concat(frames, ignore_index=True)
    stamps = pd.to_datetime(frame["window_start"], utc=False)
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize(timezone)
    frame["window_start"] = stamps.dt.tz_convert(NEW_YORK)
    frame["symbol"] = symbol
    windows = session_windows(start, end)
    frame = frame[frame["window_start"].isin(windows)]
    frame = frame.drop_duplicates(subset=["window_start"], keep="last")
    try:
        return conform_bars(frame, source=f"file:{root.name}")
    except ValueError as exc:
        raise MarketDataError(f"Recorded bars for {symbol} in {root} cannot be read: {exc}") from exc
