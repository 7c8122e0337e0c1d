"""What a selection method is: a :class:`Method` record, and the density rules they share.

A method is a function ``select(dag, density, *, seed, model, **options) -> Mask``
(:class:`Selector`), optionally with a *nested form*
``nested(dag, densities, *, method, seed, model, **options) -> list[Mask]``
(:class:`Nested`) that returns, for several densities at once, exactly the masks
separate calls would (or, for SynFlow, masks along one shared schedule) at the
cost of about one call. Either may be given as a ``"module:function"`` string,
imported on first use: a method defined in a higher package (IMP, which trains)
can be listed without :mod:`pathnet.select` importing that package.

>>> m = Method("half", "pathnet.select.baselines:random_global", doc="a test")
>>> m.selector().__name__
'random_global'
>>> m.nested_form() is None
True
"""

from __future__ import annotations

import copy
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pathnet._random import SeedLike
from pathnet.graph import LayeredDAG
from pathnet.mask import Mask

__all__ = [
    "Method",
    "Nested",
    "Selector",
    "check_density",
    "resolve_density",
    "selectable_model",
    "target_count",
]


#: ``select(dag, density, *, seed, model, **options) -> Mask``
Selector = Callable[..., Mask]
#: ``nested(dag, densities, *, method, seed, model, **options) -> list[Mask]``
Nested = Callable[..., "list[Mask]"]


def _resolve(ref: Any, what: str) -> Any:
    """``ref`` itself, or the object a ``"module:function"`` string names."""
    if not isinstance(ref, str):
        return ref
    module, sep, name = ref.partition(":")
    if not sep or not module or not name:
        raise ValueError(
            f"pathnet.select: {what} must be a callable or 'module:function', got {ref!r}"
        )
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Method:
    """A registered selection method.

    Parameters
    ----------
    name : str
        The registry key (lower case, ``_`` not ``-``).
    select : Selector or str
        The function, or ``"module:function"`` (imported on first use).
    nested : Nested, str or None
        The several-densities form, or None: callers then call ``select`` per density.
    needs_data : bool
        The method reads training data (SNIP, GraSP, IMP), not only the weights.
    options : tuple of str or None
        The option names ``select`` accepts (besides dag, density, seed, model);
        None when the method passes arbitrary options on (IMP to training).
    doc : str
        One line for listings; by default the first line of the function's docstring.

    Calling a Method calls its ``select`` function.
    """

    name: str
    select: Selector | str
    nested: Nested | str | None = None
    needs_data: bool = False
    options: tuple[str, ...] | None = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != _key(self.name):
            raise ValueError(
                f"pathnet.select.Method: name must be a lower-case identifier, got {self.name!r}"
            )
        if not (callable(self.select) or isinstance(self.select, str)):
            raise TypeError(
                f"pathnet.select.Method({self.name!r}): select must be a callable or "
                f"'module:function', got {type(self.select).__name__}"
            )

    def selector(self) -> Selector:
        """The selection function (imported now if given as a string)."""
        fn: Selector = _resolve(self.select, f"Method({self.name!r}).select")
        return fn

    def nested_form(self) -> Nested | None:
        """The several-densities function, or None."""
        fn: Nested | None = _resolve(self.nested, f"Method({self.name!r}).nested")
        return fn

    def summary(self) -> str:
        """``doc``, or the first line of the function's docstring."""
        if self.doc or isinstance(self.select, str):
            return self.doc
        return (getattr(self.select, "__doc__", None) or "").strip().split("\n")[0]

    def __call__(
        self,
        dag: LayeredDAG,
        density: float,
        *,
        seed: SeedLike = None,
        model: nn.Module | None = None,
        **options: Any,
    ) -> Mask:
        return self.selector()(dag, density, seed=seed, model=model, **options)


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


# ------------------------------------------------------------------- density
def check_density(density: Any, where: str = "pathnet.select") -> float:
    """``density`` as a float in (0, 1]; NaN, strings and booleans are refused, not converted.

    >>> check_density(0.5)
    0.5
    """
    bad = isinstance(density, (str, bytes, bool, np.bool_))
    try:
        d = math.nan if bad else float(density)
    except (TypeError, ValueError):
        d = math.nan
    if not (0.0 < d <= 1.0):  # also False for NaN
        raise ValueError(f"{where}: density must be in (0, 1], got {density!r}")
    return d


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
    return check_density(density)


def target_count(dag: LayeredDAG, density: float) -> int:
    """``int(density * prunable weights)``, the number of weights a method keeps.

    Raises ``ValueError`` for a density outside (0, 1] (NaN and strings included), or
    when the count is 0 or more than the weights present in the DAG.
    """
    density = check_density(density)
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


# --------------------------------------------------------------------- models
_EXACT = (torch.float32, torch.float64)


def selectable_model(model: nn.Module, where: str = "pathnet.select") -> nn.Module:
    """``model`` itself, or a float64 copy of it when its weights are half precision.

    Selection reads the weights' values: a model on the meta device has none (a
    ``ValueError`` says what to do), and float16 / bfloat16 weights are scored in
    float64 on a deep copy (the model passed in is not modified; the mask's names
    and shapes are the same). Other non-float parameters are refused.

    >>> m = torch.nn.Linear(4, 2).to(torch.bfloat16)
    >>> selectable_model(m).weight.dtype
    torch.float64
    """
    tensors = [*model.parameters(), *model.buffers()]
    meta = [t for t in tensors if t.is_meta]
    if meta:
        raise ValueError(
            f"{where}: the model's parameters are on the meta device, which holds shapes "
            "but no values, and selection reads the weights; expected a model with real "
            "weights: build it on CPU, or materialise it first (model.to_empty(device='cpu') "
            "and initialise or load the weights)"
        )
    params = list(model.parameters())
    odd = sorted({str(p.dtype) for p in params if not p.is_floating_point()})
    if odd:
        raise ValueError(
            f"{where}: the model has parameters of dtype {', '.join(odd)}; expected "
            "floating-point weights (float32, float64, or float16/bfloat16, which are "
            "scored in float64)"
        )
    if all(p.dtype in _EXACT for p in params):
        return model
    return copy.deepcopy(model).to(torch.float64)
