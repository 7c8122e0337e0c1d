"""Training: datasets as preloaded tensors, masked training, iterative magnitude pruning.

``pathnet.train.fit`` and ``pathnet.train.imp`` are the functions; their modules are
``pathnet.train.fit`` / ``pathnet.train.imp`` in ``sys.modules`` (use
``importlib.import_module`` to reach module-level helpers).
"""

from pathnet.data import (
    BatchLoader,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    load_dataset,
    loader,
    subset_per_class,
)
from pathnet.train.fit import CheckpointError, FitResult, evaluate, fit, resolve_device
from pathnet.train.imp import ImpResult, imp, imp_schedule, magnitude_mask

__all__ = [
    "BatchLoader",
    "CheckpointError",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "FitResult",
    "ImpResult",
    "evaluate",
    "fit",
    "imp",
    "imp_schedule",
    "load_dataset",
    "loader",
    "magnitude_mask",
    "resolve_device",
    "subset_per_class",
]
