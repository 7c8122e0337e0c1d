"""Tiny-ImageNet: listing its folders, decoding its JPEG files, caching the decoded arrays."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathnet._io import atomic_write_bytes
from pathnet.data.dataset import Dataset, normalize
from pathnet.data.errors import PREFIX, DatasetError
from pathnet.data.registry import MEAN_STD, user_cache_dir

__all__ = ["load_tiny_imagenet"]

_log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_SIZE = 64


def _lines(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of a UTF-8 text file, numbered from 1, stripped."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"{PREFIX}: {path}, line {line}: not UTF-8 text ({exc.reason})") from exc
    numbered = enumerate(text.splitlines(), 1)
    return [(n, line.strip()) for n, line in numbered if line.strip()]


def _plain_name(name: str, path: Path, lineno: int) -> str:
    """``name`` if it is one plain path component; it is joined to a folder of the data set.

    Anything else (``..``, an absolute path, a separator) would open a file outside the
    data-set folder.
    """
    if (
        name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or os.path.isabs(name)
        or (len(name) > 1 and name[1] == ":")
    ):
        raise DatasetError(
            f"{PREFIX}: {path}, line {lineno}: {name[:200]!r} is not a plain file name; "
            f"entries must name files inside the data-set folder"
        )
    return name


def _train_listing(
    folder: Path, wnids: list[str], wnids_path: Path
) -> tuple[list[Path], list[int]]:
    files: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        img_dir = folder / "train" / wnid / "images"
        if not img_dir.is_dir():
            raise DatasetError(
                f"{PREFIX}: {img_dir}: missing; every class of {wnids_path} needs "
                f"train/<wnid>/images/"
            )
        names = sorted(p.name for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        files.extend(img_dir / n for n in names)
        labels.extend([label] * len(names))
    return files, labels


def _val_listing(folder: Path, index: dict[str, int]) -> tuple[list[Path], list[int]]:
    ann = folder / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DatasetError(f"{PREFIX}: {ann}: missing (needed for the labels of val/images)")
    files: list[Path] = []
    labels: list[int] = []
    for lineno, line in _lines(ann):
        parts = line.split("\t")
        if len(parts) < 2 or parts[1].strip() not in index:
            raise DatasetError(
                f"{PREFIX}: {ann}, line {lineno}: expected '<file>\\t<wnid>...' with a wnid "
                f"of wnids.txt, got {line[:200]!r}"
            )
        name = _plain_name(parts[0].strip(), ann, lineno)
        files.append(folder / "val" / "images" / name)
        labels.append(index[parts[1].strip()])
    return files, labels


def _tiny_listing(folder: Path, split: str) -> tuple[list[str], list[Path], np.ndarray]:
    """Class ids (sorted), image files and labels of a Tiny-ImageNet split.

    Every name read from ``wnids.txt`` or ``val_annotations.txt`` must be a plain file
    name, so no file outside ``folder`` is ever opened.
    """
    wnids_path = folder / "wnids.txt"
    seen: dict[str, int] = {}
    for lineno, wnid in _lines(wnids_path):
        seen.setdefault(_plain_name(wnid, wnids_path, lineno), lineno)
    wnids = sorted(seen)
    if not wnids:
        raise DatasetError(f"{PREFIX}: {wnids_path}: no class ids")
    if split == "train":
        files, labels = _train_listing(folder, wnids, wnids_path)
    else:
        files, labels = _val_listing(folder, {w: i for i, w in enumerate(wnids)})
    if not files:
        raise DatasetError(f"{PREFIX}: {folder}: no images for the {split} split")
    return wnids, files, np.asarray(labels, dtype=np.int64)


def _fingerprint(wnids: Sequence[str], files: Sequence[Path], labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update("\n".join(wnids).encode())
    h.update(labels.tobytes())
    for path in files:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DatasetError(f"{PREFIX}: cannot read image {path}: {exc}") from exc
        h.update(f"\n{path.name}:{size}".encode())
    return h.hexdigest()


def _decode_images(files: Sequence[Path], size: int = _SIZE) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow comes with matplotlib
        raise ImportError(
            f"{PREFIX}: decoding Tiny-ImageNet needs Pillow (pip install pillow)"
        ) from exc
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)

    def decode(i: int) -> None:
        path = files[i]
        try:
            with Image.open(path) as im:
                if im.size != (size, size):  # checked from the header, before decoding
                    raise DatasetError(
                        f"{PREFIX}: {path}: expected a {size}x{size} image, got "
                        f"{im.size[0]}x{im.size[1]}"
                    )
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            if isinstance(exc, DatasetError):
                raise
            raise DatasetError(f"{PREFIX}: cannot decode image {path}: {exc}") from exc
        out[i] = arr

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(decode, range(len(files)), chunksize=256):
            pass
    return out


def _cache_paths(folder: Path, split: str) -> list[Path]:
    name = f"pathnet-{split}.npz"
    return [folder / name, user_cache_dir() / "tiny-imagenet-200" / name]


def _member_header(zf: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype of an ``.npy`` member, from its header alone."""
    with zf.open(name) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(fh)
        return np.lib.format.read_array_header_2_0(fh)


