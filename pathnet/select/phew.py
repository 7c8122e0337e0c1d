"""PHEW: sparse subnetworks from biased random walks over the network's paths.

Patil & Dovrolis, "PHEW: Constructing Sparse Networks that Learn Fast and
Generalize Well without Training Data", ICML 2021. The walks follow the
authors' code (see ``shared/design/ALGORITHMS.md``, section 2), run in numba
kernels (:mod:`pathnet._kernels.walks`) and are reproducible from a seed on
any number of threads.

>>> import pathnet
>>> from pathnet.select import select
>>> model = pathnet.models.mlp([8, 6, 4], seed=0)
>>> mask = select("phew", model, 0.25, seed=0)
>>> mask.n_kept
18
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from torch import nn

from pathnet._kernels import walks as K
from pathnet._random import SeedLike, child_seeds
from pathnet.graph import LayeredDAG
from pathnet.mask import Mask
from pathnet.select.registry import register

__all__ = [
    "BIASES",
    "INVERSE_EPS",
    "SKIPS",
    "WalkGraph",
    "phew",
    "phew_nested",
    "prepare",
    "random_paths",
    "sample_walks",
]

BIASES = ("abs", "square", "inverse", "uniform")
SKIPS = ("reference", "weighted")
#: Added to ``|w|`` and to an edge's L1 norm before inverting them (``bias="inverse"``);
#: the authors' inverse-kernel code uses the same constant.
INVERSE_EPS = 1e-5
_BIAS_CODE = {
    "abs": K.BIAS_ABS,
    "square": K.BIAS_SQUARE,
    "inverse": K.BIAS_INVERSE,
    "uniform": K.BIAS_UNIFORM,
}
_CHUNK = 256  # walks per parallel work item
# Work below these sizes runs on the calling thread: a parallel region costs a
# thread-pool round trip, and far more when other processes keep the cores busy.
_PARALLEL_MIN = 1 << 22  # weights of one block, for the preparation kernels
_PARALLEL_MIN_STEPS = 1 << 17  # walks x steps, for a batch of walks
_DYNAMIC_CHUNKS = 4  # chunks a thread takes at a time: a slowed thread holds up little


def _parallel(n: int) -> bool:
    """Whether a preparation kernel over ``n`` items is worth the thread pool's round trip."""
    return n >= _PARALLEL_MIN


_WHERE = "pathnet.select.phew"


@dataclass(frozen=True, eq=False)
class _DirArrays:
    """One walk direction's arrays (layout in :mod:`pathnet._kernels.walks`)."""

    cum: np.ndarray
    guide: np.ndarray
    gptr: np.ndarray
    ptr: np.ndarray
    idx: np.ndarray
    tot: np.ndarray


@dataclass(frozen=True, eq=False)
class WalkGraph:
    """The arrays the walk kernels read; built by :func:`prepare` (layout in :mod:`pathnet._kernels.walks`).

    Attributes
    ----------
    elem_off : numpy.ndarray
        Per block, the global id of its first parameter element (-1 for identity).
    n_elements : int
        Size of the global element id space (all prunable elements).
    n_reachable : int
        Present elements on edges that lie on a complete input -> output path.
    max_steps, max_elems : int
        Most edges, and most element ids, a single walk can produce.
    """

    binfo: np.ndarray
    fcand_ptr: np.ndarray
    fcand: np.ndarray
    bcand_ptr: np.ndarray
    bcand: np.ndarray
    fwd: _DirArrays
    bwd: _DirArrays
    ew: np.ndarray
    ep: np.ndarray
    starts_in: np.ndarray
    starts_out: np.ndarray
    group_off: np.ndarray
    last_group: int
    choice: int
    max_steps: int
    max_elems: int
    elem_off: np.ndarray
    n_elements: int
    n_reachable: int
    reachable: tuple[np.ndarray | None, ...]

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


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"{_WHERE}: {name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
        )
    return value


