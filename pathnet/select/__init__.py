"""Selection methods: sparse subnetworks chosen on the DAG, returned as masks.

:mod:`pathnet.select.registry` maps names to :class:`~pathnet.select.base.Method`
records; the methods live in :mod:`~pathnet.select.phew`,
:mod:`~pathnet.select.synflow` and :mod:`~pathnet.select.baselines`.

The package is callable: ``pathnet.select("phew", model, 0.05, seed=0)`` is
:func:`pathnet.select.registry.select`.

>>> import pathnet
>>> pathnet.select("random", pathnet.models.mlp([8, 6, 4], seed=0), 0.5, seed=0).n_kept
36

Why a callable module: ``pathnet.select`` must stay this package (``import
pathnet.select as s``, ``pathnet.select.phew``, ``from pathnet import select``
all reach it through the attribute) while ``pathnet.select(...)`` is the short
form the README and notebooks use. A function bound to that name would shadow the
package for all three; giving the module a ``__class__`` with ``__call__`` is the
mechanism the Python data model documents for customising a module
("Customizing module attribute access"), and it changes nothing else.
"""

import sys
import types
from typing import Any

from pathnet.mask import Mask
from pathnet.select.base import Method
from pathnet.select.registry import (
    METHODS,
    get_method,
    register,
    resolve_density,
    select,
    select_nested,
    target_count,
)

__all__ = [
    "METHODS",
    "Method",
    "get_method",
    "register",
    "resolve_density",
    "select",
    "select_nested",
    "target_count",
]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`pathnet.select.registry.select`."""

    def __call__(
        self, method: str, model: Any, density: float | None = None, **kwargs: Any
    ) -> Mask:
        return select(method, model, density, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
