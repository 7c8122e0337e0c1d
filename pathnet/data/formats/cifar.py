"""CIFAR-10/100: a restricted unpickler that runs no code, and the loader of both data sets."""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathnet.data.dataset import Dataset, normalize
from pathnet.data.errors import PREFIX, DatasetError
from pathnet.data.registry import (
    CIFAR10_CLASSES,
    INPUT_SHAPE,
    MEAN_STD,
    NUM_CLASSES,
    required_files,
)

__all__ = ["load_cifar", "load_pickle"]


def _numpy_attr(modules: Sequence[str], name: str) -> Any:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"{PREFIX}: numpy provides none of {[m + '.' + name for m in modules]}")


class _Refused(pickle.UnpicklingError):
    """A pickle asked for something the restricted unpickler does not allow."""


def _check_dtype(dtype: Any, what: str) -> np.dtype[Any]:
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise _Refused(f"{what}: object arrays are not allowed")
    return dt


class _SafeCallable:
    """An allowed pickle global; refuses BUILD so its state cannot be tampered with."""

    __slots__ = ("_fn", "_qualname")

    def __init__(self, qualname: str, fn: Callable[..., Any]) -> None:
        self._qualname = qualname
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"refusing to set the state of {self._qualname}")

    def __reduce__(self) -> Any:
        raise TypeError(f"{self._qualname} cannot be pickled")


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    if subtype is not np.ndarray:
        raise _Refused("numpy _reconstruct: only plain numpy.ndarray is allowed")
    fn = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    return fn(np.ndarray, shape, dtype)


def _safe_dtype(*args: Any, **kwargs: Any) -> np.dtype[Any]:
    return _check_dtype(np.dtype(*args, **kwargs), "numpy.dtype")


def _safe_scalar(dtype: Any, *args: Any) -> Any:
    fn = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "scalar")
    return fn(_check_dtype(dtype, "numpy scalar"), *args)


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
    fn = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    return fn(buf, _check_dtype(dtype, "numpy _frombuffer"), shape, order)


def _safe_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") in pickle protocols < 3.
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in (
        "latin1",
        "latin-1",
        "iso-8859-1",
    ):
        raise _Refused("_codecs.encode: only str -> latin1 is allowed")
    return obj.encode("latin-1", errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        table[mod, "_reconstruct"] = _SafeCallable(f"{mod}._reconstruct", _safe_reconstruct)
        table[mod, "scalar"] = _SafeCallable(f"{mod}.scalar", _safe_scalar)
    for mod in ("numpy._core.numeric", "numpy.core.numeric"):
        table[mod, "_frombuffer"] = _SafeCallable(f"{mod}._frombuffer", _safe_frombuffer)
    table["numpy", "ndarray"] = np.ndarray
    table["numpy", "dtype"] = _SafeCallable("numpy.dtype", _safe_dtype)
    table["_codecs", "encode"] = _SafeCallable("_codecs.encode", _safe_codecs_encode)
    for mod in ("builtins", "__builtin__"):
        for name, fn in (("bytearray", bytearray), ("set", set), ("frozenset", frozenset)):
            table[mod, name] = _SafeCallable(f"builtins.{name}", fn)
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy-array reconstruction globals."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[module, name]
        except KeyError:
            raise _Refused(f"global {module}.{name} is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed")


_PLAIN_TYPES = (bytes, str, int, float, bool, complex, type(None), np.generic, np.dtype)


def _check_plain(obj: Any, depth: int = 0) -> None:
    if depth > 32:
        raise _Refused("nesting deeper than 32 levels")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise _Refused("object arrays are not allowed")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, depth + 1)
            _check_plain(value, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            _check_plain(value, depth + 1)
    elif not isinstance(obj, (*_PLAIN_TYPES, bytearray)):
        raise _Refused(f"unexpected object of type {type(obj).__name__}")


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a data pickle without executing code from it.

    Only plain containers, numbers, strings, bytes and numpy arrays of non-object dtype
    can come out: the unpickler resolves no global but the numpy array-reconstruction
    functions (``numpy[._]core.multiarray._reconstruct``, ``numpy.ndarray``,
    ``numpy.dtype``, ...), so a crafted pickle cannot call ``os.system``, ``eval`` or any
    other function. Strings written by Python 2 come back as ``bytes``
    (``encoding="bytes"``), as in the official CIFAR instructions.

    Parameters
    ----------
    path : str or os.PathLike
        The pickle file.

    Returns
    -------
    object
        The unpickled object.

    Raises
    ------
    DatasetError
        Naming the file and the refused global, or what else was wrong.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="bytes").load()
        _check_plain(obj)
    except OSError as exc:
        raise DatasetError(f"{PREFIX}: cannot read pickle file {path}: {exc}") from exc
    except _Refused as exc:
        raise DatasetError(
            f"{PREFIX}: {path}: refused to unpickle, {exc}; a data pickle holds only dicts, "
            f"lists and numpy arrays, so this file is corrupt or was crafted"
        ) from exc
    except Exception as exc:  # anything else the unpickler or numpy raise on bad input
        raise DatasetError(
            f"{PREFIX}: {path}: not a valid data pickle ({type(exc).__name__}: {exc})"
        ) from exc
    return obj


def _get(d: Mapping[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetError(
        f"{PREFIX}: {path}: missing key {key!r}; found keys "
        f"{sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)}"
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
        data = np.asarray(_get(batch, "data", path))
        lab = np.asarray(_get(batch, label_key, path))
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
