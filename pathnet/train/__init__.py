"""Training utilities: data sets as preloaded tensors (:mod:`pathnet.train.data`)."""

from pathnet.train.data import (
    BatchLoader,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    load_dataset,
    loader,
    subset_per_class,
)

__all__ = [
    "BatchLoader",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "load_dataset",
    "loader",
    "subset_per_class",
]
