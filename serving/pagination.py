"""Keyset pagination with opaque cursors: a page is the items after the cursor's key, newest first.

A cursor is the last item's sort key, base64url-encoded: rows written between two page requests never shift a page
(unlike offsets). ``limit`` is capped at ``MAX_LIMIT``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

import pandas as pd
from fastapi import HTTPException, Query
from pydantic import BaseModel, Field

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
T = TypeVar("T")


class PrunedSpan(BaseModel):
    """The part of the data asked for that retention deleted (a verified backup holds it)."""

    table: str
    first_window: dt.datetime
    last_window: dt.datetime
    partitions: int = Field(description="Symbol-windows deleted in that span.")
    rows_deleted: int
    pruned_at: dt.datetime = Field(description="When retention last deleted part of it.")
    detail: str = Field(description="One sentence: what was pruned, when, and the restore command.")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")
    limit: int
    pruned: PrunedSpan | None = Field(None, description="Which span of the data asked for retention pruned (its rows "
                                      "are not among the items); null when none was.")


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (at most {MAX_LIMIT}).")]
Cursor = Annotated[str | None, Query(max_length=2000, description="The `next_cursor` of the previous page.")]


def encode_cursor(key: Sequence[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
        if isinstance(key, list) and key and all(isinstance(part, str) for part in key):
            return tuple(key)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise HTTPException(422, "The cursor is not one this API returned; start again without it.")


def _sortable(column: pd.Series) -> pd.Series:
    """A column's sort key: datetimes as UTC nanoseconds (text in a cursor), everything else as text."""
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(column.dtype):
        return column.astype("int64")
    return column.astype(str)


def order_for_paging(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` sorted by ``keys`` descending, with their sort keys as extra columns (the names returned): what
    ``page_of`` pages. Done once per copy of the store for a list (``ReadSnapshot.derived``), not per request."""
    sort_keys = {f"__key{index}": _sortable(frame[name]) for index, name in enumerate(keys)}
    names = list(sort_keys)
    ordered = frame.assign(**sort_keys).sort_values(names, ascending=False, kind="stable").reset_index(drop=True)
    return ordered, names


def page_of(ordered: pd.DataFrame, names: Sequence[str], limit: int, cursor: str | None
            ) -> tuple[pd.DataFrame, str | None]:
    """The rows of ``ordered`` (``order_for_paging``) after ``cursor``, at most ``limit``, and the next cursor."""
    names = list(names)
    if cursor is not None:
        after = decode_cursor(cursor)
        if len(after) != len(names):
            raise HTTPException(422, "The cursor is not one this API returned; start again without it.")
        bounds: list[object] = []
        for name, text in zip(names, after, strict=True):
            if ordered[name].dtype == "int64":
                try:
                    bounds.append(int(text))
                except ValueError:
                    raise HTTPException(422, "The cursor is not one this API returned; start again without it."
                                        ) from None
            else:
                bounds.append(text)
        # Strictly after the cursor in descending order: (k0 < b0) or (k0 == b0 and (k1 < b1 or ...)).
        mask = ordered[names[-1]] < bounds[-1]
        for name, bound in zip(reversed(names[:-1]), reversed(bounds[:-1]), strict=True):
            mask = (ordered[name] < bound) | ((ordered[name] == bound) & mask)
        ordered = ordered[mask]
    page = ordered.head(limit + 1)
    next_cursor = encode_cursor([str(page[name].iloc[limit - 1]) for name in names]) if len(page) > limit else None
    return page.head(limit).drop(columns=names), next_cursor


def page_frame(frame: pd.DataFrame, keys: Sequence[str], limit: int, cursor: str | None
               ) -> tuple[pd.DataFrame, str | None]:
    """The rows of ``frame`` after ``cursor``, sorted by ``keys`` descending, at most ``limit`` of them, and the
    cursor of the next page (the last row's keys), done on the frame before rows become objects."""
    ordered, names = order_for_paging(frame, keys)
    return page_of(ordered, names, limit, cursor)
