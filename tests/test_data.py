"""Tests of pathnet.data on tiny files written in each real format.

Nothing here reaches the network: downloads are served by a ``ThreadingHTTPServer`` on
127.0.0.1, and ``socket.connect`` is guarded so that any other address fails the test.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pathnet import data as D
from pathnet.data import (
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    load_dataset,
    load_pickle,
    loader,
    normalize,
    random_crop_flip,
    read_idx,
    registry,
    subset_per_class,
)
from pathnet.data.formats import tiny_imagenet

# --------------------------------------------------------------------------------------
# Fixtures and file writers.
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user cache, no PATHNET_DATA, no system folders, no proxies, loopback only."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for var in ("PATHNET_DATA", "PATHNET_DATA_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(registry, "SYSTEM_DATA_DIRS", [tmp_path / "system"])

    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        assert host in ("127.0.0.1", "::1", "localhost"), f"test tried to reach {address}"
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    raw = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def mnist_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def make_mnist(folder: Path, gz_train: bool = True, gz_test: bool = False) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n, gz in (("train", 20, gz_train), ("t10k", 10, gz_test)):
        images, labels = mnist_arrays(n, seed=len(prefix))
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
        out[prefix] = (images, labels)
    return out


def cifar_rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def dump(path: Path, obj: object, protocol: int = 2) -> None:
    with path.open("wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def make_cifar10(folder: Path, per_batch: int = 2) -> dict:
    """Python-2 style: bytes keys, like the official files loaded with encoding='bytes'."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict = {"train": ([], []), "test": None}
    for i in range(1, 6):
        rows = cifar_rows(per_batch, seed=i)
        labels = [(i + j) % 10 for j in range(per_batch)]
        dump(
            folder / f"data_batch_{i}",
            {b"batch_label": b"training batch", b"labels": labels, b"data": rows},
        )
        out["train"][0].append(rows)
        out["train"][1].extend(labels)
    rows = cifar_rows(3, seed=99)
    rows[0, :1024] = 255  # red channel white, green and blue black
    rows[0, 1024:] = 0
    dump(folder / "test_batch", {b"labels": [3, 1, 4], b"data": rows})
    out["test"] = (rows, [3, 1, 4])
    names = [n.encode() for n in registry.CIFAR10_CLASSES]
    dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return out