def _check_cache(zf: zipfile.ZipFile, n: int) -> None:
    """Refuse (ValueError) a cache whose arrays are not what ``n`` decoded images make.

    Only the ``.npy`` headers are read, so a member declaring a huge shape costs nothing.
    """
    expected = {
        "images.npy": ((n, _SIZE, _SIZE, 3), np.dtype(np.uint8)),
        "labels.npy": ((n,), np.dtype(np.int64)),
        "fingerprint.npy": ((), np.dtype("<U64")),
    }
    names = set(zf.namelist())
    for member, (shape, dtype) in expected.items():
        if member not in names:
            raise ValueError(f"no {member}")
        got_shape, fortran, got_dtype = _member_header(zf, member)
        if got_shape != shape or fortran or got_dtype != dtype:
            raise ValueError(f"{member} holds {got_dtype} {got_shape}, expected {dtype} {shape}")


def _read_cache(
    path: Path, fingerprint: str, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached pixels and labels, or None when the cache is missing, stale or invalid.

    A cache is validated like fresh data: image shape and dtype, and labels equal to those
    of the listing (so within range); anything else is logged and rebuilt.
    """
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            _check_cache(zf, len(labels))
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["fingerprint"]) != fingerprint:
                _log.info("%s: stale cache %s, rebuilding", PREFIX, path)
                return None
            images, cached = npz["images"], npz["labels"]
        if not np.array_equal(cached, labels):
            raise ValueError("its labels differ from those of the image folders")
        return images, labels
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        _log.warning("%s: ignoring invalid cache %s (%s), rebuilding", PREFIX, path, exc)
        return None


def _write_cache(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    # Peak memory: the uint8 pixels three times, still below the float32 Dataset built next.
    atomic_write_bytes(path, buf.getvalue())


def load_tiny_imagenet(folder: Path, split: str, cache: bool) -> Dataset:
    """One split of the Tiny-ImageNet folder ``folder`` (``"test"`` is ``val/``).

    With ``cache``, decoded pixels are read from and written to ``pathnet-<split>.npz``
    in ``folder`` (or the user cache where ``folder`` is read-only).
    """
    wnids, files, labels = _tiny_listing(folder, split)
    fingerprint = _fingerprint(wnids, files, labels)
    pixels = None
    if cache:
        for path in _cache_paths(folder, split):
            hit = _read_cache(path, fingerprint, labels)
            if hit is not None:
                pixels, labels = hit
                break
    if pixels is None:
        pixels = _decode_images(files)
        if cache:
            for path in _cache_paths(folder, split):
                try:
                    _write_cache(
                        path, images=pixels, labels=labels, fingerprint=np.array(fingerprint)
                    )
                    break
                except OSError as exc:
                    _log.info("%s: cannot write cache %s (%s)", PREFIX, path, exc)
    mean, std = MEAN_STD["tiny-imagenet"]
    return Dataset(
        images=normalize(pixels.transpose(0, 3, 1, 2), mean, std),
        labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
        num_classes=len(wnids),
        name="tiny-imagenet",
        split=split,
        input_shape=(3, int(pixels.shape[1]), int(pixels.shape[2])),
        mean=mean,
        std=std,
        classes=tuple(wnids),
    )
