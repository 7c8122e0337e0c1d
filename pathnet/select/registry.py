"""Selection methods by name: :data:`METHODS`, a plain dict of name -> :class:`Method`.

The method modules fill it at import (:func:`register`); :func:`get_method` imports
the built-in ones on first use. :func:`select` runs one method at one density,
:func:`select_nested` at several densities through the method's nested form.

>>> import pathnet
>>> get_method("phew").nested_form().__name__
'phew_nested'
>>> model = pathnet.models.mlp([8, 6, 4], seed=0)
>>> [m.n_kept for m in select_nested("random", model, [0.5, 0.25], seed=0)]
[36, 18]
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from torch import nn

from pathnet._random import SeedLike
from pathnet.graph import LayeredDAG, to_dag
from pathnet.mask import Mask
from pathnet.select.base import (
    Method,
    Nested,
    Selector,
    check_density,
    resolve_density,
    selectable_model,
    target_count,
)

__all__ = [
    "METHODS",
    "Method",
    "Nested",
    "Selector",
    "add",
    "get_method",
    "register",
    "resolve_density",
    "select",
    "select_nested",
    "target_count",
]

#: Registered methods, name -> :class:`Method` (a Method is callable like its function).
METHODS: dict[str, Method] = {}

#: Modules that register the built-in methods when imported. "imp" trains, so
#: pathnet.train registers it: named here, never imported statically by pathnet.select.
BUILTIN_MODULES = (
    "pathnet.select.phew",
    "pathnet.select.synflow",
    "pathnet.select.baselines",
    "pathnet.train.imp",
)

F = TypeVar("F", bound=Callable[..., Any])


def register(
    name: str,
    *,
    nested: Nested | str | None = None,
    needs_data: bool = False,
    options: Sequence[str] | None = (),
    doc: str = "",
) -> Callable[[F], F]:
    """Decorator: add the function to :data:`METHODS` as ``Method(name, fn, ...)``.

    The keywords are the :class:`Method` fields; ``nested`` may name a function
    defined further down the module (``"module:function"``).
    """

    def deco(fn: F) -> F:
        add(
            Method(
                name,
                fn,
                nested=nested,
                needs_data=needs_data,
                options=None if options is None else tuple(options),
                doc=doc,
            )
        )
        return fn

    return deco


def add(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a name may be registered once)."""
    if method.name in METHODS:
        raise ValueError(f"pathnet.select: method {method.name!r} is registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered :class:`Method` called ``name`` (case and ``-``/``_`` insensitive)."""
    if not isinstance(name, str):
        raise TypeError(
            f"pathnet.select: method must be a method name (str), got {type(name).__name__}"
        )
    key = name.lower().replace("-", "_")
    if key not in METHODS:
        _load_builtin_methods()
    if key not in METHODS:
        raise ValueError(
            f"pathnet.select: unknown method {name!r}; expected one of {sorted(METHODS)}"
        )
    return METHODS[key]


def _refuse_ties(dag: LayeredDAG) -> None:
    """Selection methods count and score each block's elements; a tensor shared by two
    names (tied weights) would be counted twice. Refused, naming the tied names."""
    if dag.tied:
        pairs = ", ".join(f"{name} = {canon}" for name, canon in sorted(dag.tied.items()))
        raise ValueError(
            f"pathnet.select: the model has tied parameters ({pairs}): one tensor under "
            "several names, which selection would count once per name. Untie them (give "
            "each its own nn.Parameter) or select on a model without the tie; masks of "
            "tied models can still be applied and analysed (pathnet.Mask(..., tied=...))."
        )


def _load_builtin_methods() -> None:
    """Import the modules that register the built-in methods."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def _as_dag(
    model: nn.Module | LayeredDAG, input_shape: tuple[int, ...] | None
) -> tuple[LayeredDAG, nn.Module | None]:
    if isinstance(model, LayeredDAG):
        return model, None
    if isinstance(model, nn.Module):
        model = selectable_model(model)
        return to_dag(model, input_shape), model
    raise TypeError(
        "pathnet.select: model must be a torch.nn.Module or a LayeredDAG, "
        f"got {type(model).__name__}"
    )


def _stamp(mask: Mask, key: str, d: float, seed: SeedLike, dag: LayeredDAG, options: dict) -> Mask:
    """Record method, density, compression, seed, model and options in ``mask.meta``."""
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

    Examples
    --------
    >>> import pathnet
    >>> select("phew", pathnet.models.mlp([8, 6, 4], seed=0), 0.25, seed=0).n_kept
    18
    """
    entry = get_method(method)
    d = resolve_density(density, compression)
    dag, torch_model = _as_dag(model, input_shape)
    _refuse_ties(dag)
    mask = entry.selector()(dag, d, seed=seed, model=torch_model, **options)
    return _stamp(mask, entry.name, d, seed, dag, options)


def select_nested(
    method: str,
    model: nn.Module | LayeredDAG,
    densities: Sequence[float],
    *,
    seed: SeedLike = None,
    dag: LayeredDAG | None = None,
    input_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> list[Mask]:
    """Masks of ``method`` at every density, through its nested form when it has one.

    PHEW and random paths walk once (each mask equals a separate :func:`select`);
    random, ERK and magnitude draw or sort once (equal to separate calls); SynFlow
    and SynFlow-L2 prune along one schedule through every density (see
    :func:`pathnet.select.synflow.synflow_nested`). Other methods are called once
    per density. ``dag``, if given, is ``to_dag(model)`` already converted; the
    other parameters are those of :func:`select`.
    """
    entry = get_method(method)
    ds = [check_density(d) for d in densities]
    if dag is None:
        dag, torch_model = _as_dag(model, input_shape)
    else:
        torch_model = selectable_model(model) if isinstance(model, nn.Module) else None
    _refuse_ties(dag)
    nested = entry.nested_form()
    if nested is None:
        fn = entry.selector()
        masks = [fn(dag, d, seed=seed, model=torch_model, **options) for d in ds]
    else:
        masks = nested(dag, ds, method=entry.name, seed=seed, model=torch_model, **options)
    return [_stamp(mask, entry.name, d, seed, dag, options) for mask, d in zip(masks, ds)]
