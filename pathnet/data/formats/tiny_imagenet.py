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

import numpy as np
import torch

from pathnet._io import atomic_write_bytes
from pathnet.data.dataset import Dataset, normalize
from pathnet.data.errors import PREFIX, DatasetError
from pathnet.data.registry import MEAN_STD, user_cache_dir

__all__ = ["load_tiny_imagenet"]

_log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def _tiny_listing(folder: Path, split: str) -> tuple[list[str], list[Path], np.ndarray]:
    """Class ids (sorted), image files and labels of a Tiny-ImageNet split."""
    wnids_path = folder / "wnids.txt"
    wnids = sorted({line.strip() for line in wnids_path.read_text().splitlines() if line.strip()})
    if not wnids:
        raise DatasetError(f"{PREFIX}: {wnids_path}: no class ids")
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            img_dir = folder / "train" / wnid / "images"
            if not img_dir.is_dir():
                raise DatasetError(
                    f"{PREFIX}: {img_dir}: missing; every class of {wnids_path} needs "
                    f"train/<wnid>/images/"
                )
            names = sorted(p.name for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            files.extend(img_dir / n for n in names)
            labels.extend([index[wnid]] * len(names))
    else:
        ann = folder / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise DatasetError(f"{PREFIX}: {ann}: missing (needed for the labels of val/images)")
        for lineno, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1].strip() not in index:
                raise DatasetError(
                    f"{PREFIX}: {ann}, line {lineno}: expected '<file>\\t<wnid>...' with a wnid "
                    f"of wnids.txt, got {line!r}"
                )
            files.append(folder / "val" / "images" / parts[0].strip())
            labels.append(index[parts[1].strip()])
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


def _decode_images(files: Sequence[Path], size: int = 64) -> np.ndarray:
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
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"{PREFIX}: cannot decode image {path}: {exc}") from exc
        if arr.shape != (size, size, 3):
            raise DatasetError(
                f"{PREFIX}: {path}: expected a {size}x{size} image, got "
                f"{arr.shape[1]}x{arr.shape[0]}"
            )
        out[i] = arr

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(decode, range(len(files)), chunksize=256):
            pass
    return out


def _cache_paths(folder: Path, split: str) -> list[Path]:
    name = f"pathnet-{split}.npz"
    return [folder / name, user_cache_dir() / "tiny-imagenet-200" / name]


def _read_cache(path: Path, fingerprint: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["fingerprint"]) != fingerprint:
                _log.info("%s: stale cache %s, rebuilding", PREFIX, path)
                return None
            return npz["images"], npz["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        _log.warning("%s: ignoring unreadable cache %s (%s)", PREFIX, path, exc)
        return None


def _write_cache(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    # Peak memory: the uint8 pixels three times, still below the float32 Dataset built next.
    atomic_write_bytes(path, buf.getvalue())


def load_tiny_imagenet(folder: Path, split: str, cache: bool) -> Dataset:
    wnids, files, labels = _tiny_listing(folder, split)
    fingerprint = _fingerprint(wnids, files, labels)
    pixels = None
    if cache:
        for path in _cache_paths(folder, split):
            hit = _read_cache(path, fingerprint)
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