def make_cifar100(folder: Path) -> dict:
    """Python-3 style: str keys, fine and coarse labels."""
    folder.mkdir(parents=True, exist_ok=True)
    train, test = cifar_rows(4, seed=5), cifar_rows(2, seed=6)
    dump(folder / "train", {"data": train, "fine_labels": [0, 99, 50, 7], "coarse_labels": [0] * 4})
    dump(folder / "test", {"data": test, "fine_labels": [42, 1], "coarse_labels": [1, 1]})
    dump(
        folder / "meta",
        {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": ["x"] * 20},
    )
    return {"train": (train, [0, 99, 50, 7]), "test": (test, [42, 1])}


TINY_WNIDS = ["n02000002", "n01000001"]  # deliberately unsorted in wnids.txt
TINY_COLOURS = {"n01000001": (250, 10, 10), "n02000002": (10, 10, 250)}


def make_tiny(folder: Path) -> None:
    from PIL import Image

    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    for wnid in TINY_WNIDS:
        img_dir = folder / "train" / wnid / "images"
        img_dir.mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (64, 64), TINY_COLOURS[wnid]).save(
                img_dir / f"{wnid}_{k}.JPEG", quality=95
            )
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    # a grayscale image, as Tiny-ImageNet has a few
    Image.new("L", (64, 64), 128).save(folder / "train" / TINY_WNIDS[0] / "images" / "g.JPEG")
    lines = []
    for k, wnid in enumerate(["n01000001", "n02000002", "n01000001"]):
        Image.new("RGB", (64, 64), TINY_COLOURS[wnid]).save(
            folder / "val" / "images" / f"val_{k}.JPEG", quality=95
        )
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path):
    """(base URL, folder served) of a loopback HTTP server, shut down afterwards."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def assert_no_leftovers(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".pathnet")]
    assert leftovers == []


# --------------------------------------------------------------------------------------
# IDX.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path: Path, gz: bool) -> None:
    images, labels = mnist_arrays(5, seed=0)
    p_img = write_idx(tmp_path / "img", images, gz)
    p_lab = write_idx(tmp_path / "lab", labels, gz)
    got = read_idx(p_img)
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(p_lab), labels)
    assert got.flags.writeable


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    arr = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    path = write_idx(tmp_path / "ints", arr, gz=False)
    got = read_idx(path)
    assert got.dtype == np.dtype(np.int32) and got.dtype.isnative
    np.testing.assert_array_equal(got, arr.astype(np.int32))


def test_idx_bad_magic_names_file(tmp_path: Path) -> None:
    images, _ = mnist_arrays(2, seed=0)
    raw = bytearray(idx_bytes(images))
    raw[0] = 0x1F  # not 0x00 0x00
    raw[1] = 0x00
    path = tmp_path / "bad-magic-idx3-ubyte"
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="magic") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    raw = bytearray(idx_bytes(images))
    raw[2] = 0x07  # unknown type code
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="magic"):
        read_idx(path)


@pytest.mark.parametrize("cut", [2, 9, 100])
def test_idx_truncated_names_file(tmp_path: Path, cut: int) -> None:
    images, _ = mnist_arrays(2, seed=0)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(images)[:cut])
    with pytest.raises(DatasetError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_idx_truncated_gzip_and_trailing_bytes(tmp_path: Path) -> None:
    images, _ = mnist_arrays(2, seed=0)
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images))[:-20])
    with pytest.raises(DatasetError, match="gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    path = tmp_path / "y-idx3-ubyte"
    path.write_bytes(idx_bytes(images) + b"\x00")
    with pytest.raises(DatasetError, match="oversized"):
        read_idx(path)


def test_load_mnist_gz_and_raw(tmp_path: Path) -> None:
    arrays = make_mnist(tmp_path / "mnist", gz_train=True, gz_test=False)
    train = load_dataset("mnist", "train", root=tmp_path)
    test = load_dataset("mnist", "test", root=tmp_path / "mnist")
    for ds, (images, labels), n in ((train, arrays["train"], 20), (test, arrays["t10k"], 10)):
        assert isinstance(ds, Dataset)
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.float32
        assert ds.labels.dtype == torch.int64
        assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10 and ds.name == "mnist"
        assert ds.labels.tolist() == labels.tolist()
        expected = (torch.from_numpy(images).float()[:, None] / 255 - 0.1307) / 0.3081
        torch.testing.assert_close(ds.images, expected)
    assert train.split == "train" and test.split == "test"
    # known pixels: 0 -> -mean/std, 255 -> (1 - mean)/std
    torch.testing.assert_close(train.images[0].unique(), torch.tensor([-0.1307 / 0.3081]))
    torch.testing.assert_close(train.images[1].unique(), torch.tensor([(1 - 0.1307) / 0.3081]))


@pytest.mark.parametrize("alias", ["fashion-mnist", "fashion_mnist", "fmnist", "FMNIST"])
def test_fashion_aliases(tmp_path: Path, alias: str) -> None:
    make_mnist(tmp_path / "fashion-mnist")
    ds = load_dataset(alias, "test", root=tmp_path)
    assert ds.name == "fashion-mnist"
    assert ds.classes[9] == "Ankle boot"
    pixel255 = ds.images[1, 0, 0, 0].item()
    assert pixel255 == pytest.approx((1 - 0.2860) / 0.3530, rel=1e-5)


def test_mnist_count_mismatch_and_label_range(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    make_mnist(folder, gz_train=False)
    _, labels = mnist_arrays(20, seed=0)
    lab_path = write_idx(folder / "train-labels-idx1-ubyte", labels[:19], gz=False)
    with pytest.raises(DatasetError, match="count mismatch") as info:
        load_dataset("mnist", root=folder)
    assert str(lab_path) in str(info.value)
    bad = labels.copy()
    bad[3] = 10
    write_idx(folder / "train-labels-idx1-ubyte", bad, gz=False)
    with pytest.raises(DatasetError, match="out of range"):
        load_dataset("mnist", root=folder)


def test_mnist_wrong_image_shape(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    make_mnist(folder, gz_train=False)
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((20, 5, 5), np.uint8), gz=False)
    with pytest.raises(DatasetError, match=r"\(N, 28, 28\)"):
        load_dataset("mnist", root=folder)


# --------------------------------------------------------------------------------------
# CIFAR and the restricted unpickler.
# --------------------------------------------------------------------------------------


def test_load_cifar10(tmp_path: Path) -> None:
    arrays = make_cifar10(tmp_path / "cifar-10-batches-py")
    train = load_dataset("cifar10", "train", root=tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.float32
    assert train.labels.tolist() == arrays["train"][1]
    assert train.classes == registry.CIFAR10_CLASSES and train.num_classes == 10
    mean = torch.tensor((0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
    std = torch.tensor((0.2470, 0.2435, 0.2616)).view(1, 3, 1, 1)
    raw = torch.from_numpy(np.concatenate(arrays["train"][0])).view(10, 3, 32, 32)
    torch.testing.assert_close(train.images, (raw.float() / 255 - mean) / std)

    test = load_dataset("cifar-10", "test", root=tmp_path / "cifar-10-batches-py")
    assert test.labels.tolist() == [3, 1, 4] and test.split == "test"
    # row layout is R(1024) G(1024) B(1024): image 0 is pure red
    torch.testing.assert_close(test.images[0, 0], torch.full((32, 32), (1 - 0.4914) / 0.2470))
    torch.testing.assert_close(test.images[0, 1], torch.full((32, 32), -0.4822 / 0.2435))
    torch.testing.assert_close(test.images[0, 2], torch.full((32, 32), -0.4465 / 0.2616))


def test_load_cifar100(tmp_path: Path) -> None:
    arrays = make_cifar100(tmp_path / "cifar-100-python")
    train = load_dataset("cifar100", "train", root=tmp_path)
    test = load_dataset("cifar100", "test", root=tmp_path)
    assert train.images.shape == (4, 3, 32, 32) and test.images.shape == (2, 3, 32, 32)
    assert train.labels.tolist() == arrays["train"][1]
    assert test.labels.tolist() == arrays["test"][1]
    assert train.num_classes == 100 and train.classes[99] == "c99"
    assert train.input_shape == (3, 32, 32)
    v = int(arrays["test"][0][1, 1024])  # image 1, green channel, pixel (0, 0)
    assert test.images[1, 1, 0, 0].item() == pytest.approx((v / 255 - 0.4865) / 0.2564, rel=1e-5)


def test_cifar_legacy_numpy_names_and_protocol5(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    path = folder / "test_batch"
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert load_dataset("cifar10", "test", root=folder).labels.tolist() == [3, 1, 4]
    obj = {b"labels": np.array([3, 1, 4]), b"data": cifar_rows(3, seed=99)}
    dump(path, obj, protocol=5)
    got = load_pickle(path)
    np.testing.assert_array_equal(got[b"data"], obj[b"data"])
    assert load_dataset("cifar10", "test", root=folder).labels.tolist() == [3, 1, 4]


class Evil:
    """Pickles as a call of ``func(*args)``."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return (self.func, self.args)


