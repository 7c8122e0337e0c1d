"""Networks as layered DAGs: the core type and the converter from torch."""

from pathnet.graph.convert import SUPPORTED, UnsupportedModelError, to_dag
from pathnet.graph.dag import EdgeBlock, LayeredDAG, UnitGroup

__all__ = [
    "SUPPORTED",
    "EdgeBlock",
    "LayeredDAG",
    "UnitGroup",
    "UnsupportedModelError",
    "to_dag",
]
