"""PHEW random walks over per-row guide tables (numba kernels, arrays in, arrays out).

Layout (built by :func:`pathnet.select.walkgraph.prepare`)
----------------------------------------------------------
The kernels read two kinds of records, both named tuples of arrays:

* :class:`WalkNet`, shared by both directions: ``binfo`` (int64, one row per edge
  block of the DAG, columns named below), the element weights ``ew`` / ``ep``, the
  global unit offset of each group, the last group and the block-choice policy;
* :class:`WalkDir`, one per direction (forward: input -> output; backward): the
  candidate blocks of each group, the rows of every block and the start units.

For each direction a block has one *row* per row unit (the source unit going
forward, the target unit going backward) listing its present edges, with the
cumulative sums of their biased weights (``cum``, float32) and a guide table
(``guide``, int32; see :mod:`pathnet._kernels.guides`); ``tot`` holds each row's
total weight (float64). The rows of all blocks share flat arrays:

* a *dense* block (every edge present) stores row ``r`` at ``cum`` positions
  ``off + r * ncol : off + (r + 1) * ncol`` (the neighbour is the position within
  the row) and its guide at ``goff + r * guide_size(ncol)``;
* a *sparse* block (element masks, dead units, identity shortcuts) stores CSR
  rows: ``ptr[poff + r] : ptr[poff + r + 1]`` are positions after ``off`` in
  ``cum`` and after ``ioff`` in ``idx`` (neighbours); the guide of row ``r``
  starts at ``goff + gptr[gpoff + r]``.

Row ``r``'s total is ``tot[toff + r]``.

Parameter elements live in one global id space: edge ``i -> j`` of block ``b``
holds ids ``elem_off + (j * n_in + i) * n_elem + e``, the flat index into the
parameter plus the block's offset. For blocks with ``n_elem > 1`` the weights
used to pick one element of an edge are stored in ``ew`` (float32, 0 for masked
elements) at ``ew_off + (j * n_in + i) * n_elem + e``; ``ep`` (uint8, the same
offsets) marks present elements when any block has an element mask and is
empty otherwise.

A *flatten* block walked per weight (``FLAT`` = 1: a Linear reading ``n_elem``
positions of each channel, as the PHEW authors walk it) has rows over single
weights instead: going forward, row ``c * n_elem + pos`` lists the targets of
input ``(c, pos)`` (the walk picks ``pos`` uniformly among the positions with an
edge, then a target by weight); going backward, the row of target ``j`` lists the
``n_in * n_elem`` flat inputs (``ncol`` says so), and the drawn flat index gives
both the channel and the element.

Candidate blocks of group ``g`` in a direction (its out-blocks forward, its
in-blocks backward) are ``cand[cand_ptr[g]:cand_ptr[g + 1]]``.

Randomness
----------
Walk ``w`` uses its own splitmix64 stream seeded with
``mix64(seed ^ mix64(w + golden))``, so a walk's path depends only on
``(seed, w)``: results do not depend on chunking or on the thread count.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from pathnet._kernels.guides import GUIDE_STEP

# Helpers called only from compiled code: no Python wrapper to build.
_helper = njit(cache=True, no_cpython_wrapper=True)  # type: ignore[call-overload]  # numba option the stubs lack

__all__ = [
    "CHOICE_REFERENCE",
    "CHOICE_WEIGHTED",
    "N_FIELDS",
    "WalkDir",
    "WalkNet",
    "mix64",
    "sample_walks",
    "take_distinct",
    "take_distinct_ranked",
]

# binfo columns
KIND = 0  # 0: parameter block, 1: identity shortcut
SRC = 1
TGT = 2
N_OUT = 3
N_IN = 4
N_ELEM = 5
ELEM_OFF = 6  # global element id of element 0 of the block; -1 for identity
EW_OFF = 7  # offset into ew / ep; -1 when no element is drawn from ew (n_elem == 1, FLAT)
CONSERVE = 8  # 1: crossing an edge selects all its present elements
FLAT = 9  # 1: a flatten block walked per weight (rows over (channel, position))
DIR_BASE = 10  # + D_STRIDE * direction, then one of the D_* columns:
D_DENSE = 0  # 1: every edge present (rows implicit), 0: CSR rows
D_OFF = 1  # offset of the block's rows in cum (and, for sparse blocks, idx: see D_IDX)
D_PTR = 2  # sparse: offset of the block's row pointers in ptr (n_rows + 1 entries)
D_IDX = 3  # sparse: offset of the block's neighbour indices in idx
D_TOT = 4  # offset of the block's row totals in tot
D_GOFF = 5  # offset of the block's guide tables in guide
D_GPTR = 6  # sparse: offset of the block's guide-row pointers in gptr
D_NCOL = 7  # dense: row length
D_STRIDE = 8
N_FIELDS = DIR_BASE + 2 * D_STRIDE

KIND_PARAM = 0
KIND_IDENTITY = 1

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


class WalkNet(NamedTuple):
    """What both walk directions share (layout in the module docstring)."""

    binfo: np.ndarray  # int64 (n_blocks, N_FIELDS)
    ew: np.ndarray  # float32 element weights
    ep: np.ndarray  # uint8 present elements (empty without element masks)
    group_off: np.ndarray  # int64 global id of each group's unit 0
    last_group: int
    choice: int  # CHOICE_REFERENCE or CHOICE_WEIGHTED


class WalkDir(NamedTuple):
    """One walk direction's arrays (layout in the module docstring)."""

    cand_ptr: np.ndarray  # int64
    cand: np.ndarray  # int64
    cum: np.ndarray  # float32
    guide: np.ndarray  # int32
    gptr: np.ndarray  # int64
    ptr: np.ndarray  # int64
    idx: np.ndarray  # int32
    tot: np.ndarray  # float64
    starts: np.ndarray  # int64 start units (local ids in the first group of the direction)


