"""Baselines: random, random_global, ERK, magnitude (data-free); SNIP and GraSP (with data).

Every method keeps exactly ``target_count(dag, density)`` weights, chosen among
the weights present (unmasked) in the DAG.

* ``random``: the same density in every layer (per-layer counts proportional to
  the present weights, rounded by largest remainder, so they differ from the
  exact proportion by less than one weight), uniform within the layer.
* ``random_global``: ``m`` weights uniformly over the whole network.
* ``erk``: Erdos-Renyi-kernel layer densities as in RigL (Evci et al. 2020):
  density of layer ``l`` proportional to ``sum(shape) / prod(shape)`` of its weight
  tensor; layers that would exceed density 1 are kept dense and the others
  rescaled until none does; counts rounded by largest remainder to hit ``m``;
  uniform within the layer.
* ``magnitude``: the ``m`` largest ``|w|`` at initialisation, globally.
* ``snip`` (Lee et al. 2019): ``|g * w|`` with ``g`` the gradient of the
  cross-entropy on a batch of real data.
* ``grasp`` (Wang et al. 2020): ``-w * (H g)`` with the Hessian-gradient product by
  double backpropagation (loss on ``output / temperature``, temperature 200);
  the highest scores are removed, i.e. the ``m`` lowest are kept.

SNIP and GraSP take ``data=(x, y)``: input and integer-label tensors (the paper
uses 10 images per class). They score a float64 deep copy of the model in eval
mode (BatchNorm with its running statistics, as the SynFlow authors' pruning
loop does; ``train_mode=True`` scores in train mode); the model passed in is
never modified. Ties are broken by the lower global element index (see
:mod:`pathnet.select.scoring`); random methods are reproducible from ``seed``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathnet._random import SeedLike, make_rng
from pathnet.graph import LayeredDAG
from pathnet.mask import Mask
from pathnet.select.registry import register, target_count
from pathnet.select.scoring import (
    block_offsets,
    flatten_scores,
    keep_top,
    mask_from_global,
    present_indices,
    reject_unknown,
    weight_leaves,
)

__all__ = [
    "erk",
    "erk_counts",
    "grasp",
    "grasp_scores",
    "layer_counts",
    "magnitude",
    "random_global",
    "random_layerwise",
    "snip",
    "snip_scores",
]


# ------------------------------------------------------------ per-layer counts
def _largest_remainder(real: np.ndarray, total: int, cap: np.ndarray) -> np.ndarray:
    """Integer counts ``<= cap`` summing to ``total``, each within 1 of ``real``.

    Floors first, then one more to the largest fractional parts (ties: lower layer).
    """
    base = np.minimum(np.floor(real).astype(np.int64), cap)
    short = total - int(base.sum())
    frac = real - base
    frac[base >= cap] = -1.0  # full layers take no more
    order = np.lexsort((np.arange(real.size), -frac))
    base[order[:short]] += 1
    if short < 0 or int(base.sum()) != total or (base > cap).any():
        raise ValueError(
            f"pathnet.select: cannot split {total:,} weights over layers of {cap.tolist()}"
        )
    return base


def layer_counts(dag: LayeredDAG, density: float) -> dict[int, int]:
    """Per-block counts of the ``random`` method: proportional to the present weights.

    >>> import pathnet
    >>> dag = pathnet.to_dag(pathnet.models.mlp([10, 5, 3], seed=0))
    >>> layer_counts(dag, 0.5)
    {0: 25, 1: 7}
    """
    m = target_count(dag, density)
    blocks = [b for b, blk in enumerate(dag.blocks) if blk.param is not None]
    present = np.array([dag.blocks[b].n_present for b in blocks], dtype=np.int64)
    counts = _largest_remainder(m * present / present.sum(), m, present)
    return dict(zip(blocks, counts.tolist()))


def erk_counts(dag: LayeredDAG, density: float) -> dict[int, int]:
    """Per-block counts of the Erdos-Renyi-kernel distribution (RigL), summing to the target.

    Layer ``l`` gets density ``eps * raw_l`` with ``raw_l = sum(shape_l) / prod(shape_l)``
    of the parameter tensor; layers with ``eps * raw_l >= 1`` are dense, ``eps``
    solves ``sum_l min(1, eps * raw_l) * n_l = m`` over the rest.

    >>> import pathnet
    >>> dag = pathnet.to_dag(pathnet.models.mlp([100, 50, 10], seed=0))
    >>> erk_counts(dag, 0.2)
    {0: 786, 1: 314}
    """
    m = target_count(dag, density)
    blocks = [b for b, blk in enumerate(dag.blocks) if blk.param is not None]
    shapes = [dag.blocks[b].param_shape for b in blocks]
    raw = np.array([sum(s) / math.prod(s) for s in shapes], dtype=np.float64)
    size = np.array([dag.blocks[b].n_params for b in blocks], dtype=np.float64)
    present = np.array([dag.blocks[b].n_present for b in blocks], dtype=np.int64)
    dense = np.zeros(len(blocks), dtype=bool)
    while True:
        budget = m - present[dense].sum()
        eps = budget / float((raw[~dense] * size[~dense]).sum()) if (~dense).any() else 0.0
        real = np.where(dense, present, np.minimum(eps * raw * size, present))
        over = ~dense & (eps * raw * size >= present)
        if not over.any():
            break
        dense |= over
    counts = _largest_remainder(real, m, present)
    return dict(zip(blocks, counts.tolist()))


def _layer_permutations(dag: LayeredDAG, blocks: Any, seed: SeedLike) -> dict[int, np.ndarray]:
    """Per block (in the order given), the present elements' global indices in a
    random order drawn from ``seed``; a prefix of length k is a uniform k-sample."""
    rng = make_rng(seed)
    off = block_offsets(dag)
    perms: dict[int, np.ndarray] = {}
    for b in blocks:
        block = dag.blocks[b]
        if block.element_mask is None:
            pool = np.arange(block.n_params, dtype=np.int64)
        else:
            pool = np.flatnonzero(block.element_mask.ravel()).astype(np.int64)
        perms[b] = pool[rng.permutation(pool.size)] + off[b]
    return perms


def _uniform_in_layers(dag: LayeredDAG, counts: dict[int, int], seed: SeedLike) -> Mask:
    perms = _layer_permutations(dag, counts, seed)
    return mask_from_global(dag, np.concatenate([perms[b][:k] for b, k in counts.items()]))


# ------------------------------------------------------------ data-free methods
@register("random", nested="pathnet.select.baselines:nested_form")
def random_layerwise(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    **unknown: Any,
) -> Mask:
    """Uniformly random weights, the same density in every layer.

    >>> import pathnet
    >>> m = pathnet.select.select("random", pathnet.models.mlp([10, 5, 3], seed=0), 0.5, seed=1)
    >>> m.n_kept
    32
    """
    reject_unknown("random", unknown, "seed only")
    return _uniform_in_layers(dag, layer_counts(dag, density), seed)


@register("random_global", nested="pathnet.select.baselines:nested_form")
def random_global(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    **unknown: Any,
) -> Mask:
    """Uniformly random weights over the whole network (layer densities vary by chance)."""
    reject_unknown("random_global", unknown, "seed only")
    m = target_count(dag, density)
    alive = present_indices(dag)
    rng = make_rng(seed)
    return mask_from_global(dag, alive[rng.permutation(alive.size)[:m]])


@register("erk", nested="pathnet.select.baselines:nested_form")
def erk(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    **unknown: Any,
) -> Mask:
    """Erdos-Renyi-kernel layer densities (RigL), uniformly random within each layer."""
    reject_unknown("erk", unknown, "seed only")
    return _uniform_in_layers(dag, erk_counts(dag, density), seed)


@register("magnitude", nested="pathnet.select.baselines:nested_form")
def magnitude(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    **unknown: Any,
) -> Mask:
    """The largest ``|w|`` of the network as it is (at initialisation: one-shot, no training).

    The paper's "magnitude" baseline trains first; this is the data-free variant
    (prune a trained model to get the other).
    """
    reject_unknown("magnitude", unknown, "no options")
    m = target_count(dag, density)
    scores = np.concatenate(
        [np.abs(b.values.astype(np.float64)).ravel() for b in dag.blocks if b.values is not None]
    )
    return keep_top(dag, scores, m)


# ------------------------------------------------------------ data-dependent methods
def _prepare(
    dag: LayeredDAG,
    model: nn.Module | None,
    data: Any,
    method: str,
    train_mode: bool,
) -> tuple[nn.Module, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A float64 deep copy of the model, its prunable weights (in DAG order) and the data."""
    if model is None:
        raise ValueError(
            f"pathnet.select.{method}: needs the torch model (pass the nn.Module, not a "
            "LayeredDAG) and data=(inputs, labels)"
        )
    if data is None:
        raise ValueError(
            f"pathnet.select.{method}: needs a batch of real data: data=(inputs, labels), "
            "e.g. 10 images per class (pathnet.data.subset_per_class)"
        )
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(
            f"pathnet.select.{method}: data must be a pair (inputs, labels), got {type(data).__name__}"
        ) from None
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if not x.is_floating_point() or x.dim() < 2:
        raise ValueError(
            f"pathnet.select.{method}: inputs must be a float tensor [N, ...], got "
            f"{x.dtype} of shape {tuple(x.shape)}"
        )
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or y.dim() != 1:
        raise ValueError(
            f"pathnet.select.{method}: labels must be a 1-D integer tensor, got {y.dtype} "
            f"of shape {tuple(y.shape)}"
        )
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(
            f"pathnet.select.{method}: {x.shape[0]} inputs and {y.shape[0]} labels; "
            "need the same positive number"
        )
    net = copy.deepcopy(model).double().train(train_mode)
    names = [b.param for b in dag.blocks if b.param is not None]
    leaves = weight_leaves(net, names)
    for p in net.parameters():
        p.requires_grad_(False)
    weights = {n: leaves[n] for n in names}
    for w in weights.values():
        w.requires_grad_(True)
    device = next(iter(weights.values())).device
    return net, weights, x.to(device=device, dtype=torch.float64), y.to(device).long()


