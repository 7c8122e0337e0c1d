"""Small I/O helpers shared by every layer: atomic writes and CSV tables.

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
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "read_csv", "write_csv"]


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