class _Lanes(NamedTuple):
    """Per-lane state of the walks one thread advances in lockstep."""

    u: np.ndarray  # current unit
    g: np.ndarray  # current group
    s: np.ndarray  # random state (uint64)
    n: np.ndarray  # elements emitted
    b: np.ndarray  # block chosen
    v: np.ndarray  # next unit
    e: np.ndarray  # element fixed by the edge draw (flatten blocks), else -1
    step: np.ndarray  # steps taken
    act: np.ndarray  # still walking (bool)


# ---------------------------------------------------------------- randomness
@njit(cache=True)
def mix64(z: np.uint64) -> np.uint64:
    """splitmix64's finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@_helper
def _unit(state: np.uint64) -> float:
    """A double in [0, 1) from the splitmix64 output for ``state``."""
    return float(mix64(state) >> _S11) * _TO_UNIT


@njit(cache=True)
def walk_state(seed: np.uint64, w: np.int64) -> np.uint64:
    """Initial splitmix64 state of walk ``w``."""
    return mix64(seed ^ mix64(np.uint64(w) + _GOLDEN))


# --------------------------------------------------------------------- rows
@_helper
def _row(binfo, b, base, r, ptr):
    """Positions ``[lo, hi)`` in the direction's ``cum`` of row ``r`` of block ``b``."""
    off = binfo[b, base + D_OFF]
    if binfo[b, base + D_DENSE] == 1:
        nc = binfo[b, base + D_NCOL]
        lo = off + r * nc
        return lo, lo + nc
    q = binfo[b, base + D_PTR] + r
    return off + ptr[q], off + ptr[q + 1]


@_helper
def _flat_forward(binfo, b, base):
    """Whether block ``b`` walked in direction ``base`` has one row per (unit, position)."""
    return base == DIR_BASE and binfo[b, FLAT] == 1


@_helper
def _unit_rows(binfo, b, base, u, ptr):
    """``[lo, hi)`` of all the rows of unit ``u`` (several for a flatten block going forward)."""
    if _flat_forward(binfo, b, base):
        ne = binfo[b, N_ELEM]
        lo, _ = _row(binfo, b, base, u * ne, ptr)
        _, hi = _row(binfo, b, base, u * ne + ne - 1, ptr)
        return lo, hi
    return _row(binfo, b, base, u, ptr)


