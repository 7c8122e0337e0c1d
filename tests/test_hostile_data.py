"""Hostile data-set files: each is refused with a DatasetError naming the file, quickly.

Crafted IDX files, CIFAR pickles and Tiny-ImageNet folders (issue 16, items 1, 2, 3, 5):
no input under 1 MB may cost more than 1 s (of CPU) or 100 MB before it is refused; random
bytes and random damage to valid files raise DatasetError and nothing else.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import pickle
import struct
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pathnet.data import DatasetError, load_dataset, load_pickle, read_idx
from tests.strategies import idx_bytes, profile, write_fashion
from tests.test_data import make_tiny


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


# ------------------------------------------------------------------ bounds
SECONDS = 1.0
MEGABYTES = 100.0


def bounded(call: Callable[[], Any], needle: str | None = None) -> Any:
    """Run ``call`` twice: timed (< 1 s of CPU), then under tracemalloc (peak < 100 MB).

    With ``needle`` the call must raise DatasetError matching it (returned); else its
    result is returned. CPU time (``time.process_time``) rather than wall time, so that a
    busy shared test machine does not fail the bound; wall time is reported alongside.
    """

    def once() -> Any:
        if needle is None:
            return call()
        with pytest.raises(DatasetError, match=needle) as info:
            call()
        return info.value

    wall, cpu = time.perf_counter(), time.process_time()
    result = once()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert cpu < SECONDS, f"took {cpu:.2f} s of CPU ({wall:.2f} s wall)"
    tracemalloc.start()
    try:
        once()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEGABYTES * 2**20, f"peak {peak / 2**20:.0f} MiB"
    return result


# ------------------------------------------------------------------ CIFAR pickles
def shared_tree(depth: int) -> list:
    x: list = []
    for _ in range(depth):
        x = [x, x]
    return x


def test_shared_reference_tree_loads_in_bounded_time(tmp_path):
    """Issue 16.1: 2^31 paths through 31 shared lists; the old check walked every one."""
    path = tmp_path / "tree"
    path.write_bytes(pickle.dumps(shared_tree(31), protocol=2))
    assert path.stat().st_size < 300
    tree = bounded(lambda: load_pickle(path))
    assert tree[0] is tree[1]  # shared references stay shared


@pytest.mark.parametrize("key", ["labels", "data"])
def test_shared_reference_tree_as_cifar_contents(tmp_path, key):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    batch[key.encode()] = shared_tree(31)
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    err = bounded(lambda: load_dataset("cifar10", "test", root=folder), "flat list of numbers")
    assert str(folder / "test_batch") in str(err)


def test_shared_tuple_as_dict_key_is_refused(tmp_path):
    """Hashing a key built from 31 shared tuples would visit 2^31 tuples."""
    t: tuple = ()
    for _ in range(31):
        t = (t, t)
    ops = pickle.dumps(t, protocol=2)[2:-1]  # the tuple's opcodes (building {t: 1} would hash t)
    path = tmp_path / "key"
    path.write_bytes(b"\x80\x02}" + ops + b"K\x01s.")
    assert path.stat().st_size < 300
    bounded(lambda: load_pickle(path), "dict keys and set members must be")


def long1(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


ALLOCATION_BOMBS = {
    # Issue 16.2: bytearray(2**31) from 31 bytes.
    "bytearray": b"c__builtin__\nbytearray\n" + long1(2**31) + b"\x85R.",
    # numpy.ndarray((2**31,)) called directly, by REDUCE and by NEWOBJ.
    "ndarray-reduce": b"\x80\x02cnumpy\nndarray\n" + long1(2**31) + b"\x85\x85R.",
    "ndarray-newobj": b"\x80\x02cnumpy\nndarray\n" + long1(2**31) + b"\x85\x85\x81.",
    # _reconstruct(ndarray, (2**31,), b"b"), then a state promising 2**31 bytes.
    "reconstruct": (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + long1(2**31)
        + b"\x85C\x01b\x87R(K\x01"
        + long1(2**31)
        + b"\x85cnumpy\ndtype\nX\x02\x00\x00\x00u1\x89\x88\x87R\x89C\x01\x00tb."
    ),
    # An object array: numpy's own setstate allocates the shape first (and can crash).
    "object-array": pickle.dumps(np.array([1, "a"], dtype=object), protocol=2),
    # Memo index 2**32 - 1: the C unpickler sizes its memo table from it.
    "memo": b"\x80\x02]r\xff\xff\xff\xff0N.",
    # A length prefix of 2**40 bytes.
    "binbytes8": b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc.",
    # 1 MB of one-byte opcodes, each allocating a container.
    "empty-sets": b"\x80\x04" + b"\x8f" * 1_000_000 + b".",
    "empty-dicts": b"\x80\x02" + b"}" * 1_000_000 + b".",
    "marks": b"\x80\x02" + b"(" * 1_000_000 + b".",
    # A dict whose 2,000 integer keys share one hash: quadratic insertion.
    "colliding-keys": b"\x80\x02}("
    + b"".join(long1(k * (2**61 - 1)) + b"N" for k in range(1, 2001))
    + b"u.",
    # A dtype whose state claims fields (numpy would trust the flags).
    "dtype-state": b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00V8\x89\x88\x87R"
    b"(K\x03X\x01\x00\x00\x00|N(X\x01\x00\x00\x00at}NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb.",
}


@pytest.mark.parametrize("name", sorted(ALLOCATION_BOMBS))
def test_allocation_bombs_are_refused(tmp_path, name):
    data = ALLOCATION_BOMBS[name]
    assert len(data) < 2**20
    path = tmp_path / name
    path.write_bytes(data)
    if name == "memo":  # harmless here: the memo is a dict
        assert bounded(lambda: load_pickle(path)) is None
        return
    err = bounded(lambda: load_pickle(path), "refused to unpickle|not a valid data pickle")
    assert str(path) in str(err)


def test_legacy_protocols_still_load(tmp_path):
    """Protocols 0 to 5, Python 2 strings and big-endian arrays keep working."""
    obj = {
        "a": [1, -2, 2**70, 1.5, None, True, "é", b"\x00\xff"],
        "b": (np.arange(6, dtype=">i4").reshape(2, 3), np.float32(2.5)),
        "c": np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)),
        "s": {1, 2},
        "f": frozenset({"x"}),
    }
    for protocol in range(6):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        got = load_pickle(path)
        assert got["a"] == obj["a"] and got["s"] == obj["s"] and got["f"] == obj["f"]
        np.testing.assert_array_equal(got["b"][0], obj["b"][0])
        assert got["b"][0].dtype == np.dtype(">i4") and got["b"][1] == np.float32(2.5)
        np.testing.assert_array_equal(got["c"], obj["c"])
        assert got["c"].flags.writeable
    # Python 2 cPickle: str is bytes under encoding="bytes", dtype('S', ...) sized by state
    py2 = (
        b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\n"
        b"ndarray\nq\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02\x85cnumpy\ndtype\nq\x05U\x02S3"
        b"K\x00K\x01\x87Rq\x06(K\x03U\x01|NNNK\x03K\x01K\x00tbK\x00U\x06abcdeftbu."
    )
    path = tmp_path / "py2"
    path.write_bytes(py2)
    np.testing.assert_array_equal(load_pickle(path)[b"data"], np.array([b"abc", b"def"]))


# ------------------------------------------------------------------ IDX files
def gzip_bomb(header: bytes, members: int = 60) -> bytes:
    """``header`` then ``members`` x 16 MiB of zeros, as concatenated gzip members (~1 MB)."""
    zeros = gzip.compress(bytes(16 << 20), compresslevel=9, mtime=0)
    return gzip.compress(header, mtime=0) + zeros * members


@pytest.mark.parametrize(
    ("declared", "needle"),
    [
        ((60 * (16 << 20),), "implausible IDX file"),  # declares the whole gigabyte
        ((10,), "oversized IDX file"),  # declares 10 bytes, holds a gigabyte
        ((16 << 20,), "oversized IDX file"),  # declares what is plausible, holds more
    ],
)
def test_idx_gzip_bomb_is_refused_while_streaming(tmp_path, declared, needle):
    """Issue 16.5: ~1 MB of gzip expanding to ~1 GB; the old reader inflated it all."""
    header = b"\x00\x00\x08" + bytes([len(declared)]) + struct.pack(">I", *declared)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(header))
    assert path.stat().st_size < 2**20
    err = bounded(lambda: read_idx(path), needle)
    assert str(path) in str(err)


@pytest.mark.parametrize("ndim", [33, 64, 255])
def test_idx_too_many_dimensions(tmp_path, ndim):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(
        b"\x00\x00\x08" + bytes([ndim]) + struct.pack(f">{ndim}I", *[1] * ndim) + b"\x07"
    )
    err = bounded(lambda: read_idx(path), f"declares {ndim} dimensions")
    assert str(path) in str(err)


def test_idx_huge_declared_shape_raw(tmp_path):
    """A raw file declaring 2^32 x 2^32 bytes is refused from its size, nothing allocated."""
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x02" + struct.pack(">2I", 2**32 - 1, 2**32 - 1) + b"\x00" * 9)
    bounded(lambda: read_idx(path), "truncated IDX file")


def test_idx_big_endian_types_stay_exact(tmp_path):
    for code, dtype in ((0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8"), (0x09, "i1")):
        arr = np.arange(-3, 3, dtype=dtype).reshape(2, 3)
        raw = bytes([0, 0, code, 2]) + struct.pack(">2I", 2, 3) + arr.tobytes()
        for name, data in (("raw", raw), ("gz", gzip.compress(raw))):
            path = tmp_path / name
            path.write_bytes(data)
            got = read_idx(path)
            assert got.dtype.isnative and got.flags.writeable
            np.testing.assert_array_equal(got, arr)


# ------------------------------------------------------------------ Tiny-ImageNet
@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    folder = tmp_path / "data" / "tiny-imagenet-200"
    make_tiny(folder)
    return folder


def outside_image(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    return path


@pytest.mark.parametrize("entry", ["../../../secret.JPEG", "ABSOLUTE", "images/../../x.JPEG"])
def test_tiny_val_annotations_cannot_leave_the_folder(tiny, tmp_path, entry):
    """Issue 16.3: '..' and absolute paths were opened and loaded as images."""
    secret = outside_image(tmp_path / "secret.JPEG")
    entry = str(secret) if entry == "ABSOLUTE" else entry
    ann = tiny / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + f"{entry}\tn01000001\t0\t0\t63\t63\n")
    err = bounded(lambda: load_dataset("tiny-imagenet", "test", root=tiny), "not a plain file name")
    assert f"{ann}, line 4" in str(err)


@pytest.mark.parametrize("wnid", ["ABSOLUTE", "../../outside"])
def test_tiny_wnids_cannot_leave_the_folder(tiny, tmp_path, wnid):
    outside = tmp_path / "outside"
    outside_image(outside / "images" / "x.JPEG")
    wnid = str(outside) if wnid == "ABSOLUTE" else wnid
    (tiny / "wnids.txt").write_text(f"n01000001\nn02000002\n{wnid}\n")
    err = bounded(
        lambda: load_dataset("tiny-imagenet", "train", root=tiny), "not a plain file name"
    )
    assert f"{tiny / 'wnids.txt'}, line 3" in str(err)


@pytest.mark.parametrize("name", ["wnids.txt", "val/val_annotations.txt"])
def test_tiny_non_utf8_text(tiny, name):
    path = tiny / name
    raw = path.read_bytes()
    path.write_bytes(raw + b"n0\xff\xfe\n")
    err = bounded(lambda: load_dataset("tiny-imagenet", "test", root=tiny), "not UTF-8")
    line = raw.count(b"\n") + 1
    assert f"{path}, line {line}:" in str(err)


def rewrite_cache(path: Path, **changes: np.ndarray) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    np.savez(path, **arrays)


def test_tiny_cache_is_validated_like_fresh_data(tiny):
    """Issue 16.3: a cache with the right fingerprint had its labels and shapes trusted."""
    fresh = load_dataset("tiny-imagenet", "train", root=tiny)
    cache = tiny / "pathnet-train.npz"
    n = len(fresh)
    bad_labels = np.full(n, 7, dtype=np.int64)
    bad_labels[0] = 99
    for change in (
        {"labels": bad_labels},  # out of range for 2 classes
        {"labels": fresh.labels.numpy()[::-1].copy()},  # in range, but not the folders'
        {"images": np.zeros((n, 8, 8, 3), np.uint8)},  # 8x8 images
        {"images": np.zeros((n, 64, 64, 3), np.float32)},  # wrong dtype
        {"images": np.zeros((n, 64, 64), np.uint8)},  # no channels
    ):
        rewrite_cache(cache, **change)
        again = load_dataset("tiny-imagenet", "train", root=tiny)
        assert torch.equal(again.labels, fresh.labels), change
        torch.testing.assert_close(again.images, fresh.images)
        with np.load(cache) as npz:  # rebuilt: the next load reads a valid cache
            np.testing.assert_array_equal(npz["labels"], fresh.labels.numpy())
            assert npz["images"].shape == (n, 64, 64, 3)


def test_tiny_cache_member_declaring_a_huge_shape(tiny):
    fresh = load_dataset("tiny-imagenet", "train", root=tiny)
    cache = tiny / "pathnet-train.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 64, 64, 3)}
    )
    with np.load(cache) as npz:
        arrays = {k: npz[k] for k in npz.files}
    with zipfile.ZipFile(cache, "w") as zf:
        zf.writestr("images.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\x00" * 100)
        for key in ("labels", "fingerprint"):
            buf = io.BytesIO()
            np.save(buf, arrays[key])
            zf.writestr(f"{key}.npy", buf.getvalue())
    again = bounded(lambda: load_dataset("tiny-imagenet", "train", root=tiny, cache=True))
    assert torch.equal(again.labels, fresh.labels)


# ------------------------------------------------------------------ property: random damage
def _valid_idx_files() -> list[bytes]:
    images = np.arange(2 * 5 * 4, dtype=np.uint8).reshape(2, 5, 4)
    ints = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    long = np.arange(1100, dtype=np.uint8)  # room for a header of up to 255 dimensions
    raw = [
        idx_bytes(images),
        idx_bytes(long),
        bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + ints.tobytes(),
    ]
    return raw + [gzip.compress(r, mtime=0) for r in raw]


def _valid_pickles() -> list[bytes]:
    batch = {
        b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072) % 251,
        b"labels": [3, 1],
        b"filenames": [b"a.png", "b.png"],
        "extra": (1.5, None, True, {1, 2}, np.float32(2.0), np.arange(3, dtype=">f8")),
    }
    return [pickle.dumps(batch, protocol=p) for p in range(6)]


VALID = {"idx": _valid_idx_files(), "pickle": _valid_pickles()}


@st.composite
def damaged(draw: st.DrawFn, kind: str) -> bytes:
    """Random bytes, or a valid file with a few random flips, insertions, cuts and splices."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=600))
    data = bytearray(draw(st.sampled_from(VALID[kind])))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "byte"]))
        if action == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "byte" and pos < len(data):
            data[pos] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, 0x85, 0x8A, 0x94, 0x95]))
        elif action == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif action == "truncate":
            del data[pos:]
    return bytes(data)


def only_dataset_errors(call: Callable[[], Any]) -> None:
    """``call`` may succeed or raise DatasetError, within the time and memory bounds."""
    tracemalloc.start()
    try:
        cpu = time.process_time()
        with contextlib.suppress(DatasetError):
            call()
        cpu = time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cpu < SECONDS, f"took {cpu:.2f} s of CPU"
    assert peak < MEGABYTES * 2**20, f"peak {peak / 2**20:.0f} MiB"


@profile(300)
@given(data=damaged("idx"))
def test_damaged_idx_files_raise_only_dataset_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train-images-idx3-ubyte"
        path.write_bytes(data)
        only_dataset_errors(lambda: read_idx(path))


@profile(300)
@given(data=damaged("pickle"))
def test_damaged_pickles_raise_only_dataset_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cifar-10-batches-py"
        folder.mkdir()
        (folder / "test_batch").write_bytes(data)
        only_dataset_errors(lambda: load_pickle(folder / "test_batch"))
        only_dataset_errors(lambda: load_dataset("cifar10", "test", root=folder))
