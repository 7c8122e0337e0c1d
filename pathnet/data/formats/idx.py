"""The IDX format of MNIST and Fashion-MNIST, and the loader of those two data sets."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathnet.data.dataset import Dataset, normalize
from pathnet.data.errors import PREFIX, DatasetError
from pathnet.data.registry import (
    FASHION_CLASSES,
    IDX_PREFIX,
    INPUT_SHAPE,
    MEAN_STD,
    NUM_CLASSES,
)

__all__ = ["load_mnist", "read_idx"]


_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not.

    The header is ``0x00 0x00 <type code> <number of dimensions>`` followed by one
    big-endian uint32 per dimension; the data follow, big-endian, with no trailing bytes.

    Parameters
    ----------
    path : str or os.PathLike
        The file; gzip compression is recognised by its magic bytes, not its name.

    Returns
    -------
    numpy.ndarray
        A writable array of the stored shape, native byte order.

    Raises
    ------
    DatasetError
        Naming the file, for a bad magic number, a truncated or oversized file, or a
        corrupt gzip stream.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{PREFIX}: cannot read IDX file {path}: {exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(
                f"{PREFIX}: {path}: corrupt or truncated gzip stream ({exc})"
            ) from exc
    if len(raw) < 4:
        raise DatasetError(
            f"{PREFIX}: {path}: truncated IDX file, {len(raw)} bytes where the header "
            f"alone needs at least 4"
        )
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{PREFIX}: {path}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000TTDD "
            f"with type code TT one of 08, 09, 0b, 0c, 0d, 0e and DD >= 1 dimensions "
            f"(e.g. 0x00000803 for images, 0x00000801 for labels)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(
            f"{PREFIX}: {path}: truncated IDX header, {len(raw)} bytes where {ndim} "
            f"dimensions need {header}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        what = "truncated" if actual < expected else "oversized"
        raise DatasetError(
            f"{PREFIX}: {path}: {what} IDX file: the header declares shape {dims} of "
            f"{dtype.name}, i.e. {expected} data bytes, but the file holds {actual}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(name: str, split: str, folder: Path) -> Dataset:
    prefix = IDX_PREFIX[split]
    img_path = _idx_file(folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    assert img_path is not None and lab_path is not None
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{PREFIX}: {img_path}: expected uint8 images of shape (N, 28, 28), got "
            f"{images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(
            f"{PREFIX}: {lab_path}: expected a 1-D uint8 label vector, got "
            f"{labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{PREFIX}: label/image count mismatch: {lab_path} holds {labels.shape[0]} labels, "
            f"{img_path} holds {images.shape[0]} images"
        )
    k = NUM_CLASSES[name]
    if labels.size and int(labels.max()) >= k:
        raise DatasetError(
            f"{PREFIX}: {lab_path}: label {int(labels.max())} out of range, expected 0..{k - 1}"
        )
    mean, std = MEAN_STD[name]
    classes = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(i) for i in range(10))
    return Dataset(
        images=normalize(images[:, None], mean, std),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=k,
        name=name,
        split=split,
        input_shape=INPUT_SHAPE[name],
        mean=mean,
        std=std,
        classes=classes,
    )
