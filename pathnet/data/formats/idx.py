"""The IDX format of MNIST and Fashion-MNIST, and the loader of those two data sets."""

from __future__ import annotations

import gzip
import io
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


#: A gzipped IDX file may declare at most this many times its own size of data (real
#: MNIST files compress 2-6x), or ``_PLAUSIBLE_FLOOR`` bytes, whichever is larger.
_GZIP_RATIO = 32
_PLAUSIBLE_FLOOR = 16 << 20
_MAX_DIMS = 32
_CHUNK = 1 << 20


def _fill(stream: io.BufferedIOBase, buf: memoryview) -> int:
    """Read into ``buf`` until it is full or the stream ends; return the bytes read."""
    got = 0
    while got < len(buf):
        n = stream.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


def _drain(stream: io.BufferedIOBase, limit: int) -> int:
    """Count (and drop) what is left in the stream, stopping past ``limit`` bytes."""
    extra = 0
    chunk = memoryview(bytearray(min(_CHUNK, limit + 1)))
    while extra <= limit:
        n = stream.readinto(chunk)
        if not n:
            break
        extra += n
    return extra


def _header(stream: io.BufferedIOBase, path: Path) -> tuple[np.dtype[Any], tuple[int, ...]]:
    """The dtype and shape an IDX header declares, checked."""
    magic = bytearray(4)
    got = _fill(stream, memoryview(magic))
    if got < 4:
        raise DatasetError(
            f"{PREFIX}: {path}: truncated IDX file, {got} bytes where the header "
            f"alone needs at least 4"
        )
    code, ndim = magic[2], magic[3]
    if magic[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{PREFIX}: {path}: bad IDX magic number 0x{magic.hex()}; expected 0x0000TTDD "
            f"with type code TT one of 08, 09, 0b, 0c, 0d, 0e and DD >= 1 dimensions "
            f"(e.g. 0x00000803 for images, 0x00000801 for labels)"
        )
    if ndim > _MAX_DIMS:
        raise DatasetError(
            f"{PREFIX}: {path}: the IDX header declares {ndim} dimensions; at most "
            f"{_MAX_DIMS} are supported"
        )
    raw = bytearray(4 * ndim)
    got = _fill(stream, memoryview(raw))
    if got < len(raw):
        raise DatasetError(
            f"{PREFIX}: {path}: truncated IDX header, {4 + got} bytes where {ndim} "
            f"dimensions need {4 + len(raw)}"
        )
    return _IDX_DTYPES[code], struct.unpack(f">{ndim}I", raw)


def _read_data(
    stream: io.BufferedIOBase,
    path: Path,
    dims: tuple[int, ...],
    dt: np.dtype[Any],
    available: int | None,
    plausible: int,
) -> bytearray:
    """The data bytes the header declares, read without ever holding more than that."""
    expected = math.prod(dims) * dt.itemsize
    declared = f"the header declares shape {dims} of {dt.name}, i.e. {expected} data bytes"
    if available is not None and available != expected:  # an uncompressed file
        what = "truncated" if available < expected else "oversized"
        raise DatasetError(
            f"{PREFIX}: {path}: {what} IDX file: {declared}, but the file holds {available}"
        )
    if expected > plausible:
        raise DatasetError(
            f"{PREFIX}: {path}: implausible IDX file: {declared}, more than {_GZIP_RATIO} "
            f"times the compressed file; refusing to decompress it"
        )
    data = bytearray(expected)
    got = _fill(stream, memoryview(data))
    extra = _drain(stream, plausible - expected) if got == expected else 0
    if got < expected or extra:
        what = "truncated" if got < expected else "oversized"
        held = f"more than {expected + extra - 1}" if extra > plausible - expected else None
        raise DatasetError(
            f"{PREFIX}: {path}: {what} IDX file: {declared}, but the file holds "
            f"{held or got + extra}"
        )
    return data


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not.

    The header is ``0x00 0x00 <type code> <number of dimensions>`` followed by one
    big-endian uint32 per dimension; the data follow, big-endian, with no trailing bytes.
    A gzipped file is decompressed while it is read, never to more than the header
    declares; a header declaring more than 32 times the compressed size (16 MiB at least)
    is refused before anything is decompressed.

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
        Naming the file, for a bad magic number, too many dimensions, a truncated,
        oversized or implausibly large file, or a corrupt gzip stream.

    Examples
    --------
    >>> import gzip, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte.gz"
    >>> _ = path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])))
    >>> read_idx(path)
    array([7, 8, 9], dtype=uint8)
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            gz = fh.read(2) == b"\x1f\x8b"
            fh.seek(0)
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=fh) if gz else fh
            dt, dims = _header(stream, path)
            header = 4 + 4 * len(dims)
            available = None if gz else size - header
            plausible = max(_GZIP_RATIO * size, _PLAUSIBLE_FLOOR) if gz else size
            data = _read_data(stream, path, dims, dt, available, plausible)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{PREFIX}: {path}: corrupt or truncated gzip stream ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"{PREFIX}: cannot read IDX file {path}: {exc}") from exc
    count = math.prod(dims)
    if count == 0:
        return np.zeros(dims, dtype=dt.newbyteorder("="))
    arr = np.frombuffer(data, dtype=dt, count=count).reshape(dims)
    if not dt.isnative:
        arr = arr.byteswap(inplace=True).view(dt.newbyteorder("="))
    return arr


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
