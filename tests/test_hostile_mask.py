"""Hostile mask files: damaged, foreign, crafted to exhaust time or memory, or random bytes.

Every case is refused with a :class:`pathnet.MaskFileError` naming the file and the
problem, on one line, within 1 s of CPU time and 100 MB of memory (issue 16.4).
"""

from __future__ import annotations

import io
import json
import struct
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pathnet import Mask, MaskFileError, models
from pathnet.cli import main
from pathnet.select import select
from pathnet.train.fit import fit
from tests.strategies import profile
from tests.test_hostile import listing, no_temp_files

MB = 1 << 20


# ------------------------------------------------------------------ moved from test_hostile.py
def write_npz(path: Path, header, **arrays) -> Path:
    raw = header if isinstance(header, bytes) else __import__("json").dumps(header).encode()
    np.savez(path, header=np.frombuffer(raw, dtype=np.uint8), **arrays)
    return path


def test_truncated_mask_files(tmp_path):
    model = models.mlp([6, 5, 4], seed=0)
    good = select("random", model, 0.5, seed=0).save(tmp_path / "good.npz")
    data = good.read_bytes()
    for cut in (0, 1, 10, len(data) // 3, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(MaskFileError, match=rf"cut{cut}\.npz") as info:
            Mask.load(bad, model=model)
        assert "\n" not in str(info.value)
        assert bad.read_bytes() == data[:cut]  # left alone
    no_temp_files(tmp_path)


def test_mask_file_from_another_model(tmp_path):
    path = select("random", models.mlp([6, 5, 4], seed=0), 0.5, seed=0).save(tmp_path / "m.npz")
    with pytest.raises(
        ValueError,
        match=r"does not fit MLP: .*'1\.weight' has shape \(5, 6\), the parameter \(5, 7\)",
    ):
        Mask.load(path, model=models.mlp([7, 5, 4]))
    with pytest.raises(
        ValueError,
        match=r"missing \['features\.0\.weight'.*not in the model \['1\.weight', '3\.weight'\]",
    ):
        Mask.load(path, model=models.vgg11())
    with pytest.raises(ValueError, match="does not fit"):
        fit(models.vgg11(), Mask.load(path), (torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long)), epochs=1, progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("header", "arrays", "needle"),
    [
        ({"format": "x"}, {}, "not a pathnet mask"),
        ([1, 2], {}, "not a pathnet mask"),
        ("pathnet-mask", {}, "not a pathnet mask"),
        (b"\xff\xfe", {}, "UnicodeDecodeError"),
        ({"format": "pathnet-mask", "version": 99, "params": {}}, {}, "version 99"),
        ({"format": "pathnet-mask", "version": 1, "params": [1]}, {}, "damaged header"),
        ({"format": "pathnet-mask", "version": 1, "params": {"w": [3]}, "meta": [1]},
         {"param0": np.zeros(1, np.uint8)}, "damaged header"),
        ({"format": "pathnet-mask", "version": 1, "params": {"w": [-2, 4]}},
         {"param0": np.zeros(1, np.uint8)}, r"shape \[-2, 4\]"),
        ({"format": "pathnet-mask", "version": 1, "params": {"w": "ab"}},
         {"param0": np.zeros(1, np.uint8)}, "shape 'ab'"),
        ({"format": "pathnet-mask", "version": 1, "params": {"w": [3]}},
         {"param0": np.zeros(1, np.float32)}, "dtype float32, expected packed uint8"),
        ({"format": "pathnet-mask", "version": 1, "params": {"w": [30]}},
         {"param0": np.zeros(1, np.uint8)}, "holds 1 bytes, expected 4"),
        ({"format": "pathnet-mask", "version": 1, "params": {"w": [3]}}, {}, "param0"),
        ({"format": "pathnet-mask", "version": 1, "params": {"": [3]}},
         {"param0": np.zeros(1, np.uint8)}, "parameter names"),
    ],
    ids=["foreign", "list", "string", "utf8", "version", "params", "meta", "negative",
         "shape-str", "dtype", "size", "missing", "empty-name"],
)  # fmt: skip
def test_damaged_mask_files(tmp_path, header, arrays, needle):
    path = write_npz(tmp_path / "m.npz", header, **arrays)
    before = path.read_bytes()
    with pytest.raises(MaskFileError, match=needle) as info:
        Mask.load(path)
    assert "m.npz" in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["m.npz"]


def test_saving_a_mask_where_it_cannot_go_leaves_nothing(tmp_path):
    mask = select("random", models.mlp([4, 3, 2]), 0.5, seed=0)
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):
        mask.save(tmp_path / "folder")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        mask.save(tmp_path / "file" / "m.npz")
    assert listing(tmp_path) == ["file", "folder"]


