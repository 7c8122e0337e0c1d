"""Shared helpers of the score-based methods: one global element order, exact top-k.

Every prunable parameter element of a :class:`~pathnet.LayeredDAG` has a *global
index*: the parameters in block order, each flattened as torch lays it out
(``(j * n_in + i) * n_elem + e`` within its block). Methods score elements in
that order and keep exactly ``k`` of them; ties are broken by the lower global
index (methods with a natural secondary key, such as SynFlow's ``|w|``, use it
before the index), so the same scores always give the same mask.

>>> import numpy as np
>>> top_k(np.array([1.0, 3.0, 2.0, 3.0]), 2)
array([False,  True, False,  True])
>>> top_k(np.array([2.0, 2.0, 2.0]), 2)  # ties: lower index first
array([ True,  True, False])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from pathnet._kernels.topk import keep_by_cut, kth_largest, tie_cut
from pathnet.graph import LayeredDAG
from pathnet.mask import Mask, prunable_parameters

__all__ = [
    "block_offsets",
    "flatten_scores",
    "keep_top",
    "mask_from_global",
    "present_indices",
    "reject_unknown",
    "top_k",
    "top_k_cut",
    "weight_leaves",
]


def reject_unknown(method: str, unknown: Mapping[str, Any], expected: str) -> None:
    """Raise ``TypeError`` naming unknown options (a typo must not pass silently)."""
    if unknown:
        raise TypeError(
            f"pathnet.select.{method}: unknown option{'s' if len(unknown) > 1 else ''} "
            f"{sorted(unknown)}; expected {expected}"
        )


def top_k_cut(
    scores: np.ndarray,
    k: int,
    secondary: np.ndarray | None = None,
    index: np.ndarray | None = None,
) -> tuple[float, float, int]:
    """The cut ``(v, w_cut, g_cut)`` that keeps the ``k`` first entries in the order
    (score descending, ``secondary`` descending, ``index`` ascending).

    An entry is kept iff ``score > v``, or ``score == v`` and (``secondary > w_cut``
    or (``secondary == w_cut`` and ``index <= g_cut``)). ``scores`` is 1-D, without
    NaN (``-inf`` is allowed); ``secondary`` defaults to zeros and ``index`` to
    the positions; ``1 <= k <= scores.size``.
    """
    scores = _as_scores(scores)
    n = scores.size
    if not 1 <= k <= n:
        raise ValueError(
            f"pathnet.select: cannot keep {k:,} of {n:,} scored elements "
            "(need 1 <= k <= number of elements)"
        )
    sec = np.zeros(n) if secondary is None else np.ascontiguousarray(secondary, dtype=np.float64)
    idx = np.arange(n, dtype=np.int64) if index is None else np.ascontiguousarray(index, np.int64)
    if sec.shape != scores.shape or idx.shape != scores.shape:
        raise ValueError("pathnet.select: secondary and index must have the shape of scores")
    v = float(kth_largest(scores, int(k)))
    n_gt = int(np.count_nonzero(scores > v))
    w_cut, g_cut = tie_cut(scores, sec, idx, v, int(k - n_gt))
    return v, float(w_cut), int(g_cut)


def top_k(scores: np.ndarray, k: int, secondary: np.ndarray | None = None) -> np.ndarray:
    """Boolean flags of the ``k`` first entries by (score desc, ``secondary`` desc, index asc).

    Exactly ``k`` flags are set. See the module docstring for an example.
    """
    scores = _as_scores(scores)
    n = scores.size
    sec = np.zeros(n) if secondary is None else np.ascontiguousarray(secondary, dtype=np.float64)
    idx = np.arange(n, dtype=np.int64)
    v, w_cut, g_cut = top_k_cut(scores, k, sec, idx)
    flags = keep_by_cut(scores, sec, idx, v, w_cut, g_cut)
    assert int(flags.sum()) == k
    return flags


def _as_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.ascontiguousarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"pathnet.select: scores must be 1-D, got shape {scores.shape}")
    nan = np.isnan(scores)
    if nan.any():
        raise ValueError(
            f"pathnet.select: {int(nan.sum()):,} scores are NaN; "
            "the weights or the data hold NaN/Inf"
        )
    return scores


def block_offsets(dag: LayeredDAG) -> np.ndarray:
    """Global index of each block's first element (length ``len(dag.blocks) + 1``)."""
    sizes = [b.n_params for b in dag.blocks]
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)


