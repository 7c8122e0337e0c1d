"""Numba kernels: exact global top-k selection, and the steps of SynFlow's graph backend.

Arrays in, arrays out; the public wrappers (input checks) live in
:mod:`pathnet.select.scoring` and :mod:`pathnet.select.synflow`.

Selection rule everywhere: keep the ``k`` elements that come first in the order
(score descending, secondary key descending, global index ascending). A *cut*
``(v, w_cut, g_cut)`` encodes the result: an element is kept iff
``score > v`` or (``score == v`` and (``secondary > w_cut`` or (``secondary ==
w_cut`` and ``index <= g_cut``))). Because the cut is a per-element predicate,
applying it needs no sequential tie counting.

SynFlow steps: the score of element ``e`` of edge ``i -> j`` is ``logw_e + c_ij``
with ``c_ij = log F(i) + log B(j)``. The alive elements live in *slots*, grouped
in rows (all edges into one unit) sorted by ``|w|``; with a lower bound of
``c_ij`` per row, a step reads only the low end of every row, where the scores
near the pruning threshold can be.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = [
    "fill_rows",
    "keep_by_cut",
    "kth_largest",
    "row_chunks",
    "slot_bracket",
    "slot_compact",
    "slot_edge_sums",
    "slot_kill",
    "slot_revive",
    "slot_sample",
    "slot_scores",
    "tie_cut",
]

_SMALL = 1 << 17  # below this, select with one full partition of a copy
_SAMPLE = 1 << 16  # sample size for the bracket of the large case
_BRACKET_SAMPLE = 1 << 14  # sample size for SynFlow's per-step bracket


# ------------------------------------------------------------- generic top-k
@njit(cache=True, no_cpython_wrapper=True)  # type: ignore[call-overload]  # numba option the stubs lack
def _select(a: np.ndarray, t: int) -> float:
    """The value of ascending rank ``t`` (0-based) of ``a``, which it reorders (no NaN).

    Quickselect with Hoare's partition around a median of three; written out
    rather than ``np.partition``, whose numba implementation takes seconds to
    compile. The value is the same whatever the algorithm.
    """
    lo = 0
    hi = a.size - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        p = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < p:
                i += 1
            while a[j] > p:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if t <= j:  # a[lo:j + 1] <= p <= a[i:hi + 1], and a[j + 1:i] == p
            hi = j
        elif t >= i:
            lo = i
        else:
            return a[t]
    return a[t]


@njit(cache=True)
def kth_largest(scores: np.ndarray, k: int) -> float:
    """The k-th largest score (``1 <= k <= scores.size``, no NaN).

    Deterministic: a strided sample brackets the target rank, one pass collects
    the bracket, a partition of the bracket finds the value; a failed bracket
    falls back to a full partition.
    """
    n = scores.size
    t = n - k  # ascending rank of the k-th largest
    if n > _SMALL:
        stride = n // _SAMPLE
        sample = np.empty(_SAMPLE, dtype=np.float64)
        for s in range(_SAMPLE):
            sample[s] = scores[s * stride]
        q = t / n
        pos = q * _SAMPLE
        margin = 6.0 * math.sqrt(max(q * (1.0 - q), 1.0 / _SAMPLE) * _SAMPLE) + 32.0
        lo = _select(sample, max(0, int(pos - margin)))  # the sorted sample's entries there
        hi = _select(sample, min(_SAMPLE - 1, int(pos + margin)))
        cap = min(int(n * (2.0 * margin / _SAMPLE) * 4.0) + 4096, n)
        cand = np.empty(cap, dtype=np.float64)
        nb = 0
        nc = 0
        ok = True
        for e in range(n):
            x = scores[e]
            if x < lo:
                nb += 1
            elif x <= hi:
                if nc == cap:
                    ok = False
                    break
                cand[nc] = x
                nc += 1
        if ok and nb <= t < nb + nc:
            return _select(cand[:nc], t - nb)
    tmp = np.empty(n, dtype=np.float64)
    tmp[:] = scores
    return _select(tmp, t)


@njit(cache=True, no_cpython_wrapper=True)  # type: ignore[call-overload]  # numba option the stubs lack
def _select_pair(sec: np.ndarray, idx: np.ndarray, t: int) -> tuple[float, int]:
    """``(sec, idx)`` of the entry of rank ``t`` (0-based) in the order (``sec``
    descending, ``idx`` ascending); reorders both arrays (no NaN).

    Quickselect as :func:`_select` (two stable argsorts would give the same pair,
    but numba's merge sort takes seconds to compile). Entries with equal keys
    are interchangeable: they return the same pair.
    """
    lo = 0
    hi = sec.size - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        for x, y in ((mid, lo), (hi, lo), (hi, mid)):  # median of three: a[lo] <= a[mid] <= a[hi]
            if sec[x] > sec[y] or (sec[x] == sec[y] and idx[x] < idx[y]):
                sec[x], sec[y] = sec[y], sec[x]
                idx[x], idx[y] = idx[y], idx[x]
        ps = sec[mid]
        pi = idx[mid]
        i = lo
        j = hi
        while i <= j:
            while sec[i] > ps or (sec[i] == ps and idx[i] < pi):
                i += 1
            while sec[j] < ps or (sec[j] == ps and idx[j] > pi):
                j -= 1
            if i <= j:
                sec[i], sec[j] = sec[j], sec[i]
                idx[i], idx[j] = idx[j], idx[i]
                i += 1
                j -= 1
        if t <= j:
            hi = j
        elif t >= i:
            lo = i
        else:
            return sec[t], idx[t]
    return sec[t], idx[t]


@njit(cache=True)
def tie_cut(
    scores: np.ndarray, secondary: np.ndarray, index: np.ndarray, v: float, r: int
) -> tuple[float, int]:
    """``(w_cut, g_cut)``: the r-th of the entries with ``score == v`` in the order
    (secondary descending, index ascending). ``r >= 1``, no NaN."""
    m = 0
    for e in range(scores.size):
        if scores[e] == v:
            m += 1
    sec = np.empty(m, dtype=np.float64)
    idx = np.empty(m, dtype=np.int64)
    m = 0
    for e in range(scores.size):
        if scores[e] == v:
            sec[m] = secondary[e]
            idx[m] = index[e]
            m += 1
    return _select_pair(sec, idx, r - 1)


@njit(cache=True)
def keep_by_cut(
    scores: np.ndarray,
    secondary: np.ndarray,
    index: np.ndarray,
    v: float,
    w_cut: float,
    g_cut: int,
) -> np.ndarray:
    """Boolean keep flags of the cut ``(v, w_cut, g_cut)``."""
    out = np.empty(scores.size, dtype=np.bool_)
    for e in range(scores.size):
        x = scores[e]
        if x > v:
            out[e] = True
        elif x == v:
            w = secondary[e]
            out[e] = w > w_cut or (w == w_cut and index[e] <= g_cut)
        else:
            out[e] = False
    return out


# ------------------------------------------------------ SynFlow alive slots
# Slots: one entry per alive element (gidx, edge, wabs, logw, alive flag). They
# form rows, one per (block, target unit j): the elements of all edges into j,
# sorted by |w| ascending, in the slot range row_start[r]:row_end[r].


@njit(cache=True)
def _radix_order(keys: np.ndarray, idx: np.ndarray, n_pass: int) -> np.ndarray:
    """``idx`` reordered so that ``keys[idx]`` ascends; stable (LSD radix, 8-bit digits)."""
    m = idx.size
    src = idx.copy()
    dst = np.empty(m, dtype=np.int64)
    count = np.zeros(257, dtype=np.int64)
    for p in range(n_pass):
        shift = np.uint64(8 * p)
        count[:] = 0
        for h in range(m):
            count[((np.uint64(keys[src[h]]) >> shift) & np.uint64(255)) + 1] += 1
        if count.max() == m:  # every key has the same digit: nothing to do
            continue
        for d in range(256):
            count[d + 1] += count[d]
        for h in range(m):
            digit = (np.uint64(keys[src[h]]) >> shift) & np.uint64(255)
            dst[count[digit]] = src[h]
            count[digit] += 1
        src, dst = dst, src
    return src


@njit(cache=True, parallel=True)
def fill_rows(
    values: np.ndarray,
    keys: np.ndarray,
    n_pass: int,
    present: np.ndarray,
    n_elem: int,
    gbase: int,
    ebase: int,
    score_power: int,
    row_start: np.ndarray,
    gidx: np.ndarray,
    edge: np.ndarray,
    wabs: np.ndarray,
    logw: np.ndarray,
) -> None:
    """Write the present elements of one block into the slot arrays, row ``j`` from
    ``row_start[j]``, sorted by ``|w|`` ascending (ties: lower index first).

    ``values`` is the block's ``(n_out, n_in * n_elem)`` weights, ``keys`` the bit
    patterns of their absolute values as unsigned integers (ordered like ``|w|``,
    ``n_pass`` bytes wide), ``present`` the presence flags (size 0: all present).
    Rows are disjoint, so the parallel loop writes disjoint outputs.
    """
    n_out, row_len = values.shape
    n_in = row_len // n_elem
    for j in prange(n_out):
        idx = np.arange(row_len) if present.size == 0 else np.flatnonzero(present[j])
        order = _radix_order(keys[j], idx, n_pass)
        at = row_start[j]
        for h in range(order.size):
            f = order[h]
            a = abs(values[j, f])
            af = np.float64(a)
            gidx[at + h] = gbase + j * row_len + f
            edge[at + h] = ebase + j * n_in + f // n_elem
            wabs[at + h] = a
            logw[at + h] = score_power * math.log(af) if af > 0.0 else -np.inf


@njit(cache=True)
def slot_edge_sums(
    alive: np.ndarray,
    edge: np.ndarray,
    wabs: np.ndarray,
    p: int,
    edge_w: np.ndarray,
    ecount: np.ndarray,
) -> None:
    """Refill ``edge_w`` (sums of ``|w|**p``) and ``ecount`` from the alive slots."""
    edge_w[:] = 0.0
    ecount[:] = 0
    for e in range(edge.size):
        if alive[e]:
            a = np.float64(wabs[e])
            ed = edge[e]
            edge_w[ed] += a * a if p == 2 else a
            ecount[ed] += 1


@njit(cache=True)
def slot_scores(
    alive: np.ndarray, edge: np.ndarray, logw: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(slot, score ``logw + offsets[edge]``) of every alive slot."""
    n = 0
    for e in range(edge.size):
        if alive[e]:
            n += 1
    pos = np.empty(n, dtype=np.int64)
    out = np.empty(n, dtype=np.float64)
    n = 0
    for e in range(edge.size):
        if alive[e]:
            pos[n] = e
            out[n] = logw[e] + offsets[edge[e]]
            n += 1
    return pos, out


@njit(cache=True)
def slot_sample(
    alive: np.ndarray,
    edge: np.ndarray,
    logw: np.ndarray,
    offsets: np.ndarray,
    probes: int,
) -> np.ndarray:
    """Sorted scores of the alive slots among ``probes`` slots spread over the array
    (one per stretch of ``n // probes`` slots, at a hashed position in the stretch so
    that it does not alias with the sorted rows)."""
    n = edge.size
    stride = max(1, n // probes)
    m = min(probes, n)
    out = np.empty(m, dtype=np.float64)
    k = 0
    for q in range(m):
        e = q * stride + (q * 2654435761) % stride
        if e < n and alive[e]:
            out[k] = logw[e] + offsets[edge[e]]
            k += 1
    return np.sort(out[:k])


@njit(cache=True)
def row_chunks(row_size: np.ndarray, n_chunks: int) -> np.ndarray:
    """Row index boundaries of ``n_chunks`` runs of rows with about equal sizes."""
    n_rows = row_size.size
    total = row_size.sum()
    out = np.empty(n_chunks + 1, dtype=np.int64)
    out[0] = 0
    r = 0
    acc = 0
    for c in range(1, n_chunks):
        goal = (total * c) // n_chunks
        while r < n_rows and acc + row_size[r] <= goal:
            acc += row_size[r]
            r += 1
        out[c] = max(out[c - 1], r)
    out[n_chunks] = n_rows
    return out


@njit(cache=True, parallel=True)
def slot_bracket(
    alive: np.ndarray,
    edge: np.ndarray,
    wabs: np.ndarray,
    logw: np.ndarray,
    offsets: np.ndarray,
    row_first: np.ndarray,
    row_end: np.ndarray,
    row_cmin: np.ndarray,
    lo: float,
    hi: float,
    p: int,
    edge_w: np.ndarray,
    ecount: np.ndarray,
    bounds: np.ndarray,
    below: np.ndarray,
    cand_s: np.ndarray,
    cand_p: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Kill the alive slots scoring below ``lo`` (see :func:`slot_kill`; recorded
    in ``below``) and record those scoring in ``[lo, hi]`` in ``cand_s``/``cand_p``,
    visiting only what can score ``<= hi``.

    Rows are sorted by ``logw`` ascending and ``row_cmin[r]`` bounds the edge
    offsets of row ``r``'s alive elements from below, so once ``logw + cmin > hi``
    the rest of the row scores above ``hi``. A row's leading dead slots are
    skipped for good (``row_first``). Chunk ``c`` (rows ``bounds[c]:bounds[c+1]``,
    whose edges no other chunk has) writes row ``c`` of the buffers and
    ``counts[c] = (killed, candidates, overflowed)``. The result does not depend
    on the number of threads.
    """
    for c in prange(bounds.size - 1):
        nb = 0
        nc = 0
        over = 0
        cap_b = below.shape[1]
        cap_c = cand_s.shape[1]
        for r in range(bounds[c], bounds[c + 1]):
            cmin = row_cmin[r]
            end = row_end[r]
            s = row_first[r]
            while s < end and not alive[s]:
                s += 1
            row_first[r] = s
            for e in range(s, end):
                lw = logw[e]
                if lw + cmin > hi:
                    break
                if not alive[e]:
                    continue
                ed = edge[e]
                x = lw + offsets[ed]
                if x < lo:
                    if nb == cap_b:
                        over = 1
                        break
                    below[c, nb] = e
                    nb += 1
                    alive[e] = False
                    a = np.float64(wabs[e])
                    n_left = ecount[ed] - 1
                    ecount[ed] = n_left
                    edge_w[ed] = edge_w[ed] - (a * a if p == 2 else a) if n_left > 0 else 0.0
                elif x <= hi:
                    if nc == cap_c:
                        over = 1
                        break
                    cand_s[c, nc] = x
                    cand_p[c, nc] = e
                    nc += 1
            if over:
                break
        counts[c, 0] = nb
        counts[c, 1] = nc
        counts[c, 2] = over


@njit(cache=True)
def slot_revive(rows: np.ndarray, counts: np.ndarray, alive: np.ndarray) -> None:
    """Undo the kills of :func:`slot_bracket` (then recompute the edge sums)."""
    for c in range(rows.shape[0]):
        for h in range(counts[c, 0]):
            alive[rows[c, h]] = True


@njit(cache=True)
def slot_kill(
    slots: np.ndarray,
    alive: np.ndarray,
    edge: np.ndarray,
    wabs: np.ndarray,
    p: int,
    edge_w: np.ndarray,
    ecount: np.ndarray,
) -> None:
    """Kill the given alive slots: clear their flag, take ``|w|**p`` off their edge
    (an edge with no alive element left gets exactly 0)."""
    for h in range(slots.size):
        e = slots[h]
        ed = edge[e]
        a = np.float64(wabs[e])
        c = ecount[ed] - 1
        ecount[ed] = c
        edge_w[ed] = edge_w[ed] - (a * a if p == 2 else a) if c > 0 else 0.0
        alive[e] = False


@njit(cache=True)
def slot_compact(
    alive: np.ndarray,
    gidx: np.ndarray,
    edge: np.ndarray,
    wabs: np.ndarray,
    logw: np.ndarray,
    row_start: np.ndarray,
    row_end: np.ndarray,
    p: int,
    edge_w: np.ndarray,
    ecount: np.ndarray,
) -> int:
    """Drop the dead slots in place, keeping the order, update the row ranges, and
    recompute ``edge_w`` and ``ecount`` exactly from the survivors. Returns the
    number alive (the new end of the slot arrays)."""
    edge_w[:] = 0.0
    ecount[:] = 0
    w = 0
    for r in range(row_start.size):
        s, t = row_start[r], row_end[r]
        row_start[r] = w
        for e in range(s, t):
            if alive[e]:
                ed = edge[e]
                a = wabs[e]
                af = np.float64(a)
                edge_w[ed] += af * af if p == 2 else af
                ecount[ed] += 1
                edge[w] = ed
                logw[w] = logw[e]
                gidx[w] = gidx[e]
                wabs[w] = a
                alive[w] = True
                w += 1
        row_end[r] = w
    return w
