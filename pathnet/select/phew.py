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
from typing import Any

import numpy as np
from torch import nn

from pathnet._kernels import walks as K
from pathnet._random import SeedLike, child_seeds
from pathnet.graph import LayeredDAG
from pathnet.mask import Mask
from pathnet.select.base import check_density
from pathnet.select.registry import register
from pathnet.select.walkgraph import (
    BIASES,
    FLATTENS,
    INVERSE_EPS,
    SKIPS,
    WalkGraph,
    check_choice,
    prepare,
    run_ranges,
)

__all__ = [
    "BIASES",
    "FLATTENS",
    "INVERSE_EPS",
    "SKIPS",
    "WalkGraph",
    "phew",
    "phew_nested",
    "prepare",
    "random_paths",
    "sample_walks",
    "walk_mask",
]

_CHUNK = 256  # walks per parallel work item
# A batch of walks below this many walks x steps runs on the calling thread: a
# parallel region costs a thread-pool round trip, and far more when other
# processes keep the cores busy.
_PARALLEL_MIN_STEPS = 1 << 17
_DYNAMIC_CHUNKS = 4  # chunks a thread takes at a time: a slowed thread holds up little
_WHERE = "pathnet.select.phew"
_OPTIONS = ("kernel_conserved", "bias", "skip", "flatten", "max_walks")


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
    args = (
        int(first_walk),
        int(seed),
        _CHUNK,
        graph.net,
        graph.fwd,
        graph.bwd,
        (elems, lens, nodes),
        bool(record_nodes),
    )
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    run_ranges(K.sample_walks, args, n_chunks, parallel=parallel, piece=_DYNAMIC_CHUNKS)
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
    flatten: str = "position",
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
    biased weight; crossing a flatten edge follows ``flatten``. Walks run until exactly
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
    flatten : {"position", "channel"}
        How walks cross a flatten edge (a Linear reading ``H*W`` positions per
        channel, ``H*W > 1``). ``"position"`` (default, the authors' walk): forward from
        channel ``c``, a position ``pos`` uniformly (among those with a present
        weight), then the target ``j`` with probability proportional to the
        biased ``|W[j, c*H*W + pos]|``; backward from ``j``, the flat input
        ``idx`` with probability proportional to the biased ``|W[j, idx]|``, which
        fixes the channel ``idx // (H*W)``. ``"channel"``: the edge ``c -> j`` by
        its channel-summed weight, then the position uniformly. Nets whose
        flatten has ``H*W = 1`` (VGG16, ResNet20 on 32x32) walk the same either way.
    max_walks : int, optional
        Give up (``RuntimeError``) after this many walks; default
        ``max(10**6, 50 * m)``.

    Returns
    -------
    Mask
        ``meta`` holds ``target`` (``m``), ``walks`` (walks used), ``bias``,
        ``skip``, ``kernel_conserved`` and ``flatten``.

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
            f"expected {', '.join(_OPTIONS)}"
        )
    if not isinstance(dag, LayeredDAG):
        raise TypeError(
            f"{_WHERE}: expected a LayeredDAG, got {type(dag).__name__}; "
            'use pathnet.select.select("phew", model, density) for a torch model'
        )
    d = check_density(density, _WHERE)
    graph, policy = _prepare_checked(dag, kernel_conserved, bias, skip, flatten)
    m = _target(dag, graph, d)
    max_walks = _max_walks(max_walks, m)
    mask = walk_mask(dag, graph, m, seed=seed, max_walks=max_walks)
    mask.meta.update(policy)
    return mask


def _prepare_checked(
    dag: LayeredDAG, kernel_conserved: Any, bias: Any, skip: Any, flatten: Any
) -> tuple[WalkGraph, dict[str, Any]]:
    """Check the walk options, :func:`prepare` the graph; returns it and the options for ``meta``."""
    if not isinstance(kernel_conserved, (bool, np.bool_)):
        raise ValueError(
            f"{_WHERE}: kernel_conserved must be True or False, got {kernel_conserved!r}"
        )
    check_choice("bias", bias, BIASES)
    check_choice("skip", skip, SKIPS)
    check_choice("flatten", flatten, FLATTENS)
    policy = {
        "bias": bias,
        "skip": skip,
        "kernel_conserved": bool(kernel_conserved),
        "flatten": flatten,
    }
    graph = prepare(
        dag, bias=bias, skip=skip, kernel_conserved=bool(kernel_conserved), flatten=flatten
    )
    return graph, policy


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
    method: str = "phew",
    model: nn.Module | None = None,
    kernel_conserved: bool = False,
    bias: str | None = None,
    skip: str = "reference",
    flatten: str = "position",
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
    method : {"phew", "random_paths"}
        ``"random_paths"`` fixes ``bias="uniform"`` (as :func:`random_paths`).
    model : ignored
        Accepted so that the registry calls every nested form alike.
    seed, kernel_conserved, bias, skip, flatten, max_walks
        As for :func:`phew` (``bias`` defaults to ``"abs"``).

    Returns
    -------
    list of Mask
        One per density, in the order given.

    Examples
    --------
    >>> import pathnet
    >>> dag = pathnet.to_dag(pathnet.models.mlp([8, 6, 4], seed=0))
    >>> low, high = phew_nested(dag, [0.1, 0.3], seed=0)
    >>> low == phew(dag, 0.1, seed=0), high == phew(dag, 0.3, seed=0)
    (True, True)
    """
    if not isinstance(dag, LayeredDAG):
        raise TypeError(f"{_WHERE}: expected a LayeredDAG, got {type(dag).__name__}")
    bias = _method_bias(method, bias)
    ds = [check_density(density, _WHERE) for density in densities]
    if not ds:
        raise ValueError(f"{_WHERE}: densities must hold at least one density")
    graph, policy = _prepare_checked(dag, kernel_conserved, bias, skip, flatten)
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
        mask.meta.update(policy)
        mask.meta.update(
            {
                "method": method,
                "density": d,
                "compression": -math.log10(d),
                "seed": int(seed) if isinstance(seed, (int, np.integer)) else None,
            }
        )
        out.append(mask)
    return out


def _method_bias(method: str, bias: str | None) -> str:
    """The bias ``method`` walks with: ``random_paths`` fixes it to uniform."""
    if method == "phew":
        return "abs" if bias is None else bias
    if method != "random_paths":
        raise ValueError(f"{_WHERE}: method must be 'phew' or 'random_paths', got {method!r}")
    if bias is not None and bias != "uniform":
        raise ValueError(
            f"pathnet.select.random_paths: bias is fixed to 'uniform', got {bias!r}; "
            'use pathnet.select.select("phew", ..., bias=...) for other biases'
        )
    return "uniform"


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
    per_block = {}
    for b, blk in enumerate(dag.blocks):
        if blk.param is None or blk.values is None:
            continue
        off = graph.elem_off[b]
        per_block[b] = bitmap[off : off + blk.n_params].view(np.bool_).reshape(blk.values.shape)
    mask = dag.mask_from_blocks(per_block)
    mask.meta.update({"target": m, "walks": walks})
    return mask


def random_paths(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    bias: str | None = None,
    **options: Any,
) -> Mask:
    """PHEW with ``bias="uniform"``: random input -> output paths (the paper's ablation).

    Takes the options of :func:`phew` except ``bias``.
    """
    bias = _method_bias("random_paths", bias)
    return phew(dag, density, seed=seed, model=model, bias=bias, **options)


register("phew", nested=phew_nested, options=_OPTIONS)(phew)
register(
    "random_paths",
    nested=phew_nested,
    options=_OPTIONS,
)(random_paths)
