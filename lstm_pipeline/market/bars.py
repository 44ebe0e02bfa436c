"""The market-bar frame every source returns and ``market_bars`` stores.

One row per (symbol, window_start). Prices are floats, volumes integers, timestamps timezone-aware New York
window starts, and every row names the source it came from.
"""

from __future__ import annotations

import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK

BAR_COLUMNS: dict[str, str] = {
    "symbol": "string",
    "window_start": f"datetime64[ns, {NEW_YORK}]",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "int64",
    "vwap": "float64",
    "trade_count": "Int64",
    "source": "string",
}
"""Column name to pandas dtype; ``vwap`` and ``trade_count`` are null where the source lacks them."""

PRICE_COLUMNS = ("open", "high", "low", "close")


class MarketDataError(RuntimeError):
    """A market-data source could not deliver bars; the message names the source, the symbol and the fix."""


def empty_bars() -> pd.DataFrame:
    """A frame with the bar schema and no rows."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in BAR_COLUMNS.items()})


def conform_bars(frame: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Cast a source's frame to the bar schema: required columns present, optional ones added as null.

    Raises ``ValueError`` naming the missing columns; does not judge the values (the data-quality checks do).
    """
    required = ("symbol", "window_start", *PRICE_COLUMNS, "volume")
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise ValueError(f"Bars are missing the column(s) {missing}; every source must provide {list(required)}.")
    out = frame.copy()
    if source is not None:
        out["source"] = source
    for name in ("vwap", "trade_count", "source"):
        if name not in out.columns:
            out[name] = None
    out = out[list(BAR_COLUMNS)]
    stamps = pd.to_datetime(out["window_start"])
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize(NEW_YORK)
    out["window_start"] = stamps.dt.tz_convert(NEW_YORK).astype(BAR_COLUMNS["window_start"])
    for name in PRICE_COLUMNS + ("vwap",):
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    volume = pd.to_numeric(out["volume"], errors="coerce")
    out["volume"] = volume.round().astype("Int64") if volume.isna().any() else volume.round().astype("int64")
    out["trade_count"] = pd.to_numeric(out["trade_count"], errors="coerce").round().astype("Int64")
    out["symbol"] = out["symbol"].astype("string")
    out["source"] = out["source"].astype("string")
    return out.sort_values(["symbol", "window_start"], kind="stable").reset_index(drop=True)