def _alive(dag: LayeredDAG, present: list[np.ndarray | None]) -> list[np.ndarray]:
    """Units on at least one complete input -> output path through present edges."""
    n = len(dag.groups)
    fwd: list[np.ndarray] = [np.ones(dag.groups[0].size, dtype=bool)]
    for g in range(1, n):
        acc = np.zeros(dag.groups[g].size, dtype=bool)
        for b in dag.in_blocks(g):
            p = present[b]
            src = fwd[dag.blocks[b].source]
            acc |= src if p is None else (p[:, src].any(axis=1))
        fwd.append(acc)
    bwd: list[np.ndarray | None] = [None] * n
    bwd[-1] = np.ones(dag.groups[-1].size, dtype=bool)
    for g in range(n - 2, -1, -1):
        acc = np.zeros(dag.groups[g].size, dtype=bool)
        for b in dag.out_blocks(g):
            p = present[b]
            tgt = bwd[dag.blocks[b].target]
            assert tgt is not None
            acc |= tgt if p is None else (p[tgt, :].any(axis=0))
        bwd[g] = acc
    return [f & b for f, b in zip(fwd, bwd) if b is not None]


def _csr(present: np.ndarray, weights: np.ndarray) -> _Rows:
    """CSR rows (indptr, int32 indices, float64 weights, guide pointers) of ``present``."""
    rows, cols = np.nonzero(present)
    indptr = np.zeros(present.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=present.shape[0]), out=indptr[1:])
    w = np.ascontiguousarray(weights[rows, cols], dtype=np.float64)
    return _Rows(indptr, cols.astype(np.int32), w, _guide_ptr(indptr))


def _guide_ptr(indptr: np.ndarray) -> np.ndarray:
    gptr = np.zeros_like(indptr)
    np.cumsum(K.guide_size(np.diff(indptr)), out=gptr[1:])
    return gptr


@dataclass(frozen=True)
class _Rows:
    """A sparse block's rows in one direction."""

    indptr: np.ndarray
    idx: np.ndarray
    weights: np.ndarray
    gptr: np.ndarray


