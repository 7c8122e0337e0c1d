"""Training: masked training, data-parallel training, iterative magnitude pruning.

Modules, bottom up: ``config`` (:class:`TrainConfig`, every hyper-parameter declared
once), ``loop`` (one ``train_epoch`` / ``evaluate`` with a reduction hook), ``checkpoint``
(validated checkpoints), ``fit`` (one process), ``ddp`` (the same loop, sharded over a
``torch.distributed`` group), ``imp`` (iterative magnitude pruning; it also registers the
``"imp"`` selection method). ``pathnet.train.fit`` and ``pathnet.train.imp`` are the
functions; their modules are ``pathnet.train.fit`` / ``pathnet.train.imp`` in
``sys.modules`` (use ``importlib.import_module`` to reach module-level helpers).
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
from pathnet.train.config import TrainConfig
from pathnet.train.dst import DST
from pathnet.train.fit import CheckpointError, FitResult, evaluate, fit, resolve_device
from pathnet.train.imp import ImpResult, imp, imp_schedule, magnitude_mask

__all__ = [
    "DST",
    "BatchLoader",
    "CheckpointError",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "FitResult",
    "ImpResult",
    "TrainConfig",
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