@_helper
def _unit_total(binfo, b, base, u, tot):
    """Total weight of the rows of unit ``u`` of block ``b``."""
    t0 = binfo[b, base + D_TOT]
    if _flat_forward(binfo, b, base):
        ne = binfo[b, N_ELEM]
        s = 0.0
        for p in range(ne):
            s += tot[t0 + u * ne + p]
        return s
    return tot[t0 + u]


# --------------------------------------------------------------------- steps
@_helper
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
            lo, hi = _unit_rows(binfo, bb, base, u, ptr)
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
            lo, hi = _unit_rows(binfo, bb, base, u, ptr)
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
        lo, hi = _unit_rows(binfo, bb, base, u, ptr)
        if hi > lo:
            total += _unit_total(binfo, bb, base, u, tot)
            count += hi - lo
    if count == 0:
        return -1, state
    state += _GOLDEN
    by_weight = total > 0.0
    x = _unit(state) * (total if by_weight else count)
    acc = 0.0
    for c in range(c0, c1):
        bb = cand[c]
        lo, hi = _unit_rows(binfo, bb, base, u, ptr)
        if hi > lo:
            share = _unit_total(binfo, bb, base, u, tot) if by_weight else np.float64(hi - lo)
            if share > 0.0:
                acc += share
                b = bb
                if x < acc:
                    break
    return b, state


@_helper
def _choose_row(b, u, state, base, binfo, ptr):
    """``(row, element, state)``: the row unit ``u`` draws its edge from.

    The row is ``u`` (element -1: chosen later), except for a flatten block going
    forward: position ``pos`` uniformly among those with an edge, row
    ``u * n_elem + pos``, element ``pos``.
    """
    if not _flat_forward(binfo, b, base):
        return u, -1, state
    ne = binfo[b, N_ELEM]
    state += _GOLDEN
    x = _unit(state)
    if binfo[b, base + D_DENSE] == 1:
        p = min(int(x * ne), ne - 1)
        return u * ne + p, p, state
    n_ok = 0
    for p in range(ne):
        lo, hi = _row(binfo, b, base, u * ne + p, ptr)
        if hi > lo:
            n_ok += 1
    t = min(int(x * n_ok), n_ok - 1)
    for p in range(ne):
        lo, hi = _row(binfo, b, base, u * ne + p, ptr)
        if hi > lo:
            if t == 0:
                return u * ne + p, p, state
            t -= 1
    return u * ne, 0, state  # not reached: the block was chosen for having an edge at u


@_helper
def _choose_edge(b, r, state, base, binfo, cum, guide, gptr, ptr, idx):
    """Column of the edge drawn from row ``r`` of block ``b`` with its guide table; -1 if none."""
    lo, hi = _row(binfo, b, base, r, ptr)
    n = hi - lo
    if n <= 0:
        return -1, state
    pos = 0
    if n > 1:
        state += _GOLDEN
        x01 = _unit(state)
        total = np.float64(cum[hi - 1])
        if total > 0.0:
            x = x01 * total
            ng = (n + GUIDE_STEP - 1) // GUIDE_STEP
            if binfo[b, base + D_DENSE] == 1:
                g0 = binfo[b, base + D_GOFF] + r * ng
            else:
                g0 = binfo[b, base + D_GOFF] + gptr[binfo[b, base + D_GPTR] + r]
            k = lo + guide[g0 + min(int(x01 * ng), ng - 1)]
            while k > lo and cum[k - 1] > x:
                k -= 1
            while k < hi - 1 and cum[k] <= x:
                k += 1
            pos = k - lo
        else:  # a row of zeros: uniform over the present edges
            pos = min(int(x01 * n), n - 1)
    if binfo[b, base + D_DENSE] == 1:
        return pos, state
    return np.int64(idx[binfo[b, base + D_IDX] + (lo - binfo[b, base + D_OFF]) + pos]), state