# ------------------------------------------------------------------ resource exhaustion
def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def deflated(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zeros_bomb(prefix: bytes, n_mib: int) -> bytes:
    """A raw deflate stream of ``prefix`` and ``n_mib`` MiB of zeros, about 1 KB per MiB.

    After a full flush deflate starts afresh, so one compressed MiB can be repeated.
    """
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(MB)) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(bytes(MB)) + c.flush(zlib.Z_FULL_FLUSH) == block
    return head + block * n_mib + c.flush()


def zip_bytes(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of already deflated members ``(name, data, crc, declared size)``, by hand.

    The declared (uncompressed) size is whatever the caller says: an attacker's word.
    """
    out, central = io.BytesIO(), []
    for name, data, crc, size in members:
        offset, raw = out.tell(), name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), size, len(raw), 0))  # fmt: skip
        out.write(raw + data)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), size, len(raw), 0, 0, 0, 0, 0, offset) + raw)  # fmt: skip
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), out.tell() - start, start, 0))  # fmt: skip
    return out.getvalue()


def header_member(header: dict | str) -> tuple[str, bytes, int, int]:
    text = header if isinstance(header, str) else json.dumps(header)
    data = npy_header((len(text.encode()),)) + text.encode()
    return ("header.npy", deflated(data), zlib.crc32(data), len(data))


def plain_member(name: str, data: bytes) -> tuple[str, bytes, int, int]:
    return (name, deflated(data), zlib.crc32(data), len(data))


def refused_cheaply(path: Path, needle: str, model=None) -> str:
    """Load ``path``; it must raise MaskFileError within 1 s CPU and 100 MB."""
    tracemalloc.start()
    t0 = time.process_time()
    try:
        with pytest.raises(MaskFileError, match=needle) as info:
            Mask.load(path, model=model)
    finally:
        seconds = time.process_time() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    message = str(info.value)
    assert repr(str(path)) in message and "\n" not in message, message
    assert seconds < 1.0, (seconds, message)
    assert peak < 100 * MB, (peak, message)
    return message


BOMB_BYTES = 960 * MB  # 1.007 GB of zeros: deflate (at most 1032:1) needs 0.95 MiB
BOMB_BITS = 8 * BOMB_BYTES


@pytest.fixture(scope="module")
def bomb_member() -> tuple[bytes, int]:
    """``param0.npy`` of 1 GB of zeros (uint8) deflated to under 1 MB."""
    prefix = npy_header((BOMB_BYTES,))
    data = zeros_bomb(prefix, BOMB_BYTES // MB)
    assert len(data) < 0.97 * MB
    return data, len(prefix) + BOMB_BYTES


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("honest", "declares 8,053,063,680 mask elements"),  # header says so: refused unread
        (
            "declared",
            r"member .param0\.npy. declares 1,006,633,088 bytes",
        ),  # directory says so: refused unread
        # the directory says 200 bytes: zipfile stops there and the CRC fails
        ("lying", "expands beyond|Bad CRC-32 for file .param0"),
        ("header", "expands beyond|Bad CRC-32 for file .header"),  # the header is the bomb
    ],
)
def test_zip_bomb_is_refused_before_it_expands(tmp_path, bomb_member, case, needle):
    bomb, size = bomb_member
    shape = [BOMB_BITS] if case == "honest" else [30]
    members = [
        header_member({"format": "pathnet-mask", "version": 1, "params": {"w": shape}}),
        ("param0.npy", bomb, 0, 200 if case == "lying" else size),
    ]
    if case == "header":
        members = [("header.npy", bomb, 0, 200)]
    path = tmp_path / "bomb.npz"
    path.write_bytes(zip_bytes(members))
    assert path.stat().st_size < 0.98 * MB  # "0.97 MB"
    refused_cheaply(path, needle)


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ({"format": "pathnet-mask", "version": 1, "params": {"w": [2**64]}},
         "declares 18,446,744,073,709,551,616 mask elements"),
        ({"format": "pathnet-mask", "version": 1, "params": {"w": [10**6, 10**6]}},
         "declares 1,000,000,000,000 mask elements"),
        ({"format": "pathnet-mask", "version": 1, "params": {"w": [1] * 17}},
         "at most 16 non-negative integers"),
        ('{"format": "pathnet-mask", "version": Infinity, "params": {}}', "got inf"),
        ('{"format": "pathnet-mask", "version": NaN, "params": {}}', "got nan"),
        ('{"format": "pathnet-mask", "version": 1e400, "params": {}}', "got inf"),
        ('{"format": "pathnet-mask", "version": ' + "9" * 5000 + ', "params": {}}',
         "ValueError"),
        ('{"format": "pathnet-mask", "version": 1, "params": {}, "meta": '
         + "[" * 200_000 + "]" * 200_000 + "}", "RecursionError"),
        ('{"format": "pathnet-mask", "version": 1, "params": {}, "meta": {"a": '
         + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}}", "RecursionError"),
    ],
    ids=["2**64", "10**12", "17-dims", "Infinity", "NaN", "1e400", "5000-digits",
         "nested-lists", "nested-objects"],
)  # fmt: skip
def test_headers_that_overflow_or_recurse(tmp_path, header, needle):
    path = tmp_path / "m.npz"
    path.write_bytes(zip_bytes([header_member(header), plain_member("param0.npy", npy_header((1,)) + b"\0")]))  # fmt: skip
    refused_cheaply(path, needle)


def test_npy_member_declaring_a_huge_array(tmp_path):
    """The header is fine; ``param0.npy``'s own header declares 10**12 bytes."""
    header = {"format": "pathnet-mask", "version": 1, "params": {"w": [30]}}
    for shape, needle in [((10**12,), "holds 1000000000000 bytes, expected 4"),
                          ((10**6, 10**6), "holds 1000000000000 bytes, expected 4"),
                          ((4,), r"truncated \(1 of 4 bytes\)")]:  # fmt: skip
        path = tmp_path / "m.npz"
        path.write_bytes(zip_bytes([header_member(header), plain_member("param0.npy", npy_header(shape) + b"\1")]))  # fmt: skip
        refused_cheaply(path, needle)


def test_a_model_raises_the_element_limit(tmp_path):
    """Without a model a small file may hold 64 Mi elements; with one, as many as it has."""
    from pathnet.mask.files import MIN_ELEMENTS

    model = torch.nn.Linear(MIN_ELEMENTS // 1024 + 1, 1024, bias=False)  # 64 Mi + 1024 weights
    n = model.weight.numel()
    header = {"format": "pathnet-mask", "version": 1, "params": {"weight": [1024, n // 1024]}}
    packed = npy_header(((n + 7) // 8,)) + bytes([255]) * ((n + 7) // 8)
    path = tmp_path / "big.npz"
    path.write_bytes(zip_bytes([header_member(header), plain_member("param0.npy", packed)]))
    assert path.stat().st_size < MB
    refused_cheaply(path, "pass model=")
    assert Mask.load(path, model=model).n_kept == n


def test_cli_refuses_a_bomb_in_one_line(tmp_path, bomb_member, capsys):
    bomb = bomb_member[0]
    header = {"format": "pathnet-mask", "version": 1, "params": {"1.weight": [5, 6], "3.weight": [4, 5]}}  # fmt: skip
    path = tmp_path / "bomb.npz"
    path.write_bytes(zip_bytes([header_member(header), ("param0.npy", bomb, 0, 200)]))
    code = main(["analyze", "mlp", "--mask", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "bomb.npz" in err and "Bad CRC-32" in err, err


# ------------------------------------------------------------------ random bytes and mutations
@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> list[bytes]:
    """A saved mask, the same zip with its members stored (headers in plain sight), a .pt."""
    mask = select("random", models.mlp([6, 5, 4], seed=0), 0.5, seed=0)
    mask.meta["note"] = "x"
    saved = mask.save(tmp_path_factory.mktemp("valid") / "m.npz").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(saved)) as src, zipfile.ZipFile(buf, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    pt = mask.save(tmp_path_factory.mktemp("valid") / "m.pt").read_bytes()
    return [saved, buf.getvalue(), pt]


def load_only_mask_file_error(folder: Path, data: bytes) -> None:
    path = folder / "m.npz"
    path.write_bytes(data)
    t0 = time.process_time()
    try:
        Mask.load(path)
    except MaskFileError as exc:
        assert "m.npz" in str(exc) and "\n" not in str(exc)
    assert time.process_time() - t0 < 1.0


@profile(300)
@given(data=st.binary(max_size=4096))
def test_random_bytes_raise_only_mask_file_error(tmp_path_factory, data):
    load_only_mask_file_error(tmp_path_factory.mktemp("r", numbered=True), data)


@profile(500)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(["set", "insert", "delete"]),
                  st.integers(0, 255)),
        min_size=1, max_size=6,
    ),
    cut=st.none() | st.integers(0, 10**6),
    which=st.integers(0, 2),
)  # fmt: skip
def test_mutated_files_raise_only_mask_file_error(tmp_path_factory, valid_files, edits, cut, which):
    data = bytearray(valid_files[which])
    for pos, op, byte in edits:
        i = pos % (len(data) + 1)
        if op == "insert":
            data.insert(i, byte)
        elif data and i < len(data):
            if op == "set":
                data[i] = byte
            else:
                del data[i]
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    load_only_mask_file_error(tmp_path_factory.mktemp("m", numbered=True), bytes(data))
