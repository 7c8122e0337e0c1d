"""CIFAR-10/100: the loader of both data sets, from pickles read by a restricted reader."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathnet.data.dataset import Dataset, normalize
from pathnet.data.errors import PREFIX, DatasetError
from pathnet.data.formats.unpickle import load_pickle
from pathnet.data.registry import (
    CIFAR10_CLASSES,
    INPUT_SHAPE,
    MEAN_STD,
    NUM_CLASSES,
    required_files,
)

__all__ = ["load_cifar"]


def _get(d: Mapping[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetError(
        f"{PREFIX}: {path}: missing key {key!r}; found keys "
        f"{sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)}"
    )


def _numbers(value: Any, key: str, path: Path) -> np.ndarray:
    """``value`` as an array: a numpy array, or a flat list of numbers (never walked deeper).

    A crafted pickle can nest shared lists so that converting them would take exponential
    time; data pickles hold flat lists, so anything else is refused without a walk.
    """
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value
    ):
        try:
            return np.asarray(value)
        except (OverflowError, ValueError) as exc:
            raise DatasetError(f"{PREFIX}: {path}: {key!r} holds bad numbers ({exc})") from exc
    raise DatasetError(
        f"{PREFIX}: {path}: expected {key!r} as a numpy array or a flat list of numbers, got "
        f"a {type(value).__name__}"
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def load_cifar(name: str, split: str, folder: Path) -> Dataset:
    k = NUM_CLASSES[name]
    label_key = "labels" if name == "cifar10" else "fine_labels"
    images, labels = [], []
    for rel in required_files(name, split):
        path = folder / rel
        batch = load_pickle(path)
        if not isinstance(batch, dict):
            raise DatasetError(
                f"{PREFIX}: {path}: expected a dict, the pickle holds a {type(batch).__name__}"
            )
        data = _numbers(_get(batch, "data", path), "data", path)
        lab = _numbers(_get(batch, label_key, path), label_key, path)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(
                f"{PREFIX}: {path}: expected 'data' as uint8 of shape (N, 3072), got "
                f"{data.dtype} {data.shape}"
            )
        if (
            lab.ndim != 1
            or lab.shape[0] != data.shape[0]
            or not np.issubdtype(lab.dtype, np.integer)
        ):
            raise DatasetError(
                f"{PREFIX}: {path}: label/image count mismatch or bad labels: "
                f"{label_key!r} has shape {lab.shape} ({lab.dtype}), 'data' has "
                f"{data.shape[0]} rows"
            )
        if lab.size and (int(lab.min()) < 0 or int(lab.max()) >= k):
            raise DatasetError(
                f"{PREFIX}: {path}: labels out of range {int(lab.min())}..{int(lab.max())}, "
                f"expected 0..{k - 1}"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab.astype(np.int64))
    classes: tuple[str, ...] = CIFAR10_CLASSES if name == "cifar10" else ()
    meta_path = folder / ("batches.meta" if name == "cifar10" else "meta")
    if meta_path.is_file():
        meta = load_pickle(meta_path)
        key = "label_names" if name == "cifar10" else "fine_label_names"
        if isinstance(meta, dict):
            names = _get(meta, key, meta_path)
            if not isinstance(names, (list, tuple)) or not all(
                isinstance(v, (str, bytes)) for v in names
            ):
                raise DatasetError(f"{PREFIX}: {meta_path}: {key!r} must be a list of names")
            if len(names) != k:
                raise DatasetError(
                    f"{PREFIX}: {meta_path}: {key!r} holds {len(names)} names, expected {k}"
                )
            classes = tuple(_text(v) for v in names)
    mean, std = MEAN_STD[name]
    return Dataset(
        images=normalize(np.concatenate(images), mean, std),
        labels=torch.from_numpy(np.concatenate(labels)),
        num_classes=k,
        name=name,
        split=split,
        input_shape=INPUT_SHAPE[name],
        mean=mean,
        std=std,
        classes=classes,
    )
