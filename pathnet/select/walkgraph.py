"""The arrays PHEW's walks read: :func:`prepare` turns a DAG into a :class:`WalkGraph`.

Preparation runs in four steps, each a function below:

1. :func:`_live_units`: which edges are present and which units lie on a complete
   input -> output path (only element masks make edges absent or units dead);
2. :func:`_plan`: one ``binfo`` row per block (shape, offsets) and the CSR rows of
   the blocks that are not dense (masked, with dead units, identity shortcuts);
3. :func:`_fill`: the biased weights, cumulative sums and guide tables of every
   row, both directions, written in place into the flat arrays of the plan;
4. the walk bounds (longest walk in steps and in elements) and the start units.

The layout is described in :mod:`pathnet._kernels.walks`; the biased weights and
guide tables are computed by :mod:`pathnet._kernels.guides`.

>>> import pathnet
>>> graph = prepare(pathnet.to_dag(pathnet.models.mlp([8, 6, 4], seed=0)))
>>> graph.n_elements, graph.n_reachable, graph.max_steps
(72, 72, 2)
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from pathnet._kernels import guides as G
from pathnet._kernels import walks as K
from pathnet.graph import EdgeBlock, LayeredDAG

__all__ = ["BIASES", "FLATTENS", "INVERSE_EPS", "SKIPS", "WalkGraph", "prepare", "run_ranges"]

BIASES = ("abs", "square", "inverse", "uniform")
SKIPS = ("reference", "weighted")
FLATTENS = ("position", "channel")
#: Added to ``|w|`` and to an edge's L1 norm before inverting them (``bias="inverse"``);
#: the authors' inverse-kernel code uses the same constant.
INVERSE_EPS = 1e-5
_BIAS_CODE = {
    "abs": G.BIAS_ABS,
    "square": G.BIAS_SQUARE,
    "inverse": G.BIAS_INVERSE,
    "uniform": G.BIAS_UNIFORM,
}
# Blocks below this many weights are prepared on the calling thread: a parallel
# region costs a thread-pool round trip, and far more when other processes keep
# the cores busy.
_PARALLEL_MIN = 1 << 22
_WHERE = "pathnet.select.phew"
_DIRS = (0, 1)  # forward, backward


def _parallel(n: int) -> bool:
    """Whether a preparation kernel over ``n`` items is worth the thread pool's round trip."""
    return n >= _PARALLEL_MIN