def prepare(
    dag: LayeredDAG,
    *,
    bias: str = "abs",
    skip: str = "reference",
    kernel_conserved: bool = False,
) -> WalkGraph:
    """Build the walk arrays of ``dag`` for one bias / skip policy (see :func:`phew`).

    Raises
    ------
    ValueError
        For NaN/Inf weights, an all-zero layer, or a mask that leaves no complete path.
    """
    _check_choice("bias", bias, BIASES)
    _check_choice("skip", skip, SKIPS)
    code = _BIAS_CODE[bias]
    blocks = dag.blocks
    n_groups = len(dag.groups)

    # Present edges and live units (only masks can make edges absent or units dead).
    present: list[np.ndarray | None] = []
    for blk in blocks:
        if blk.element_mask is not None:
            present.append(np.asarray(blk.element_mask.any(axis=2)))
        elif blk.kind == "identity":
            present.append(np.eye(blk.n_units, dtype=bool))
        else:
            present.append(None)
    masked = any(blk.element_mask is not None for blk in blocks)
    if masked:
        alive = _alive(dag, present)
    else:
        alive = [np.ones(g.size, dtype=bool) for g in dag.groups]
    if not alive[0].any():
        raise ValueError(
            f"{_WHERE}: the DAG's element masks leave no complete input -> output path; "
            "expected at least one path of present weights"
        )

    binfo = np.zeros((len(blocks), K.N_FIELDS), dtype=np.int64)
    # First pass: offsets, and the rows of the sparse blocks.
    sparse: dict[int, tuple[_Rows, _Rows]] = {}
    reachable: list[np.ndarray | None] = []
    keys = ("cum", "ptr", "idx", "tot", "guide", "gptr")
    size = {(d, key): 0 for d in (0, 1) for key in keys}
    ew_size = 0
    elem_off = np.full(len(blocks), -1, dtype=np.int64)
    n_elements = 0
    n_reachable = 0
    for b, blk in enumerate(blocks):
        n_out, n_in = blk.shape
        row = binfo[b]
        row[K.SRC], row[K.TGT], row[K.N_OUT], row[K.N_IN] = blk.source, blk.target, n_out, n_in
        row[K.N_ELEM] = blk.n_elem
        row[K.EW_OFF] = -1
        a_src, a_tgt = alive[blk.source], alive[blk.target]
        if blk.kind == "identity":
            row[K.KIND] = K.KIND_IDENTITY
            row[K.ELEM_OFF] = -1
            keep = a_src & a_tgt
            ptr = np.zeros(n_in + 1, dtype=np.int64)
            np.cumsum(keep, out=ptr[1:])
            rows = _Rows(
                ptr,
                np.flatnonzero(keep).astype(np.int32),
                np.ones(int(keep.sum())),
                _guide_ptr(ptr),
            )
            sparse[b] = (rows, rows)
            reachable.append(None)
        else:
            assert blk.values is not None
            row[K.KIND] = K.KIND_PARAM
            elem_off[b] = row[K.ELEM_OFF] = n_elements
            n_elements += blk.n_params
            if blk.n_elem > 1:
                row[K.EW_OFF] = ew_size
                ew_size += blk.n_params
            row[K.CONSERVE] = int(bool(kernel_conserved) and blk.kind == "conv" and blk.n_elem > 1)
            if blk.element_mask is None and a_src.all() and a_tgt.all():
                reachable.append(None)
                n_reachable += blk.n_params
            else:
                mask = (
                    blk.element_mask
                    if blk.element_mask is not None
                    else np.ones(blk.values.shape, dtype=bool)
                )
                w = np.empty((n_out, n_in), dtype=np.float64)
                pres = np.empty((n_out, n_in), dtype=np.uint8)
                values = np.ascontiguousarray(blk.values)
                abs_sum = K.edge_weights(
                    values, mask, code, INVERSE_EPS, w, pres, _parallel(blk.n_params)
                )
                if mask.any():  # a fully masked block is fine: walks go round it
                    _check_values(blk.param, abs_sum, values[mask])
                live = pres.astype(bool) & a_tgt[:, None] & a_src[None, :]
                elements = mask & live[:, :, None]
                reachable.append(elements)
                n_reachable += int(elements.sum())
                sparse[b] = (_csr(live.T, w.T), _csr(live, w))
        for d, n_rows, n_cols in ((0, n_in, n_out), (1, n_out, n_in)):
            base = K.DIR_BASE + K.D_STRIDE * d
            row[base + K.D_OFF] = size[d, "cum"]
            row[base + K.D_TOT] = size[d, "tot"]
            row[base + K.D_GOFF] = size[d, "guide"]
            size[d, "tot"] += n_rows
            if b in sparse:
                r = sparse[b][d]
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
                size[d, "guide"] += n_rows * K.guide_size(n_cols)

    # Second pass: fill the global arrays in place.
    arrays = {
        d: _DirArrays(
            cum=np.empty(size[d, "cum"], dtype=np.float32),
            guide=np.empty(max(size[d, "guide"], 1), dtype=np.int32),
            gptr=np.empty(max(size[d, "gptr"], 1), dtype=np.int64),
            ptr=np.empty(max(size[d, "ptr"], 1), dtype=np.int64),
            idx=np.empty(max(size[d, "idx"], 1), dtype=np.int32),
            tot=np.empty(size[d, "tot"], dtype=np.float64),
        )
        for d in (0, 1)
    }
    ew = np.empty(max(ew_size, 1), dtype=np.float32)
    ep = np.empty(ew_size if masked else 0, dtype=np.uint8)
    for b, blk in enumerate(blocks):
        n_out, n_in = blk.shape
        row = binfo[b]
        par = _parallel(max(blk.n_params, n_out * n_in))
        ew_view = None
        if row[K.EW_OFF] >= 0:
            assert blk.values is not None
            ew_view = ew[row[K.EW_OFF] : row[K.EW_OFF] + blk.n_params].reshape(blk.values.shape)
        source = None  # (n_out, n_in, k) array the dense kernels read, with its bias
        if b not in sparse:
            assert blk.values is not None
            values = np.ascontiguousarray(blk.values)
            if ew_view is not None:  # one pass: edge weights and element weights
                a = np.empty((n_out, n_in), dtype=np.float64)
                abs_sum = K.kernel_weights(
                    values, code, INVERSE_EPS, blk.kind != "conv", a, ew_view, par
                )
                _check_values(blk.param, abs_sum, values)
                source = (a.reshape(n_out, n_in, 1), K.BIAS_ABS)  # a >= 0: taken as is
            else:
                source = (values, code)
        elif ew_view is not None:
            assert blk.values is not None
            if bias == "uniform" or blk.kind != "conv":  # uniform, or a flatten edge
                ew_view[...] = 1.0
            elif bias == "abs":
                np.abs(blk.values, out=ew_view)
            elif bias == "square":
                np.square(blk.values, out=ew_view)
            else:
                np.abs(blk.values, out=ew_view)
                ew_view += INVERSE_EPS
                np.reciprocal(ew_view, out=ew_view)
            if blk.element_mask is not None:
                ew_view *= blk.element_mask
        if masked and ew_view is not None:
            ep[row[K.EW_OFF] : row[K.EW_OFF] + blk.n_params] = (
                1 if blk.element_mask is None else blk.element_mask.ravel()
            )
        for d, n_rows, n_cols in ((0, n_in, n_out), (1, n_out, n_in)):
            arr = arrays[d]
            base = K.DIR_BASE + K.D_STRIDE * d
            off, toff, goff = row[base + K.D_OFF], row[base + K.D_TOT], row[base + K.D_GOFF]
            tot = arr.tot[toff : toff + n_rows]
            if source is None:
                r = sparse[b][d]
                n_edges, n_guide = r.idx.size, int(r.gptr[-1])
                arr.ptr[row[base + K.D_PTR] : row[base + K.D_PTR] + r.indptr.size] = r.indptr
                arr.idx[row[base + K.D_IDX] : row[base + K.D_IDX] + n_edges] = r.idx
                arr.gptr[row[base + K.D_GPTR] : row[base + K.D_GPTR] + r.gptr.size] = r.gptr
                K.sparse_guide(
                    r.indptr,
                    r.gptr,
                    r.weights,
                    arr.cum[off : off + n_edges],
                    arr.guide[goff : goff + n_guide],
                    tot,
                    _parallel(n_edges),
                )
            else:
                ng = K.guide_size(n_cols)
                cum = arr.cum[off : off + n_rows * n_cols].reshape(n_rows, n_cols)
                guide = arr.guide[goff : goff + n_rows * ng].reshape(n_rows, ng)
                if d == 0:
                    K.dense_guide_forward(source[0], source[1], INVERSE_EPS, cum, guide, tot, par)
                else:
                    abs_sum = K.dense_guide_backward(
                        source[0], source[1], INVERSE_EPS, cum, guide, tot, par
                    )
                    if ew_view is None:  # otherwise checked with the element weights
                        _check_values(blk.param, abs_sum, source[0])

    fcand_ptr, fcand = _candidates(dag, forward=True)
    bcand_ptr, bcand = _candidates(dag, forward=False)
    steps = np.zeros(n_groups, dtype=np.int64)
    elems = np.zeros(n_groups, dtype=np.int64)
    for g in range(1, n_groups):
        for b in dag.in_blocks(g):
            blk = blocks[b]
            per = 0 if blk.kind == "identity" else (blk.n_elem if binfo[b, K.CONSERVE] else 1)
            steps[g] = max(steps[g], steps[blk.source] + 1)
            elems[g] = max(elems[g], elems[blk.source] + per)
    return WalkGraph(
        binfo=binfo,
        fcand_ptr=fcand_ptr,
        fcand=fcand,
        bcand_ptr=bcand_ptr,
        bcand=bcand,
        fwd=arrays[0],
        bwd=arrays[1],
        ew=ew,
        ep=ep,
        starts_in=np.flatnonzero(alive[0]).astype(np.int64),
        starts_out=np.flatnonzero(alive[-1]).astype(np.int64),
        group_off=dag.offsets,
        last_group=n_groups - 1,
        choice=K.CHOICE_REFERENCE if skip == "reference" else K.CHOICE_WEIGHTED,
        max_steps=int(steps.max()),
        max_elems=int(elems.max()),
        elem_off=elem_off,
        n_elements=n_elements,
        n_reachable=n_reachable,
        reachable=tuple(reachable),
    )


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