@_helper
def _emit(b, jj, ii, e, state, binfo, ew, ep, out_elems, k, n):
    """Write to ``out_elems[k, n:]`` the element id(s) that crossing edge ``ii -> jj`` of block ``b`` selects.

    ``e >= 0`` is an element the edge draw already fixed (flatten blocks).
    """
    has_ep = ep.shape[0] > 0
    ne = binfo[b, N_ELEM]
    flat = (jj * binfo[b, N_IN] + ii) * ne
    eid = binfo[b, ELEM_OFF] + flat
    if ne == 1:
        out_elems[k, n] = eid
        return n + 1, state
    if e >= 0:
        out_elems[k, n] = eid + e
        return n + 1, state
    wo = binfo[b, EW_OFF] + flat
    if binfo[b, CONSERVE] == 1:
        for q in range(ne):
            if (not has_ep) or ep[wo + q] != 0:
                out_elems[k, n] = eid + q
                n += 1
        return n, state
    tot = 0.0
    n_present = 0
    for q in range(ne):
        tot += ew[wo + q]
        if (not has_ep) or ep[wo + q] != 0:
            n_present += 1
    state += _GOLDEN
    r = _unit(state)
    pick = ne - 1
    if tot > 0.0:
        x = r * tot
        acc = 0.0
        for q in range(ne):
            we = np.float64(ew[wo + q])
            if we > 0.0:
                pick = q
                acc += we
                if x < acc:
                    break
    else:  # an all-zero kernel: uniform over its present elements
        t = min(int(r * n_present), n_present - 1)
        for q in range(ne):
            if (not has_ep) or ep[wo + q] != 0:
                pick = q
                if t == 0:
                    break
                t -= 1
    out_elems[k, n] = eid + pick
    return n + 1, state


@_helper
def _touch_edge(g, u, state, base, binfo, cand_ptr, cand, cum, guide, gptr, ptr):
    """Load the guide entry and the cum line the next edge draw will read (a prefetch)."""
    if cand_ptr[g + 1] - cand_ptr[g] != 1:
        return 0.0
    b = cand[cand_ptr[g]]
    if _flat_forward(binfo, b, base):  # the row depends on a draw still to come
        return 0.0
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


@_helper
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


