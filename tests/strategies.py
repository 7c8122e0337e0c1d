"""Hypothesis strategies shared by the robustness tests: random small architectures and masks.

An architecture is drawn as a :class:`Spec`, a plain list of operations, and built into a
torch model by :class:`SpecNet`. Every spec also knows, independently of
:func:`pathnet.to_dag`, which unit-to-unit edges its weights make
(:func:`reference_layers`, written straight from the torch parameter layout), so that the
converter and the path analyses can be checked against path-by-path enumeration in
``tests/reference.py``.

Operations (``kind`` first):

* ``("conv", out, kh, kw, stride, padding, dilation, bias, bn, relu)``
* ``("pool", "max" | "avg", k)`` and ``("gap",)`` (adaptive average pooling to 1x1)
* ``("res", "identity" | "projection", out, stride, k, padding_mode)``: conv-BN-ReLU-conv-BN
  plus an identity or 1x1-conv shortcut, then ReLU
* ``("flatten",)`` and ``("linear", out, bias)``
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import nn

import pathnet
from pathnet import models

# Reproducible, database-free profiles: the same examples on every run and machine.
_COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


def profile(max_examples: int) -> settings:
    """Hypothesis settings with ``max_examples`` and no deadline, derandomized."""
    return settings(max_examples=max_examples, **_COMMON)


Op = tuple[Any, ...]


@dataclass(frozen=True)
class Spec:
    """A small architecture: per-sample input shape and a list of operations."""

    input_shape: tuple[int, ...]
    ops: tuple[Op, ...]
    seed: int = 0

    def build(self) -> SpecNet:
        return SpecNet(self)

    def __str__(self) -> str:
        return f"Spec(input_shape={self.input_shape}, ops={list(self.ops)})"


def _out_size(h: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1


class ResBlock(nn.Module):
    """conv(k, stride) -> BN -> ReLU -> conv(k) -> BN, plus a shortcut, then ReLU."""

    def __init__(
        self, c_in: int, c_out: int, stride: int, k: int, shortcut: str, padding_mode: str
    ) -> None:
        super().__init__()
        pad = k // 2
        self.conv1 = nn.Conv2d(
            c_in, c_out, k, stride=stride, padding=pad, bias=False, padding_mode=padding_mode
        )
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, k, padding=pad, bias=False, padding_mode=padding_mode)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module
        if shortcut == "projection":
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SpecNet(nn.Module):
    """The torch model of a :class:`Spec` (Kaiming-normal weights from ``spec.seed``)."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        self.spec = spec
        self.input_shape = tuple(spec.input_shape)
        layers: list[nn.Module] = []
        shape = list(spec.input_shape)
        for op in spec.ops:
            kind = op[0]
            if kind == "conv":
                _, out, kh, kw, stride, padding, dilation, bias, bn, relu = op
                layers.append(
                    nn.Conv2d(shape[0], out, (kh, kw), stride, padding, dilation, bias=bias)
                )
                shape = [
                    out,
                    _out_size(shape[1], kh, stride, padding, dilation),
                    _out_size(shape[2], kw, stride, padding, dilation),
                ]
                if bn:
                    layers.append(nn.BatchNorm2d(out))
                if relu:
                    layers.append(nn.ReLU())
            elif kind == "pool":
                _, how, k = op
                layers.append(nn.MaxPool2d(k) if how == "max" else nn.AvgPool2d(k))
                shape = [shape[0], shape[1] // k, shape[2] // k]
            elif kind == "gap":
                layers.append(nn.AdaptiveAvgPool2d(1))
                shape = [shape[0], 1, 1]
            elif kind == "res":
                _, how, out, stride, k, padding_mode = op
                layers.append(ResBlock(shape[0], out, stride, k, how, padding_mode))
                shape = [
                    out,
                    _out_size(shape[1], 1, stride, 0, 1),
                    _out_size(shape[2], 1, stride, 0, 1),
                ]
            elif kind == "flatten":
                layers.append(nn.Flatten())
                shape = [math.prod(shape)]
            elif kind == "linear":
                _, out, bias = op
                layers.append(nn.Linear(shape[0], out, bias=bias))
                layers.append(nn.ReLU())
                shape = [out]
            else:  # pragma: no cover - a bug in the strategy
                raise AssertionError(op)
        if isinstance(layers[-1], nn.ReLU):
            layers.pop()  # logits, not ReLU outputs
        self.body = nn.Sequential(*layers)
        self.output_shape = tuple(shape)
        models.kaiming_init(self, generator=torch.Generator().manual_seed(spec.seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# ------------------------------------------------------------------ strategies
@st.composite
def conv_op(draw: st.DrawFn, shape: list[int], max_channels: int) -> Op | None:
    """A conv that fits ``shape`` (C, H, W), or None if none does."""
    h, w = shape[1], shape[2]
    for _ in range(4):
        kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        padding = draw(st.integers(0, 2))
        dilation = draw(st.integers(1, 2))
        if padding >= max(kh, kw) * dilation:  # keep some kernel elements off the border
            padding = 0
        if (
            _out_size(h, kh, stride, padding, dilation) >= 1
            and _out_size(w, kw, stride, padding, dilation) >= 1
        ):
            out = draw(st.integers(1, max_channels))
            bias, bn, relu = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
            return ("conv", out, kh, kw, stride, padding, dilation, bias, bn, relu)
    return None


@st.composite
def specs(
    draw: st.DrawFn,
    *,
    max_channels: int = 3,
    max_units: int = 4,
    max_weighted: int = 4,
    kinds: tuple[str, ...] = ("mlp", "conv", "residual"),
) -> Spec:
    """A small architecture: an MLP, a conv stack, or a conv net with residual blocks.

    Sizes are kept small enough for path-by-path enumeration (at most ``max_weighted``
    Linear/Conv2d layers on the longest path, a few units per group).
    """
    kind = draw(st.sampled_from(kinds))
    seed = draw(st.integers(0, 2**16))
    ops: list[Op] = []
    if kind == "mlp":
        form = draw(st.sampled_from(["features", "pixels", "pooled"]))
        if form == "features":
            shape: list[int] = [draw(st.integers(1, 5))]
        else:  # an image read pixel by pixel, or pooled per channel, through a flatten
            shape = [draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))]
            if form == "pooled":
                ops.append(("gap",))
            ops.append(("flatten",))
        for _ in range(draw(st.integers(1, max_weighted))):
            ops.append(("linear", draw(st.integers(1, max_units)), draw(st.booleans())))
        return Spec(tuple(shape), tuple(ops), seed)

    shape = [draw(st.integers(1, max_channels)), draw(st.integers(2, 6)), draw(st.integers(2, 6))]
    input_shape = tuple(shape)
    weighted = 0
    budget = draw(st.integers(1, max_weighted - 1))
    while weighted < budget:
        choices = ["conv", "conv", "pool"] + (["res", "res"] if kind == "residual" else [])
        choice = draw(st.sampled_from(choices))
        if choice == "pool" and min(shape[1], shape[2]) >= 2:
            k = 2
            ops.append(("pool", draw(st.sampled_from(["max", "avg"])), k))
            shape = [shape[0], shape[1] // k, shape[2] // k]
        elif choice == "res" and weighted + 2 <= budget:
            how = draw(st.sampled_from(["identity", "projection"]))
            if how == "identity":
                out, stride = shape[0], 1
            else:
                out, stride = draw(st.integers(1, max_channels)), draw(st.integers(1, 2))
            k = draw(st.sampled_from([1, 3]))
            padding_mode = draw(st.sampled_from(["zeros", "circular"]))
            if k == 1 or min(shape[1], shape[2]) < 2 * stride:
                padding_mode = "zeros"  # circular padding must not wrap around twice
            ops.append(("res", how, out, stride, k, padding_mode))
            shape = [out, (shape[1] - 1) // stride + 1, (shape[2] - 1) // stride + 1]
            weighted += 2
        else:
            op = draw(conv_op(shape, max_channels))
            if op is None:
                break
            ops.append(op)
            _, out, kh, kw, stride, padding, dilation, *_ = op
            shape = [
                out,
                _out_size(shape[1], kh, stride, padding, dilation),
                _out_size(shape[2], kw, stride, padding, dilation),
            ]
            weighted += 1
    if weighted == 0 or draw(st.integers(0, 3)) > 0:  # a classifier head (mostly)
        if draw(st.booleans()) or shape[1] * shape[2] > 6:
            ops.append(("gap",))
            shape = [shape[0], 1, 1]
        ops.append(("flatten",))
        ops.append(("linear", draw(st.integers(1, max_units)), draw(st.booleans())))
        if draw(st.integers(0, 3)) == 0:
            ops.append(("linear", draw(st.integers(1, max_units)), draw(st.booleans())))
    return Spec(input_shape, tuple(ops), seed)


# ------------------------------------------------------------------ references
def _w3(param: torch.Tensor, n_in: int) -> np.ndarray:
    """A weight as (out, in units, elements), in torch's own (row-major) layout."""
    w = param.detach().double().numpy()
    return w.reshape(w.shape[0], n_in, -1)


def reference_layers(net: SpecNet, keep: dict[str, np.ndarray] | None = None) -> tuple[list, str]:
    """The unit-level layers of ``net`` for :func:`tests.reference.layer_graph`.

    Written from the spec and the torch parameter layout, without :func:`pathnet.to_dag`:
    a conv weight ``W[j, i, a, b]`` is element ``a * kw + b`` of edge ``i -> j``; a Linear
    reading a flattened ``(C, H, W)`` tensor holds ``W[j, c * H * W + s]`` as element
    ``s`` of edge ``c -> j``; an identity shortcut is a weight-1 edge per channel.
    Returns ``(layers, output label)``; the input label is ``"in"``.
    """
    keep = keep or {}
    layers: list = []
    cur, per_unit = "in", 1
    shape = list(net.spec.input_shape)
    mods = dict(net.named_modules())
    k = 0  # index into net.body

    def add(src: str, dst: str, name: str, n_in: int) -> None:
        param = mods[name.rsplit(".", 1)[0]].weight
        w = _w3(param, n_in)
        kp = keep.get(name)
        layers.append((src, dst, w, None if kp is None else np.asarray(kp).reshape(w.shape), 0))

    for idx, op in enumerate(net.spec.ops):
        kind = op[0]
        name = f"body.{k}"
        if kind == "conv":
            out = op[1]
            dst = f"conv{idx}"
            add(cur, dst, f"{name}.weight", shape[0])
            cur = dst
            shape = [out, *_conv_hw(shape, op)]
            k += 1 + int(op[8]) + int(op[9])
        elif kind in ("pool", "gap"):
            shape = [shape[0], 1, 1] if kind == "gap" else [shape[0], shape[1] // 2, shape[2] // 2]
            k += 1
        elif kind == "res":
            _, how, out, stride, _, _ = op
            a, dst = f"res{idx}.a", f"res{idx}.sum"
            add(cur, a, f"{name}.conv1.weight", shape[0])
            add(a, dst, f"{name}.conv2.weight", out)
            if how == "projection":
                add(cur, dst, f"{name}.shortcut.0.weight", shape[0])
            else:
                layers.append((cur, dst, None, None, shape[0]))
            cur = dst
            shape = [out, (shape[1] - 1) // stride + 1, (shape[2] - 1) // stride + 1]
            k += 1
        elif kind == "flatten":
            if cur == "in" and len(shape) == 3 and tuple(shape) == tuple(net.spec.input_shape):
                shape, per_unit = [math.prod(shape)], 1  # the raw input, pixel by pixel
            elif len(shape) == 3:
                shape, per_unit = [shape[0]], shape[1] * shape[2]
            k += 1
        elif kind == "linear":
            out = op[1]
            dst = f"fc{idx}"
            add(cur, dst, f"{name}.weight", shape[0])
            cur, shape, per_unit = dst, [out], 1
            k += 2
    assert per_unit >= 1
    return layers, cur


def _conv_hw(shape: list[int], op: Op) -> list[int]:
    _, _, kh, kw, stride, padding, dilation, *_ = op
    return [
        _out_size(shape[1], kh, stride, padding, dilation),
        _out_size(shape[2], kw, stride, padding, dilation),
    ]


def torch_index(net: SpecNet, param: str, j: int, i: int, e: int) -> tuple[int, ...]:
    """Where element ``e`` of edge ``i -> j`` of ``param`` lives in the torch tensor."""
    w = dict(net.named_parameters())[param]
    if w.dim() == 4:
        kw = w.shape[3]
        return (j, i, e // kw, e % kw)
    n_in_units = _linear_in_units(net, param)
    per = w.shape[1] // n_in_units
    return (j, i * per + e)


def _linear_in_units(net: SpecNet, param: str) -> int:
    layers, _ = reference_layers(net)
    names = [n for n, p in net.named_parameters() if p.dim() > 1]
    # reference_layers appends one weighted layer per parameter, in module order
    weighted = [layer for layer in layers if layer[2] is not None]
    return weighted[names.index(param)][2].shape[1]


@st.composite
def keep_masks(
    draw: st.DrawFn, net: nn.Module, *, allow_empty: bool = True
) -> dict[str, np.ndarray]:
    """Random boolean masks for every prunable weight of ``net``.

    Densities are drawn per layer from {0, 1, uniform}; with ``allow_empty`` a whole layer
    or a unit's whole fan-in/fan-out may be masked (zero fan-out after masking).
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out = {}
    for name, p in pathnet.prunable_parameters(net).items():
        how = draw(st.sampled_from(["uniform"] * 10 + ["full"] * 4 + ["empty", "row", "col"]))
        shape = tuple(p.shape)
        if how == "full" or (how == "empty" and not allow_empty):
            m = np.ones(shape, dtype=bool)
        elif how == "empty":
            m = np.zeros(shape, dtype=bool)
        else:
            m = rng.random(shape) < draw(st.floats(0.3, 1.0))
            if allow_empty and how == "row":  # a unit with no fan-in
                m[rng.integers(shape[0])] = False
            elif allow_empty and how == "col":  # a unit with no fan-out
                m[:, rng.integers(shape[1])] = False
        out[name] = m
    return out


@st.composite
def tweak_weights(draw: st.DrawFn, net: nn.Module) -> dict[str, float]:
    """Scale some layers by 2**-60 or 2**60, zero some, put exact zeros in others (in place).

    Powers of two keep every weight exactly representable, so exact sums stay exact.
    Returns the scale applied to each prunable weight (0 for an all-zero layer).
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scales = {}
    with torch.no_grad():
        for name, p in pathnet.prunable_parameters(net).items():
            scale = draw(st.sampled_from([1.0] * 6 + [2.0**-60, 2.0**60, 0.0]))
            p.mul_(scale)
            if draw(st.integers(0, 3)) == 0:  # some exact zeros
                p[torch.from_numpy(rng.random(tuple(p.shape)) < 0.3)] = 0.0
            scales[name] = scale
    return scales


# ------------------------------------------------------------------ synthetic data files
def idx_bytes(arr: np.ndarray) -> bytes:
    header = b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_fashion(folder: Path, n: int, seed: int = 0, gz: bool = True) -> Path:
    """A tiny synthetic Fashion-MNIST in IDX files (both splits)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n), ("t10k", max(10, n // 4))):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        images[np.arange(count), labels.astype(int), :] = 255  # learnable: a bright row per class
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            raw = idx_bytes(arr)
            name = f"{prefix}-{kind}" + (".gz" if gz else "")
            (folder / name).write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return folder
