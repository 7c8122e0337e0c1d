"""pathnet: neural networks as weighted, layered DAGs of paths.

The pipeline is model -> graph -> selection -> mask -> analysis / training:

>>> import pathnet
>>> model = pathnet.models.mlp([8, 6, 4], seed=0)
>>> dag = pathnet.to_dag(model)
>>> dag.n_params
72
"""

from pathnet import models
from pathnet.graph import EdgeBlock, LayeredDAG, UnitGroup, UnsupportedModelError, to_dag
from pathnet.mask import Mask, MaskFileError, apply_mask, prunable_parameters, remove_mask

__version__ = "0.1.0"

__all__ = [
    "EdgeBlock",
    "LayeredDAG",
    "Mask",
    "MaskFileError",
    "UnitGroup",
    "UnsupportedModelError",
    "__version__",
    "apply_mask",
    "models",
    "prunable_parameters",
    "remove_mask",
    "to_dag",
]