# --------------------------------------------------------------------- walks
@_helper
def _start(rows, nl, first_walk, seed, g0, end, starts, group_off, out_len, out_nodes, record, ln):
    """Put walks ``first_walk + rows[:nl]`` on their start units; returns how many move."""
    lu, lg, ls, lk, _, _, _, lstep, act = ln
    n_active = 0
    for lane in range(nl):
        w = first_walk + rows[lane]
        lu[lane] = starts[(w // 2) % starts.shape[0]]
        lg[lane] = g0
        ls[lane] = walk_state(seed, w)
        lk[lane] = 0
        lstep[lane] = 0
        act[lane] = g0 != end
        if record:
            out_nodes[rows[lane], 0] = group_off[g0] + lu[lane]
        if act[lane]:
            n_active += 1
        else:
            out_len[rows[lane]] = 0
    return n_active


@_helper
def _lane_group(rows, nl, first_walk, seed, forward, net, dr, out, record, ln):
    """Advance ``nl`` walks (batch rows ``rows[:nl]``, one direction) in lockstep.

    Interleaving independent walks, with passes that first touch the memory every
    lane will read, lets the CPU overlap their cache misses; each walk still draws
    only from its own stream. ``out`` is ``(elements, lengths, nodes)`` as in
    :func:`sample_walks`, ``ln`` the lanes' scratch arrays (:class:`_Lanes`).
    """
    binfo, ew, ep, group_off, last_group, choice = net
    cand_ptr, cand, cum, guide, gptr, ptr, idx, tot, starts = dr
    out_elems, out_len, out_nodes = out
    lu, lg, ls, lk, lb, lv, le, lstep, act = ln
    base = DIR_BASE + D_STRIDE * (0 if forward else 1)
    g0, end = (0, last_group) if forward else (last_group, 0)
    n_active = _start(
        rows, nl, first_walk, seed, g0, end, starts, group_off, out_len, out_nodes, record, ln
    )
    touch = 0.0  # loads issued early so that the lanes' cache misses overlap
    while n_active > 0:
        for lane in range(nl):  # touch every lane's next guide entry and cum line
            if act[lane]:
                touch += _touch_edge(
                    lg[lane], lu[lane], ls[lane], base, binfo, cand_ptr, cand, cum, guide, gptr, ptr
                )
        for lane in range(nl):  # which block, which row, which edge
            if not act[lane]:
                continue
            u = lu[lane]
            b, st = _choose_block(
                lg[lane], u, ls[lane], choice, base, binfo, cand_ptr, cand, ptr, tot
            )
            v = -1
            e = -1
            if b >= 0:
                r, e, st = _choose_row(b, u, st, base, binfo, ptr)
                v, st = _choose_edge(b, r, st, base, binfo, cum, guide, gptr, ptr, idx)
                if (
                    v >= 0 and not forward and binfo[b, FLAT] == 1
                ):  # a flat input: channel, position
                    e = v % binfo[b, N_ELEM]
                    v = v // binfo[b, N_ELEM]
            ls[lane] = st
            lb[lane] = b
            lv[lane] = v
            le[lane] = e
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
                jj, ii = (v, u) if forward else (u, v)
                lk[lane], ls[lane] = _emit(
                    b, jj, ii, le[lane], ls[lane], binfo, ew, ep, out_elems, k, lk[lane]
                )
            g = binfo[b, TGT] if forward else binfo[b, SRC]
            lu[lane] = v
            lg[lane] = g
            lstep[lane] += 1
            if record:
                out_nodes[k, lstep[lane]] = group_off[g] + v
            if g == end:
                out_len[k] = lk[lane]
                act[lane] = False
                n_active -= 1
    if touch < 0.0:  # never (weights and positions are >= 0): keeps the touching loads
        out_len[rows[0]] = -1


@_helper
def _new_lanes():
    return _Lanes(
        np.empty(_LANES, dtype=np.int64),
        np.empty(_LANES, dtype=np.int64),
        np.empty(_LANES, dtype=np.uint64),
        np.empty(_LANES, dtype=np.int64),
        np.empty(_LANES, dtype=np.int64),
        np.empty(_LANES, dtype=np.int64),
        np.empty(_LANES, dtype=np.int64),
        np.empty(_LANES, dtype=np.int64),
        np.empty(_LANES, dtype=np.bool_),
    )


@_helper
def _chunk(c, chunk, first_walk, useed, net, fwd, bwd, out, record):
    """Walk rows ``c * chunk .. (c + 1) * chunk - 1`` of the batch, forward ones first."""
    rows = np.empty(_LANES, dtype=np.int64)
    ln = _new_lanes()
    n = out[1].shape[0]
    k0 = c * chunk
    k1 = min(n, k0 + chunk)
    for parity in range(2):
        forward = parity == 0  # a runtime flag: one compiled _lane_group serves both directions
        dr = fwd if forward else bwd
        k = k0 + ((parity - (first_walk + k0)) % 2)
        while k < k1:
            nl = 0
            while nl < _LANES and k < k1:
                rows[nl] = k
                nl += 1
                k += 2
            _lane_group(rows, nl, first_walk, useed, forward, net, dr, out, record, ln)


@njit(cache=True, nogil=True)
def sample_walks(first_walk, seed, chunk, net, fwd, bwd, out, record, c0, c1):
    """Chunks ``c0 .. c1 - 1`` of the walks ``first_walk .. first_walk + n - 1`` (``n = len(out[1])``).

    ``net`` is a :class:`WalkNet`, ``fwd`` and ``bwd`` are :class:`WalkDir`. Even
    walks go forward from ``fwd.starts[(w // 2) % len]`` (local units of the
    input group), odd walks backward from ``bwd.starts[(w // 2) % len]``.
    ``out = (elements, lengths, nodes)``: walk ``k`` of the batch writes its
    element ids to ``elements[k, :lengths[k]]`` (``lengths[k] = -1`` if it got
    stuck, which a prepared graph prevents) and, when ``record`` is true, its
    global node ids to ``nodes[k]`` (``(n, max_steps + 1)`` then, and may be
    ``(1, 1)`` otherwise). Chunk ``c`` is the batch rows ``c * chunk .. (c + 1) *
    chunk - 1``. The kernel releases the GIL: the caller runs disjoint chunk ranges
    on several threads (every walk has its own stream, so the result is the same
    either way), without the compile time of a numba parallel region.
    """
    useed = np.uint64(seed)
    for c in range(c0, c1):
        _chunk(c, chunk, first_walk, useed, net, fwd, bwd, out, record)


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
