"""Per-edge reductions of an edge block's parameter elements (numba)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["edge_sums"]


@njit(cache=True)
def edge_sums(values, mask, has_mask, mult, s1, s2):  # pragma: no cover - compiled
    """For each edge ``e`` (a row of ``values``, shape (E, K)): the number of unmasked
    elements, the sum of their ``|w|`` and the sum of their ``w**2``, in float64.

    ``mask`` is a bool (E, K) array, read only when ``has_mask``.
    """
    n_edges, k = values.shape
    for e in range(n_edges):
        m = 0.0
        a = 0.0
        s = 0.0
        for t in range(k):
            if has_mask and not mask[e, t]:
                continue
            v = np.float64(values[e, t])
            m += 1.0
            a += abs(v)
            s += v * v
        mult[e] = m
        s1[e] = a
        s2[e] = s
