"""What the read commands ask of the store: read-only, through the storage layer's public ``read_rows``.

Readers open the store read-only and wait (bounded) while a run holds the DuckDB file's write lock for one of its
short transactions, so they work while a run writes. Each question reads only the rows it shows (the latest
forecast or recommendation of each symbol, the open alerts), never whole tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lstm_pipeline.settings import Settings


def open_store(settings: Settings) -> Any:
    """The configured store (``database_for`` when the storage layer has it, else the DuckDB file)."""
    try:
        from lstm_pipeline.storage import database_for  # type: ignore[attr-defined]
    except ImportError:
        from lstm_pipeline.storage import database_at

        return database_at(settings.db_path)
    return database_for(settings)


def _symbols(symbol: str | None, settings: Settings) -> list[str]:
    if symbol is None:
        return list(settings.symbols)
    wanted = symbol.strip().upper()
    if wanted not in settings.symbols:
        from lstm_pipeline.cli.output import CliError

        raise CliError(
            f"Symbol {wanted!r} is not configured; use one of {', '.join(settings.symbols)} or add it to symbols."
        )
    return [wanted]


def _latest(table: str, column: str, symbols: Sequence[str]) -> tuple[list[str], list[object]]:
    placeholders = ", ".join("?" for _ in symbols)
    return (
        [f"symbol IN ({placeholders})",
         f"{column} = (SELECT max(l.{column}) FROM {table} AS l WHERE l.symbol = t.symbol)"],
        list(symbols),
    )


def latest_predictions(store: Any, settings: Settings, symbol: str | None) -> pd.DataFrame:
    """Every horizon step of each symbol's newest forecast."""
    return store.read_rows("predictions", *_latest("predictions", "as_of_window", _symbols(symbol, settings)))


def latest_recommendations(store: Any, settings: Settings, symbol: str | None) -> pd.DataFrame:
    """Each symbol's newest recommendation (a trade, or which rule held it back)."""
    return store.read_rows(
        "trade_recommendations", *_latest("trade_recommendations", "as_of_window", _symbols(symbol, settings))
    )


def latest_accuracy(store: Any, settings: Settings, symbol: str | None = None) -> pd.DataFrame:
    """Each symbol's newest rolling accuracy (every span and horizon bucket)."""
    return store.read_rows(
        "accuracy_metrics", *_latest("accuracy_metrics", "window_start", _symbols(symbol, settings))
    )


def latest_bars(store: Any, settings: Settings) -> pd.DataFrame:
    return store.read_rows("market_bars", *_latest("market_bars", "window_start", list(settings.symbols)))


def alerts_since(store: Any, since: pd.Timestamp | None) -> pd.DataFrame:
    """Open alerts, plus those resolved after ``since`` when given."""
    if since is None:
        return store.read_rows("alerts", ["resolved_at IS NULL"])
    return store.read_rows("alerts", ["(resolved_at IS NULL OR resolved_at >= ?)"], [since])


def schema_version(store: Any) -> int | None:
    rows = store.read_rows("schema_version")
    return int(rows["version"].max()) if len(rows) else None


def store_size_bytes(settings: Settings) -> int | None:
    path = Path(settings.db_path)
    backend = getattr(getattr(settings, "storage", None), "backend", "duckdb")
    return path.stat().st_size if backend == "duckdb" and path.exists() else None