def _check_classes(out: torch.Tensor, y: torch.Tensor, method: str) -> None:
    if out.dim() != 2:
        raise ValueError(
            f"pathnet.select.{method}: the model's output must be [N, classes], got {tuple(out.shape)}"
        )
    if int(y.min()) < 0 or int(y.max()) >= out.shape[1]:
        raise ValueError(
            f"pathnet.select.{method}: labels must lie in [0, {out.shape[1]}), got "
            f"[{int(y.min())}, {int(y.max())}]"
        )


def snip_scores(
    dag: LayeredDAG, model: nn.Module, data: Any, *, train_mode: bool = False
) -> dict[str, np.ndarray]:
    """SNIP's ``|g * w|`` per prunable parameter (float64), ``g`` = d(mean cross-entropy)/dw."""
    net, weights, x, y = _prepare(dag, model, data, "snip", train_mode)
    out = net(x)
    _check_classes(out, y, "snip")
    loss = F.cross_entropy(out, y)
    grads = torch.autograd.grad(loss, list(weights.values()))
    return {
        n: (g * w).abs().detach().cpu().numpy()
        for (n, w), g in zip(weights.items(), grads, strict=True)
    }


def grasp_scores(
    dag: LayeredDAG,
    model: nn.Module,
    data: Any,
    *,
    temperature: float = 200.0,
    train_mode: bool = False,
) -> dict[str, np.ndarray]:
    """GraSP's ``-w * (H g)`` per prunable parameter (float64).

    ``g`` is the gradient of the cross-entropy of ``output / temperature`` and
    ``H g`` the Hessian-gradient product by double backpropagation (the gradient
    of ``g_stopped . g``), as in the authors' code.
    """
    if not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(
            f"pathnet.select.grasp: temperature must be a positive number, got {temperature!r}"
        )
    net, weights, x, y = _prepare(dag, model, data, "grasp", train_mode)
    ws = list(weights.values())
    out = net(x) / temperature
    _check_classes(out, y, "grasp")
    g_stop = torch.autograd.grad(F.cross_entropy(out, y), ws)
    g = torch.autograd.grad(F.cross_entropy(net(x) / temperature, y), ws, create_graph=True)
    z = torch.stack([(a.detach() * b).sum() for a, b in zip(g_stop, g, strict=True)]).sum()
    hg = torch.autograd.grad(z, ws)
    return {
        n: (-w * h).detach().cpu().numpy() for (n, w), h in zip(weights.items(), hg, strict=True)
    }


