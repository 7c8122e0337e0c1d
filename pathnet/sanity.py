"""Sanity checks for pruning at initialisation (Frankle et al. 2021; the PHEW authors' ablations).

Frankle et al. ("Pruning neural networks at initialization: why are we missing
the mark?", ICLR 2021) put every method through three checks; the PHEW authors'
``Experiments/Ablations/`` run the first two (``*_LWRS``, ``ReInit_*``):

- :func:`layerwise_shuffle`: the same number of kept weights per layer (and,
  optionally, per unit), at new uniformly random positions;
- :func:`reinitialize`: the kept weights re-drawn (Kaiming, Liu or Evci scaling);
- :func:`invert`: the inverted ranking (keep what the method would prune first).

Each takes a ``seed``; the same seed gives the same result on any thread count.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pathnet._random import SeedLike, child_seeds
from pathnet.mask import Mask, prunable_parameters
from pathnet.mask.core import stored_tensor

__all__ = ["INVERTIBLE", "invert", "inverted_method", "layerwise_shuffle", "reinitialize"]

Preserve = Literal["layer", "unit_fan_in"]
Scheme = Literal["kaiming", "liu", "evci"]


def _seed_note(seed: SeedLike) -> int | None:
    return int(seed) if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else None


def _distinct(mask: Mask) -> list[str]:
    """Mask names with each tied group represented by its first name."""
    later = {n for group in mask.tied for n in group[1:]}
    return [n for n in mask if n not in later]


# ------------------------------------------------------------ layer-wise shuffle
def _shuffle_one(keep: np.ndarray, preserve: str, seed: np.int64) -> np.ndarray:
    rng = np.random.default_rng(int(seed))
    if preserve == "layer":
        flat = np.zeros(keep.size, dtype=bool)
        flat[rng.permutation(keep.size)[: int(keep.sum())]] = True
        return flat.reshape(keep.shape)
    rows = keep.reshape(keep.shape[0], -1)
    counts = rows.sum(axis=1)
    rank = np.argsort(np.argsort(rng.random(rows.shape), axis=1, kind="stable"), axis=1)
    return (rank < counts[:, None]).reshape(keep.shape)


def layerwise_shuffle(mask: Mask, seed: SeedLike = None, preserve: Preserve = "layer") -> Mask:
    """The mask with each layer's kept weights moved to uniformly random positions.

    The PHEW authors' ``*_LWRS`` ablation (``Prune/Utils.py``,
    ``layerwise_randomshuffle`` with fraction 1) and Frankle et al.'s
    "layerwise shuffling". Unlike the authors' percentile threshold, the count
    is kept exactly.

    Parameters
    ----------
    mask : Mask
    seed : int, numpy Generator, SeedSequence or None
        Each parameter gets its own stream derived from ``seed``
        (:func:`pathnet._random.child_seeds`).
    preserve : {"layer", "unit_fan_in"}
        ``"layer"``: the number of kept weights of every parameter, positions
        uniform over the whole tensor. ``"unit_fan_in"``: also the number of
        kept incoming weights of every output unit (the row counts of ``W``
        viewed as ``[out, -1]``), positions uniform within the row.

    Returns
    -------
    Mask
        With the same names, ``tied`` groups (one shuffle per tied tensor,
        shared by all its names) and ``meta`` plus ``meta["sanity"] =
        {"check": "layerwise_shuffle", "preserve": ..., "seed": ...}``.

    Raises
    ------
    ValueError
        For an unknown ``preserve``.

    Examples
    --------
    >>> import torch
    >>> m = Mask({"fc.weight": torch.eye(4, dtype=torch.bool)}, meta={"method": "demo"})
    >>> s = layerwise_shuffle(m, seed=0, preserve="unit_fan_in")
    >>> s["fc.weight"].sum(dim=1).tolist(), s.meta["sanity"]["preserve"]
    ([1, 1, 1, 1], 'unit_fan_in')
    >>> layerwise_shuffle(m, seed=0) == layerwise_shuffle(m, seed=0)
    True
    """
    if preserve not in ("layer", "unit_fan_in"):
        raise ValueError(
            "pathnet.sanity.layerwise_shuffle: preserve must be 'layer' or 'unit_fan_in', "
            f"got {preserve!r}"
        )
    if not isinstance(mask, Mask):
        raise TypeError(
            f"pathnet.sanity.layerwise_shuffle: mask must be a pathnet Mask, got {type(mask).__name__}"
        )
    names = _distinct(mask)
    seeds = child_seeds(seed, len(names))
    new: dict[str, torch.Tensor] = {}
    for name, s in zip(names, seeds, strict=True):
        keep = mask[name].numpy()
        if keep.ndim == 0:
            new[name] = mask[name].clone()
            continue
        new[name] = torch.from_numpy(_shuffle_one(keep, preserve, s))
    for group in mask.tied:
        for other in group[1:]:
            new[other] = new[group[0]]
    meta = dict(mask.meta)
    meta["sanity"] = {"check": "layerwise_shuffle", "preserve": preserve, "seed": _seed_note(seed)}
    return Mask({n: new[n] for n in mask}, meta, tied=mask.tied)


# ------------------------------------------------------------ re-initialisation
def _std(keep: np.ndarray, scheme: str) -> np.ndarray:
    """Per-row standard deviations (shape ``[out, 1]``) of ``scheme`` for a mask ``keep``."""
    rows = keep.reshape(keep.shape[0], -1)
    fan_in = rows.shape[1]
    if scheme == "kaiming":
        return np.full((rows.shape[0], 1), math.sqrt(2.0 / fan_in))
    if scheme == "liu":
        kept = int(rows.sum())
        std = math.sqrt(2.0 * rows.size / (fan_in * kept)) if kept else 0.0
        return np.full((rows.shape[0], 1), std)
    kept_rows = rows.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(kept_rows > 0, np.sqrt(2.0 / kept_rows), 0.0)[:, None]


def reinitialize(
    model: nn.Module, mask: Mask, scheme: Scheme = "kaiming", seed: SeedLike = None
) -> nn.Module:
    """A copy of ``model`` with the kept weights re-drawn and the pruned ones zero.

    The PHEW authors' ``ReInit_*`` ablations (``Experiments/Ablations/``) with
    the formulas of ``_initialize_weights_liu`` / ``_initialize_weights_evci``
    in their ``Models/vgg_cifar.py`` and ``Models/resnet_cifar2.py``. For a
    weight ``W`` of shape ``[out, ...]`` with ``fan_in = numel(W[0])`` and mask
    ``M``, kept weights are ``normal(0, std)`` with

    - ``"kaiming"``: ``std = sqrt(2 / fan_in)``, ``torch.nn.init.kaiming_normal_``
      defaults on the dense layer (``ReInit_PHEW``; the authors' VGG draws its
      last Linear from ``normal(0, 0.01)`` instead, this scheme does not);
    - ``"liu"``: ``std = sqrt(2 * numel(W) / (fan_in * sum(M)))``, the Kaiming
      std scaled by ``sqrt(1 / density)`` of the layer; a layer with nothing
      kept stays zero (the authors' formula divides by zero there);
    - ``"evci"``: per output unit ``j``, ``std_j = sqrt(2 / sum(M[j]))`` from
      the unit's kept fan-in; a unit with nothing kept stays zero (the authors
      use ``1e-15``, then mask it).

    As in the authors' code, the biases of every Linear and Conv2d are set to 0
    and BatchNorm weights to 1, biases to 0 (running statistics are kept).
    Tied weights are drawn once. The mask is not applied to the result (its
    pruned weights are zero; use :func:`pathnet.apply_mask` to hold them there).

    Parameters
    ----------
    model : torch.nn.Module
        Never modified.
    mask : Mask
        Must fit ``model`` (:meth:`Mask.check`).
    scheme : {"kaiming", "liu", "evci"}
    seed : int, numpy Generator, SeedSequence or None
        Each prunable tensor gets its own float64 normal stream (numpy), so the
        result does not depend on torch's thread count.

    Returns
    -------
    torch.nn.Module
        A deep copy.

    Raises
    ------
    ValueError
        For an unknown ``scheme`` or a mask that does not fit ``model``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(200, 100))
    >>> keep = torch.zeros(100, 200, dtype=torch.bool)
    >>> keep[:, :50] = True
    >>> new = reinitialize(net, Mask({"0.weight": keep}), scheme="evci", seed=0)
    >>> w = new[0].weight.detach()
    >>> bool((w[~keep] == 0).all()), round(float(w[keep].std()) / (2 / 50) ** 0.5, 1)
    (True, 1.0)
    >>> bool(torch.equal(new[0].bias, torch.zeros(100))), new is net
    (True, False)
    """
    if scheme not in ("kaiming", "liu", "evci"):
        raise ValueError(
            "pathnet.sanity.reinitialize: scheme must be 'kaiming', 'liu' or 'evci', "
            f"got {scheme!r}"
        )
    if not isinstance(mask, Mask):
        mask = Mask(mask)
    mask.check(model)
    net = copy.deepcopy(model)
    params = prunable_parameters(net)
    names = [n for n in _distinct(Mask(mask, tied=_tied_of(net, mask))) if n in params]
    seeds = child_seeds(seed, len(names))
    done: set[int] = set()
    with torch.no_grad():
        for name, s in zip(names, seeds, strict=True):
            module = net.get_submodule(name.rsplit(".", 1)[0] if "." in name else "")
            target = stored_tensor(module, "weight")
            if id(target) in done:
                continue
            done.add(id(target))
            keep = mask[name].numpy()
            z = np.random.default_rng(int(s)).standard_normal(keep.shape)
            values = z * _std(keep, scheme).reshape((-1,) + (1,) * (keep.ndim - 1)) * keep
            target.copy_(torch.from_numpy(values).to(target.dtype))
        _reset_biases(net)
    return net


def _tied_of(model: nn.Module, mask: Mask) -> list[tuple[str, ...]]:
    from pathnet.mask import tied_groups

    return tied_groups(model) or list(mask.tied)


def _reset_biases(net: nn.Module) -> None:
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
            stored_tensor(module, "bias").zero_()
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            stored_tensor(module, "weight").fill_(1.0)
            stored_tensor(module, "bias").zero_()


# ------------------------------------------------------------ inverted ranking
#: Methods with an inverted ranking: PHEW walks biased by ``1/|w|`` (the
#: authors' ``Inverse_PHEW``); magnitude, SNIP and GraSP with their scores reversed.
INVERTIBLE = ("phew", "magnitude", "snip", "grasp")


def inverted_method(name: str) -> tuple[str, dict[str, Any]] | None:
    """How to run the inverted ranking of method ``name``, or None if it has none.

    Returns ``(method, options)``: ``("phew", {"bias": "inverse"})`` for PHEW,
    to pass to :func:`pathnet.select.select`; ``("inverted_<name>", {})`` for
    magnitude, SNIP and GraSP, which :func:`invert` runs (keep the lowest
    scores; for GraSP, which keeps its lowest, keep the highest). None for
    methods without a ranking (``random``, ``random_global``, ``erk``,
    ``random_paths``, ``dense``) and for ``synflow``, ``synflow_l2`` and
    ``imp`` (iterative: an inversion would have to act inside every iteration;
    not provided).

    >>> inverted_method("phew")
    ('phew', {'bias': 'inverse'})
    >>> inverted_method("random") is None
    True
    """
    key = name.lower().replace("-", "_")
    if key == "phew":
        return "phew", {"bias": "inverse"}
    if key in INVERTIBLE:
        return f"inverted_{key}", {}
    return None


def invert(
    method: str,
    model: nn.Module,
    density: float,
    *,
    seed: SeedLike = None,
    input_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> Mask:
    """The mask of ``method``'s inverted ranking at ``density`` (see :func:`inverted_method`).

    Parameters
    ----------
    method : {"phew", "magnitude", "snip", "grasp"}
    model : torch.nn.Module
        Never modified.
    density : float
    seed : int, numpy Generator or None
        Used by PHEW's walks.
    input_shape : tuple of int, optional
        As for :func:`pathnet.select.select`.
    **options
        Options of the method (``data=(x, y)`` for SNIP and GraSP, PHEW's options).

    Returns
    -------
    Mask
        Exactly ``target_count`` weights, ``meta["sanity"] = {"check": "invert"}``.

    Raises
    ------
    ValueError
        For a method without an inverted ranking.

    Examples
    --------
    >>> import pathnet
    >>> model = pathnet.models.mlp([6, 5, 3], seed=0)
    >>> low = invert("magnitude", model, 0.5)
    >>> low.n_kept, low.meta["sanity"]["check"]
    (22, 'invert')
    """
    from pathnet.graph import to_dag
    from pathnet.select import select, target_count
    from pathnet.select.baselines import grasp_scores, snip_scores
    from pathnet.select.scoring import flatten_scores, keep_top

    how = inverted_method(method)
    if how is None:
        raise ValueError(
            f"pathnet.sanity.invert: method {method!r} has no inverted ranking; "
            f"expected one of {list(INVERTIBLE)}"
        )
    name, extra = how
    if name == "phew":
        if options.get("bias", "inverse") != "inverse":
            raise ValueError("pathnet.sanity.invert: phew's inverted ranking fixes bias='inverse'")
        mask = select("phew", model, density, seed=seed, input_shape=input_shape,
                      **{**options, **extra})  # fmt: skip
    else:
        dag = to_dag(model, input_shape)
        m = target_count(dag, density)
        key = name.removeprefix("inverted_")
        if key == "magnitude":
            if options:
                raise TypeError(
                    f"pathnet.sanity.invert: magnitude takes no options, got {sorted(options)}"
                )
            scores = np.concatenate(
                [
                    np.abs(b.values.astype(np.float64)).ravel()
                    for b in dag.blocks
                    if b.values is not None
                ]
            )
            mask = keep_top(dag, -scores, m)
        elif key == "snip":
            mask = keep_top(dag, -flatten_scores(dag, snip_scores(dag, model, **options)), m)
        else:
            mask = keep_top(dag, flatten_scores(dag, grasp_scores(dag, model, **options)), m)
        mask.meta.update({"method": key, "density": density, "seed": _seed_note(seed)})
    mask.meta["sanity"] = {"check": "invert", "method": method}
    return mask