def present_indices(dag: LayeredDAG) -> np.ndarray:
    """Ascending global indices of the unmasked elements of ``dag``."""
    off = block_offsets(dag)
    parts = []
    for b, block in enumerate(dag.blocks):
        if block.param is None:
            continue
        if block.element_mask is None:
            parts.append(np.arange(off[b], off[b + 1], dtype=np.int64))
        else:
            parts.append(np.flatnonzero(block.element_mask.ravel()).astype(np.int64) + off[b])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def mask_from_global(dag: LayeredDAG, gidx: np.ndarray) -> Mask:
    """The :class:`~pathnet.Mask` that keeps the elements with global indices ``gidx``."""
    gidx = np.sort(np.asarray(gidx, dtype=np.int64))
    off = block_offsets(dag)
    if gidx.size and (gidx[0] < 0 or gidx[-1] >= off[-1]):
        raise ValueError(f"pathnet.select: global element index out of range [0, {off[-1]})")
    cuts = np.searchsorted(gidx, off)
    selected = {
        b: gidx[cuts[b] : cuts[b + 1]] - off[b]
        for b, block in enumerate(dag.blocks)
        if block.param is not None
    }
    return dag.mask_from_elements(selected)


def flatten_scores(dag: LayeredDAG, scores: Mapping[str, Any]) -> np.ndarray:
    """Per-parameter score arrays (or tensors) concatenated in global order, float64."""
    parts = []
    for block in dag.blocks:
        if block.param is None:
            continue
        if block.param not in scores:
            raise ValueError(f"pathnet.select: no score for parameter {block.param!r}")
        s = scores[block.param]
        if hasattr(s, "detach"):
            s = s.detach().cpu().double().numpy()
        s = np.asarray(s, dtype=np.float64)
        if s.size != block.n_params:
            raise ValueError(
                f"pathnet.select: scores for {block.param!r} have {s.size} entries, "
                f"the parameter has {block.n_params}"
            )
        parts.append(s.ravel())
    return np.concatenate(parts)


def keep_top(
    dag: LayeredDAG, scores: np.ndarray, k: int, secondary: np.ndarray | None = None
) -> Mask:
    """Keep the ``k`` present elements of ``dag`` with the largest global ``scores``.

    ``scores`` is a global-order array over all elements (masked ones included;
    they are never kept). Ties go to the lower global index.
    """
    alive = present_indices(dag)
    if k > alive.size:
        raise ValueError(
            f"pathnet.select: asked to keep {k:,} weights but only {alive.size:,} are present"
        )
    sec = None if secondary is None else np.asarray(secondary, dtype=np.float64)[alive]
    flags = top_k(np.asarray(scores, dtype=np.float64)[alive], k, sec)
    return mask_from_global(dag, alive[flags])


def weight_leaves(model: nn.Module, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The leaf parameter that holds each prunable weight's values.

    For a weight masked with :func:`pathnet.apply_mask` that is the
    parametrization's ``original`` or ``torch.nn.utils.prune``'s ``weight_orig``
    (the forward multiplies it by the mask), otherwise the weight itself.
    Gradients with respect to the leaf equal those with respect to the weight on
    every unmasked element. Meant for deep copies: nothing is unregistered
    (removing a parametrization from a copy would break the original, whose
    class the copy shares).
    """
    from torch.nn.utils import parametrize

    weights = prunable_parameters(model)
    if names is not None:
        missing = [n for n in names if n not in weights]
        if missing:
            raise ValueError(f"pathnet.select: the model has no prunable parameters {missing}")
        weights = {n: weights[n] for n in names}
    out = {}
    for name in weights:
        path = name.rsplit(".", 1)[0] if "." in name else ""
        module = model.get_submodule(path)
        leaf: Any = module.weight
        if parametrize.is_parametrized(module, "weight"):
            leaf = getattr(module, "parametrizations")["weight"].original  # noqa: B009
        elif isinstance(getattr(module, "weight_orig", None), nn.Parameter):
            leaf = module.weight_orig
        out[name] = leaf
    return out
