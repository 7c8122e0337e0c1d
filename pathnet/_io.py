"""Small I/O helpers shared by every layer: atomic writes, CSV tables, versioned file
headers and tensor hashing (one of each).

Everything pathnet writes (masks, checkpoints, metrics, figures, caches) goes through
:func:`atomic_write_bytes`, so a reader sees the old file or the new one, never a
partial one.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> path = write_csv([{"a": 1, "b": "x"}], folder / "t.csv")
>>> read_csv(path)
[{'a': '1', 'b': 'x'}]
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "check_header",
    "hash_tensors",
    "read_csv",
    "write_csv",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    A reader sees the old file or the new one, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Rows (dicts with the same keys) to CSV, atomically."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """A CSV file as a list of dicts (all values strings)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_header(
    header: Any,
    *,
    format: str,
    version: int,
    what: str,
    error: type[Exception] = ValueError,
) -> int:
    """Check a versioned file header ``{"format": ..., "version": ...}``; return its version.

    ``what`` names the file in messages (``"pathnet.Mask.load: 'm.npz'"``). A header that is
    not a dict, names another format, or has a version that is not a whole number from 1 to
    ``version`` raises ``error`` (never ``OverflowError`` or ``TypeError``).

    >>> check_header({"format": "pathnet-mask", "version": 1}, format="pathnet-mask",
    ...              version=1, what="m.npz")
    1
    >>> check_header({"format": "pathnet-mask", "version": 9}, format="pathnet-mask",
    ...              version=1, what="m.npz")
    Traceback (most recent call last):
    ...
    ValueError: m.npz has format version 9; this pathnet reads up to 1
    """
    if not isinstance(header, dict) or header.get("format") != format:
        raise error(f"{what} is not a {format} file")
    got = header.get("version")
    if isinstance(got, bool) or not isinstance(got, int) or got < 1:
        raise error(
            f"{what} has a damaged header: version must be a whole number >= 1, got {got!r}"
        )
    if got > version:
        raise error(f"{what} has format version {got}; this pathnet reads up to {version}")
    return got


def hash_tensors(tensors: Mapping[str, Any]) -> str:
    """SHA-256 of named tensors or arrays: names, dtypes, shapes and raw bytes, in name order.

    Equal for equal contents on any device; boolean tensors are hashed bit-packed, so a
    mask's hash does not depend on how it is stored.

    >>> import torch
    >>> a = hash_tensors({"w": torch.ones(2, 3)})
    >>> a == hash_tensors({"w": torch.ones(2, 3).numpy()}), a == hash_tensors({"w": torch.ones(3, 2)})
    (True, False)
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name]
        if hasattr(value, "detach"):
            value = value.detach().cpu().contiguous().numpy()
        arr = np.ascontiguousarray(value)
        h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(np.packbits(arr.ravel()).tobytes() if arr.dtype == np.bool_ else arr.tobytes())
    return h.hexdigest()
