"""The two exceptions every data-set reader raises.

>>> from pathnet.data.errors import DatasetError, DatasetNotFoundError
>>> issubclass(DatasetNotFoundError, DatasetError), issubclass(DatasetError, ValueError)
(True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["PREFIX", "DatasetError", "DatasetNotFoundError"]

#: Prefix of every message raised by :mod:`pathnet.data`.
PREFIX = "pathnet.data"


class DatasetError(ValueError):
    """A data-set file is missing, malformed, refused or failed its checksum."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No folder searched holds the requested data set.

    Attributes
    ----------
    searched : tuple of pathlib.Path
        Every folder looked in, in search order.

    Examples
    --------
    >>> err = DatasetNotFoundError("not found", [Path("/a"), Path("/b")])
    >>> str(err), [str(p) for p in err.searched]
    ('not found', ['/a', '/b'])
    """

    def __init__(self, message: str, searched: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.searched = tuple(searched)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