@pytest.mark.parametrize("kind", ["os.system", "eval", "nested-exec"])
def test_malicious_pickle_refused(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    marker = tmp_path / "PWNED"
    if kind == "os.system":
        payload = Evil(os.system, f"touch {marker}")
    elif kind == "eval":
        payload = Evil(eval, f"open({str(marker)!r}, 'w').close()")
    else:
        payload = {
            b"data": cifar_rows(1, 0),
            b"labels": [Evil(exec, f"open({str(marker)!r}, 'w')")],
        }
    dump(folder / "test_batch", payload)
    with pytest.raises(DatasetError, match="refused") as info:
        load_dataset("cifar10", "test", root=folder)
    assert str(folder / "test_batch") in str(info.value)
    assert not marker.exists()
    with pytest.raises(DatasetError):
        load_pickle(folder / "test_batch")
    assert not marker.exists()


def test_pickle_object_arrays_and_state_tampering_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj"
    dump(path, {"data": np.array([1, "a"], dtype=object)})
    with pytest.raises(DatasetError, match="object"):
        load_pickle(path)
    # GLOBAL numpy.dtype, then BUILD on it with a state dict: must not touch the global.
    crafted = b"\x80\x02cnumpy\ndtype\n}X\x03\x00\x00\x00fooK\x01sb."
    path.write_bytes(crafted)
    with pytest.raises(DatasetError, match="state"):
        load_pickle(path)
    path.write_bytes(b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00u1\x85R.")  # still works
    assert load_pickle(path) == np.dtype(np.uint8)
    path.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match=str(path.name)):
        load_pickle(path)


def test_cifar_bad_contents(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    dump(folder / "test_batch", {b"data": cifar_rows(3, 0), b"labels": [1, 2]})
    with pytest.raises(DatasetError, match="count mismatch"):
        load_dataset("cifar10", "test", root=folder)
    dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]})
    with pytest.raises(DatasetError, match="3072"):
        load_dataset("cifar10", "test", root=folder)
    dump(folder / "test_batch", {b"labels": [1, 2]})
    with pytest.raises(DatasetError, match="missing key 'data'"):
        load_dataset("cifar10", "test", root=folder)


