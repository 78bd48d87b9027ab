"""SRSWOR by smallest keys, per cell and for the control arm.

Why "the n smallest keys": with keys that behave as independent uniform draws, the set of the n
smallest is a uniform random n-subset of the cell — simple random sampling without
replacement — so each unit's inclusion probability is exactly n/N. Ties (two equal 64-bit keys)
are broken by credit code, which is row order here (the pool is sorted by code).
"""

from __future__ import annotations

import numpy as np


def smallest(keys: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` smallest keys, ties by position; returned ascending by position."""
    size = len(keys)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    if n >= size:
        return np.arange(size, dtype=np.int64)
    threshold = np.partition(keys, n - 1)[n - 1]
    below = np.flatnonzero(keys < threshold)
    equal = np.flatnonzero(keys == threshold)[: n - len(below)]
    return np.sort(np.concatenate([below, equal]))


def select_cells(cell_of: np.ndarray, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Boolean mask: in each cell ``c`` (``cell_of == c``), the ``counts[c]`` smallest keys.

    ``cell_of`` is -1 for rows outside every cell (excluded); they are never selected.
    """
    chosen = np.zeros(len(keys), dtype=bool)
    small = cell_of.astype(np.int16) if len(counts) < 2**15 - 1 else cell_of
    order = np.argsort(small, kind="stable")  # radix sort; keeps code order inside each cell
    sorted_cells = small[order]
    bounds = np.searchsorted(sorted_cells, np.arange(-1, len(counts) + 1))
    for c, n in enumerate(counts):
        rows = order[bounds[c + 1] : bounds[c + 2]]
        chosen[rows[smallest(keys[rows], int(n))]] = True
    return chosen
