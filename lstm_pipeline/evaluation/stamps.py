"""Timestamp columns read without ``pd.to_datetime``'s cost when they already hold datetimes.

``pd.to_datetime`` on a column of a datetime dtype returns it unchanged, but first decides whether to cache by boxing
the first chunk of it (10,000 ``Timestamp`` objects, tens of milliseconds); the walk-forward backtest converts
columns of 800,000 stamps a dozen times per run, so that guess alone cost it over a second. Strings, objects and
numbers still go through ``pd.to_datetime``.
"""

from __future__ import annotations

import pandas as pd

from lstm_pipeline.market.calendar import NEW_YORK


def as_datetimes(values: pd.Series) -> pd.Series:
    """``pd.to_datetime(values)``: the same column when it already holds datetimes (naive or aware)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or values.dtype.kind == "M":
        return values
    return pd.to_datetime(values)


def as_new_york(values: pd.Series) -> pd.Series:
    """The stamps as aware New York datetimes (naive stamps are New York wall-clock time); the index is kept."""
    stamps = as_datetimes(values)
    if stamps.dt.tz is None:
        return stamps.dt.tz_localize(NEW_YORK)
    return stamps.dt.tz_convert(NEW_YORK)


def as_utc(values: pd.Series) -> pd.Series:
    """``pd.to_datetime(values, utc=True)``: aware stamps converted to UTC, naive ones read as UTC."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if values.dtype.kind == "M":
        return values.dt.tz_localize("UTC")
    return pd.to_datetime(values, utc=True)


__all__ = ["as_datetimes", "as_new_york", "as_utc"]
