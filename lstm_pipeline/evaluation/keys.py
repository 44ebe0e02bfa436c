"""Integer codes for the key columns of large batches (symbols, model versions), hashing one value per run.

A batch's keys come in long runs: a year of one symbol's week-ahead paths is ~10^6 prediction or validation rows
with one symbol and one model version. ``pd.factorize`` hashes every row; comparing neighbours first and hashing
only where the value changes gives the same codes for a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def factorize_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values)`` (codes, distinct values in order of first appearance; nulls -1), hashing one value
    per run of equal neighbours."""
    if len(values) < 2:
        return pd.factorize(values)
    try:
        changed = np.asarray(values[1:] != values[:-1], dtype=bool)
    except (TypeError, ValueError):  # a value that does not compare (pd.NA): hash every one
        return pd.factorize(values)
    heads = np.flatnonzero(np.concatenate([[True], changed]))
    codes, uniques = pd.factorize(values[heads])
    return np.repeat(codes, np.diff(np.append(heads, len(values)))), uniques


def as_text(values: pd.Series) -> np.ndarray:
    """``values.astype(str)`` as an object array, without converting a column that holds only strings already."""
    array = values.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(array, skipna=False) == "string":
        return array
    return values.astype(str).to_numpy(dtype=object)


def sorted_codes(values: np.ndarray) -> np.ndarray:
    """``pd.factorize(values, sort=True)[0]``: codes numbered in sorted order of the values (nulls -1)."""
    codes, uniques = factorize_runs(values)
    if not len(uniques):
        return codes
    return np.where(codes >= 0, pd.factorize(uniques, sort=True)[0][codes], -1)


__all__ = ["as_text", "factorize_runs", "sorted_codes"]
