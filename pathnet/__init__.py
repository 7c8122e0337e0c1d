"""pathnet: neural networks as weighted, layered DAGs of paths.

The pipeline is model -> graph -> selection -> mask -> analysis / training:

>>> import pathnet
>>> model = pathnet.models.mlp([8, 6, 4], seed=0)
>>> dag = pathnet.to_dag(model)
>>> dag.n_params
72

The heavier sub-packages (``pathnet.train``, ``pathnet.data``, ``pathnet.figures``,
``pathnet.experiments``, ``pathnet.sanity``) are imported on first use, so
``import pathnet`` stays light and ``pathnet.train.fit`` works without importing
``pathnet.train`` by hand:

>>> callable(pathnet.train.fit)
True
"""

from __future__ import annotations

import importlib
from typing import Any

from pathnet import analysis, models, select
from pathnet.graph import EdgeBlock, LayeredDAG, UnitGroup, UnsupportedModelError, to_dag
from pathnet.mask import Mask, MaskFileError, apply_mask, prunable_parameters, remove_mask
from pathnet.select.registry import METHODS

__version__ = "0.1.0"

#: Sub-packages imported lazily on attribute access.
_LAZY = frozenset({"cli", "data", "experiments", "figures", "sanity", "train"})

__all__ = [
    "METHODS",
    "EdgeBlock",
    "LayeredDAG",
    "Mask",
    "MaskFileError",
    "UnitGroup",
    "UnsupportedModelError",
    "__version__",
    "analysis",
    "apply_mask",
    "models",
    "prunable_parameters",
    "remove_mask",
    "select",
    "to_dag",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"pathnet.{name}")
    raise AttributeError(f"module 'pathnet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
