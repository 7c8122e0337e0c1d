"""Numba kernels of :class:`pathnet.select.linearised.Linearised`.

Each prunable layer keeps its alive weight elements as parallel slot arrays in
ascending torch order: output channel ``j``, column ``col = i * n_k + k`` of the
flattened weight, forward weight ``base`` (``-1``: dead) and secondary key
``sec``. The kernels build these arrays, map them into a channel-compacted dense
weight (dense mode), group a convolution's output positions by the input columns
their taps read and fold gradients from the distinct columns, run a layer over
the slots as CSR rows (sparse mode: forward and input gradient on a range of
rows), compute finished scores as one dot product per slot (both modes) or
gather them from a weight gradient, count them by the top 16 bits of their
float64 patterns, and kill and compact the slots. Every kernel is a sequential
pass over the range it is given; the callers cut the work at fixed places, so
results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "alive_elements",
    "channel_maps",
    "collect_bin",
    "column_hashes",
    "compact_slots",
    "count_bins",
    "fill_weight",
    "fold_columns",
    "fold_table",
    "gather_scores",
    "kill_below",
    "patch_groups",
    "refine_hist",
    "row_scores",
    "same_columns",
    "sparse_forward",
    "sparse_input_grad",
    "sum_columns",
    "take_columns",
]


@njit(cache=True, nogil=True)
def alive_elements(
    present: np.ndarray, values: np.ndarray, n_cols: int, p: int, q: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The present elements of a flat ``(n_out, n_cols)`` weight in torch order:
    ``(j, col, |w|**p, |w|**q, counts)`` (powers in float64, exact for float32
    ``w``; ``counts``: present elements per output channel)."""
    n_out = present.size // n_cols
    counts = np.zeros(n_out, dtype=np.int64)
    for r in range(n_out):
        c = 0
        for e in range(r * n_cols, (r + 1) * n_cols):
            c += present[e]
        counts[r] = c
    n = int(counts.sum())
    j = np.empty(n, dtype=np.int32)
    col = np.empty(n, dtype=np.int32)
    base = np.empty(n, dtype=np.float64)
    sec = np.empty(n, dtype=np.float64)
    s = 0
    for r in range(n_out):
        for c in range(n_cols):
            e = r * n_cols + c
            if present[e]:
                a = abs(np.float64(values[e]))
                j[s] = r
                col[s] = c
                base[s] = a * a if p == 2 else a
                sec[s] = a * a if q == 2 else (a if q == 1 else 1.0)
                s += 1
    return j, col, base, sec, counts


