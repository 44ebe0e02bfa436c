"""How the CLI prints: rich tables for people, one JSON document for scripts, one sentence on stderr for errors.

Exit codes: 0 done; 1 the operation ran and failed (a run failed, a backup did not verify, the store is unreadable);
2 a usage or configuration error (bad option, unknown symbol or alert key, invalid config); 3 a service the command
needs is not reachable (the Dagster webserver for ``update``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3


class CliError(Exception):
    """An error to print as one sentence on stderr, with its exit code."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


PIPED_WIDTH = 200
"""Width of tables written to a pipe or file (no terminal to fit): wide enough not to fold values."""


def console() -> Console:
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else PIPED_WIDTH
    return Console(highlight=False, soft_wrap=False, width=width)


def error_console() -> Console:
    return Console(stderr=True, highlight=False)


def say_error(message: str) -> None:
    """One sentence on stderr (plain text, so scripts can read it)."""
    sys.stderr.write(message.rstrip() + "\n")


def _jsonable(value: Any) -> Any:
    import pandas as pd

    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, float) and value != value:  # NaN
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready records (timestamps ISO 8601, missing values null)."""
    return [{str(k): _jsonable(v) for k, v in row.items()} for row in frame.to_dict("records")]


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _cell(value: Any, column: str) -> str:
    import pandas as pd

    value = _jsonable(value) if not isinstance(value, pd.Timestamp) else value
    if value is None:
        return "-"
    if isinstance(value, pd.Timestamp):
        from lstm_pipeline.market.calendar import NEW_YORK

        return value.tz_convert(NEW_YORK).strftime("%Y-%m-%d %H:%M") if value.tz else value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def print_table(frame: pd.DataFrame, title: str, columns: Sequence[str] | None = None,
                empty: str = "Nothing to show.") -> None:
    out = console()
    if frame.empty:
        out.print(f"[bold]{title}[/bold]: {empty}")
        return
    shown = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    table = Table(title=title, title_justify="left")
    for column in shown:
        table.add_column(column, overflow="fold")
    for row in frame[shown].itertuples(index=False):
        table.add_row(*(_cell(value, column) for value, column in zip(row, shown, strict=True)))
    out.print(table)


def print_mapping(mapping: Mapping[str, Any], title: str) -> None:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in mapping.items():
        table.add_row(str(key), "-" if value is None else str(value))
    console().print(table)
