"""SynFlow (Tanaka et al. 2020) and SynFlow-L2 (Gebhart et al. 2021), on the DAG and by autograd.

Both prune iteratively to the exponential schedule ``d_t = d**(t/n)``,
``t = 1..n`` (``n = iterations``, 100 by default), re-scoring the masked network
at every step and keeping the ``int(d_t * N)`` best-scored weights still alive
(``N`` = prunable weights). Pruned weights never come back. The last step keeps
exactly ``target_count(dag, density)`` weights. Ties are broken by ``|w|``
(larger first), then by the lower global element index (see
:mod:`pathnet.select.scoring`): equal scores happen for real, e.g. every element
of a unit that lost all its paths scores 0.

Scores
------
With ``F`` and ``B`` the forward and backward sums of path products of the
masked DAG (see :mod:`pathnet.graph.propagate`), the score of element ``e`` of edge
``i -> j`` is

=======================  ====================  ===============================
method (variant)         sweeps weigh edges    score of element ``e``
=======================  ====================  ===============================
``synflow``              ``sum |w|``           ``|w_e| * F(i) * B(j)``
``synflow_l2`` "phew"    ``sum w**2``          ``|w_e| * F(i) * B(j)``
``synflow_l2`` "gebhart" ``sum |w|``           ``w_e**2 * F(i) * B(j)``
=======================  ====================  ===============================

which is, in autograd terms, ``|theta * dR/dtheta|`` with every weight replaced by
``|theta|`` (SynFlow), ``|dR/d(theta**2)| * |theta|`` with weights ``theta**2``
(the PHEW authors' SynFlow-L2) and ``|dR/dtheta| * theta**2`` with weights
``|theta|`` (the path-kernel authors' SynFlow-L2), ``R = sum(net(ones))``.

Backends
--------
``backend="network"`` (default) is the published algorithm, exactly: the
reference semantics of the official code on the network as torch runs it
(zero padding, pooling, strides, residual additions, BatchNorm in eval mode): a
float64 deep copy of the model in eval mode where *every* floating-point entry of
the state dict (weights, biases, BatchNorm affine parameters and running
statistics) is replaced by its absolute value (by its square for the "phew"
variant), an all-ones input of shape ``(1, *input_shape)``, ``R = sum(output)``,
one forward and backward pass per step, scores compared as float64 numbers.
Each Linear / Conv2d of the copy is swapped for a layer that computes with its
alive weight elements only, dense (channel-compacted BLAS products over the
distinct columns of its unfolded input) or sparse (numba kernels over the alive
elements), products and kernels cut into two fixed parts, scores and compaction
in the background, on the caller and one helper thread when torch has two, with
the same result on any thread count (:mod:`pathnet.select.linearised`); a radix
selection finds the top-k. Its masks equal the plain autograd loop's
(``tests/test_synflow.py`` compares them on zero-padded conv nets, ResNet20 and
VGG16 at 10/5/2%, every layer dense, every layer sparse or chosen by cost; on
VGG16 and ResNet20 at 1% with 100 steps, SynFlow and SynFlow-L2, no element
differs), up to ties closer than float64 rounding (none seen). Time, 100 steps to
1%, two threads, 2-core machine: VGG16 4.2-4.6 s, ResNet20 2.15-2.2 s (at 5%)
(``benchmarks/bench_synflow.py``). It needs the torch model: a :class:`LayeredDAG` alone is
refused with a message that names ``backend="graph"``.

``backend="autograd"`` is the same computation as a plain torch loop (dense
float64 convolutions every step): the slow reference. A weight masked with
:func:`pathnet.apply_mask` is scored through its parametrization (nothing is
unregistered, so the model passed in keeps working). The model is never
modified by any backend.

``backend="graph"`` is an approximation on the channel-level DAG, in float64 log
space (``log|w_e| + log F(i) + log B(j)``, one scale per unit group in the
sweeps), so no depth overflows; it ignores biases and BatchNorm and treats every
kernel element as seeing every input position. A step reads only the weights
whose score can be near the threshold (numba kernels in
:mod:`pathnet._kernels.topk`). Measured error, SynFlow-L2 ("phew"), 100 steps,
seed 0, share of the exact mask's kept weights that the graph mask also keeps:

==============  ======  ======  ======
model           10%     5%      2%
==============  ======  ======  ======
ResNet20        94.1%   97.7%   96.2%
VGG16           --      65%     59%
==============  ======  ======  ======

(VGG16 at 5% and 2% as measured in issue 13 on the same definitions; at 1%: 53.8%,
``benchmarks/bench_synflow.py``.) Layer widths differ too: VGG16 at 5%,
``features.26`` keeps 150 of 512 units active in the graph mask, 247 in the
exact one.

The graph and the exact backends give identical masks on MLPs and on conv nets whose
convolutions use ``padding_mode="circular"`` (every kernel element then sees
the same input sums), with strides, pooling, flatten, identity and projection
shortcuts, as long as biases are zero and BatchNorm is absent or on every path
(all checked in ``tests/test_synflow.py``). Known differences:

* zero padding: border positions see zeros, so in autograd the kernel elements
  of one edge get different input sums, while the DAG gives all elements of an
  edge the same ``F(i) * B(j)``. On the 2x2 maps of VGG16's last block a corner
  element of a 3x3 kernel sees 1 of 4 positions, the centre all 4 (the table
  above; ``benchmarks/bench_synflow.py`` measures it at 1%);
* BatchNorm in eval mode at initialisation divides by ``sqrt(1 + eps)``: the same
  factor on every path of a plain chain (no effect on the ranking), but the
  identity shortcuts of a residual net skip two BatchNorms, which shifts path
  products by a relative ``~1e-5``. ResNet20 with circular padding: 36 of 13,544
  kept weights differ at 5% (20 steps), none with ``eps=0``;
* non-zero biases add bias paths in autograd only (zoo models have zero biases).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pathnet._kernels.topk import (
    keep_by_cut,
)
from pathnet._random import SeedLike
from pathnet.graph import LayeredDAG
from pathnet.mask import Mask
from pathnet.select.linearised import Linearised, linearised_copy
from pathnet.select.registry import register, target_count
from pathnet.select.scoring import (
    block_offsets,
    mask_from_global,
    present_indices,
    reject_unknown,
    top_k_cut,
    weight_leaves,
)
from pathnet.select.synflow_graph import Kind, SlotState, log_sweeps, run_graph

__all__ = ["schedule", "synflow", "synflow_l2", "synflow_scores"]

Backend = Literal["network", "graph", "autograd"]
Variant = Literal["phew", "gebhart"]


# ----------------------------------------------------------------- public API
@register(
    "synflow", nested="pathnet.select.synflow:synflow_nested", options=("iterations", "backend")
)
def synflow(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    iterations: int = 100,
    backend: Backend = "network",
    **unknown: Any,
) -> Mask:
    """SynFlow: iterative pruning by ``|theta * dR/dtheta|`` with ``|theta|`` weights.

    Parameters
    ----------
    dag : LayeredDAG
        The network (its existing element masks are respected).
    density : float
        Fraction of prunable weights to keep.
    seed : ignored
        SynFlow is deterministic.
    model : torch.nn.Module, optional
        Needed for ``backend="network"`` and ``"autograd"``; never modified.
        :func:`pathnet.select.select` passes it when given a model.
    iterations : int, default 100
        Steps of the exponential schedule.
    backend : {"network", "graph", "autograd"}, default "network"
        ``"network"``: the published algorithm, exactly, on the network as torch
        runs it (float64, every layer over its alive weights only, dense or sparse,
        on the caller and a helper thread with the same result on any thread count;
        :mod:`pathnet.select.linearised`). ``"graph"``: sweeps
        on the channel-level DAG, a fast approximation that is exact for MLPs
        and circular padding only (see the module docstring for its error).
        ``"autograd"``: the plain torch loop, the slow reference of ``"network"``.

    Returns
    -------
    Mask
        Exactly ``target_count(dag, density)`` weights kept.

    Examples
    --------
    >>> import pathnet
    >>> model = pathnet.models.mlp([6, 5, 3], seed=0)
    >>> pathnet.select.select("synflow", model, 0.5, iterations=10).n_kept
    22
    """
    reject_unknown("synflow", unknown, "iterations, backend")
    return _run(dag, density, model, Kind.of("synflow", None), iterations, backend)


@register(
    "synflow_l2",
    nested="pathnet.select.synflow:synflow_nested",
    options=("iterations", "backend", "variant"),
)
def synflow_l2(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    iterations: int = 100,
    backend: Backend = "network",
    variant: Variant = "phew",
    **unknown: Any,
) -> Mask:
    """SynFlow-L2: SynFlow on squared path products (the path-kernel trace).

    Parameters
    ----------
    dag, density, seed, model, iterations, backend
        As for :func:`synflow`.
    variant : {"phew", "gebhart"}
        ``"phew"`` (the PHEW authors' code): forward with ``theta**2``, score
        ``|dR/d(theta**2)| * |theta|``. ``"gebhart"`` (the path-kernel authors'
        code): forward with ``|theta|``, score ``|dR/dtheta| * theta**2``.

    Returns
    -------
    Mask
        Exactly ``target_count(dag, density)`` weights kept.

    Examples
    --------
    >>> import pathnet
    >>> model = pathnet.models.mlp([6, 5, 3], seed=0)
    >>> pathnet.select.select("synflow_l2", model, 0.5, iterations=10, variant="gebhart").n_kept
    22
    """
    reject_unknown("synflow_l2", unknown, "iterations, backend, variant")
    return _run(dag, density, model, Kind.of("synflow_l2", variant), iterations, backend)


def schedule(n_params: int, n_present: int, density: float, iterations: int) -> list[int]:
    """Weights kept after each step: ``min(present, max(m, int(N * d**(t/n))))``.

    >>> schedule(1000, 1000, 0.1, 4)
    [562, 316, 177, 100]
    """
    m = int(density * n_params)
    return [
        min(n_present, max(m, int(n_params * density ** (t / iterations))))
        for t in range(1, iterations + 1)
    ]


def synflow_scores(
    dag: LayeredDAG,
    method: str = "synflow",
    *,
    variant: Variant = "phew",
    log: bool = False,
) -> dict[str, np.ndarray]:
    """One iteration's scores of every element of ``dag`` (masked elements score 0).

    Parameters
    ----------
    dag : LayeredDAG
        Masked or not (``dag.with_mask(mask)``).
    method : {"synflow", "synflow_l2"}
    variant : {"phew", "gebhart"}
        For ``synflow_l2``.
    log : bool
        Return natural logs (``-inf`` for 0); plain scores overflow on deep nets.

    Returns
    -------
    dict of str to numpy.ndarray
        Parameter name -> float64 array of the parameter's shape.
    """
    if method not in ("synflow", "synflow_l2"):
        raise ValueError(
            f"pathnet.synflow_scores: method must be 'synflow' or 'synflow_l2', got {method!r}"
        )
    kind = Kind.of(method, variant)
    edge_off = [0]
    edge_w = []
    for block in dag.blocks:
        if block.values is None:
            edge_off.append(edge_off[-1])
            continue
        a = np.abs(block.values.astype(np.float64)) ** kind.p
        edge_w.append((a * block.present_mask()).sum(axis=2).ravel())
        edge_off.append(edge_off[-1] + a.shape[0] * a.shape[1])
    lf, lb = log_sweeps(dag, np.concatenate(edge_w), edge_off)
    out: dict[str, np.ndarray] = {}
    for block in dag.blocks:
        if block.values is None or block.param is None:
            continue
        a = np.abs(block.values.astype(np.float64))
        with np.errstate(divide="ignore"):
            logw = np.where(block.present_mask(), kind.score_power * np.log(a), -np.inf)
        s = logw + lb[block.target][:, None, None] + lf[block.source][None, :, None]
        s = s.reshape(block.param_shape)
        out[block.param] = s if log else np.exp(s)
    return out


# ------------------------------------------------------------------- driver
def _run(
    dag: LayeredDAG,
    density: float,
    model: nn.Module | None,
    kind: Kind,
    iterations: Any,
    backend: Any,
) -> Mask:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise TypeError(
            f"pathnet.select.{kind.name}: iterations must be an int, got {iterations!r}"
        )
    if iterations < 1:
        raise ValueError(f"pathnet.select.{kind.name}: iterations must be >= 1, got {iterations}")
    m = target_count(dag, density)
    keep = schedule(dag.n_params, dag.n_present, density, int(iterations))
    assert keep[-1] == m
    _check_backend(kind.name, backend, model)
    if backend == "graph":
        gidx = run_graph(dag, kind, keep)
    elif backend == "autograd":
        assert model is not None
        gidx = _run_autograd(dag, model, kind, keep)
    else:
        assert model is not None
        gidx = _run_network(dag, model, kind, keep, set())[keep[-1]]
    assert gidx.size == m
    mask = mask_from_global(dag, gidx)
    mask.meta["backend"] = backend
    return mask


def _check_backend(where: str, backend: Any, model: nn.Module | None) -> None:
    if backend not in ("network", "graph", "autograd"):
        raise ValueError(
            f"pathnet.select.{where}: backend must be 'network', 'graph' or 'autograd', "
            f"got {backend!r}"
        )
    if backend != "graph" and model is None:
        raise ValueError(
            f"pathnet.select.{where}: backend={backend!r} needs the torch model, and a "
            "LayeredDAG carries none; pass the nn.Module (select(method, model, ...)), "
            "or ask for backend='graph' (the DAG approximation)"
        )


def _run_network(
    dag: LayeredDAG, model: nn.Module, kind: Kind, keep: list[int], record: set[int]
) -> dict[int, np.ndarray]:
    """The exact loop on the linearised network; the kept indices at each count in
    ``record`` and at the last step."""
    net = Linearised(model, dag, kind.p, kind.score_power, absolute=True, buffers=True)
    out: dict[int, np.ndarray] = {}
    for k in keep:
        if k < net.n_alive:
            net.backward()
            try:
                net.prune_to(k)
            except OverflowError:
                raise ValueError(
                    f"pathnet.select.{kind.name}: the scores overflow float64 on this "
                    "model; use backend='graph', which works in log space"
                ) from None
        if k in record:
            out[k] = net.kept()
    out[keep[-1]] = net.kept()
    return out


# --------------------------------------------------------- autograd backend
def _run_autograd(dag: LayeredDAG, model: nn.Module, kind: Kind, keep: list[int]) -> np.ndarray:
    """The reference loop: one forward/backward of the linearised float64 copy per step.

    Scores are compared as plain float64 numbers, with ``|w|**score_power`` as the
    secondary key and the global index as the last, like the graph backend.
    """
    net = linearised_copy(model, kind.p)
    names = [b.param for b in dag.blocks if b.param is not None]
    params = weight_leaves(net, names)
    device = params[names[0]].device
    base = {n: params[n].detach().clone() for n in names}  # |theta| or theta**2
    score_w = {n: (base[n].sqrt() if kind.p == 2 else base[n]) ** kind.score_power for n in names}
    for n in names:
        params[n].requires_grad_(True)
    x = torch.ones((1, *dag.input_shape), dtype=torch.float64, device=device)
    off = block_offsets(dag)
    slices = {b.param: (int(off[k]), int(off[k + 1])) for k, b in enumerate(dag.blocks) if b.param}
    secondary = np.concatenate([score_w[n].cpu().numpy().ravel() for n in names])
    alive = present_indices(dag)
    keep_global = np.zeros(dag.n_params, dtype=bool)
    keep_global[alive] = True
    scores = np.empty(dag.n_params)
    for k in keep:
        if k >= alive.size:
            continue
        with torch.no_grad():
            for n in names:
                lo, hi = slices[n]
                m = torch.from_numpy(keep_global[lo:hi].reshape(base[n].shape)).to(device)
                params[n].copy_(base[n] * m)
                params[n].grad = None
        net(x).sum().backward()
        for n in names:
            lo, hi = slices[n]
            g = params[n].grad
            s = torch.zeros_like(base[n]) if g is None else g.abs() * score_w[n]
            scores[lo:hi] = s.detach().cpu().numpy().ravel()
        s_alive = np.ascontiguousarray(scores[alive])
        if not np.isfinite(s_alive).all():
            raise ValueError(
                f"pathnet.select.{kind.name}: the autograd scores overflow float64 on this "
                "model; use backend='graph', which works in log space"
            )
        sec = np.ascontiguousarray(secondary[alive])
        flags = keep_by_cut(s_alive, sec, alive, *top_k_cut(s_alive, k, sec, alive))
        keep_global[alive[~flags]] = False
        alive = alive[flags]
    return alive


# ---------------------------------------------------------- nested schedule
def synflow_nested(
    dag: LayeredDAG,
    densities: Any,
    *,
    method: str = "synflow_l2",
    model: nn.Module | None = None,
    iterations: int = 100,
    backend: Backend = "network",
    variant: Variant = "phew",
    seed: SeedLike = None,
) -> list[Mask]:
    """SynFlow (or SynFlow-L2) masks at several densities from one pruning schedule.

    One exponential schedule runs from dense to the lowest density in
    ``iterations`` steps (``d_t = d_min**(t/n)``), with the count of every requested
    density inserted as an extra checkpoint; the mask is recorded when the
    schedule reaches each count. The mask at density ``d`` is therefore an
    iterative SynFlow mask pruned at the same per-iteration rate as the run to
    ``d_min``, after about ``iterations * log(d) / log(d_min)`` iterations
    (not ``iterations`` of its own, as :func:`synflow` would do). Masks are nested.

    Returns
    -------
    list of Mask
        One per density, in the order given, each with exactly
        ``target_count(dag, d)`` weights.
    """
    if method not in ("synflow", "synflow_l2"):
        raise ValueError(
            f"pathnet.select.synflow_nested: method must be 'synflow' or 'synflow_l2', got {method!r}"
        )
    kind = Kind.of(method, variant)
    ds = [float(d) for d in densities]
    if not ds:
        raise ValueError("pathnet.select.synflow_nested: densities must hold at least one density")
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise ValueError(
            f"pathnet.select.synflow_nested: iterations must be a positive int, got {iterations!r}"
        )
    counts = [target_count(dag, d) for d in ds]  # validates every density
    d_min = min(ds)
    steps = set(schedule(dag.n_params, dag.n_present, d_min, int(iterations))) | set(counts)
    keep = sorted(steps, reverse=True)
    wanted = set(counts)
    recorded: dict[int, np.ndarray] = {}
    _check_backend("synflow_nested", backend, model)
    if backend == "graph":
        state = SlotState(dag, kind)
        for k in keep:
            if k < state.n_alive:
                state.step(k)
            if k in wanted:
                recorded[k] = state.kept()
    elif backend == "network":
        assert model is not None
        recorded = _run_network(dag, model, kind, keep, wanted)
    else:
        assert model is not None
        for k in sorted(wanted, reverse=True):  # autograd: one run per density (slow path)
            recorded[k] = _run_autograd(dag, model, kind, [s for s in keep if s >= k])
    out = []
    for d, k in zip(ds, counts):
        mask = mask_from_global(dag, recorded[k])
        mask.meta.update(
            {
                "backend": backend,
                "schedule": f"nested to {d_min:g}",
                "method": method,
                "density": d,
                "iterations": iterations,
            }
        )
        out.append(mask)
    return out