@njit(cache=True)
def channel_maps(
    j: np.ndarray, col: np.ndarray, n_out: int, n_in: int, n_k: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Compacted index of every output and input channel (``-1``: no alive element)
    and the compacted channel counts."""
    omap = np.full(n_out, -1, dtype=np.int64)
    imap = np.full(n_in, -1, dtype=np.int64)
    for s in range(j.size):
        omap[j[s]] = 0
        imap[col[s] // n_k] = 0
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


@njit(cache=True, nogil=True)
def fill_weight(
    j: np.ndarray,
    col: np.ndarray,
    base: np.ndarray,
    omap: np.ndarray,
    imap: np.ndarray,
    n_in_c: int,
    n_k: int,
    w: np.ndarray,
    cidx: np.ndarray,
    ucol: np.ndarray,
) -> None:
    """``w[cidx[s]] = base[s]`` with ``cidx`` the flat index in the compacted
    ``(n_out_c, n_in_c, n_k)`` weight (``w`` zeroed by the caller), and ``ucol[s]``
    the slot's row of the channel-compacted ``unfold(x)``."""
    for s in range(j.size):
        i = col[s] // n_k
        k = col[s] - i * n_k
        ci = imap[i] * n_k + k
        c = omap[j[s]] * (n_in_c * n_k) + ci
        cidx[s] = c
        ucol[s] = ci
        w[c] = base[s]


# ------------------------------------------------------------- repeated columns
# On an all-ones input the activations of a convolutional net repeat away from
# the borders: many columns of ``unfold(x)`` (and of the output gradient) are
# equal, and the products need each distinct column once.


@njit(cache=True, nogil=True)
def column_hashes(a: np.ndarray, p0: int, p1: int, hashes: np.ndarray) -> None:
    """``hashes[p]`` for the columns ``p0 <= p < p1`` of the C-contiguous matrix ``a``:
    a 64-bit hash of the column's float64 bit patterns (bitwise-equal columns hash
    equal; a caller that groups by hash must still compare the columns)."""
    bits = a.view(np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    for p in range(p0, p1):
        hashes[p] = np.uint64(0x6A09E667F3BCC909)
    for k in range(a.shape[0]):
        for p in range(p0, p1):
            h = (hashes[p] ^ bits[k, p]) * mult
            hashes[p] = h ^ (h >> np.uint64(29))


@njit(cache=True, nogil=True)
def same_columns(a: np.ndarray, rep: np.ndarray, p0: int, p1: int) -> bool:
    """Whether every column ``p0 <= p < p1`` of the C-contiguous ``a`` equals, bit for
    bit, column ``rep[p]``."""
    bits = a.view(np.uint64)
    for k in range(a.shape[0]):
        for p in range(p0, p1):
            if bits[k, p] != bits[k, rep[p]]:
                return False
    return True


@njit(cache=True)
def patch_groups(
    pid: np.ndarray, n_ids: int, geom: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Group a convolution's output positions by the input columns they read.

    ``pid[y * w + x]`` names the input column at ``(y, x)`` (equal ids: equal
    columns; ``0 <= pid < n_ids``); ``geom`` is ``(h, w, oh, ow, kh, kw, sh, sw, ph,
    pw, dh, dw)``. Two output positions fall in one group when every kernel tap
    reads the same column id (or padding at both). Returns ``(inv, first, idx,
    ok)``: the group of each output position, the first position of each group,
    for each tap and group the flat index into the zero-padded input (``(h + 2 ph)
    * (w + 2 pw)`` positions) that it reads, and ``False`` (nothing grouped) on a
    collision of the 64-bit keys the positions are sorted by."""
    h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw = geom
    n_p, n_k = oh * ow, kh * kw
    taps = np.empty((n_p, n_k), dtype=np.int64)
    key = np.empty(n_p, dtype=np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    for p in range(n_p):
        hk = np.uint64(0x6A09E667F3BCC909)
        for ky in range(kh):
            for kx in range(kw):
                y = (p // ow) * sh - ph + ky * dh
                x = (p % ow) * sw - pw + kx * dw
                t = pid[y * w + x] if 0 <= y < h and 0 <= x < w else n_ids  # n_ids: padding
                taps[p, ky * kw + kx] = t
                hk = (hk ^ np.uint64(t)) * mult
                hk ^= hk >> np.uint64(29)
        key[p] = hk
    order = np.argsort(key, kind="mergesort")  # stable: each run starts at its first position
    inv = np.empty(n_p, dtype=np.int64)
    first = np.empty(n_p, dtype=np.int64)
    n_g = 0
    for q in range(n_p):
        p = order[q]
        if q > 0 and key[p] == key[order[q - 1]]:
            f = first[n_g - 1]
            for k in range(n_k):
                if taps[p, k] != taps[f, k]:  # a collision: give up the grouping
                    return inv, first[:0], np.empty((n_k, 0), dtype=np.int64), False
        else:
            first[n_g] = p
            n_g += 1
        inv[p] = n_g - 1
    idx = np.empty((n_k, n_g), dtype=np.int64)
    for g in range(n_g):
        oy, ox = first[g] // ow, first[g] % ow
        for ky in range(kh):
            for kx in range(kw):
                idx[ky * kw + kx, g] = (oy * sh + ky * dh) * (w + 2 * pw) + ox * sw + kx * dw
    return inv, first[:n_g], idx, True


@njit(cache=True)
def fold_table(geom: np.ndarray, col_of: np.ndarray) -> np.ndarray:
    """``table[y * w + x, k]``: the column (``col_of`` of the output position) whose
    tap ``k`` reads input position ``(y, x)``, ``-1`` if none does; ``geom`` as in
    :func:`patch_groups`."""
    h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw = geom
    table = np.full((h * w, kh * kw), -1, dtype=np.int64)
    for p in range(oh * ow):
        for ky in range(kh):
            y = (p // ow) * sh - ph + ky * dh
            if 0 <= y < h:
                for kx in range(kw):
                    x = (p % ow) * sw - pw + kx * dw
                    if 0 <= x < w:
                        table[y * w + x, ky * kw + kx] = col_of[p]
    return table


@njit(cache=True, nogil=True)
def fold_columns(gu: np.ndarray, table: np.ndarray, gx: np.ndarray) -> None:
    """``gx[c, q] = sum_k gu[c * n_k + k, table[q, k]]`` (terms with ``table < 0``
    left out): the input gradient of a convolution from the gradient of its
    (distinct) unfolded columns, the transpose of ``unfold``."""
    n_k = table.shape[1]
    for c in range(gx.shape[0]):
        for q in range(gx.shape[1]):
            acc = 0.0
            for k in range(n_k):
                t = table[q, k]
                if t >= 0:
                    acc += gu[c * n_k + k, t]
            gx[c, q] = acc


@njit(cache=True, nogil=True)
def take_columns(src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    """``out[:, p] = src[:, idx[p]]``."""
    for r in range(out.shape[0]):
        for p in range(out.shape[1]):
            out[r, p] = src[r, idx[p]]


@njit(cache=True, nogil=True)
def sum_columns(src: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    """``out[:, q] = sum of src[:, p] over idx[p] == q``, in the order of ``p``."""
    out[:] = 0.0
    for r in range(src.shape[0]):
        for p in range(src.shape[1]):
            out[r, idx[p]] += src[r, p]


# ---------------------------------------------------------------- sparse layers
# A layer in sparse mode keeps its alive elements as CSR rows over the output
# channel: ``rowptr[r]:rowptr[r + 1]`` are the slots of output channel ``r``
# (ascending ``col = i * n_k + k``, the row of ``unfold(x)`` the element reads).
# The kernels work on a row range, so that callers may split a layer between
# threads at fixed row boundaries: the results do not depend on the split's
# execution order.

_TOP = 48  # a score's histogram bin: the top 16 bits of its float64 pattern


@njit(cache=True, nogil=True, fastmath=True)
def sparse_forward(
    rowptr: np.ndarray,
    col: np.ndarray,
    base: np.ndarray,
    u: np.ndarray,
    y: np.ndarray,
    r0: int,
    r1: int,
) -> None:
    """``y[r] = sum_s base[s] * u[col[s]]`` over the alive slots (``base >= 0``) of
    rows ``r0 <= r < r1``. Dead slots add ``0 * u``, exactly nothing (``u`` is
    finite), which saves a branch."""
    n_p = u.shape[1]
    if n_p == 4:  # VGG's 2x2 maps: two interleaved sets of register accumulators
        for r in range(r0, r1):
            a0 = a1 = a2 = a3 = e0 = e1 = e2 = e3 = 0.0
            s, end = rowptr[r], rowptr[r + 1]
            while s + 1 < end:
                b, c = max(base[s], 0.0), col[s]
                a0 += b * u[c, 0]
                a1 += b * u[c, 1]
                a2 += b * u[c, 2]
                a3 += b * u[c, 3]
                b, c = max(base[s + 1], 0.0), col[s + 1]
                e0 += b * u[c, 0]
                e1 += b * u[c, 1]
                e2 += b * u[c, 2]
                e3 += b * u[c, 3]
                s += 2
            if s < end:
                b, c = max(base[s], 0.0), col[s]
                a0 += b * u[c, 0]
                a1 += b * u[c, 1]
                a2 += b * u[c, 2]
                a3 += b * u[c, 3]
            y[r, 0], y[r, 1], y[r, 2], y[r, 3] = a0 + e0, a1 + e1, a2 + e2, a3 + e3
        return
    acc = np.empty(n_p)
    for r in range(r0, r1):  # four slots per update of the accumulator row
        acc[:] = 0.0
        s, end = rowptr[r], rowptr[r + 1]
        while s + 3 < end:
            b0, b1 = max(base[s], 0.0), max(base[s + 1], 0.0)
            b2, b3 = max(base[s + 2], 0.0), max(base[s + 3], 0.0)
            c0, c1, c2, c3 = col[s], col[s + 1], col[s + 2], col[s + 3]
            for q in range(n_p):
                acc[q] += (b0 * u[c0, q] + b1 * u[c1, q]) + (b2 * u[c2, q] + b3 * u[c3, q])
            s += 4
        while s < end:
            b, c = max(base[s], 0.0), col[s]
            for q in range(n_p):
                acc[q] += b * u[c, q]
            s += 1
        for q in range(n_p):
            y[r, q] = acc[q]


@njit(cache=True, nogil=True, fastmath=True)
def row_scores(
    rowptr: np.ndarray,
    rowmap: np.ndarray,
    cols: np.ndarray,
    u: np.ndarray,
    g: np.ndarray,
    base: np.ndarray,
    sec: np.ndarray,
    absolute: bool,
    use_sec: bool,
    scores: np.ndarray,
    r0: int,
    r1: int,
) -> None:
    """The score of every slot of rows ``r0 <= r < r1`` (``abs`` if ``absolute``, times
    ``sec`` if ``use_sec``, ``-1`` if dead: :func:`_score`) from its gradient
    ``g[rowmap[r]] . u[cols[s]]``. Serves a dense-mode layer (``rowmap``, ``cols``:
    the rows of its compacted weight and unfold) and a sparse one (identity
    ``rowmap``, ``cols = col``)."""
    n_p = u.shape[1]
    for r in range(r0, r1):
        a, b = rowptr[r], rowptr[r + 1]
        if a == b:
            continue
        m = rowmap[r]
        if n_p == 4:
            g0, g1, g2, g3 = g[m, 0], g[m, 1], g[m, 2], g[m, 3]
            for s in range(a, b):
                c = cols[s]
                d = g0 * u[c, 0] + g1 * u[c, 1] + g2 * u[c, 2] + g3 * u[c, 3]
                scores[s] = _score(d, base[s], sec[s], absolute, use_sec)
        else:
            for s in range(a, b):
                c = cols[s]
                d = 0.0
                for q in range(n_p):
                    d += g[m, q] * u[c, q]
                scores[s] = _score(d, base[s], sec[s], absolute, use_sec)


@njit(cache=True, nogil=True, fastmath=True)
def sparse_input_grad(
    rowptr: np.ndarray,
    col: np.ndarray,
    base: np.ndarray,
    g: np.ndarray,
    gu: np.ndarray,
    r0: int,
    r1: int,
) -> None:
    """``gu[col[s]] += base[s] * g[r]`` over the alive slots of rows ``r0 <= r < r1``
    (``gu`` accumulates: zero it first; dead slots add exactly nothing)."""
    n_p = g.shape[1]
    for r in range(r0, r1):
        if n_p == 4:
            g0, g1, g2, g3 = g[r, 0], g[r, 1], g[r, 2], g[r, 3]
            for s in range(rowptr[r], rowptr[r + 1]):
                b, c = max(base[s], 0.0), col[s]
                gu[c, 0] += b * g0
                gu[c, 1] += b * g1
                gu[c, 2] += b * g2
                gu[c, 3] += b * g3
        else:
            for s in range(rowptr[r], rowptr[r + 1]):
                b, c = max(base[s], 0.0), col[s]
                for q in range(n_p):
                    gu[c, q] += b * g[r, q]


@njit(cache=True, inline="always")
def _score(g: float, base: float, sec: float, absolute: bool, use_sec: bool) -> float:
    """A slot's score from its gradient ``g``: ``abs`` if ``absolute``, times ``sec``
    if ``use_sec``; ``-1`` if the slot is dead (``base < 0``)."""
    if absolute:
        g = abs(g)
    if use_sec:
        g *= sec
    return g if base >= 0 else -1.0


@njit(cache=True, nogil=True)
def gather_scores(
    g: np.ndarray,
    cidx: np.ndarray,
    base: np.ndarray,
    sec: np.ndarray,
    absolute: bool,
    use_sec: bool,
    out: np.ndarray,
) -> None:
    """``out[s] = g[cidx[s]]`` (``abs`` if ``absolute``, times ``sec[s]`` if
    ``use_sec``); ``-1`` for a dead slot (``base < 0``)."""
    for s in range(cidx.size):
        out[s] = _score(g[cidx[s]], base[s], sec[s], absolute, use_sec)


@njit(cache=True, nogil=True)
def count_bins(scores: np.ndarray, hist: np.ndarray) -> None:
    """Count ``scores`` by the top 16 bits of their float64 patterns into the four
    rows of ``hist`` (``(4, 65536)``, accumulating; four rows keep consecutive
    increments of one bin independent). Negative scores land in bins from
    ``0x8000`` up."""
    keys = scores.view(np.int64)
    n = keys.size // 4 * 4
    for s in range(0, n, 4):
        hist[0, (keys[s] >> _TOP) & 0xFFFF] += 1
        hist[1, (keys[s + 1] >> _TOP) & 0xFFFF] += 1
        hist[2, (keys[s + 2] >> _TOP) & 0xFFFF] += 1
        hist[3, (keys[s + 3] >> _TOP) & 0xFFFF] += 1
    for s in range(n, keys.size):
        hist[0, (keys[s] >> _TOP) & 0xFFFF] += 1


@njit(cache=True, nogil=True)
def refine_hist(scores: np.ndarray, shift: int, prefix: int, hist: np.ndarray) -> None:
    """Count the scores whose bits above ``shift + 16`` are ``prefix`` by their 16
    bits at ``shift`` (``hist`` accumulates)."""
    keys = scores.view(np.int64)
    for s in range(keys.size):
        x = keys[s]
        if (x >> (shift + 16)) == prefix:
            hist[(x >> shift) & 0xFFFF] += 1


@njit(cache=True, nogil=True)
def collect_bin(
    scores: np.ndarray,
    sec: np.ndarray,
    shift: int,
    prefix: int,
    offset: int,
    vals: np.ndarray,
    secs: np.ndarray,
    slots: np.ndarray,
    n: int,
) -> int:
    """Append ``(score, sec, offset + s)`` of every slot whose score's bits from
    ``shift`` up are ``prefix`` at position ``n`` of the buffers; return the new ``n``."""
    keys = scores.view(np.int64)
    for s in range(keys.size):
        if (keys[s] >> shift) == prefix:
            vals[n] = scores[s]
            secs[n] = sec[s]
            slots[n] = offset + s
            n += 1
    return n


@njit(cache=True, nogil=True)
def kill_below(
    scores: np.ndarray,
    shift: int,
    prefix: int,
    base: np.ndarray,
    cidx: np.ndarray,
    w: np.ndarray,
    dense: bool,
) -> int:
    """Kill every alive slot (score ``>= 0``) whose score's bits from ``shift`` up
    are at most ``prefix``: ``base = -1`` and, if ``dense``, its compacted weight
    entry ``w[cidx[s]] = 0``. Return how many."""
    keys = scores.view(np.int64)
    n = 0
    for s in range(keys.size):
        x = keys[s]
        kill = (x >= 0) & ((x >> shift) <= prefix)  # no short circuit: dead slots are random
        if kill:
            base[s] = -1.0
            if dense:
                w[cidx[s]] = 0.0
            n += 1
    return n


@njit(cache=True, nogil=True)
def compact_slots(
    j: np.ndarray,
    col: np.ndarray,
    base: np.ndarray,
    sec: np.ndarray,
    cidx: np.ndarray,
    counts: np.ndarray,
) -> int:
    """Move the alive slots (``base >= 0``) to the front of the slot arrays, in
    order, counting them per output channel in ``counts`` (zeroed by the caller);
    return how many."""
    n = 0
    for s in range(base.size):
        if base[s] >= 0:
            j[n], col[n], base[n], sec[n], cidx[n] = j[s], col[s], base[s], sec[s], cidx[s]
            counts[j[s]] += 1
            n += 1
    return n
