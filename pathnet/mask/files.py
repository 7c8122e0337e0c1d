"""Mask files, read without unpickling and within bounded time and memory.

Two forms, chosen by the suffix when writing and by the content when reading:

- ``.npz`` (any suffix but ``.pt``/``.pth``): pathnet's own form, a zip of
  ``header.npy`` (JSON: format, version, parameter shapes, ``meta``) and one
  bit-packed ``param<k>.npy`` per parameter. It keeps ``meta``.
- ``.pt``/``.pth``: a plain ``dict[str, torch.BoolTensor]`` written with
  ``torch.save``, which anyone can read with ``torch.load(path, weights_only=True)``.
  It holds the masks only: ``meta`` is not kept.

Reading a hostile file costs bounded time and memory: sizes declared in the
zip directory and in the header are checked against plausible bounds before
anything is expanded, and every member is read through a bounded stream (a zip
directory's sizes are the writer's word, not a guarantee).
"""

from __future__ import annotations

import io
import json
import lzma
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pathnet._io import atomic_write_bytes, check_header

if TYPE_CHECKING:
    from pathnet.mask.core import Mask

__all__ = ["MaskFileError", "element_limit", "read_mask", "write_mask"]

_FORMAT = "pathnet-mask"
_VERSION = 1
#: Largest JSON header read or written, in bytes.
HEADER_LIMIT = 1 << 20
#: Mask elements any file may hold, whatever its size (64 Mi: VGG19 has 20 Mi weights) ...
MIN_ELEMENTS = 1 << 26
#: ... and per byte of file beyond that (bit-packed masks compress about 1-20x).
ELEMENTS_PER_BYTE = 64
#: Room for a ``.npy`` member's own header (numpy refuses headers over 10,000 bytes).
_NPY_OVERHEAD = 1 << 16
_MAX_DIMS = 16
_TORCH_SUFFIXES = (".pt", ".pth")
_P = "pathnet.Mask.load"
#: What reading a damaged zip may raise (zipfile, zlib, lzma, bz2, json, numpy headers).
_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    OverflowError,
    NotImplementedError,
    RuntimeError,  # encrypted members; RecursionError from deeply nested JSON
    struct.error,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
)


class MaskFileError(ValueError):
    """A mask file that cannot be read: truncated, foreign, damaged, or implausibly large."""


def element_limit(file_size: int, model_elements: int = 0) -> int:
    """How many mask elements a file of ``file_size`` bytes may hold when read.

    ``max(MIN_ELEMENTS, ELEMENTS_PER_BYTE * file_size, model_elements)``: a crafted
    file of 1 MB cannot make the reader allocate more than about 70 MB, and a mask
    checked against a model may always be as large as the model.

    >>> element_limit(1000) == MIN_ELEMENTS, element_limit(10**7) == 64 * 10**7
    (True, True)
    """
    return max(MIN_ELEMENTS, ELEMENTS_PER_BYTE * int(file_size), int(model_elements))


def write_mask(
    path: str | os.PathLike[str],
    masks: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    tied: Sequence[Sequence[str]] = (),
) -> Path:
    """Write ``masks`` atomically: torch form for ``.pt``/``.pth``, bit-packed ``.npz`` else."""
    buf = io.BytesIO()
    if Path(path).suffix.lower() in _TORCH_SUFFIXES:
        torch.save({k: v.clone() for k, v in masks.items()}, buf)
        return atomic_write_bytes(path, buf.getvalue())
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "params": {k: list(v.shape) for k, v in masks.items()},
        "meta": dict(meta),
    }
    if tied:
        header["tied"] = [list(group) for group in tied]
    raw = json.dumps(header).encode()
    if len(raw) > HEADER_LIMIT:
        raise ValueError(
            f"pathnet.Mask.save: the header (names, shapes and meta) takes {len(raw):,} bytes; "
            f"at most {HEADER_LIMIT:,} are allowed: keep meta small"
        )
    arrays = {f"param{k}": np.packbits(v.numpy().ravel()) for k, v in enumerate(masks.values())}
    arrays["header"] = np.frombuffer(raw, dtype=np.uint8)
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return atomic_write_bytes(path, buf.getvalue())


def read_mask(path: str | os.PathLike[str], cls: type[Mask], model_elements: int = 0) -> Mask:
    """Read a mask file in either form as a ``cls`` instance (see the module docstring)."""
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise MaskFileError(f"pathnet.Mask.load: no such file {str(path)!r}")
    try:
        limit = element_limit(path.stat().st_size, model_elements)
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            tied: list[list[str]] = []
            if "header.npy" in names:
                masks, meta, tied = _read_npz(zf, where, limit)
            elif any(n.endswith("/data.pkl") for n in names):
                masks, meta = _read_torch(path, zf, where, limit), {}
            else:
                raise MaskFileError(f"{_P}: {where} is not a pathnet mask file (no header)")
            return cls(masks, meta=meta, tied=tied)
    except MaskFileError:
        raise
    except _READ_ERRORS as exc:
        raise MaskFileError(
            f"pathnet.Mask.load: cannot read {str(path)!r} as a pathnet mask "
            f"({type(exc).__name__}: {_one_line(exc)})"
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, where: str) -> bytes:
    """Member ``name``, refused if it declares or expands to more than ``limit`` bytes."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise MaskFileError(f"{_P}: {where} has no member {name!r}") from None
    if info.file_size > limit:
        raise MaskFileError(
            f"{_P}: {where}: member {name!r} declares {info.file_size:,} bytes, "
            f"more than the {limit:,} its header allows"
        )
    with zf.open(info) as fh:
        data = fh.read(limit + 1)  # bounded: the declared size may be a lie
    if len(data) > limit:
        raise MaskFileError(f"{_P}: {where}: member {name!r} expands beyond {limit:,} bytes")
    return data


def _npy(data: bytes, member: str, where: str) -> tuple[np.dtype[Any], int, memoryview]:
    """dtype, element count and payload of a ``.npy`` file's bytes, without building it."""
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(buf)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(buf)
    else:
        raise MaskFileError(f"{_P}: {where}: member {member!r} has .npy version {version}")
    count = math.prod(int(s) for s in shape)
    return dtype, count, memoryview(data)[buf.tell() :]


