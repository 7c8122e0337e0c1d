"""Hostile data-set files: each is refused with a DatasetError naming the file, quickly.

Crafted IDX files, CIFAR pickles and Tiny-ImageNet folders (issue 16, items 1, 2, 3, 5):
no input under 1 MB may cost more than 1 s or 100 MB before it is refused.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from pathnet.data import DatasetError, load_dataset, read_idx
from tests.strategies import idx_bytes, write_fashion


def listing(folder: Path) -> list[str]:
    """Every name under ``folder`` (hidden temporary files included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------ data files
@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("truncate", r"truncated IDX file: the header declares shape \(20, 28, 28\)"),
        ("header", "truncated IDX header"),
        ("magic", "bad IDX magic number 0x01020803"),
        ("gzip", "corrupt or truncated gzip stream"),
        ("count", "label/image count mismatch"),
        ("label", r"label 12 out of range, expected 0\.\.9"),
    ],
)
def test_corrupt_dataset_files(tmp_path, damage, needle):
    folder = write_fashion(tmp_path / "fashion-mnist", 20, gz=False)
    images = folder / "train-images-idx3-ubyte"
    labels = folder / "train-labels-idx1-ubyte"
    raw = images.read_bytes()
    if damage == "truncate":
        images.write_bytes(raw[:-100])
    elif damage == "header":
        images.write_bytes(raw[:9])
    elif damage == "magic":
        images.write_bytes(b"\x01\x02" + raw[2:])
    elif damage == "gzip":
        images.unlink()
        images = folder / "train-images-idx3-ubyte.gz"
        images.write_bytes(gzip.compress(raw)[:-30])
    elif damage == "count":
        labels.write_bytes(idx_bytes(np.zeros(19, np.uint8)))
    else:
        labels.write_bytes(idx_bytes(np.full(20, 12, np.uint8)))
    before = listing(tmp_path)
    with pytest.raises(DatasetError, match=needle) as info:
        load_dataset("fashion-mnist", "train", root=tmp_path)
    assert str(folder) in str(info.value)
    assert listing(tmp_path) == before
    if damage in ("truncate", "magic"):
        with pytest.raises(DatasetError, match=str(images)):
            read_idx(images)
