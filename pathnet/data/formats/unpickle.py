"""Reading data pickles without running them: a small pickle machine for plain data.

:func:`load_pickle` never hands a byte of the file to :mod:`pickle`. It interprets the
pickle opcodes itself (protocols 0 to 5) and builds only dicts, lists, tuples, sets,
strings, bytes, numbers and numpy arrays of plain dtypes; the only globals it knows are
the numpy array, dtype and scalar reconstructors, ``_codecs.encode`` (how Python 3 writes
bytes in protocol 2) and ``set`` / ``frozenset``, each replaced by a checked
re-implementation. Nothing from the file is ever called, and no constructor allocates
more than the file holds.

Crafted files are refused with a bound on the work done first:

- memory: every opcode is charged 128 bytes plus what it allocates (strings at 4 bytes a
  character, array data once more for the copy); past ``3 * file size + 16 MiB`` the file
  is refused, so a 1 MB pickle never costs more than about 19 MB or a few hundred thousand
  opcode steps;
- hashing: dict keys and set members must be strings, bytes, numbers, booleans or None
  (a tuple key built from shared references would take exponential time to hash), and at
  most 1,024 of them may be numbers (whose hashes can be made to collide);
- shared references cost nothing: nothing walks the result after loading (the checks
  happen as objects are built), so ``x = [x, x]`` nested 31 deep loads in microseconds.
  Callers that walk a loaded object must bound their own walk.

>>> import pickle, tempfile, pathlib, numpy as np
>>> path = pathlib.Path(tempfile.mkdtemp()) / "batch"
>>> _ = path.write_bytes(pickle.dumps({b"data": np.arange(3, dtype=np.uint8), b"labels": [1, 2]}, 2))
>>> load_pickle(path)
{b'data': array([0, 1, 2], dtype=uint8), b'labels': [1, 2]}
>>> _ = path.write_bytes(pickle.dumps(print))
>>> load_pickle(path)
Traceback (most recent call last):
...
pathnet.data.errors.DatasetError: pathnet.data: ...batch: refused to unpickle, global builtins.print is not allowed; ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pathnet.data.errors import PREFIX, DatasetError
from pathnet.data.formats._pickle_numpy import HANDLERS
from pathnet.data.formats._pickle_vm import Machine, Refused, dispatch_table

__all__ = ["load_pickle"]

_DISPATCH = dispatch_table(HANDLERS)


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a data pickle without executing code from it, in bounded time and memory.

    Only dicts, lists, tuples, sets, strings, bytes, numbers, None and numpy arrays or
    scalars of plain dtypes (numbers, fixed-size strings, raw bytes; no object arrays, no
    structured dtypes) can come out; see the module docstring for the limits. Strings
    written by Python 2 come back as ``bytes`` (``encoding="bytes"``), as in the official
    CIFAR instructions.

    Parameters
    ----------
    path : str or os.PathLike
        The pickle file (protocol 0 to 5).

    Returns
    -------
    object
        The unpickled object; shared references stay shared.

    Raises
    ------
    DatasetError
        Naming the file and the refused global, or what else was wrong.

    Examples
    --------
    >>> import pickle, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "meta"
    >>> _ = path.write_bytes(pickle.dumps({"label_names": ["cat", "dog"]}))
    >>> load_pickle(path)
    {'label_names': ['cat', 'dog']}
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{PREFIX}: cannot read pickle file {path}: {exc}") from exc
    try:
        return Machine(data).run(_DISPATCH)
    except Refused as exc:
        raise DatasetError(
            f"{PREFIX}: {path}: refused to unpickle, {exc}; a data pickle holds only dicts, "
            f"lists and numpy arrays, so this file is corrupt or was crafted"
        ) from exc
    except Exception as exc:  # malformed input: truncated, bad numbers, stack underflow...
        raise DatasetError(
            f"{PREFIX}: {path}: not a valid data pickle ({type(exc).__name__}: {exc})"
        ) from exc