def _uint8_payload(
    data: bytes, member: str, where: str, entry: str, expected: int, shape: Any
) -> np.ndarray:
    dtype, count, body = _npy(data, member, where)
    if dtype != np.uint8:
        raise MaskFileError(
            f"{_P}: entry for {entry!r} in {where} has dtype {dtype}, expected packed uint8 bits"
        )
    if expected >= 0 and count != expected:
        raise MaskFileError(
            f"{_P}: entry for {entry!r} in {where} holds {count} bytes, "
            f"expected {expected} for shape {shape}"
        )
    if len(body) != count:
        raise MaskFileError(
            f"{_P}: {where}: member {member!r} is truncated ({len(body)} of {count} bytes)"
        )
    return np.frombuffer(body, dtype=np.uint8, count=count)


def _read_npz(
    zf: zipfile.ZipFile, where: str, limit: int
) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[list[str]]]:
    raw = _uint8_payload(
        _read_member(zf, "header.npy", HEADER_LIMIT + _NPY_OVERHEAD, where),
        "header.npy", where, "header", -1, None,
    )  # fmt: skip
    header = json.loads(raw.tobytes().decode())
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise MaskFileError(f"{_P}: {where} is not a pathnet mask file")
    check_header(
        header, format=_FORMAT, version=_VERSION, what=f"{_P}: {where}", error=MaskFileError
    )
    params, meta = header.get("params"), header.get("meta") or {}
    if not isinstance(params, dict) or not isinstance(meta, dict):
        raise MaskFileError(
            f"{_P}: {where} has a damaged header: expected 'params' and 'meta' to be JSON objects"
        )
    tied = header.get("tied", [])
    if not isinstance(tied, list) or not all(
        isinstance(g, list) and all(isinstance(n, str) for n in g) for g in tied
    ):
        raise MaskFileError(
            f"{_P}: {where} has a damaged header: 'tied' must be a list of lists of names"
        )
    sizes = {name: _checked_size(name, shape, where) for name, shape in params.items()}
    total = sum(sizes.values())
    if total > limit:
        raise MaskFileError(
            f"{_P}: {where} declares {total:,} mask elements; at most {limit:,} are read from a file "
            "of its size (pass model=... to allow as many as the model has)"
        )
    masks = {}
    for k, (name, n) in enumerate(sizes.items()):
        member = f"param{k}.npy"
        data = _read_member(zf, member, (n + 7) // 8 + _NPY_OVERHEAD, where)
        packed = _uint8_payload(data, member, where, name, (n + 7) // 8, params[name])
        bits = np.unpackbits(packed, count=n).view(np.bool_)
        masks[name] = torch.from_numpy(bits.reshape(params[name]))
    return masks, meta, tied


def _checked_size(name: str, shape: Any, where: str) -> int:
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_DIMS
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise MaskFileError(
            f"{_P}: entry for {name!r} in {where} has shape {shape!r}; "
            f"expected a list of at most {_MAX_DIMS} non-negative integers"
        )
    return math.prod(shape)


def _read_torch(path: Path, zf: zipfile.ZipFile, where: str, limit: int) -> dict[str, torch.Tensor]:
    """A ``torch.save``'d dict of 0/1 tensors, loaded with ``weights_only=True``."""
    from pathnet.mask.core import as_bool_mask

    for info in zf.infolist():  # what torch writes: stored members, so sizes are real
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise MaskFileError(
                f"{_P}: {where}: member {info.filename!r} is compressed; torch.save stores "
                "its members"
            )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MaskFileError(
            f"{_P}: cannot read {where} as a torch mask file "
            f"({type(exc).__name__}: {_one_line(exc)})"
        ) from exc
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise MaskFileError(
            f"{_P}: {where} holds a {type(obj).__name__}, not a dict of parameter name -> tensor"
        )
    total = 0
    for name, t in obj.items():
        if t.layout != torch.strided or t.numel() * t.element_size() > t.untyped_storage().nbytes():
            raise MaskFileError(
                f"{_P}: entry for {name!r} in {where} is not a dense tensor with its own data "
                f"(layout {t.layout}, {t.numel():,} elements)"
            )
        total += t.numel()
    if total > limit:
        raise MaskFileError(f"{_P}: {where} holds {total:,} mask elements; at most {limit:,}")
    try:
        return {name: as_bool_mask(name, t) for name, t in obj.items()}
    except ValueError as exc:
        raise MaskFileError(f"{_P}: {where}: {exc}") from exc
