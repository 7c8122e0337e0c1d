"""PHEW random walks over per-row guide tables (numba kernels, arrays in, arrays out).

Layout (built by :func:`pathnet.select.phew.prepare`)
-----------------------------------------------------
Every edge block ``b`` of the DAG has one row of ``binfo`` (int64) with the
columns named below. For each walk direction ``d`` (0 forward, 1 backward) a
block has one *row* per row unit (the source unit going forward, the target
unit going backward) listing its present edges, with the cumulative sums of
their biased weights (``cum``, float32) and a guide table of one entry per 16
edges (``guide``, int32 positions within the row; see :func:`_fill_guide`), so that
drawing an edge costs one or two memory accesses whatever the fan-out; ``tot``
holds each row's total weight (float64). Per direction the rows of all blocks
share flat arrays (``fcum``, ``fguide``, ... and ``bcum``, ``bguide``, ...):

* a *dense* block (every edge present) stores row ``u`` at ``cum`` positions
  ``off + u * n_cols : off + (u + 1) * n_cols`` (the neighbour is the position
  within the row) and its guide at ``goff + u * guide_size(n_cols)``;
* a *sparse* block (element masks, dead units, identity shortcuts) stores CSR
  rows: ``ptr[poff + u] : ptr[poff + u + 1]`` are positions after ``off`` in
  ``cum`` and after ``ioff`` in ``idx`` (neighbours); the guide of row ``u``
  starts at ``goff + gptr[gpoff + u]``.

Row ``u``'s total is ``tot[toff + u]``.

Parameter elements live in one global id space: edge ``i -> j`` of block ``b``
holds ids ``elem_off + (j * n_in + i) * n_elem + e``, the flat index into the
parameter plus the block's offset. For blocks with ``n_elem > 1`` the weights
used to pick one element of an edge are stored in ``ew`` (float32, 0 for masked
elements) at ``ew_off + (j * n_in + i) * n_elem + e``; ``ep`` (uint8, the same
offsets) marks present elements when any block has an element mask and is
empty otherwise.

Candidate blocks of group ``g`` in direction ``d`` (its out-blocks forward, its
in-blocks backward) are ``cand[cand_ptr[g]:cand_ptr[g + 1]]``.

Randomness
----------
Walk ``w`` uses its own splitmix64 stream seeded with
``mix64(seed ^ mix64(w + golden))``, so a walk's path depends only on
``(seed, w)``: results do not depend on chunking or on the thread count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

__all__ = [
    "BIAS_ABS",
    "BIAS_INVERSE",
    "BIAS_SQUARE",
    "BIAS_UNIFORM",
    "CHOICE_REFERENCE",
    "CHOICE_WEIGHTED",
    "N_FIELDS",
    "dense_guide_backward",
    "dense_guide_forward",
    "edge_weights",
    "guide_size",
    "kernel_weights",
    "mix64",
    "sample_walks",
    "sparse_guide",
    "take_distinct",
]

# binfo columns
KIND = 0  # 0: parameter block, 1: identity shortcut
SRC = 1
TGT = 2
N_OUT = 3
N_IN = 4
N_ELEM = 5
ELEM_OFF = 6  # global element id of element 0 of the block; -1 for identity
EW_OFF = 7  # offset into ew / ep; -1 when n_elem == 1
CONSERVE = 8  # 1: crossing an edge selects all its present elements
DIR_BASE = 9  # + D_STRIDE * direction, then one of the D_* columns:
D_DENSE = 0  # 1: every edge present (rows implicit), 0: CSR rows
D_OFF = 1  # offset of the block's rows in cum (and, for sparse blocks, idx: see D_IDX)
D_PTR = 2  # sparse: offset of the block's row pointers in ptr (n_rows + 1 entries)
D_IDX = 3  # sparse: offset of the block's neighbour indices in idx
D_TOT = 4  # offset of the block's row totals in tot
D_GOFF = 5  # offset of the block's guide tables in guide
D_GPTR = 6  # sparse: offset of the block's guide-row pointers in gptr
D_STRIDE = 7
N_FIELDS = DIR_BASE + 2 * D_STRIDE
GUIDE_STEP = 16  # one guide entry per 16 edges of a row (64 bytes of cum)

KIND_PARAM = 0
KIND_IDENTITY = 1

BIAS_ABS = 0
BIAS_SQUARE = 1
BIAS_INVERSE = 2
BIAS_UNIFORM = 3

CHOICE_REFERENCE = 0  # uniform over the non-identity candidate blocks
CHOICE_WEIGHTED = 1  # proportional to the row totals of all candidate blocks

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_LANES = 16  # walks advanced in lockstep by one thread
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


# ---------------------------------------------------------------- randomness
@njit(cache=True)
def mix64(z: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def _unit(state: np.uint64) -> float:
    """A double in [0, 1) from the splitmix64 output for ``state``."""
    return float(mix64(state) >> _S11) * _TO_UNIT


@njit(cache=True)
def walk_state(seed: np.uint64, w: np.int64) -> np.uint64:
    """Initial splitmix64 state of walk ``w``."""
    return mix64(seed ^ mix64(np.uint64(w) + _GOLDEN))


# ------------------------------------------------------------- preparation
@njit(cache=True)
def _edge_value(values, j, i, bias, eps):
    """Biased weight of edge i -> j of an unmasked block, and the sum of its ``|w|``."""
    s1 = 0.0
    s2 = 0.0
    for e in range(values.shape[2]):
        x = np.float64(values[j, i, e])
        s1 += abs(x)
        s2 += x * x
    if bias == BIAS_ABS:
        return s1, s1
    if bias == BIAS_SQUARE:
        return s2, s1
    if bias == BIAS_INVERSE:
        return 1.0 / (s1 + eps), s1
    return 1.0, s1


def guide_size(n: Any) -> Any:
    """Guide entries of a row of ``n`` edges (an int, or an array of row lengths)."""
    return (n + GUIDE_STEP - 1) // GUIDE_STEP


@njit(cache=True)
def _fill_guide(cum, guide):
    """Guide table of a row whose cumulative sums ``cum`` (float32) are filled.

    ``guide[g]`` (``len(guide) = ceil(n / GUIDE_STEP)``) is the first position whose
    cumulative sum exceeds ``g / len(guide)`` of the row total: a draw starts its
    search there and moves a few places (Chen & Asau's indexed search), so it
    costs one or two memory accesses whatever the fan-out.
    """
    n = cum.shape[0]
    total = np.float64(cum[n - 1])
    ng = guide.shape[0]
    k = 0
    for g in range(ng):
        t = total * g / ng
        while k < n - 1 and cum[k] <= t:
            k += 1
        guide[g] = k


@njit(cache=True)
def _guide(w, cum, guide):
    """Cumulative sums of the row ``w`` (float32) and its guide table; returns ``sum(w)``."""
    acc = 0.0
    for k in range(w.shape[0]):
        acc += w[k]
        cum[k] = acc
    _fill_guide(cum, guide)
    return acc


@njit(cache=True)
def _weight(x, bias, eps):
    """Biased weight of a single-element edge of value ``x``."""
    if bias == BIAS_ABS:
        return abs(x)
    if bias == BIAS_SQUARE:
        return x * x
    if bias == BIAS_INVERSE:
        return 1.0 / (abs(x) + eps)
    return 1.0


@njit(cache=True)
def _cum_row(values, j, bias, eps, cum):
    """``cum[i] = sum_{i' <= i} A[j, i']``; returns ``(row total, sum of |w|)``.

    Single-element edges (Linear weights, or precomputed kernel sums) take loops
    specialised by bias, which the compiler vectorises.
    """
    n_in, ne = values.shape[1], values.shape[2]
    acc = 0.0
    s = 0.0
    if ne > 1:
        for i in range(n_in):
            a, s1 = _edge_value(values, j, i, bias, eps)
            acc += a
            s += s1
            cum[i] = acc
    elif bias == BIAS_ABS:
        for i in range(n_in):
            acc += abs(np.float64(values[j, i, 0]))
            cum[i] = acc
        s = acc
    elif bias == BIAS_SQUARE:
        for i in range(n_in):
            x = np.float64(values[j, i, 0])
            acc += x * x
            s += abs(x)
            cum[i] = acc
    elif bias == BIAS_INVERSE:
        for i in range(n_in):
            ax = abs(np.float64(values[j, i, 0]))
            acc += 1.0 / (ax + eps)
            s += ax
            cum[i] = acc
    else:
        for i in range(n_in):
            s += abs(np.float64(values[j, i, 0]))
            acc += 1.0
            cum[i] = acc
    return acc, s


@njit(cache=True)
def _backward_tile(values, bias, eps, cum, guide, tot, t):
    """Rows ``8t .. 8t + 7`` of :func:`dense_guide_backward`; returns their sum of ``|w|``."""
    s = 0.0
    for j in range(t * 8, min(values.shape[0], (t + 1) * 8)):
        tot[j], s1 = _cum_row(values, j, bias, eps, cum[j])
        s += s1
        _fill_guide(cum[j], guide[j])
    return s


@njit(parallel=True, cache=True)
def dense_guide_backward(values, bias, eps, cum, guide, tot, parallel):
    """Guide tables of the rows ``A[j, :]`` (over source units) of an unmasked block.

    ``values`` is ``(n_out, n_in, n_elem)``; ``cum`` (float32) is ``(n_out, n_in)``
    and ``guide`` (int32) ``(n_out, guide_size(n_in))``; ``tot[j]`` receives the row
    totals. Returns the sum of ``|values|``, for the caller's NaN/Inf and
    all-zero checks. ``parallel=False`` runs on the calling thread (small blocks:
    no thread-pool round trip).
    """
    n_tiles = (values.shape[0] + 7) // 8
    s = 0.0
    if parallel:
        for t in prange(n_tiles):
            s += _backward_tile(values, bias, eps, cum, guide, tot, t)
    else:
        for t in range(n_tiles):
            s += _backward_tile(values, bias, eps, cum, guide, tot, t)
    return s


@njit(cache=True)
def _forward_tile(values, bias, eps, cum, guide, tot, t):
    """Source units ``32t .. 32t + 31`` of :func:`dense_guide_forward`."""
    n_out, n_in, ne = values.shape
    i0 = t * 32
    i1 = min(n_in, i0 + 32)
    acc = np.zeros(32)
    if ne == 1 and bias == BIAS_ABS:  # the common case: kernel sums or Linear weights
        for j in range(n_out):
            for i in range(i0, i1):
                acc[i - i0] += abs(np.float64(values[j, i, 0]))
                cum[i, j] = acc[i - i0]
    elif ne == 1:
        for j in range(n_out):
            for i in range(i0, i1):
                acc[i - i0] += _weight(np.float64(values[j, i, 0]), bias, eps)
                cum[i, j] = acc[i - i0]
    else:
        for j in range(n_out):
            for i in range(i0, i1):
                a, _ = _edge_value(values, j, i, bias, eps)
                acc[i - i0] += a
                cum[i, j] = acc[i - i0]
    for i in range(i0, i1):
        tot[i] = acc[i - i0]
        _fill_guide(cum[i], guide[i])


@njit(parallel=True, cache=True)
def dense_guide_forward(values, bias, eps, cum, guide, tot, parallel):
    """Guide tables of the columns ``A[:, i]`` (over target units) of an unmasked block.

    ``cum`` is ``(n_in, n_out)`` and ``guide`` ``(n_in, guide_size(n_out))``. Tiles
    of 32 source units keep the reads of ``values`` contiguous.
    """
    n_tiles = (values.shape[1] + 31) // 32
    if parallel:
        for t in prange(n_tiles):
            _forward_tile(values, bias, eps, cum, guide, tot, t)
    else:
        for t in range(n_tiles):
            _forward_tile(values, bias, eps, cum, guide, tot, t)


@njit(cache=True)
def _kernel_row(values, j, bias, eps, flat, a_out, ew_out):
    """Row ``j`` of :func:`kernel_weights`; returns its sum of ``|w|``."""
    n_in, ne = values.shape[1], values.shape[2]
    st = 0.0
    for i in range(n_in):
        s1 = 0.0
        s2 = 0.0
        for e in range(ne):
            x = np.float64(values[j, i, e])
            s1 += abs(x)
            s2 += x * x
        st += s1
        if bias == BIAS_ABS:
            a_out[j, i] = s1
        elif bias == BIAS_SQUARE:
            a_out[j, i] = s2
        elif bias == BIAS_INVERSE:
            a_out[j, i] = 1.0 / (s1 + eps)
        else:
            a_out[j, i] = 1.0
        if flat:
            for e in range(ne):
                ew_out[j, i, e] = 1.0
        elif bias == BIAS_ABS:
            for e in range(ne):
                ew_out[j, i, e] = abs(values[j, i, e])
        elif bias == BIAS_SQUARE:
            for e in range(ne):
                ew_out[j, i, e] = np.float64(values[j, i, e]) ** 2
        else:
            for e in range(ne):
                ew_out[j, i, e] = 1.0 / (abs(np.float64(values[j, i, e])) + eps)
    return st


@njit(parallel=True, cache=True)
def kernel_weights(values, bias, eps, elem_uniform, a_out, ew_out, parallel):
    """Edge and element weights of an unmasked block with ``n_elem > 1``, in one pass.

    Writes the biased edge weights ``a_out[j, i]`` (float64) and the weights for
    choosing an element of each edge, ``ew_out`` (float32, shaped like ``values``;
    all 1 when ``elem_uniform`` or ``bias`` is uniform). Returns the sum of
    ``|values|``, for the caller's NaN/Inf and all-zero checks.
    """
    flat = True if bias == BIAS_UNIFORM else elem_uniform
    s = 0.0
    if parallel:
        for j in prange(values.shape[0]):
            s += _kernel_row(values, j, bias, eps, flat, a_out, ew_out)
    else:
        for j in range(values.shape[0]):
            s += _kernel_row(values, j, bias, eps, flat, a_out, ew_out)
    return s


@njit(cache=True)
def _masked_row(values, mask, j, bias, eps, out, present):
    """Row ``j`` of :func:`edge_weights`; returns its sum of ``|w|``."""
    n_in, ne = values.shape[1], values.shape[2]
    st = 0.0
    for i in range(n_in):
        s1 = 0.0
        s2 = 0.0
        cnt = 0
        for e in range(ne):
            if mask[j, i, e]:
                x = np.float64(values[j, i, e])
                cnt += 1
                s1 += abs(x)
                s2 += x * x
        st += s1
        present[j, i] = 1 if cnt > 0 else 0
        if cnt == 0:
            out[j, i] = 0.0
        elif bias == BIAS_ABS:
            out[j, i] = s1
        elif bias == BIAS_SQUARE:
            out[j, i] = s2
        elif bias == BIAS_INVERSE:
            out[j, i] = 1.0 / (s1 + eps)
        else:
            out[j, i] = 1.0
    return st


@njit(parallel=True, cache=True)
def edge_weights(values, mask, bias, eps, out, present, parallel):
    """Biased edge weights of a masked block over its present elements.

    ``mask`` is a bool array like ``values``. Writes ``out[j, i]`` (float64) and
    ``present[j, i]`` (uint8, 1 when the edge has a present element); returns the
    sum of ``|values|`` over present elements, for the caller's checks.
    """
    s = 0.0
    if parallel:
        for j in prange(values.shape[0]):
            s += _masked_row(values, mask, j, bias, eps, out, present)
    else:
        for j in range(values.shape[0]):
            s += _masked_row(values, mask, j, bias, eps, out, present)
    return s


@njit(cache=True)
def _sparse_rows(indptr, gptr, weights, cum, guide, tot, r0, r1):
    for r in range(r0, r1):
        lo = indptr[r]
        hi = indptr[r + 1]
        if hi > lo:
            tot[r] = _guide(weights[lo:hi], cum[lo:hi], guide[gptr[r] : gptr[r + 1]])
        else:
            tot[r] = 0.0


@njit(parallel=True, cache=True)
def sparse_guide(indptr, gptr, weights, cum, guide, tot, parallel):
    """Guide tables of the CSR rows ``weights[indptr[r]:indptr[r + 1]]``.

    Row ``r``'s guide is ``guide[gptr[r]:gptr[r + 1]]``; ``tot[r]`` its total.
    """
    n_rows = indptr.shape[0] - 1
    if parallel:
        n_tiles = (n_rows + 63) // 64
        for t in prange(n_tiles):
            _sparse_rows(indptr, gptr, weights, cum, guide, tot, t * 64, min(n_rows, (t + 1) * 64))
    else:
        _sparse_rows(indptr, gptr, weights, cum, guide, tot, 0, n_rows)


# --------------------------------------------------------------------- walks
@njit(cache=True)
def _row(binfo, b, base, u, ptr):
    """Positions ``[lo, hi)`` in the direction's ``cum`` of row ``u`` of block ``b``."""
    off = binfo[b, base + D_OFF]
    if binfo[b, base + D_DENSE] == 1:
        nc = binfo[b, N_OUT] if base == DIR_BASE else binfo[b, N_IN]
        lo = off + u * nc
        return lo, lo + nc
    q = binfo[b, base + D_PTR] + u
    return off + ptr[q], off + ptr[q + 1]


@njit(cache=True)
def _choose_block(g, u, state, choice, base, binfo, cand_ptr, cand, ptr, tot):
    """The block a walk at unit ``u`` of group ``g`` follows; -1 if none has an edge."""
    c0 = cand_ptr[g]
    c1 = cand_ptr[g + 1]
    if c1 - c0 == 1:
        return cand[c0], state
    b = -1
    if choice == CHOICE_REFERENCE:
        # uniform over the weighted blocks with an edge here; identity only if nothing else
        n_param = 0
        n_ident = 0
        for c in range(c0, c1):
            bb = cand[c]
            lo, hi = _row(binfo, bb, base, u, ptr)
            if hi > lo:
                if binfo[bb, KIND] == KIND_PARAM:
                    n_param += 1
                else:
                    n_ident += 1
        want = KIND_PARAM if n_param > 0 else KIND_IDENTITY
        n_ok = n_param if n_param > 0 else n_ident
        if n_ok == 0:
            return -1, state
        pick = 0
        if n_ok > 1:
            state += _GOLDEN
            pick = min(int(_unit(state) * n_ok), n_ok - 1)
        for c in range(c0, c1):
            bb = cand[c]
            lo, hi = _row(binfo, bb, base, u, ptr)
            if hi > lo and binfo[bb, KIND] == want:
                if pick == 0:
                    return bb, state
                pick -= 1
        return -1, state
    # weighted: blocks in proportion to the row totals (edge counts if all are zero)
    total = 0.0
    count = 0
    for c in range(c0, c1):
        bb = cand[c]
        lo, hi = _row(binfo, bb, base, u, ptr)
        if hi > lo:
            total += tot[binfo[bb, base + D_TOT] + u]
            count += hi - lo
    if count == 0:
        return -1, state
    state += _GOLDEN
    by_weight = total > 0.0
    x = _unit(state) * (total if by_weight else count)
    acc = 0.0
    for c in range(c0, c1):
        bb = cand[c]
        lo, hi = _row(binfo, bb, base, u, ptr)
        if hi > lo:
            share = tot[binfo[bb, base + D_TOT] + u] if by_weight else np.float64(hi - lo)
            if share > 0.0:
                acc += share
                b = bb
                if x < acc:
                    break
    return b, state


@njit(cache=True)
def _choose_edge(b, u, state, base, binfo, cum, guide, gptr, ptr, idx):
    """Neighbour of ``u`` across block ``b``, drawn with the row's guide table; -1 if none."""
    lo, hi = _row(binfo, b, base, u, ptr)
    n = hi - lo
    if n <= 0:
        return -1, state
    pos = 0
    if n > 1:
        state += _GOLDEN
        r = _unit(state)
        total = np.float64(cum[hi - 1])
        if total > 0.0:
            x = r * total
            ng = (n + GUIDE_STEP - 1) // GUIDE_STEP
            if binfo[b, base + D_DENSE] == 1:
                g0 = binfo[b, base + D_GOFF] + u * ng
            else:
                g0 = binfo[b, base + D_GOFF] + gptr[binfo[b, base + D_GPTR] + u]
            k = lo + guide[g0 + min(int(r * ng), ng - 1)]
            while k > lo and cum[k - 1] > x:
                k -= 1
            while k < hi - 1 and cum[k] <= x:
                k += 1
            pos = k - lo
        else:  # a row of zeros: uniform over the present edges
            pos = min(int(r * n), n - 1)
    if binfo[b, base + D_DENSE] == 1:
        return pos, state
    return np.int64(idx[binfo[b, base + D_IDX] + (lo - binfo[b, base + D_OFF]) + pos]), state


@njit(cache=True)
def _emit(b, jj, ii, state, binfo, ew, ep, out_elems, k, n):
    """Write to ``out_elems[k, n:]`` the element id(s) that crossing edge ``ii -> jj`` of block ``b`` selects."""
    has_ep = ep.shape[0] > 0
    ne = binfo[b, N_ELEM]
    flat = (jj * binfo[b, N_IN] + ii) * ne
    eid = binfo[b, ELEM_OFF] + flat
    if ne == 1:
        out_elems[k, n] = eid
        return n + 1, state
    wo = binfo[b, EW_OFF] + flat
    if binfo[b, CONSERVE] == 1:
        for e in range(ne):
            if (not has_ep) or ep[wo + e] != 0:
                out_elems[k, n] = eid + e
                n += 1
        return n, state
    tot = 0.0
    n_present = 0
    for e in range(ne):
        tot += ew[wo + e]
        if (not has_ep) or ep[wo + e] != 0:
            n_present += 1
    state += _GOLDEN
    r = _unit(state)
    pick = ne - 1
    if tot > 0.0:
        x = r * tot
        acc = 0.0
        for e in range(ne):
            we = np.float64(ew[wo + e])
            if we > 0.0:
                pick = e
                acc += we
                if x < acc:
                    break
    else:  # an all-zero kernel: uniform over its present elements
        t = min(int(r * n_present), n_present - 1)
        for e in range(ne):
            if (not has_ep) or ep[wo + e] != 0:
                pick = e
                if t == 0:
                    break
                t -= 1
    out_elems[k, n] = eid + pick
    return n + 1, state


@njit(cache=True)
def _touch_edge(g, u, state, base, binfo, cand_ptr, cand, cum, guide, gptr, ptr):
    """Load the guide entry and the cum line the next edge draw will read (a prefetch)."""
    if cand_ptr[g + 1] - cand_ptr[g] != 1:
        return 0.0
    b = cand[cand_ptr[g]]
    lo, hi = _row(binfo, b, base, u, ptr)
    n = hi - lo
    if n <= 1:
        return 0.0
    r = _unit(state + _GOLDEN)  # the draw _choose_edge will make; the state is not advanced
    ng = (n + GUIDE_STEP - 1) // GUIDE_STEP
    gi = min(int(r * ng), ng - 1)
    if binfo[b, base + D_DENSE] == 1:
        g0 = binfo[b, base + D_GOFF] + u * ng
    else:
        g0 = binfo[b, base + D_GOFF] + gptr[binfo[b, base + D_GPTR] + u]
    return np.float64(guide[g0 + gi]) + cum[lo + min(gi * GUIDE_STEP, n - 1)]


@njit(cache=True)
def _touch_kernel(b, u, v, forward, binfo, ew):
    """Load the element weights of the kernel the walk just crossed (a prefetch)."""
    if binfo[b, EW_OFF] < 0:
        return 0.0
    ne = binfo[b, N_ELEM]
    if forward:
        wo = binfo[b, EW_OFF] + (v * binfo[b, N_IN] + u) * ne
    else:
        wo = binfo[b, EW_OFF] + (u * binfo[b, N_IN] + v) * ne
    return np.float64(ew[wo]) + ew[wo + ne - 1]


@njit(cache=True)
def _lane_group(
    rows,
    nl,
    first_walk,
    seed,
    forward,
    last_group,
    choice,
    binfo,
    cand_ptr,
    cand,
    cum,
    guide,
    gptr,
    ptr,
    idx,
    tot,
    ew,
    ep,
    starts,
    group_off,
    out_elems,
    out_len,
    out_nodes,
    record,
    lu,
    lg,
    ls,
    ln,
    lb,
    lv,
    lstep,
    act,
):
    """Advance ``nl`` walks (batch rows ``rows[:nl]``, one direction) in lockstep.

    Interleaving independent walks, with passes that first touch the memory every
    lane will read, lets the CPU overlap their cache misses; each walk still draws
    only from its own stream.
    """
    base = DIR_BASE + D_STRIDE * (0 if forward else 1)
    end = last_group if forward else 0
    g0 = 0 if forward else last_group
    n_active = 0
    for lane in range(nl):
        w = first_walk + rows[lane]
        lu[lane] = starts[(w // 2) % starts.shape[0]]
        lg[lane] = g0
        ls[lane] = walk_state(seed, w)
        ln[lane] = 0
        lstep[lane] = 0
        act[lane] = g0 != end
        if record:
            out_nodes[rows[lane], 0] = group_off[g0] + lu[lane]
        if act[lane]:
            n_active += 1
        else:
            out_len[rows[lane]] = 0
    touch = 0.0  # loads issued early so that the lanes' cache misses overlap
    while n_active > 0:
        for lane in range(nl):  # touch every lane's next guide entry and cum line
            if act[lane]:
                touch += _touch_edge(
                    lg[lane], lu[lane], ls[lane], base, binfo, cand_ptr, cand, cum, guide, gptr, ptr
                )
        for lane in range(nl):  # which block and which edge
            if not act[lane]:
                continue
            b, st = _choose_block(
                lg[lane], lu[lane], ls[lane], choice, base, binfo, cand_ptr, cand, ptr, tot
            )
            v = -1
            if b >= 0:
                v, st = _choose_edge(b, lu[lane], st, base, binfo, cum, guide, gptr, ptr, idx)
            ls[lane] = st
            lb[lane] = b
            lv[lane] = v
        for lane in range(nl):  # touch every lane's kernel weights
            if act[lane] and lv[lane] >= 0:
                touch += _touch_kernel(lb[lane], lu[lane], lv[lane], forward, binfo, ew)
        for lane in range(nl):  # which element(s), then move on
            if not act[lane]:
                continue
            k = rows[lane]
            b = lb[lane]
            v = lv[lane]
            if v < 0:
                out_len[k] = -1
                act[lane] = False
                n_active -= 1
                continue
            u = lu[lane]
            if binfo[b, KIND] == KIND_PARAM:
                if forward:
                    ln[lane], ls[lane] = _emit(
                        b, v, u, ls[lane], binfo, ew, ep, out_elems, k, ln[lane]
                    )
                else:
                    ln[lane], ls[lane] = _emit(
                        b, u, v, ls[lane], binfo, ew, ep, out_elems, k, ln[lane]
                    )
            g = binfo[b, TGT] if forward else binfo[b, SRC]
            lu[lane] = v
            lg[lane] = g
            lstep[lane] += 1
            if record:
                out_nodes[k, lstep[lane]] = group_off[g] + v
            if g == end:
                out_len[k] = ln[lane]
                act[lane] = False
                n_active -= 1
    if touch < 0.0:  # never (weights and positions are >= 0): keeps the touching loads
        out_len[rows[0]] = -1


@njit(cache=True)
def _chunk(c, chunk, n, first_walk, useed, last_group, choice, binfo,
           fcand_ptr, fcand, fcum, fguide, fgptr, fptr, fidx, ftot,
           bcand_ptr, bcand, bcum, bguide, bgptr, bptr, bidx, btot,
           ew, ep, starts_in, starts_out, group_off, out_elems, out_len, out_nodes,
           record):  # fmt: skip
    """Walk rows ``c * chunk .. (c + 1) * chunk - 1`` of the batch, forward ones first."""
    rows = np.empty(_LANES, dtype=np.int64)
    lu = np.empty(_LANES, dtype=np.int64)
    lg = np.empty(_LANES, dtype=np.int64)
    ls = np.empty(_LANES, dtype=np.uint64)
    ln = np.empty(_LANES, dtype=np.int64)
    lb = np.empty(_LANES, dtype=np.int64)
    lv = np.empty(_LANES, dtype=np.int64)
    lstep = np.empty(_LANES, dtype=np.int64)
    act = np.empty(_LANES, dtype=np.bool_)
    k0 = c * chunk
    k1 = min(n, k0 + chunk)
    for parity in range(2):
        forward = parity == 0
        k = k0 + ((parity - (first_walk + k0)) % 2)
        while k < k1:
            nl = 0
            while nl < _LANES and k < k1:
                rows[nl] = k
                nl += 1
                k += 2
            if forward:
                _lane_group(
                    rows, nl, first_walk, useed, True, last_group, choice, binfo,
                    fcand_ptr, fcand, fcum, fguide, fgptr, fptr, fidx, ftot, ew, ep, starts_in,
                    group_off, out_elems, out_len, out_nodes, record,
                    lu, lg, ls, ln, lb, lv, lstep, act,
                )  # fmt: skip
            else:
                _lane_group(
                    rows, nl, first_walk, useed, False, last_group, choice, binfo,
                    bcand_ptr, bcand, bcum, bguide, bgptr, bptr, bidx, btot, ew, ep, starts_out,
                    group_off, out_elems, out_len, out_nodes, record,
                    lu, lg, ls, ln, lb, lv, lstep, act,
                )  # fmt: skip


@njit(parallel=True, cache=True)
def sample_walks(
    first_walk,
    seed,
    chunk,
    last_group,
    choice,
    binfo,
    fcand_ptr,
    fcand,
    bcand_ptr,
    bcand,
    fcum,
    fguide,
    fgptr,
    fptr,
    fidx,
    ftot,
    bcum,
    bguide,
    bgptr,
    bptr,
    bidx,
    btot,
    ew,
    ep,
    starts_in,
    starts_out,
    group_off,
    out_elems,
    out_len,
    out_nodes,
    record,
    parallel,
):
    """Walks ``first_walk .. first_walk + n - 1`` (``n = out_elems.shape[0]``).

    Even walks go forward from ``starts_in[(w // 2) % len]`` (local units of the
    input group), odd walks backward from ``starts_out[(w // 2) % len]``. Walk
    ``k`` of the batch writes its element ids to ``out_elems[k, :out_len[k]]``
    (``out_len[k] = -1`` if it got stuck, which a prepared graph prevents) and,
    when ``record`` is true, its global node ids to ``out_nodes[k]`` (``out_nodes``
    is ``(n, max_steps + 1)`` then, and may be ``(1, 1)`` otherwise).
    With ``parallel``, chunks of ``chunk`` walks run on the thread pool; every
    walk has its own stream, so the result is the same either way.
    """
    n = out_elems.shape[0]
    useed = np.uint64(seed)
    n_chunks = (n + chunk - 1) // chunk
    if parallel and n_chunks > 1:
        for c in prange(n_chunks):
            _chunk(c, chunk, n, first_walk, useed, last_group, choice, binfo,
                   fcand_ptr, fcand, fcum, fguide, fgptr, fptr, fidx, ftot,
                   bcand_ptr, bcand, bcum, bguide, bgptr, bptr, bidx, btot,
                   ew, ep, starts_in, starts_out, group_off, out_elems, out_len, out_nodes,
                   record)  # fmt: skip
    else:
        for c in range(n_chunks):
            _chunk(c, chunk, n, first_walk, useed, last_group, choice, binfo,
                   fcand_ptr, fcand, fcum, fguide, fgptr, fptr, fidx, ftot,
                   bcand_ptr, bcand, bcum, bguide, bgptr, bptr, bidx, btot,
                   ew, ep, starts_in, starts_out, group_off, out_elems, out_len, out_nodes,
                   record)  # fmt: skip


@njit(cache=True)
def take_distinct(out_elems, out_len, bitmap, count, target):
    """Mark new elements in ``bitmap`` in walk order until ``count`` reaches ``target``.

    Returns ``(count, walks_used)``: the walk that reaches ``target`` keeps only
    its elements up to that point and counts as used.
    """
    n = out_elems.shape[0]
    for k in range(n):
        for t in range(out_len[k]):
            e = out_elems[k, t]
            if bitmap[e] == 0:
                bitmap[e] = 1
                count += 1
                if count >= target:
                    return count, k + 1
    return count, n


@njit(cache=True)
def take_distinct_ranked(out_elems, out_len, ranks, count, target):
    """Like :func:`take_distinct`, but record in ``ranks`` (int32/int64) the order
    ``1, 2, ...`` in which each element was first selected (0: never)."""
    n = out_elems.shape[0]
    for k in range(n):
        for t in range(out_len[k]):
            e = out_elems[k, t]
            if ranks[e] == 0:
                count += 1
                ranks[e] = count
                if count >= target:
                    return count, k + 1
    return count, n
