"""Mask files: bit-packed ``.npz`` with a JSON header, read without unpickling."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pathnet._io import atomic_write_bytes

if TYPE_CHECKING:
    from pathnet.mask.core import Mask

__all__ = ["MaskFileError", "read_mask", "write_mask"]

_FORMAT = "pathnet-mask"
_VERSION = 1


class MaskFileError(ValueError):
    """A mask file that cannot be read: truncated, foreign, or not a pathnet mask."""


def write_mask(
    path: str | os.PathLike[str], masks: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> Path:
    """Write ``masks`` bit-packed into a ``.npz`` with a JSON header, atomically."""
    buf = io.BytesIO()
    header = {
        "format": _FORMAT,
        "version": _VERSION,
        "params": {k: list(v.shape) for k, v in masks.items()},
        "meta": dict(meta),
    }
    arrays = {f"param{k}": np.packbits(v.numpy().ravel()) for k, v in enumerate(masks.values())}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return atomic_write_bytes(path, buf.getvalue())


def read_mask(path: str | os.PathLike[str], cls: type[Mask]) -> Mask:
    """Read a mask file written by :func:`write_mask` as a ``cls`` instance."""
    path = Path(path)
    if not path.is_file():
        raise MaskFileError(f"pathnet.Mask.load: no such file {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(bytes(npz["header"]).decode())
            if not isinstance(header, dict) or header.get("format") != _FORMAT:
                raise MaskFileError(f"pathnet.Mask.load: {str(path)!r} is not a pathnet mask file")
            if int(header.get("version", -1)) > _VERSION:
                raise MaskFileError(
                    f"pathnet.Mask.load: {str(path)!r} has format version "
                    f"{header['version']}; this pathnet reads up to {_VERSION}"
                )
            params, meta = header.get("params"), header.get("meta") or {}
            if not isinstance(params, dict) or not isinstance(meta, dict):
                raise MaskFileError(
                    f"pathnet.Mask.load: {str(path)!r} has a damaged header: expected "
                    "'params' and 'meta' to be JSON objects"
                )
            masks = {}
            for k, (name, shape) in enumerate(params.items()):
                if not isinstance(shape, list) or not all(
                    isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
                ):
                    raise MaskFileError(
                        f"pathnet.Mask.load: entry for {name!r} in {str(path)!r} has shape "
                        f"{shape!r}; expected a list of non-negative integers"
                    )
                packed = npz[f"param{k}"]
                if packed.dtype != np.uint8:
                    raise MaskFileError(
                        f"pathnet.Mask.load: entry for {name!r} in {str(path)!r} has "
                        f"dtype {packed.dtype}, expected packed uint8 bits"
                    )
                n = int(np.prod(shape, dtype=np.int64))
                if packed.size != (n + 7) // 8:
                    raise MaskFileError(
                        f"pathnet.Mask.load: entry for {name!r} in {str(path)!r} holds "
                        f"{packed.size} bytes, expected {(n + 7) // 8} for shape {shape}"
                    )
                bits = np.unpackbits(packed.ravel(), count=n).astype(bool)
                masks[name] = torch.from_numpy(bits.reshape(shape))
            mask = cls(masks, meta=meta)
    except MaskFileError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        EOFError,
        zipfile.BadZipFile,
        json.JSONDecodeError,
        UnicodeDecodeError,
    ) as exc:
        raise MaskFileError(
            f"pathnet.Mask.load: cannot read {str(path)!r} as a pathnet mask "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return mask
