"""Selection methods by name: a plain dict of name -> function, and :func:`select`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from torch import nn

from pathnet._random import SeedLike
from pathnet.graph import LayeredDAG, to_dag
from pathnet.mask import Mask

__all__ = ["METHODS", "register", "resolve_density", "select", "target_count"]


class Selector(Protocol):
    def __call__(
        self,
        dag: LayeredDAG,
        density: float,
        *,
        seed: SeedLike,
        model: nn.Module | None,
        **options: Any,
    ) -> Mask: ...


METHODS: dict[str, Selector] = {}


def register(name: str) -> Callable[[Selector], Selector]:
    """Add a selection method to :data:`METHODS` under ``name``."""

    def deco(fn: Selector) -> Selector:
        if name in METHODS:
            raise ValueError(f"pathnet.select: method {name!r} is registered twice")
        METHODS[name] = fn
        return fn

    return deco


def resolve_density(density: float | None = None, compression: float | None = None) -> float:
    """The density from ``density`` or ``compression`` (``density = 10**-compression``).

    >>> resolve_density(compression=2)
    0.01
    """
    if (density is None) == (compression is None):
        raise ValueError("pathnet.select: give exactly one of density and compression")
    if compression is not None:
        try:
            if isinstance(compression, (str, bytes, bool, np.bool_)):
                raise TypeError
            c = float(compression)
        except (TypeError, ValueError):
            c = math.nan
        if not math.isfinite(c) or c < 0:
            raise ValueError(
                f"pathnet.select: compression must be finite and >= 0, got {compression!r}"
            )
        density = 10.0**-c
    assert density is not None
    return _check_density(density)


def _check_density(density: Any) -> float:
    """``density`` as a float in (0, 1]; strings and booleans are refused, not converted."""
    if isinstance(density, (str, bytes, bool, np.bool_)):
        raise ValueError(f"pathnet.select: density must be a number in (0, 1], got {density!r}")
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise ValueError(
            f"pathnet.select: density must be a number in (0, 1], got {density!r}"
        ) from None
    if not (0.0 < d <= 1.0):  # also False for NaN
        raise ValueError(f"pathnet.select: density must be in (0, 1], got {density!r}")
    return d


def target_count(dag: LayeredDAG, density: float) -> int:
    """``int(density * prunable weights)``, the number of weights a method keeps.

    Raises ``ValueError`` for a density outside (0, 1] (NaN and strings included), or
    when the count is 0 or more than the weights present in the DAG.
    """
    density = _check_density(density)
    m = int(density * dag.n_params)
    if m < 1:
        raise ValueError(
            f"pathnet.select: density {density:g} of {dag.n_params:,} weights keeps none; "
            f"the smallest usable density is {1 / dag.n_params:.3g}"
        )
    if m > dag.n_present:
        raise ValueError(
            f"pathnet.select: density {density:g} asks for {m:,} weights but only "
            f"{dag.n_present:,} are present (unmasked) in the network"
        )
    return m


def select(
    method: str,
    model: nn.Module | LayeredDAG,
    density: float | None = None,
    *,
    compression: float | None = None,
    seed: SeedLike = None,
    input_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> Mask:
    """Select a sparse subnetwork with a registered method.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS` (``"phew"``, ``"synflow"``, ``"random"``, ...).
    model : torch.nn.Module or LayeredDAG
        The network; a model is converted with :func:`pathnet.to_dag` and never modified.
    density : float, optional
        Fraction of prunable weights to keep, in (0, 1].
    compression : float, optional
        Alternative to ``density``: ``density = 10**-compression``.
    seed : int, numpy Generator or None
        Same seed, same mask.
    input_shape : tuple of int, optional
        For models without an ``input_shape`` attribute.
    **options
        Method-specific options.

    Returns
    -------
    Mask
        With ``meta`` recording method, density, compression, seed and options.
    """
    if not isinstance(method, str):
        raise TypeError(
            f"pathnet.select: method must be a method name (str), got {type(method).__name__}"
        )
    key = method.lower().replace("-", "_")
    if key not in METHODS:
        _load_builtin_methods()
    if key not in METHODS:
        raise ValueError(
            f"pathnet.select: unknown method {method!r}; expected one of {sorted(METHODS)}"
        )
    d = resolve_density(density, compression)
    if isinstance(model, LayeredDAG):
        dag, torch_model = model, None
    elif isinstance(model, nn.Module):
        dag, torch_model = to_dag(model, input_shape), model
    else:
        raise TypeError(
            f"pathnet.select: model must be a torch.nn.Module or a LayeredDAG, got {type(model).__name__}"
        )
    mask = METHODS[key](dag, d, seed=seed, model=torch_model, **options)
    mask.meta.update(
        {
            "method": key,
            "density": d,
            "compression": -math.log10(d),
            "seed": int(seed)
            if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
            else mask.meta.get("seed"),
            "model": dag.model_name,
            "options": {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool))},
        }
    )
    return mask


#: Modules that register the built-in methods, imported on first need. "imp" trains, so
#: pathnet.train registers it: named here, never imported by pathnet.select itself.
PROVIDERS = ("pathnet.select.phew", "pathnet.select.synflow", "pathnet.select.baselines",
             "pathnet.train.imp")  # fmt: skip


def _load_builtin_methods() -> None:
    """Import the modules that register the built-in methods."""
    import importlib

    for mod in PROVIDERS:
        importlib.import_module(mod)