def run_ranges(
    kernel: Any, args: tuple[Any, ...], n: int, *, parallel: bool, piece: int = 0
) -> float:
    """``kernel(*args, lo, hi)`` over consecutive ranges that cover ``[0, n)``; the sum of its results (None: 0).

    The kernels (:mod:`pathnet._kernels`) release the GIL and write disjoint
    outputs per range, so with ``parallel`` the ranges (``piece`` items each;
    default: about four per thread) run on ``numba.get_num_threads()`` Python
    threads, taken in order as threads become free. This replaces numba parallel
    regions, whose compilation cost seconds on every first call; the outputs do
    not depend on the split.
    """
    threads = numba.get_num_threads()
    if not parallel or threads < 2 or n < 2:
        return float(kernel(*args, 0, n) or 0.0)
    step = max(1, piece or -(-n // (4 * threads)))
    starts = range(0, n, step)
    with ThreadPoolExecutor(min(threads, len(starts))) as pool:
        parts = list(pool.map(lambda lo: kernel(*args, lo, min(lo + step, n)), starts))
    return float(sum(p or 0.0 for p in parts))


@dataclass(frozen=True, eq=False)
class WalkGraph:
    """The arrays the walk kernels read; built by :func:`prepare`.

    Attributes
    ----------
    net : pathnet._kernels.walks.WalkNet
        ``binfo`` and what both directions share.
    fwd, bwd : pathnet._kernels.walks.WalkDir
        Each direction's rows, candidate blocks and start units.
    elem_off : numpy.ndarray
        Per block, the global id of its first parameter element (-1 for identity).
    n_elements : int
        Size of the global element id space (all prunable elements).
    n_reachable : int
        Present elements on edges that lie on a complete input -> output path.
    reachable : tuple
        Per block, the bool ``(n_out, n_in, n_elem)`` array of those elements, or
        None when all of the block's elements are.
    max_steps, max_elems : int
        Most edges, and most element ids, a single walk can produce.
    """

    net: K.WalkNet
    fwd: K.WalkDir
    bwd: K.WalkDir
    max_steps: int
    max_elems: int
    elem_off: np.ndarray
    n_elements: int
    n_reachable: int
    reachable: tuple[np.ndarray | None, ...]

    @property
    def binfo(self) -> np.ndarray:
        """One row per block (columns in :mod:`pathnet._kernels.walks`)."""
        return self.net.binfo

    def decode(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Global element ids -> ``(block, j, i, e)``: block index, target unit, source unit, element."""
        ids = np.asarray(ids, dtype=np.int64)
        offs = np.where(self.elem_off >= 0, self.elem_off, np.iinfo(np.int64).max)
        order = np.argsort(offs, kind="stable")
        pos = np.searchsorted(offs[order], ids, side="right") - 1
        block = order[pos]
        flat = ids - self.elem_off[block]
        n_in = self.binfo[block, K.N_IN]
        ne = self.binfo[block, K.N_ELEM]
        edge, e = np.divmod(flat, ne)
        j, i = np.divmod(edge, n_in)
        return block, j, i, e


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``, else a ``ValueError`` naming the option."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{_WHERE}: {name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
        )
    return value


def prepare(
    dag: LayeredDAG,
    *,
    bias: str = "abs",
    skip: str = "reference",
    kernel_conserved: bool = False,
    flatten: str = "position",
) -> WalkGraph:
    """Build the walk arrays of ``dag`` for one bias / skip / flatten policy (see :func:`~pathnet.select.phew.phew`).

    Raises
    ------
    ValueError
        For NaN/Inf weights, an all-zero layer, or a mask that leaves no complete path.
    """
    check_choice("bias", bias, BIASES)
    check_choice("skip", skip, SKIPS)
    check_choice("flatten", flatten, FLATTENS)
    alive, masked = _live_units(dag)
    views = [_View.of(blk, alive, flatten == "position") for blk in dag.blocks]
    plan = _plan(views, _BIAS_CODE[bias], bool(kernel_conserved))
    rows, ew, ep = plan.allocate(masked)
    for b, view in enumerate(views):
        _fill(view, plan, b, rows, ew, ep)
    dirs = []
    for d, a in zip(_DIRS, (alive[0], alive[-1])):
        cand_ptr, cand = _candidates(dag, forward=d == 0)
        cum, guide, gptr, ptr, idx, tot = rows[d]
        starts = np.flatnonzero(a).astype(np.int64)
        dirs.append(K.WalkDir(cand_ptr, cand, cum, guide, gptr, ptr, idx, tot, starts))
    max_steps, max_elems = _walk_bounds(dag, plan.binfo)
    net = K.WalkNet(
        binfo=plan.binfo,
        ew=ew,
        ep=ep,
        group_off=dag.offsets,
        last_group=len(dag.groups) - 1,
        choice=K.CHOICE_REFERENCE if skip == "reference" else K.CHOICE_WEIGHTED,
    )
    return WalkGraph(
        net=net,
        fwd=dirs[0],
        bwd=dirs[1],
        max_steps=max_steps,
        max_elems=max_elems,
        elem_off=plan.elem_off,
        n_elements=plan.n_elements,
        n_reachable=plan.n_reachable,
        reachable=tuple(plan.reachable),
    )


# ------------------------------------------------------- 1. live units
def _live_units(dag: LayeredDAG) -> tuple[list[np.ndarray], bool]:
    """Per group, the units on a complete path of present edges; and whether any block is masked."""
    masked = any(blk.element_mask is not None for blk in dag.blocks)
    if not masked:
        return [np.ones(g.size, dtype=bool) for g in dag.groups], False
    present: list[np.ndarray | None] = []
    for blk in dag.blocks:
        if blk.element_mask is not None:
            present.append(np.asarray(blk.element_mask.any(axis=2)))
        elif blk.kind == "identity":
            present.append(np.eye(blk.n_units, dtype=bool))
        else:
            present.append(None)
    alive = _alive(dag, present)
    if not alive[0].any():
        raise ValueError(
            f"{_WHERE}: the DAG's element masks leave no complete input -> output path; "
            "expected at least one path of present weights"
        )
    return alive, True


def _alive(dag: LayeredDAG, present: list[np.ndarray | None]) -> list[np.ndarray]:
    """Units on at least one complete input -> output path through present edges."""
    n = len(dag.groups)
    fwd: list[np.ndarray] = [np.ones(dag.groups[0].size, dtype=bool)]
    for g in range(1, n):
        acc = np.zeros(dag.groups[g].size, dtype=bool)
        for b in dag.in_blocks(g):
            p = present[b]
            src = fwd[dag.blocks[b].source]
            # None: a dense block, every edge present (any live source feeds every unit)
            acc |= src.any() if p is None else p[:, src].any(axis=1)
        fwd.append(acc)
    bwd: list[np.ndarray | None] = [None] * n
    bwd[-1] = np.ones(dag.groups[-1].size, dtype=bool)
    for g in range(n - 2, -1, -1):
        acc = np.zeros(dag.groups[g].size, dtype=bool)
        for b in dag.out_blocks(g):
            p = present[b]
            tgt = bwd[dag.blocks[b].target]
            assert tgt is not None
            acc |= tgt.any() if p is None else p[tgt, :].any(axis=0)
        bwd[g] = acc
    return [f & b for f, b in zip(fwd, bwd) if b is not None]


@dataclass(frozen=True, eq=False)
class _View:
    """A block as the walks see it.

    A flatten block walked per weight (``flat``) looks like a Linear block over
    the ``n_in * n_elem`` flat inputs: ``values`` and ``mask`` are reshaped to
    ``(n_out, n_in * n_elem, 1)`` and the source units repeated ``n_elem`` times.
    """

    blk: EdgeBlock
    flat: bool
    values: np.ndarray | None
    mask: np.ndarray | None
    a_src: np.ndarray
    a_tgt: np.ndarray

    @classmethod
    def of(cls, blk: EdgeBlock, alive: list[np.ndarray], flatten_by_position: bool) -> _View:
        a_src, a_tgt = alive[blk.source], alive[blk.target]
        flat = flatten_by_position and blk.kind == "linear" and blk.n_elem > 1
        values, mask = blk.values, blk.element_mask
        if values is not None and values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float32 if values.dtype.itemsize <= 4 else np.float64)
        if flat:
            assert values is not None
            n_out = values.shape[0]
            values = values.reshape(n_out, -1, 1)
            mask = None if mask is None else mask.reshape(n_out, -1, 1)
            a_src = np.repeat(a_src, blk.n_elem)
        return cls(blk, flat, values, mask, a_src, a_tgt)

    @property
    def n_out(self) -> int:
        return self.blk.shape[0]

    @property
    def n_in(self) -> int:
        """Source rows: channels, or flat inputs for a flatten block walked per weight."""
        return self.a_src.size

    @property
    def n_elem(self) -> int:
        """Elements per edge as the walks see it (1 for a flatten block walked per weight)."""
        return 1 if self.flat else self.blk.n_elem

    def shape(self, d: int) -> tuple[int, int]:
        """``(rows, columns)`` in direction ``d``."""
        return (self.n_in, self.n_out) if d == 0 else (self.n_out, self.n_in)


# ------------------------------------------------------------- 2. plan
@dataclass(frozen=True)
class _Rows:
    """A sparse block's rows in one direction."""

    indptr: np.ndarray
    idx: np.ndarray
    weights: np.ndarray
    gptr: np.ndarray


def _csr(present: np.ndarray, weights: np.ndarray) -> _Rows:
    """CSR rows (indptr, int32 indices, float64 weights, guide pointers) of ``present``."""
    rows, cols = np.nonzero(present)
    indptr = np.zeros(present.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=present.shape[0]), out=indptr[1:])
    w = np.ascontiguousarray(weights[rows, cols], dtype=np.float64)
    return _Rows(indptr, cols.astype(np.int32), w, _guide_ptr(indptr))


def _guide_ptr(indptr: np.ndarray) -> np.ndarray:
    gptr = np.zeros_like(indptr)
    np.cumsum(G.guide_size(np.diff(indptr)), out=gptr[1:])
    return gptr


_KEYS = ("cum", "ptr", "idx", "tot", "guide", "gptr")


@dataclass
class _Plan:
    """Offsets of every block's rows in the flat arrays, and the sparse blocks' rows."""

    binfo: np.ndarray
    elem_off: np.ndarray
    code: int
    sparse: dict[int, tuple[_Rows, _Rows]] = field(default_factory=dict)
    reachable: list[np.ndarray | None] = field(default_factory=list)
    size: dict[tuple[int, str], int] = field(
        default_factory=lambda: {(d, k): 0 for d in _DIRS for k in _KEYS}
    )
    ew_size: int = 0
    n_elements: int = 0
    n_reachable: int = 0

    def allocate(self, masked: bool) -> tuple[list[tuple[np.ndarray, ...]], np.ndarray, np.ndarray]:
        """Per direction ``(cum, guide, gptr, ptr, idx, tot)``, then ``ew`` and ``ep``."""
        s = self.size
        rows: list[tuple[np.ndarray, ...]] = [
            (
                np.empty(s[d, "cum"], dtype=np.float32),
                np.empty(max(s[d, "guide"], 1), dtype=np.int32),
                np.empty(max(s[d, "gptr"], 1), dtype=np.int64),
                np.empty(max(s[d, "ptr"], 1), dtype=np.int64),
                np.empty(max(s[d, "idx"], 1), dtype=np.int32),
                np.empty(s[d, "tot"], dtype=np.float64),
            )
            for d in _DIRS
        ]
        ew = np.empty(max(self.ew_size, 1), dtype=np.float32)
        ep = np.empty(self.ew_size if masked else 0, dtype=np.uint8)
        return rows, ew, ep


def _plan(views: list[_View], code: int, kernel_conserved: bool) -> _Plan:
    """First pass: ``binfo``, element offsets, and the rows of the sparse blocks."""
    plan = _Plan(
        binfo=np.zeros((len(views), K.N_FIELDS), dtype=np.int64),
        elem_off=np.full(len(views), -1, dtype=np.int64),
        code=code,
    )
    for b, view in enumerate(views):
        blk = view.blk
        row = plan.binfo[b]
        row[K.SRC], row[K.TGT] = blk.source, blk.target
        row[K.N_OUT], row[K.N_IN], row[K.N_ELEM] = blk.shape[0], blk.shape[1], blk.n_elem
        row[K.EW_OFF] = -1
        row[K.FLAT] = int(view.flat)
        if blk.kind == "identity":
            row[K.KIND], row[K.ELEM_OFF] = K.KIND_IDENTITY, -1
            plan.sparse[b] = (_identity_rows(view),) * 2
            plan.reachable.append(None)
        else:
            row[K.KIND] = K.KIND_PARAM
            plan.elem_off[b] = row[K.ELEM_OFF] = plan.n_elements
            plan.n_elements += blk.n_params
            if view.n_elem > 1:
                row[K.EW_OFF] = plan.ew_size
                plan.ew_size += blk.n_params
            row[K.CONSERVE] = int(kernel_conserved and blk.kind == "conv" and blk.n_elem > 1)
            _plan_rows(view, plan, b)
        for d in _DIRS:
            _plan_direction(view, plan, b, d)
    return plan


def _identity_rows(view: _View) -> _Rows:
    keep = view.a_src & view.a_tgt
    ptr = np.zeros(view.n_in + 1, dtype=np.int64)
    np.cumsum(keep, out=ptr[1:])
    idx = np.flatnonzero(keep).astype(np.int32)
    return _Rows(ptr, idx, np.ones(idx.size), _guide_ptr(ptr))


def _plan_rows(view: _View, plan: _Plan, b: int) -> None:
    """Reachable elements of a parameter block, and its CSR rows unless it is dense."""
    blk = view.blk
    if view.mask is None and view.a_src.all() and view.a_tgt.all():
        plan.reachable.append(None)
        plan.n_reachable += blk.n_params
        return
    assert view.values is not None
    mask = view.mask if view.mask is not None else np.ones(view.values.shape, dtype=bool)
    w = np.empty((view.n_out, view.n_in), dtype=np.float64)
    pres = np.empty((view.n_out, view.n_in), dtype=np.uint8)
    values = np.ascontiguousarray(view.values)
    abs_sum = run_ranges(
        G.edge_weights,
        (values, mask, plan.code, INVERSE_EPS, w, pres),
        view.n_out,
        parallel=_parallel(blk.n_params),
    )
    if mask.any():  # a fully masked block is fine: walks go round it
        _check_values(blk.param, abs_sum, values[mask])
    live = pres.astype(bool) & view.a_tgt[:, None] & view.a_src[None, :]
    elements = mask & live[:, :, None]
    plan.reachable.append(elements.reshape(blk.values.shape) if blk.values is not None else None)
    plan.n_reachable += int(elements.sum())
    plan.sparse[b] = (_csr(live.T, w.T), _csr(live, w))


def _plan_direction(view: _View, plan: _Plan, b: int, d: int) -> None:
    """Offsets of block ``b``'s rows in direction ``d``."""
    n_rows, n_cols = view.shape(d)
    row = plan.binfo[b]
    size = plan.size
    base = K.DIR_BASE + K.D_STRIDE * d
    row[base + K.D_OFF] = size[d, "cum"]
    row[base + K.D_TOT] = size[d, "tot"]
    row[base + K.D_GOFF] = size[d, "guide"]
    row[base + K.D_NCOL] = n_cols
    size[d, "tot"] += n_rows
    if b in plan.sparse:
        r = plan.sparse[b][d]
        row[base + K.D_DENSE] = 0
        row[base + K.D_PTR] = size[d, "ptr"]
        row[base + K.D_IDX] = size[d, "idx"]
        row[base + K.D_GPTR] = size[d, "gptr"]
        size[d, "cum"] += r.idx.size
        size[d, "idx"] += r.idx.size
        size[d, "ptr"] += r.indptr.size
        size[d, "gptr"] += r.gptr.size
        size[d, "guide"] += int(r.gptr[-1])
    else:
        row[base + K.D_DENSE] = 1
        row[base + K.D_PTR] = row[base + K.D_IDX] = row[base + K.D_GPTR] = -1
        size[d, "cum"] += n_rows * n_cols
        size[d, "guide"] += n_rows * G.guide_size(n_cols)


# ------------------------------------------------------------- 3. fill
def _fill(
    view: _View,
    plan: _Plan,
    b: int,
    rows: list[tuple[np.ndarray, ...]],
    ew: np.ndarray,
    ep: np.ndarray,
) -> None:
    """Second pass: block ``b``'s element weights, then its rows in both directions."""
    blk = view.blk
    off = plan.binfo[b, K.EW_OFF]
    par = _parallel(max(blk.n_params, view.n_out * view.n_in))
    ew_view = None
    if off >= 0:
        assert blk.values is not None
        ew_view = ew[off : off + blk.n_params].reshape(blk.values.shape)
        if ep.size:
            ep[off : off + blk.n_params] = (
                1 if blk.element_mask is None else blk.element_mask.ravel()
            )
    source = None  # (n_out, n_in, k) array the dense kernels read, with its bias
    if b not in plan.sparse:
        source = _dense_source(view, plan.code, ew_view, par)
    elif ew_view is not None:
        _element_weights(view, plan.code, ew_view)
    for d in _DIRS:
        if source is None:
            _fill_sparse(plan, b, d, rows[d])
        else:
            _fill_dense(view, plan, b, d, rows[d], source, check=ew_view is None, par=par)


def _dense_source(
    view: _View, code: int, ew_view: np.ndarray | None, par: bool
) -> tuple[np.ndarray, int]:
    """What the dense kernels read: the values with the bias, or precomputed edge weights.

    For blocks with several elements per edge, one pass computes the edge weights
    and the element weights (``ew_view``) and checks the values.
    """
    assert view.values is not None
    if ew_view is None:
        # float64, like the edge weights below: one compiled specialisation of the
        # dense kernels (they sum in float64 anyway, so the result is the same)
        return np.ascontiguousarray(view.values, dtype=np.float64), code
    values = np.ascontiguousarray(view.values)
    a = np.empty((view.n_out, view.n_in), dtype=np.float64)
    args = (values, code, INVERSE_EPS, view.blk.kind != "conv", a, ew_view)
    abs_sum = run_ranges(G.kernel_weights, args, view.n_out, parallel=par)
    _check_values(view.blk.param, abs_sum, values)
    return a.reshape(view.n_out, view.n_in, 1), G.BIAS_ABS  # a >= 0: taken as is


def _element_weights(view: _View, code: int, ew_view: np.ndarray) -> None:
    """Weights for picking one element of an edge of a sparse block (0 where masked)."""
    blk = view.blk
    assert blk.values is not None
    if code == G.BIAS_UNIFORM or blk.kind != "conv":  # uniform, or a flatten edge by channel
        ew_view[...] = 1.0
    elif code == G.BIAS_ABS:
        np.abs(blk.values, out=ew_view)
    elif code == G.BIAS_SQUARE:
        np.square(blk.values, out=ew_view)
    else:
        np.abs(blk.values, out=ew_view)
        ew_view += INVERSE_EPS
        np.reciprocal(ew_view, out=ew_view)
    if blk.element_mask is not None:
        ew_view *= blk.element_mask


def _fill_sparse(plan: _Plan, b: int, d: int, arrays: tuple[np.ndarray, ...]) -> None:
    """Copy block ``b``'s CSR rows into the flat arrays and build their guide tables."""
    cum, guide, gptr, ptr, idx, tot = arrays
    row = plan.binfo[b]
    base = K.DIR_BASE + K.D_STRIDE * d
    off, toff, goff = row[base + K.D_OFF], row[base + K.D_TOT], row[base + K.D_GOFF]
    r = plan.sparse[b][d]
    n_rows, n_edges, n_guide = r.indptr.size - 1, r.idx.size, int(r.gptr[-1])
    ptr[row[base + K.D_PTR] : row[base + K.D_PTR] + r.indptr.size] = r.indptr
    idx[row[base + K.D_IDX] : row[base + K.D_IDX] + n_edges] = r.idx
    gptr[row[base + K.D_GPTR] : row[base + K.D_GPTR] + r.gptr.size] = r.gptr
    args = (
        r.indptr,
        r.gptr,
        r.weights,
        cum[off : off + n_edges],
        guide[goff : goff + n_guide],
        tot[toff : toff + n_rows],
    )
    run_ranges(G.sparse_guide, args, n_rows, parallel=_parallel(n_edges))


def _fill_dense(
    view: _View,
    plan: _Plan,
    b: int,
    d: int,
    arrays: tuple[np.ndarray, ...],
    source: tuple[np.ndarray, int],
    *,
    check: bool,
    par: bool,
) -> None:
    """Cumulative sums and guide tables of every row of a dense block in direction ``d``."""
    cum, guide, _, _, _, tot = arrays
    n_rows, n_cols = view.shape(d)
    row = plan.binfo[b]
    base = K.DIR_BASE + K.D_STRIDE * d
    off, toff, goff = row[base + K.D_OFF], row[base + K.D_TOT], row[base + K.D_GOFF]
    ng = G.guide_size(n_cols)
    cum_rows = cum[off : off + n_rows * n_cols].reshape(n_rows, n_cols)
    guide_rows = guide[goff : goff + n_rows * ng].reshape(n_rows, ng)
    tot_rows = tot[toff : toff + n_rows]
    values, code = source
    args = (values, code, INVERSE_EPS, cum_rows, guide_rows, tot_rows)
    if d == 0:
        run_ranges(G.dense_guide_forward, args, n_rows, parallel=par, piece=32)
        return
    abs_sum = run_ranges(G.dense_guide_backward, args, n_rows, parallel=par)
    if check:  # otherwise checked with the element weights
        _check_values(view.blk.param, abs_sum, values)


def _check_values(param: str | None, abs_sum: float, values: np.ndarray) -> None:
    """Raise for NaN/Inf weights or an all-zero layer, from the sum of ``|w|`` over present weights."""
    if not math.isfinite(abs_sum):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ValueError(
            f"{_WHERE}: parameter {param!r} holds {bad} NaN/Inf values; expected finite weights"
            if bad
            else f"{_WHERE}: parameter {param!r} has weights too large to sum in float64; "
            "expected finite, moderately sized weights"
        )
    if abs_sum == 0.0:
        raise ValueError(
            f"{_WHERE}: parameter {param!r} is all zeros (an all-zero layer passes no signal); "
            "expected at least one non-zero weight, e.g. a freshly initialised network"
        )


# ------------------------------------------------------ 4. walk bounds
def _candidates(dag: LayeredDAG, *, forward: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the blocks a walk may take next: ``cand[cand_ptr[g]:cand_ptr[g + 1]]``."""
    ptr = [0]
    cand: list[int] = []
    for g in range(len(dag.groups)):
        cand.extend(dag.out_blocks(g) if forward else dag.in_blocks(g))
        ptr.append(len(cand))
    return np.asarray(ptr, dtype=np.int64), np.asarray(cand or [0], dtype=np.int64)


def _walk_bounds(dag: LayeredDAG, binfo: np.ndarray) -> tuple[int, int]:
    """Most steps, and most element ids, of one walk (input to output)."""
    n_groups = len(dag.groups)
    steps = np.zeros(n_groups, dtype=np.int64)
    elems = np.zeros(n_groups, dtype=np.int64)
    for g in range(1, n_groups):
        for b in dag.in_blocks(g):
            blk = dag.blocks[b]
            per = 0 if blk.kind == "identity" else (blk.n_elem if binfo[b, K.CONSERVE] else 1)
            steps[g] = max(steps[g], steps[blk.source] + 1)
            elems[g] = max(elems[g], elems[blk.source] + per)
    return int(steps.max()), int(elems.max())
