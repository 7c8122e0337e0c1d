"""Numba kernels: the bookkeeping of :class:`pathnet.select.linearised.Linearised`.

Each prunable layer keeps its alive weight elements as parallel arrays in
ascending torch order: output channel ``j``, input channel ``i``, kernel
position ``k``, forward weight ``base`` and secondary key ``sec``. Every step
compacts these arrays in place, maps the alive channels to a dense compacted
weight and gathers the scores from its gradient. All kernels are sequential
single passes: the results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "alive_elements",
    "channel_maps",
    "compact_slots",
    "fill_weight",
    "gather_scores",
    "kill_slots",
    "kth_largest_nonneg",
]


@njit(cache=True)
def alive_elements(
    present: np.ndarray, values: np.ndarray, n_in: int, n_k: int, p: int, q: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The present elements of a flat ``(n_out, n_in, n_k)`` weight in torch order:
    ``(j, i, k, |w|**p, |w|**q)`` (powers in float64, exact for float32 ``w``)."""
    n = 0
    for e in range(present.size):
        if present[e]:
            n += 1
    j = np.empty(n, dtype=np.int32)
    i = np.empty(n, dtype=np.int32)
    k = np.empty(n, dtype=np.int32)
    base = np.empty(n, dtype=np.float64)
    sec = np.empty(n, dtype=np.float64)
    s = 0
    row = n_in * n_k
    for e in range(present.size):
        if present[e]:
            a = abs(np.float64(values[e]))
            j[s] = e // row
            i[s] = (e % row) // n_k
            k[s] = e % n_k
            base[s] = a * a if p == 2 else a
            sec[s] = a * a if q == 2 else (a if q == 1 else 1.0)
            s += 1
    return j, i, k, base, sec


@njit(cache=True)
def compact_slots(
    j: np.ndarray, i: np.ndarray, k: np.ndarray, base: np.ndarray, sec: np.ndarray
) -> int:
    """Move the alive slots (``base >= 0``) to the front of every array, in order;
    return how many."""
    n = 0
    for s in range(base.size):
        if base[s] >= 0:
            j[n], i[n], k[n], base[n], sec[n] = j[s], i[s], k[s], base[s], sec[s]
            n += 1
    return n


@njit(cache=True)
def kill_slots(keep: np.ndarray, base: np.ndarray, cidx: np.ndarray, w: np.ndarray) -> int:
    """Mark dead (``base = -1``) every alive slot not in ``keep`` and zero its entry
    ``w[cidx[s]]`` of the compacted weight; return how many."""
    n = 0
    for s in range(base.size):
        if base[s] >= 0 and not keep[s]:
            base[s] = -1.0
            w[cidx[s]] = 0.0
            n += 1
    return n


@njit(cache=True)
def channel_maps(
    j: np.ndarray, i: np.ndarray, n_out: int, n_in: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Compacted index of every output and input channel (``-1``: no alive element)
    and the compacted channel counts."""
    omap = np.full(n_out, -1, dtype=np.int64)
    imap = np.full(n_in, -1, dtype=np.int64)
    for s in range(j.size):
        omap[j[s]] = 0
        imap[i[s]] = 0
    n_o = 0
    for c in range(n_out):
        if omap[c] == 0:
            omap[c] = n_o
            n_o += 1
    n_i = 0
    for c in range(n_in):
        if imap[c] == 0:
            imap[c] = n_i
            n_i += 1
    return omap, imap, n_o, n_i


@njit(cache=True)
def fill_weight(
    j: np.ndarray,
    i: np.ndarray,
    k: np.ndarray,
    base: np.ndarray,
    omap: np.ndarray,
    imap: np.ndarray,
    n_in_c: int,
    n_k: int,
    w: np.ndarray,
    cidx: np.ndarray,
) -> None:
    """``w[cidx[s]] = base[s]`` with ``cidx`` the flat index in the compacted
    ``(n_out_c, n_in_c, n_k)`` weight (``w`` zeroed by the caller)."""
    for s in range(j.size):
        c = (omap[j[s]] * n_in_c + imap[i[s]]) * n_k + k[s]
        cidx[s] = c
        w[c] = base[s]


@njit(cache=True)
def gather_scores(
    g: np.ndarray,
    cidx: np.ndarray,
    base: np.ndarray,
    sec: np.ndarray,
    absolute: bool,
    use_sec: bool,
    out: np.ndarray,
) -> None:
    """``out[s] = g[cidx[s]]`` (``abs`` if ``absolute``), times ``sec[s]`` if ``use_sec``;
    ``-1`` for a dead slot (``base < 0``)."""
    for s in range(cidx.size):
        if base[s] < 0:
            out[s] = -1.0
            continue
        v = g[cidx[s]]
        if absolute:
            v = abs(v)
        if use_sec:
            v *= sec[s]
        out[s] = v


_CAND = 4096  # collect the candidates once the bin holding the answer is this small


@njit(cache=True)
def kth_largest_nonneg(scores: np.ndarray, k: int) -> float:
    """The ``k``-th largest of the non-negative entries of ``scores`` (negative
    entries, the dead slots, are ignored; ``1 <= k <=`` their count, no NaN).

    Radix selection on the float64 bit patterns, which order like the values for
    non-negative numbers (``-0.0`` counts as negative): a 16-bit histogram per level narrows the answer to one
    bin; once the bin is small its entries are collected and sorted. Exact and
    deterministic, two or three passes over ``scores`` in practice.
    """
    keys = scores.view(np.int64)
    hist = np.zeros(1 << 16, dtype=np.int64)
    prefix = 0  # bits of the answer found so far, above ``shift + 16``
    need = k  # rank of the answer within the entries that match ``prefix``
    for level in range(4):
        shift = 48 - 16 * level
        hist[:] = 0
        for x in keys:
            if x >= 0 and (level == 0 or (x >> (shift + 16)) == prefix):
                hist[(x >> shift) & 0xFFFF] += 1
        b = (1 << 16) - 1
        while hist[b] < need:
            need -= hist[b]
            b -= 1
        prefix = (prefix << 16) | b
        if level == 3:  # all 64 bits known
            return np.array([prefix], dtype=np.int64).view(np.float64)[0]
        if hist[b] <= _CAND:
            cand = np.empty(hist[b], dtype=np.float64)
            n = 0
            for e in range(keys.size):
                x = keys[e]
                if x >= 0 and (x >> shift) == prefix:
                    cand[n] = scores[e]
                    n += 1
            cand.sort()
            return cand[cand.size - need]
    return 0.0  # not reached