# --------------------------------------------------------------------------------------
# Tiny-ImageNet.
# --------------------------------------------------------------------------------------


def test_load_tiny_imagenet_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tiny-imagenet-200"
    make_tiny(folder)
    train = load_dataset("tiny-imagenet", "train", root=tmp_path)
    assert train.images.shape == (7, 3, 64, 64) and train.images.dtype == torch.float32
    assert train.input_shape == (3, 64, 64) and train.num_classes == 2
    assert train.classes == ("n01000001", "n02000002")  # sorted, as ImageFolder does
    assert sorted(train.labels.tolist()) == [0, 0, 0, 1, 1, 1, 1]
    mean = torch.tensor((0.4802, 0.4481, 0.3975)).view(3, 1, 1)
    std = torch.tensor((0.2302, 0.2265, 0.2262)).view(3, 1, 1)
    pixels = train.images * std + mean  # back to [0, 1]
    red = pixels[train.labels == 0].mean(dim=(0, 2, 3)) * 255
    assert red[0] > 240 and red[1] < 20 and red[2] < 20
    assert (folder / "pathnet-train.npz").is_file()
    assert_no_leftovers(folder)

    test = load_dataset("tiny-imagenet", "test", root=folder)
    assert test.labels.tolist() == [0, 1, 0] and test.split == "test"

    def no_decoding(files: object) -> None:
        raise AssertionError("the cache should have been used")

    real_decode = tiny_imagenet._decode_images
    monkeypatch.setattr(tiny_imagenet, "_decode_images", no_decoding)
    again = load_dataset("tiny-imagenet", "train", root=tmp_path)
    torch.testing.assert_close(again.images, train.images)
    assert torch.equal(again.labels, train.labels)
    monkeypatch.setattr(tiny_imagenet, "_decode_images", real_decode)

    # a changed folder invalidates the cache
    from PIL import Image

    Image.new("RGB", (64, 64), (0, 255, 0)).save(folder / "train/n01000001/images/new.JPEG")
    grown = load_dataset("tiny-imagenet", "train", root=tmp_path)
    assert len(grown) == 8
    uncached = load_dataset("tiny-imagenet", "train", root=tmp_path, cache=False)
    torch.testing.assert_close(uncached.images, grown.images)


def test_tiny_imagenet_bad_annotations(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-imagenet-200"
    make_tiny(folder)
    (folder / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="line 1"):
        load_dataset("tiny-imagenet", "test", root=folder)


# --------------------------------------------------------------------------------------
# Normalisation, augmentation, batching, subsets.
# --------------------------------------------------------------------------------------


def test_normalize_maths() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).repeat(2, 1, 2, 2)
    out = normalize(x, (0.5, 0.2, 0.0), (0.5, 0.1, 2.0))
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([-1.0, 0.0, 0.5]))
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(x, (0.5,), (0.5,))
    with pytest.raises(ValueError, match="uint8"):
        normalize(x.float(), (0.5,) * 3, (0.5,) * 3)


