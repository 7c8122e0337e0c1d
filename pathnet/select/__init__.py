"""Selection methods: sparse subnetworks chosen on the DAG, returned as masks.

The package itself is callable: ``pathnet.select("phew", model, 0.05, seed=0)`` is
:func:`pathnet.select.registry.select`.
"""

import sys
import types
from typing import Any

from pathnet.select.registry import METHODS, register, resolve_density, select, target_count

__all__ = ["METHODS", "register", "resolve_density", "select", "target_count"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return select(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