@register("snip", needs_data=True, options=("data", "train_mode"))
def snip(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    data: Any = None,
    train_mode: bool = False,
    **unknown: Any,
) -> Mask:
    """SNIP: keep the largest ``|g * w|`` on a batch ``data=(inputs, labels)``."""
    reject_unknown("snip", unknown, "data, train_mode")
    m = target_count(dag, density)
    scores = flatten_scores(dag, snip_scores(dag, model, data, train_mode=train_mode))  # type: ignore[arg-type]
    return keep_top(dag, scores, m)


@register("grasp", needs_data=True, options=("data", "temperature", "train_mode"))
def grasp(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    data: Any = None,
    temperature: float = 200.0,
    train_mode: bool = False,
    **unknown: Any,
) -> Mask:
    """GraSP: remove the highest ``-w * (H g)`` (keep the lowest) on ``data=(inputs, labels)``."""
    reject_unknown("grasp", unknown, "data, temperature, train_mode")
    m = target_count(dag, density)
    scores = flatten_scores(
        dag,
        grasp_scores(dag, model, data, temperature=temperature, train_mode=train_mode),  # type: ignore[arg-type]
    )
    return keep_top(dag, -scores, m)


# ------------------------------------------------------------ several densities at once
def baseline_nested(
    method: str, dag: LayeredDAG, densities: list[float], *, seed: SeedLike = None
) -> list[Mask]:
    """Masks of ``random``, ``random_global``, ``erk`` or ``magnitude`` at several densities.

    Each returned mask equals ``select(method, dag, d, seed=seed)``: the random
    methods draw the same per-layer (or global) permutation whatever the density
    and keep a prefix of it, and magnitude keeps a prefix of one total order
    (larger ``|w|`` first, ties to the lower global index). Drawing or sorting
    once serves every density.
    """
    counts = [target_count(dag, d) for d in densities]
    if method == "magnitude":
        alive = present_indices(dag)
        scores = np.concatenate(
            [
                np.abs(b.values.astype(np.float64)).ravel()
                for b in dag.blocks
                if b.values is not None
            ]
        )[alive]
        order = alive[np.argsort(-scores, kind="stable")]
        return [mask_from_global(dag, order[:m]) for m in counts]
    if method == "random_global":
        alive = present_indices(dag)
        perm = alive[make_rng(seed).permutation(alive.size)]
        return [mask_from_global(dag, perm[:m]) for m in counts]
    if method not in ("random", "erk"):
        raise ValueError(
            "pathnet.select.baseline_nested: method must be 'random', 'random_global', 'erk' "
            f"or 'magnitude', got {method!r}"
        )
    per_density = [
        layer_counts(dag, d) if method == "random" else erk_counts(dag, d) for d in densities
    ]
    perms = _layer_permutations(dag, per_density[0], seed)  # as _uniform_in_layers draws
    return [
        mask_from_global(dag, np.concatenate([perms[b][:k] for b, k in c.items()]))
        for c in per_density
    ]


def nested_form(
    dag: LayeredDAG,
    densities: list[float],
    *,
    method: str,
    seed: SeedLike = None,
    model: nn.Module | None = None,
    **unknown: Any,
) -> list[Mask]:
    """:func:`baseline_nested` in the registry's form (these methods take no options)."""
    reject_unknown(method, unknown, "seed only")
    return baseline_nested(method, dag, list(densities), seed=seed)