def test_random_crop_flip_deterministic_and_shape() -> None:
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    a = random_crop_flip(x, torch.Generator().manual_seed(7))
    b = random_crop_flip(x, torch.Generator().manual_seed(7))
    c = random_crop_flip(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_flip_flips() -> None:
    x = torch.arange(8 * 2 * 4 * 5, dtype=torch.float32).view(8, 2, 4, 5)
    gen = torch.Generator().manual_seed(3)
    out = random_crop_flip(x, gen, crop=False)
    n_flipped = 0
    for i in range(8):
        if torch.equal(out[i], x[i].flip(-1)):
            n_flipped += 1
        else:
            assert torch.equal(out[i], x[i])
    assert 0 < n_flipped < 8
    # padding only: every sample equals its input
    same = random_crop_flip(x, torch.Generator().manual_seed(3), crop=False, flip=False)
    assert torch.equal(same, x)


def test_random_crop_matches_manual_window() -> None:
    n, c, h, w, p = 6, 3, 8, 8, 4
    x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0))
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = random_crop_flip(x, torch.Generator().manual_seed(5), padding=p, fill=fill, flip=False)
    gen = torch.Generator().manual_seed(5)
    oy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * p + 1, (n,), generator=gen)
    padded = fill.view(1, c, 1, 1).expand(n, c, h + 2 * p, w + 2 * p).clone()
    padded[:, :, p : p + h, p : p + w] = x
    for i in range(n):
        window = padded[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w]
        assert torch.equal(out[i], window)
    assert (oy != p).any() or (ox != p).any()


def small_dataset(n: int = 50, name: str = "cifar10", split: str = "train") -> Dataset:
    gen = torch.Generator().manual_seed(0)
    mean, std = D.MEAN_STD["cifar10"]
    return Dataset(
        images=torch.randn(n, 3, 32, 32, generator=gen),
        labels=torch.arange(n) % 10,
        num_classes=10,
        name=name,
        split=split,
        input_shape=(3, 32, 32),
        mean=mean,
        std=std,
    )


def batches(it: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in it]  # type: ignore[attr-defined]


def test_loader_deterministic_per_seed_and_epoch() -> None:
    ds = small_dataset()
    a = loader(ds, batch_size=16, seed=3)
    b = loader(ds, batch_size=16, seed=3)
    assert a.augment and len(a) == 4
    first_a, first_b = batches(a), batches(b)
    assert len(first_a) == 4 and first_a[-1][0].shape[0] == 2
    for (xa, ya), (xb, yb) in zip(first_a, first_b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    second = batches(a)
    assert not torch.equal(torch.cat([y for _, y in second]), torch.cat([y for _, y in first_a]))
    a.set_epoch(0)
    replay = batches(a)
    assert all(torch.equal(x, xr) for (x, _), (xr, _) in zip(first_a, replay))
    other = batches(loader(ds, batch_size=16, seed=4))
    assert not all(torch.equal(x, xo) for (x, _), (xo, _) in zip(first_a, other))
    # every sample exactly once per pass
    labels_seen = torch.cat([y for _, y in first_a])
    assert sorted(labels_seen.tolist()) == sorted(ds.labels.tolist())


def test_loader_no_shuffle_no_augment_is_identity() -> None:
    ds = small_dataset(split="test")
    it = loader(ds, batch_size=20, shuffle=False, device="cpu")
    assert not it.augment  # test split: no augmentation by default
    got = batches(it)
    assert torch.equal(torch.cat([x for x, _ in got]), ds.images)
    assert torch.equal(torch.cat([y for _, y in got]), ds.labels)
    assert len(loader(ds, batch_size=20, drop_last=True)) == 2
    assert len(batches(loader(ds, batch_size=20, drop_last=True))) == 2
    with pytest.raises(ValueError, match="batch_size"):
        loader(ds, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        loader(ds, batch_size=4, seed=-1)


def test_loader_augmentation_pads_with_black() -> None:
    ds = small_dataset(n=4)
    ds = dataclasses.replace(ds, images=torch.full((4, 3, 32, 32), 5.0))
    ((x, _),) = batches(loader(ds, batch_size=4, augment=True, seed=1))
    black = ds.pad_value
    values = set(x.unique().tolist())
    assert values <= {5.0, *black.tolist()}
    assert len(values) > 1  # some padding showed up with 4 random crops of 32x32


def test_subset_per_class() -> None:
    ds = small_dataset(n=60)
    sub = subset_per_class(ds, 3, seed=1)
    assert len(sub) == 30 and sub.labels.bincount().tolist() == [3] * 10
    again = subset_per_class(ds, 3, seed=1)
    assert torch.equal(sub.images, again.images)
    assert not torch.equal(sub.images, subset_per_class(ds, 3, seed=2).images)
    for i in range(len(sub)):  # every image is one of the source images with its label
        j = int((ds.images == sub.images[i]).flatten(1).all(1).nonzero())
        assert ds.labels[j] == sub.labels[i]
    with pytest.raises(ValueError, match="class 0"):
        subset_per_class(ds, 7)


def test_dataset_validation() -> None:
    with pytest.raises(ValueError, match="labels"):
        Dataset(
            torch.zeros(2, 1, 2, 2), torch.zeros(3, dtype=torch.int64), 2, "x", "train", (1, 2, 2)
        )
    with pytest.raises(ValueError, match="input_shape"):
        Dataset(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.int64), 2, "x", "train", (2, 2))
    with pytest.raises(ValueError, match="float32"):
        Dataset(
            torch.zeros(2, 1, 2, 2, dtype=torch.float64),
            torch.zeros(2, dtype=torch.int64),
            2,
            "x",
            "t",
            (1, 2, 2),
        )


def test_bad_names_and_splits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown data set name 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="split must be"):
        load_dataset("mnist", "dev")


