"""pathnet: neural networks as weighted, layered DAGs of paths.

The pipeline is model -> graph -> selection -> mask -> analysis / training:

>>> import pathnet
>>> model = pathnet.models.mlp([8, 6, 4], seed=0)
>>> dag = pathnet.to_dag(model)
>>> dag.n_params
72
"""

from pathnet import analysis, models, select
from pathnet.graph import EdgeBlock, LayeredDAG, UnitGroup, UnsupportedModelError, to_dag
from pathnet.mask import Mask, MaskFileError, apply_mask, prunable_parameters, remove_mask
from pathnet.select.registry import METHODS

__version__ = "0.1.0"

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
