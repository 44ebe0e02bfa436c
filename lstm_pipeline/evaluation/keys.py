"""Integer codes for the key columns of large batches (symbols, model versions), hashing one value per run.

A batch's keys come in long runs: a year of one symbol's week-ahead paths is ~10^6 prediction or validation rows
with one symbol and one model version. ``pd.factorize`` hashes every row; comparing neighbours first and hashing
only where the value changes gives the same codes for a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def moved_positions(values: np.ndarray) -> np.ndarray:
    """The positions i (0 <= i < len - 1) where ``values[i + 1]`` may differ from ``values[i]``: every one, except
    in an object array where two neighbours that are the same object are equal without a call to ``==``. A
    batch's key column repeats one object per symbol, model version or status (a million rows hold the same few
    ``str`` objects), and the array's entries read as addresses say so for the whole column at once."""
    if values.dtype == object and len(values) > 1:
        try:
            addresses = np.frombuffer(np.ascontiguousarray(values), dtype=np.intp)
        except (TypeError, ValueError, BufferError):  # no buffer to read them from: every neighbour
            pass
        else:
            return np.flatnonzero(addresses[1:] != addresses[:-1])
    return np.arange(max(len(values) - 1, 0))


def run_heads(values: np.ndarray, moved: np.ndarray | None = None) -> np.ndarray:
    """The first position of every run of equal neighbours (None if a value does not compare, as pd.NA);
    ``moved``: ``moved_positions(values)`` when already known."""
    values = np.asarray(values)
    if len(values) < 2:
        return np.arange(len(values))
    moved = moved_positions(values) if moved is None else moved
    try:
        changed = np.asarray(values[moved + 1] != values[moved], dtype=bool)
    except (TypeError, ValueError):
        return None
    return np.concatenate([[0], moved[changed] + 1])


def factorize_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values)`` (codes, distinct values in order of first appearance; nulls -1), hashing one value
    per run of equal neighbours (``run_heads``)."""
    if len(values) < 2:
        return pd.factorize(values)
    moved = moved_positions(values)
    if values.dtype == object and len(moved) > len(values) // 4:
        return _factorize_objects(values)  # few runs (a bucket name per row): no neighbour is worth comparing
    heads = run_heads(values, moved)
    if heads is None:  # a value that does not compare (pd.NA): hash every one
        return pd.factorize(values)
    codes, uniques = _factorize_objects(values[heads])
    if len(heads) == len(values):  # no run longer than one row
        return codes, uniques
    return np.repeat(codes, np.diff(np.append(heads, len(values)))), uniques


def _factorize_objects(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values)``, for an object array holding few distinct objects (a bucket name per row, say) by
    their addresses: integers hash far faster than strings, and only one value per distinct object is compared.
    The objects are numbered by first appearance, so their values are too: the same codes and uniques."""
    if values.dtype != object or len(values) < 64:
        return pd.factorize(values)
    try:
        addresses = np.frombuffer(np.ascontiguousarray(values), dtype=np.intp)
    except (TypeError, ValueError, BufferError):
        return pd.factorize(values)
    object_code, distinct = pd.factorize(addresses)
    if len(distinct) > len(values) // 4:  # mostly distinct objects: hashing the values is no slower
        return pd.factorize(values)
    first = np.empty(len(distinct), dtype=np.int64)
    first[object_code[::-1]] = np.arange(len(values) - 1, -1, -1)  # the last write, the first appearance, wins
    value_code, uniques = pd.factorize(values[first])
    return value_code[object_code], uniques


def as_text(values: pd.Series) -> np.ndarray:
    """``values.astype(str)`` as an object array, without converting a column that holds only strings already
    (told by one value per run of the same object: ``moved_positions``)."""
    array = values.to_numpy(dtype=object)
    sample = array if len(array) < 2 else array[np.concatenate([[0], moved_positions(array) + 1])]
    if pd.api.types.infer_dtype(sample, skipna=False) == "string":
        return array
    return values.astype(str).to_numpy(dtype=object)


def as_floats(values: pd.Series) -> np.ndarray:
    """The values as float64 with NaN for null, whatever the column's dtype (object, nullable or float); a float64
    column as it is, without a copy (read it, never write it)."""
    if values.dtype == np.float64:
        return values.to_numpy()
    return values.astype("Float64").to_numpy(dtype=float, na_value=np.nan)


def rows_at(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """The rows of ``frame`` at ``positions`` as a new frame indexed 0..n-1: one copy (a filter and then
    ``reset_index`` copy a batch of ~10^5 rows twice)."""
    out = frame.take(positions)
    out.index = pd.RangeIndex(len(out))
    return out


def sorted_codes(values: np.ndarray) -> np.ndarray:
    """``pd.factorize(values, sort=True)[0]``: codes numbered in sorted order of the values (nulls -1)."""
    codes, uniques = factorize_runs(values)
    if not len(uniques):
        return codes
    return np.where(codes >= 0, pd.factorize(uniques, sort=True)[0][codes], -1)


__all__ = ["as_floats", "as_text", "factorize_runs", "moved_positions", "rows_at", "run_heads", "sorted_codes"]
