"""Freed memory kept for reuse in a backtest process (glibc's malloc), instead of handed back and faulted in again.

A replay allocates and frees arrays of 1-30 MB by the hundred (a year of one symbol's paths is ~10^6 rows per
column). glibc serves a block that large with a fresh ``mmap`` unless its dynamic threshold has risen past it, and
returns the top of the heap to the system once 128 kB or more of it is free; every page of a fresh block then costs
a page fault (about 2.5 us here) when first written. Raising the mmap threshold to its maximum (32 MiB) and the trim
threshold to 512 MiB keeps those blocks in the heap, where the next stage reuses them warm: 5-15% of the backtest
after training on this 2-core machine (``benchmarks/bench_backtest.py``, whose ``--plain-malloc`` compares). The
price is a process that holds on to up to 512 MiB of freed memory until it exits, which a backtest CLI or Dagster
run process does soon after. Other platforms (or a libc without ``mallopt``) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
"""glibc's largest allowed mmap threshold on 64-bit systems (``HEAP_MAX_SIZE / 2``)."""
TRIM_THRESHOLD_BYTES = 512 * 1024 * 1024
TOP_PAD_BYTES = 64 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed blocks for reuse in this process (see the module docstring); True when it
    did, False where there is no glibc ``mallopt``. Once per process: later calls return the first answer."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
                (M_TOP_PAD, TOP_PAD_BYTES))
    return all(mallopt(option, value) == 1 for option, value in settings)


__all__ = ["keep_freed_memory"]