# --------------------------------------------------------------------------------------
# Searching and downloading.
# --------------------------------------------------------------------------------------


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHNET_DATA", str(tmp_path / "env"))
    dirs = D.search_dirs("fashion-mnist", root=tmp_path / "root")
    assert dirs[0] == tmp_path / "root"
    assert dirs[1] == tmp_path / "root" / "fashion-mnist"
    order = [str(d) for d in dirs]
    i_env = order.index(str(tmp_path / "env" / "fashion-mnist"))
    i_cache = order.index(str(tmp_path / "xdg-cache" / "pathnet" / "fashion-mnist"))
    i_sys = order.index(str(tmp_path / "system" / "fashion-mnist"))
    assert 1 < i_env < i_cache < i_sys
    # the env folder is used when root lacks the data
    make_mnist(tmp_path / "env" / "fashion-mnist")
    ds = load_dataset("fmnist", "test", root=tmp_path / "root")
    assert len(ds) == 10


def test_missing_dataset_lists_searched_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATHNET_DATA", str(tmp_path / "env"))
    (tmp_path / "env" / "fashion-mnist").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", "train", root=tmp_path / "root")
    err = info.value
    assert isinstance(err, DatasetError) and isinstance(err, FileNotFoundError)
    msg = str(err)
    for folder in D.search_dirs("fashion-mnist", root=tmp_path / "root"):
        assert str(folder) in msg
    assert list(err.searched) == D.search_dirs("fashion-mnist", root=tmp_path / "root")
    assert "lacks train-images-idx3-ubyte[.gz]" in msg
    assert "download=True" in msg and "PATHNET_DATA" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar100", root=tmp_path / "root")
    assert "apt-get" not in str(info.value)
    assert not (tmp_path / "root").exists()  # looking creates nothing


