"""The pruning arithmetic of IMP: how many weights each round keeps, and which.

:func:`imp_schedule` gives the counts, :func:`layer_counts` spreads a count over layers,
:func:`magnitude_mask` keeps the largest weights. No training here (see
:mod:`pathnet.train.imp`).

>>> import torch
>>> magnitude_mask({"w": torch.tensor([0.5, -2.0, 1.0])}, 2)["w"].tolist()
[False, True, True]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from pathnet.mask import Mask, prunable_parameters

__all__ = ["imp_schedule", "layer_counts", "magnitude_mask"]

_PREFIX = "pathnet.train.imp"


def imp_schedule(
    n_params: int,
    density: float | None = None,
    rounds: int | None = None,
    fraction: float | None = None,
) -> list[int]:
    """Weights kept after each round: ``int(keep**k * n_params)``, the last ``int(density * n)``.

    Parameters
    ----------
    n_params : int
        Prunable weights.
    density : float, optional
        Target density in (0, 1). Required unless ``rounds`` is given.
    rounds : int, optional
        Number of rounds. With ``density``, every round keeps ``density**(1/rounds)`` of
        the weights present; without, ``1 - fraction`` for ``rounds`` rounds.
    fraction : float, optional
        Fraction of the weights present pruned per round (default 0.2); with ``density``
        and no ``rounds``, as many rounds as needed, the last one pruning less.

    >>> imp_schedule(1000, density=0.3)
    [800, 640, 512, 409, 327, 300]
    >>> imp_schedule(1000, density=0.25, rounds=2)
    [500, 250]
    """
    if isinstance(n_params, bool) or int(n_params) < 1:
        raise ValueError(f"{_PREFIX}: n_params must be positive, got {n_params!r}")
    n = int(n_params)
    if rounds is not None and (isinstance(rounds, bool) or int(rounds) != rounds or rounds < 1):
        raise ValueError(f"{_PREFIX}: rounds must be a positive integer, got {rounds!r}")
    if rounds is not None and density is not None and fraction is not None:
        raise ValueError(
            f"{_PREFIX}: give at most two of density, rounds and fraction (the third follows)"
        )
    if fraction is None:
        fraction = 0.2
    if not (0.0 < float(fraction) < 1.0):
        raise ValueError(f"{_PREFIX}: fraction must be in (0, 1), got {fraction!r}")
    if density is None:
        if rounds is None:
            raise ValueError(f"{_PREFIX}: give density (or rounds)")
        keep = 1.0 - float(fraction)
        density = keep ** int(rounds)
        k_total = int(rounds)
    else:
        density = float(density)
        if not (0.0 < density < 1.0):
            raise ValueError(f"{_PREFIX}: density must be in (0, 1), got {density!r}")
        if rounds is not None:
            k_total = int(rounds)
            keep = density ** (1.0 / k_total)
        else:
            keep = 1.0 - float(fraction)
            k_total = max(1, math.ceil(math.log(density) / math.log(keep) - 1e-9))
    final = int(density * n)
    if final < 1:
        raise ValueError(
            f"{_PREFIX}: density {density:g} of {n:,} weights keeps none; the smallest "
            f"usable density is {1 / n:.3g}"
        )
    # Intermediate rounds that would already reach the target are dropped.
    counts = [c for c in (int(keep**k * n) for k in range(1, k_total)) if c > final]
    counts.append(final)
    return counts


def layer_counts(total: int, sizes: Sequence[int], previous: Sequence[int]) -> list[int]:
    """Split ``total`` kept weights over layers in proportion to their sizes.

    Every layer gets ``floor(total * size / sum(sizes))`` or one more (largest
    remainders first, ties to the earlier layer), never more than ``previous`` (what it
    has now), so that masks stay nested.

    >>> layer_counts(10, [30, 60, 10], [30, 60, 10])
    [3, 6, 1]
    """
    n = sum(sizes)
    quotas = [total * s / n for s in sizes]
    counts = [min(math.floor(q), p) for q, p in zip(quotas, previous)]
    rest = total - sum(counts)
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - math.floor(quotas[i])), i))
    for i in order:  # one more where the quota is fractional and there is room
        if rest <= 0:
            break
        if counts[i] < previous[i] and counts[i] < math.ceil(quotas[i]):
            counts[i] += 1
            rest -= 1
    for i in order:  # degenerate cases only (tiny layers): any room at all
        if rest <= 0:
            break
        extra = min(rest, previous[i] - counts[i])
        counts[i] += extra
        rest -= extra
    if rest:
        raise ValueError(f"{_PREFIX}: cannot keep {total} weights within {list(previous)}")
    return counts


def _top(scores: np.ndarray, present: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the ``k`` largest scores among ``present``; ties to lower index."""
    s = np.where(present, scores, -np.inf)
    order = np.argsort(-s, kind="stable")
    keep = np.zeros(s.shape, dtype=bool)
    keep[order[:k]] = True
    return keep


def magnitude_mask(
    weights: Mapping[str, Tensor] | nn.Module,
    n_keep: int,
    *,
    previous: Mapping[str, Tensor] | None = None,
    scope: Literal["global", "layer"] = "global",
) -> Mask:
    """Keep the ``n_keep`` largest ``|w|`` among the weights present in ``previous``.

    Parameters
    ----------
    weights : mapping of str to tensor, or torch.nn.Module
        The weights to rank (a module means its :func:`pathnet.prunable_parameters`).
    n_keep : int
        Exactly this many are kept; ties go to the lower flat index (parameter order,
        then row-major), so the result is deterministic.
    previous : Mask or mapping, optional
        Only weights it keeps can be kept (default: all).
    scope : {"global", "layer"}
        ``"global"`` ranks all weights together; ``"layer"`` gives every layer its share
        (:func:`layer_counts`), so all layers end at the same density within one weight.

    Returns
    -------
    Mask
    """
    if isinstance(weights, nn.Module):
        weights = prunable_parameters(weights)
    if scope not in ("global", "layer"):
        raise ValueError(f"{_PREFIX}: scope must be 'global' or 'layer', got {scope!r}")
    names = list(weights)
    mags = [weights[k].detach().abs().double().cpu().numpy().ravel() for k in names]
    prev = [
        (
            np.ones(a.shape, dtype=bool)
            if previous is None
            else torch.as_tensor(previous[k]).cpu().numpy().ravel().astype(bool)
        )
        for k, a in zip(names, mags)
    ]
    present = sum(int(p.sum()) for p in prev)
    if not (1 <= n_keep <= present):
        raise ValueError(f"{_PREFIX}: n_keep must be in [1, {present}], got {n_keep}")
    for k, a, p in zip(names, mags, prev):
        if np.isnan(a[p]).any():
            raise ValueError(f"{_PREFIX}: {k!r} holds NaN weights; did training diverge?")
    if scope == "global":
        keep_flat = _top(np.concatenate(mags), np.concatenate(prev), n_keep)
        bounds = np.cumsum([0] + [a.size for a in mags])
        kept = [keep_flat[bounds[i] : bounds[i + 1]] for i in range(len(names))]
    else:
        counts = layer_counts(n_keep, [a.size for a in mags], [int(p.sum()) for p in prev])
        kept = [_top(a, p, c) for a, p, c in zip(mags, prev, counts)]
    return Mask(
        {
            k: torch.from_numpy(kk.reshape(tuple(weights[k].shape)).copy())
            for k, kk in zip(names, kept)
        }
    )