def _candidates(dag: LayeredDAG, *, forward: bool) -> tuple[np.ndarray, np.ndarray]:
    ptr = [0]
    cand: list[int] = []
    for g in range(len(dag.groups)):
        cand.extend(dag.out_blocks(g) if forward else dag.in_blocks(g))
        ptr.append(len(cand))
    return np.asarray(ptr, dtype=np.int64), np.asarray(cand or [0], dtype=np.int64)


def sample_walks(
    graph: WalkGraph,
    first_walk: int,
    n_walks: int,
    seed: int,
    *,
    record_nodes: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Run walks ``first_walk .. first_walk + n_walks - 1`` (low level, for tests and tools).

    Returns ``(elements, lengths, nodes)``: walk ``k`` selected the global element
    ids ``elements[k, :lengths[k]]`` (decode them with :meth:`WalkGraph.decode`) and,
    with ``record_nodes``, visited the global units ``nodes[k]`` (padded with -1).
    Even walk indices go forward, odd ones backward; ``seed`` is a 63-bit integer.
    """
    n = int(n_walks)
    elems = np.empty((n, max(graph.max_elems, 1)), dtype=np.int64)
    lens = np.empty(n, dtype=np.int64)
    nodes = (
        np.full((n, graph.max_steps + 1), -1, dtype=np.int64)
        if record_nodes
        else np.empty((1, 1), dtype=np.int64)
    )
    parallel = n * max(graph.max_steps, 1) >= _PARALLEL_MIN_STEPS
    with numba.parallel_chunksize(_DYNAMIC_CHUNKS):
        K.sample_walks(
            int(first_walk),
            int(seed),
            _CHUNK,
            graph.last_group,
            graph.choice,
            graph.binfo,
            graph.fcand_ptr,
            graph.fcand,
            graph.bcand_ptr,
            graph.bcand,
            graph.fwd.cum,
            graph.fwd.guide,
            graph.fwd.gptr,
            graph.fwd.ptr,
            graph.fwd.idx,
            graph.fwd.tot,
            graph.bwd.cum,
            graph.bwd.guide,
            graph.bwd.gptr,
            graph.bwd.ptr,
            graph.bwd.idx,
            graph.bwd.tot,
            graph.ew,
            graph.ep,
            graph.starts_in,
            graph.starts_out,
            graph.group_off,
            elems,
            lens,
            nodes,
            bool(record_nodes),
            parallel,
        )
    if n and lens.min() < 0:  # cannot happen on a prepared graph: every live unit continues
        raise RuntimeError(f"{_WHERE}: a walk found no way on; this is a bug in pathnet")
    return elems, lens, (nodes if record_nodes else None)


def _select_elements(
    graph: WalkGraph, m: int, seed: int, bitmap: np.ndarray, max_walks: int
) -> int:
    """Walk in batches until ``m`` distinct elements are marked in ``bitmap``; returns walks used.

    A uint8 ``bitmap`` gets 1 for every selected element; an int32/int64 one gets
    the rank (1, 2, ...) at which the element was first selected.
    """
    take = K.take_distinct if bitmap.dtype == np.uint8 else K.take_distinct_ranked
    count = 0
    done = 0
    rate = float(max(graph.max_elems, 1))  # new elements per walk; optimistic at first
    max_batch = max(4 * _CHUNK, (1 << 24) // max(graph.max_elems, 1))  # <= 128 MiB of ids
    while count < m:
        n = int((m - count) / rate * 1.05) + 2 * _CHUNK
        n = min(n, max_batch, max_walks - done)
        if n <= 0:
            raise RuntimeError(
                f"{_WHERE}: {done:,} walks found only {count:,} of the {m:,} distinct weights "
                f"asked for (max_walks={max_walks:,}); the rest are (almost) never visited, "
                "e.g. exact zeros or a density close to 1. Expected a lower density or a "
                "larger max_walks"
            )
        elems, lens, _ = sample_walks(graph, done, n, seed)
        new_count, used = take(elems, lens, bitmap, count, m)
        rate = max((new_count - count) / used, 1e-3)
        count = int(new_count)
        done += int(used)
    return done


def phew(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    kernel_conserved: bool = False,
    bias: str = "abs",
    skip: str = "reference",
    max_walks: int | None = None,
    **unknown: Any,
) -> Mask:
    """PHEW selection: keep the weights crossed by biased random walks.

    Usually called through the registry:
    ``pathnet.select.select("phew", model_or_dag, density, seed=...)``.
    Walks alternate: even walks start at input units (round robin) and go
    forward to an output unit, odd walks start at output units (round robin)
    and go backward to an input unit, so every walk is a complete input ->
    output path. From unit ``i`` a forward walk moves to ``j`` with probability
    ``A[j, i] / sum_j' A[j', i]`` (backward: ``A[j, i] / sum_i' A[j, i']``); a
    row of zeros falls back to uniform over the present edges. Crossing a conv
    edge selects one kernel element with probability proportional to its
    biased weight; crossing a flatten edge (a Linear reading ``H*W`` positions
    per channel) picks the position uniformly. Walks run until exactly
    ``m = int(density * n_params)`` distinct weights are selected: the walk
    that reaches ``m`` keeps its elements up to that point, in walk order.

    Parameters
    ----------
    dag : LayeredDAG
        The network; element masks already on it restrict the walks to present
        weights (and to units on complete paths).
    density : float
        Fraction of prunable weights to keep, in (0, 1].
    seed : int, numpy Generator or None
        Same seed, same mask, on any number of threads (``NUMBA_NUM_THREADS``).
    model : torch.nn.Module, optional
        Unused (the walks only need the DAG); the model is never modified or
        re-initialised, the mask applies to the weights that drove the walks.
    kernel_conserved : bool
        Crossing a conv edge keeps all its present kernel elements (the
        authors' ablation). The count is still exactly ``m``, so the last
        kernel crossed may be kept only in part.
    bias : {"abs", "square", "inverse", "uniform"}
        Edge weight ``A`` and element weight used for sampling: ``"abs"``
        (the paper: ``A = sum |w|`` over the edge's elements, elements by ``|w|``),
        ``"square"`` (``sum w^2``, ``w^2``), ``"inverse"`` (``A = 1 / (sum |w| + eps)``
        and elements by ``1 / (|w| + eps)``, ``eps =`` :data:`INVERSE_EPS`: the
        authors' inverse ablation, which prefers small weights) or ``"uniform"``
        (every present edge and element equally likely: random paths).
    skip : {"reference", "weighted"}
        Where a group has several out-blocks (forward) or in-blocks (backward),
        as at residual sums. ``"reference"``: identity shortcuts are never taken
        (walks go through every conv) and a walk chooses uniformly among the
        weighted blocks, i.e. 50/50 between a projection shortcut and the conv
        path, like the authors' code but without its forward off-by-one (which
        also skipped the last conv before the shortcut). ``"weighted"``: all
        out-edges (in-edges) of the unit compete in proportion to their weight,
        identity edges counting 1 whatever the bias.
    max_walks : int, optional
        Give up (``RuntimeError``) after this many walks; default
        ``max(10**6, 50 * m)``.

    Returns
    -------
    Mask
        ``meta`` holds ``target`` (``m``), ``walks`` (walks used), ``bias``,
        ``skip`` and ``kernel_conserved``.

    Raises
    ------
    ValueError
        For a density outside (0, 1], a target of zero weights or more than the
        weights on complete paths, unknown option values, NaN/Inf weights or an
        all-zero layer.
    RuntimeError
        If ``max_walks`` walks cannot find ``m`` distinct weights.

    Notes
    -----
    Every walk but the last is a complete input -> output path; the last one
    contributes only its first new weights, a prefix of its path (the
    reference instead finishes the walk and overshoots ``m``). On a DAG with
    element masks, walks start round robin over the input (output) units that
    lie on a complete path, and asking for every such weight returns them
    without walking. Walk ``w`` draws from its own splitmix64 stream seeded by
    ``(seed, w)`` and walks are merged in walk order, so the mask does not
    depend on the number of threads. Each unit's edges are sampled with
    cumulative sums and a guide table (:mod:`pathnet._kernels.walks`), so a
    step costs a few memory accesses whatever the fan-out; preparation is
    linear in the number of edges and the walks in the number of kept weights.

    Examples
    --------
    >>> import pathnet
    >>> from pathnet.select import select
    >>> model = pathnet.models.resnet20(seed=0)
    >>> mask = select("phew", model, 0.05, seed=1)
    >>> mask.n_kept == int(0.05 * 270_896)
    True
    >>> mask == select("phew", model, compression=-math.log10(0.05), seed=1)
    True
    """
    if unknown:
        raise TypeError(
            f"{_WHERE}: unknown option{'s' if len(unknown) > 1 else ''} {sorted(unknown)}; "
            "expected kernel_conserved, bias, skip, max_walks"
        )
    if not isinstance(dag, LayeredDAG):
        raise TypeError(
            f"{_WHERE}: expected a LayeredDAG, got {type(dag).__name__}; "
            'use pathnet.select.select("phew", model, density) for a torch model'
        )
    d = _check_density(density)
    if not isinstance(kernel_conserved, (bool, np.bool_)):
        raise ValueError(
            f"{_WHERE}: kernel_conserved must be True or False, got {kernel_conserved!r}"
        )
    _check_choice("bias", bias, BIASES)
    _check_choice("skip", skip, SKIPS)
    graph = prepare(dag, bias=bias, skip=skip, kernel_conserved=bool(kernel_conserved))
    m = _target(dag, graph, d)
    max_walks = _max_walks(max_walks, m)
    mask = walk_mask(dag, graph, m, seed=seed, max_walks=max_walks)
    mask.meta.update({"bias": bias, "skip": skip, "kernel_conserved": bool(kernel_conserved)})
    return mask


def _check_density(density: Any) -> float:
    """``density`` as a float in (0, 1]; NaN, strings and bools are refused."""
    real = isinstance(density, (int, float, np.integer, np.floating))
    d = float(density) if real and not isinstance(density, (bool, np.bool_)) else math.nan
    if not (0.0 < d <= 1.0):
        raise ValueError(f"{_WHERE}: density must be in (0, 1], got {density!r}")
    return d


def _target(dag: LayeredDAG, graph: WalkGraph, d: float) -> int:
    m = int(d * dag.n_params)
    if m < 1:
        raise ValueError(
            f"{_WHERE}: density={d:g} of {dag.n_params:,} weights keeps none; "
            f"expected density >= {1 / dag.n_params:.3g}"
        )
    if m > graph.n_reachable:
        raise ValueError(
            f"{_WHERE}: density={d:g} asks for {m:,} weights but only {graph.n_reachable:,} "
            f"present weights lie on complete input -> output paths; expected density <= "
            f"{graph.n_reachable / dag.n_params:.6g}"
        )
    return m


def _max_walks(max_walks: Any, m: int) -> int:
    if max_walks is None:
        return max(10**6, 50 * m)
    if isinstance(max_walks, bool) or not isinstance(max_walks, (int, np.integer)) or max_walks < 1:
        raise ValueError(f"{_WHERE}: max_walks must be a positive int, got {max_walks!r}")
    return int(max_walks)


def phew_nested(
    dag: LayeredDAG,
    densities: Sequence[float],
    *,
    seed: SeedLike = None,
    kernel_conserved: bool = False,
    bias: str = "abs",
    skip: str = "reference",
    max_walks: int | None = None,
) -> list[Mask]:
    """PHEW masks at several densities from one sequence of walks.

    The walks do not depend on the density (walk ``k`` starts at a round-robin
    unit and draws from a stream seeded by ``(seed, k)``), so the mask at a lower
    density is the prefix of the selection at a higher one. This walks once, to
    the highest density, and returns for each density exactly the mask
    :func:`phew` returns with the same seed and options, at the cost of one call.

    Parameters
    ----------
    dag : LayeredDAG
    densities : sequence of float
        Each in (0, 1]; any order, repeats allowed.
    seed, kernel_conserved, bias, skip, max_walks
        As for :func:`phew`.

    Returns
    -------
    list of Mask
        One per density, in the order given.
    """
    if not isinstance(dag, LayeredDAG):
        raise TypeError(f"{_WHERE}: expected a LayeredDAG, got {type(dag).__name__}")
    ds = [_check_density(density) for density in densities]
    if not ds:
        raise ValueError(f"{_WHERE}: densities must hold at least one density")
    _check_choice("bias", bias, BIASES)
    _check_choice("skip", skip, SKIPS)
    graph = prepare(dag, bias=bias, skip=skip, kernel_conserved=bool(kernel_conserved))
    ms = [_target(dag, graph, d) for d in ds]
    walked = [m for m in ms if m < graph.n_reachable]  # "everything" needs no walk
    ranks = np.zeros(graph.n_elements, dtype=np.int64)
    walks = 0
    if walked:
        base_seed = int(child_seeds(seed, 1)[0])
        top = max(walked)
        walks = _select_elements(graph, top, base_seed, ranks, _max_walks(max_walks, top))
    out = []
    for d, m in zip(ds, ms):
        if m == graph.n_reachable:
            mask = walk_mask(dag, graph, m, seed=seed)
        else:
            masks = {}
            for b, blk in enumerate(dag.blocks):
                if blk.param is None:
                    continue
                off = graph.elem_off[b]
                r = ranks[off : off + blk.n_params]
                masks[blk.param] = ((r > 0) & (r <= m)).reshape(blk.param_shape)
            mask = Mask(masks, meta={"target": m, "walks_total": walks})
        mask.meta.update(
            {
                "bias": bias,
                "skip": skip,
                "kernel_conserved": bool(kernel_conserved),
                "method": "phew",
                "density": d,
                "compression": -math.log10(d),
                "seed": int(seed) if isinstance(seed, (int, np.integer)) else None,
            }
        )
        out.append(mask)
    return out


def walk_mask(
    dag: LayeredDAG,
    graph: WalkGraph,
    m: int,
    *,
    seed: SeedLike = None,
    max_walks: int | None = None,
) -> Mask:
    """The mask of the first ``m`` distinct weights that walks on ``graph`` select.

    The low-level part of :func:`phew` (which validates its inputs and calls
    :func:`prepare` first); ``graph`` must come from ``prepare(dag, ...)``.
    ``meta`` holds ``target`` and ``walks``.
    """
    if not 1 <= m <= graph.n_reachable:
        raise ValueError(f"{_WHERE}: m must be in [1, {graph.n_reachable:,}], got {m!r}")
    if max_walks is None:
        max_walks = max(10**6, 50 * m)
    base_seed = int(child_seeds(seed, 1)[0])
    bitmap = np.zeros(graph.n_elements, dtype=np.uint8)
    if m == graph.n_reachable:  # every reachable weight: no walk needed
        walks = 0
        for b, blk in enumerate(dag.blocks):
            if graph.elem_off[b] < 0:
                continue
            sl = bitmap[graph.elem_off[b] : graph.elem_off[b] + blk.n_params]
            r = graph.reachable[b]
            sl[:] = 1 if r is None else r.ravel()
    else:
        walks = _select_elements(graph, m, base_seed, bitmap, max_walks)
    masks = {}
    for b, blk in enumerate(dag.blocks):
        if blk.param is None:
            continue
        off = graph.elem_off[b]
        masks[blk.param] = bitmap[off : off + blk.n_params].view(np.bool_).reshape(blk.param_shape)
    return Mask(masks, meta={"target": m, "walks": walks})


register("phew")(phew)


def random_paths(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    **options: Any,
) -> Mask:
    """PHEW with ``bias="uniform"``: random input -> output paths (the paper's ablation).

    Takes the options of :func:`phew` except ``bias``.
    """
    if "bias" in options and options["bias"] != "uniform":
        raise ValueError(
            f"pathnet.select.random_paths: bias is fixed to 'uniform', got {options['bias']!r}; "
            'use pathnet.select.select("phew", ..., bias=...) for other biases'
        )
    options["bias"] = "uniform"
    return phew(dag, density, seed=seed, model=model, **options)


register("random_paths")(random_paths)