def test_download_mnist(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, served = http_root
    make_mnist(served / "mnist", gz_train=True, gz_test=True)
    sums = {p.name: md5(p) for p in (served / "mnist").iterdir()}
    assert set(sums) == set(D.CHECKSUMS["mnist"])
    dest = tmp_path / "dest"
    ds = load_dataset(
        "mnist", "train", root=dest, download=True, mirror=f"{url}/mnist", checksums=sums
    )
    assert ds.images.shape == (20, 1, 28, 28)
    assert sorted(p.name for p in (dest / "mnist").iterdir()) == sorted(sums)
    assert_no_leftovers(dest)
    # found now: no second download even with a dead mirror
    again = load_dataset("mnist", "test", root=dest, download=True, mirror="http://127.0.0.1:9")
    assert len(again) == 10


def test_download_env_mirror_and_pathnet_data(
    tmp_path: Path, http_root: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = http_root
    make_mnist(served / "fashion-mnist", gz_train=True, gz_test=True)
    sums = {p.name: md5(p) for p in (served / "fashion-mnist").iterdir()}
    monkeypatch.setenv("PATHNET_DATA_MIRROR", url + "/{name}/")
    monkeypatch.setenv("PATHNET_DATA", str(tmp_path / "env"))
    monkeypatch.setitem(D.CHECKSUMS, "fashion-mnist", sums)
    ds = load_dataset("fmnist", "test", download=True)
    assert len(ds) == 10
    assert (tmp_path / "env" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").is_file()


def make_archive_cifar10(served: Path, tmp_path: Path) -> Path:
    make_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_download_cifar10_tar(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, served = http_root
    archive = make_archive_cifar10(served, tmp_path)
    dest = tmp_path / "dest"
    ds = load_dataset(
        "cifar10",
        "test",
        root=dest,
        download=True,
        mirror=url,
        checksums={archive.name: md5(archive)},
    )
    assert ds.labels.tolist() == [3, 1, 4]
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py"]
    assert len(load_dataset("cifar10", "train", root=dest)) == 10


def test_download_tiny_imagenet_zip(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, served = http_root
    src = tmp_path / "src" / "tiny-imagenet-200"
    make_tiny(src)
    archive = served / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src.parent).as_posix())
    dest = tmp_path / "dest"
    ds = load_dataset(
        "tiny-imagenet",
        "test",
        root=dest,
        download=True,
        mirror=url,
        checksums={archive.name: md5(archive)},
    )
    assert ds.labels.tolist() == [0, 1, 0]
    assert (dest / "tiny-imagenet-200" / "wnids.txt").is_file()
    assert_no_leftovers(dest)


@pytest.mark.parametrize("dest_exists", [False, True])
def test_download_checksum_mismatch_leaves_nothing(
    tmp_path: Path, http_root: tuple[str, Path], dest_exists: bool
) -> None:
    url, served = http_root
    archive = make_archive_cifar10(served, tmp_path)
    dest = tmp_path / "dest" / "sub"
    if dest_exists:
        dest.mkdir(parents=True)
        (dest / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        load_dataset(
            "cifar10", root=dest, download=True, mirror=url, checksums={archive.name: "0" * 32}
        )
    assert not isinstance(info.value, DatasetNotFoundError)
    assert url in str(info.value)
    if dest_exists:
        assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    else:
        assert not (tmp_path / "dest").exists()

    # MNIST: the first files verify, the last one does not -> none of them is kept
    make_mnist(served / "mnist", gz_train=True, gz_test=True)
    sums = {p.name: md5(p) for p in (served / "mnist").iterdir()}
    sums["t10k-labels-idx1-ubyte.gz"] = "f" * 32
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("mnist", root=dest, download=True, mirror=f"{url}/mnist", checksums=sums)
    if dest_exists:
        assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    else:
        assert not (tmp_path / "dest").exists()


def test_download_refuses_unsafe_archive(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, served = http_root
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        payload = b"gotcha"
        info = tarfile.TarInfo("cifar-10-batches-py/../../escaped.txt")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    dest = tmp_path / "dest"
    with pytest.raises(DatasetError, match="unsafe"):
        load_dataset(
            "cifar10", root=dest, download=True, mirror=url, checksums={archive.name: md5(archive)}
        )
    assert not (tmp_path / "escaped.txt").exists()
    assert not dest.exists()


def test_download_http_error(tmp_path: Path, http_root: tuple[str, Path]) -> None:
    url, _ = http_root
    with pytest.raises(DatasetError, match="404"):
        D.download("cifar100", tmp_path / "dest", mirror=url)
    assert not (tmp_path / "dest").exists()
    with pytest.raises(ValueError, match="does not download"):
        D.download("cifar100", tmp_path / "dest", mirror=url, checksums={"x.tar.gz": "0" * 32})


# --------------------------------------------------------------------------------------
# The real Fashion-MNIST of Debian's dataset-fashion-mnist package.
# --------------------------------------------------------------------------------------

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (SYSTEM_FMNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "SYSTEM_DATA_DIRS", [SYSTEM_FMNIST.parent])
    start = time.perf_counter()
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    elapsed = time.perf_counter() - start
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.float32
    assert test.images.shape == (10000, 1, 28, 28)
    for ds in (train, test):
        assert ds.labels.min() == 0 and ds.labels.max() == 9
        assert ds.labels.bincount().tolist() == [len(ds) // 10] * 10
    assert abs(train.images.mean().item()) < 0.05
    assert abs(train.images.std().item() - 1) < 0.05
    assert elapsed < 5.0, f"loading took {elapsed:.1f} s"
