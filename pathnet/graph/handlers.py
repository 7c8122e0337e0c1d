"""What each traced operation does to the DAG under construction.

:mod:`pathnet.graph.convert` traces a model with ``torch.fx`` and hands every node
to :meth:`_Builder.apply`, which classifies it (:func:`classify`) and calls the
handler registered for that class in :data:`HANDLERS`. A handler turns the
values of the node's tensor inputs into the value of its output.

Each traced value (:class:`_Val`) is either a unit group already made, or a
*pending* group (:class:`_Pending`): the output of a Linear/Conv2d (or a sum of
such outputs and shortcuts) that becomes a group only when something needs it
as an input. That is how a residual block's last conv and its projection
shortcut both end in the block's sum group rather than in groups of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
from torch import nn

from pathnet.graph.dag import EdgeBlock
from pathnet.graph.ops import SUPPORTED, classify, describe

__all__ = ["HANDLERS", "UnsupportedModelError"]


class UnsupportedModelError(ValueError):
    """A model holds an operation that a layered DAG of units cannot express."""


# ----------------------------------------------------------------- values
@dataclass
class _Pending:
    """Blocks that will end in one group once the group is needed."""

    terms: list[dict[str, Any]]
    size: int
    name: str
    shape: tuple[int, ...]  # per-sample shape of the tensor the group stands for
    group: int | None = None


@dataclass(frozen=True)
class _Cat:
    """A channel concatenation: its units are those of the groups listed, in order.

    It never becomes a group; a layer that reads it gets one block per group.
    """

    parts: tuple[int, ...]


@dataclass(frozen=True)
class _Val:
    src: int | _Pending | _Cat  # a group index, a pending group or a concatenation
    shape: tuple[int, ...]  # per-sample tensor shape
    per_unit: int = 1  # for a flattened tensor: features per unit


@dataclass(frozen=True)
class _Op:
    """One traced node, as a handler sees it."""

    node: torch.fx.Node
    where: str  # "module 'fc'" / "node 'add_1'"
    what: str  # "Linear" / "function add"
    shape: tuple[int, ...]  # per-sample output shape
    args: list[_Val]  # values of the tensor inputs, in order, each once
    named: dict[str, _Val]  # the same by node name

    def refuse(self, problem: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"pathnet.to_dag: {self.where} ({self.what}) {problem}")


# ---------------------------------------------------------------- builder
@dataclass
class _Builder:
    modules: dict[str, nn.Module]
    input_shape: tuple[int, ...]
    groups: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[EdgeBlock] = field(default_factory=list)
    input_mode: str | None = None  # "channels" or "features", fixed at first use
    used_params: set[str] = field(default_factory=set)
    tensors: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = field(
        default_factory=dict
    )  # storage key of each weight read so far -> its (canonical) name
    tied: dict[str, str] = field(default_factory=dict)
    masks: dict[str, np.ndarray | None] = field(default_factory=dict)  # masks already applied

    def new_group(self, name: str, size: int, kind: str, shape: tuple[int, ...]) -> int:
        self.groups.append({"name": name, "size": int(size), "kind": kind, "shape": shape})
        return len(self.groups) - 1

    def materialize(self, val: _Val) -> int:
        """The group index of ``val``, making its pending group now if needed."""
        src = val.src
        if isinstance(src, int):
            return src
        if isinstance(src, _Cat):
            raise UnsupportedModelError(
                "pathnet.to_dag: a channel concatenation (torch.cat) feeds a residual sum or "
                "the model output; it may only feed Linear/Conv layers and per-channel operations"
            )
        if src.group is None:
            # A sum adds several tensors; one layer reading a concatenation is not a sum.
            kind = "sum" if len({t.get("param") or id(t) for t in src.terms}) > 1 else "hidden"
            gid = self.new_group(src.name, src.size, kind, src.shape)
            self.blocks.extend(_block(term, gid) for term in src.terms)
            src.group = gid
        return src.group

    def sources(self, x: _Val) -> tuple[int, ...]:
        """The groups whose units ``x`` is made of (several for a concatenation)."""
        return x.src.parts if isinstance(x.src, _Cat) else (self.materialize(x),)

    def fix_input_mode(self, x: _Val, mode: str, path: str) -> None:
        """Input units are channels or features (pixels), fixed by the first reader."""
        if x.src != 0 and not (isinstance(x.src, _Cat) and 0 in x.src.parts):
            return
        if self.input_mode is None:
            self.input_mode = mode
            if mode == "features" and len(self.input_shape) > 1:
                self.groups[0]["size"] = math.prod(self.input_shape)
        elif self.input_mode != mode:
            raise UnsupportedModelError(
                f"pathnet.to_dag: the input is read both per channel and per feature (at {path!r}); "
                "a DAG needs one kind of input unit"
            )

    def apply(self, node: torch.fx.Node, env: dict[str, Any]) -> _Val | None:
        """The value of one computing node (None for sizes, dims and numbers)."""
        shape = _per_sample(node)
        if shape is None:
            return None
        named = {
            a.name: env[a.name] for a in node.all_input_nodes if isinstance(env.get(a.name), _Val)
        }
        op = _Op(node, *describe(node, self.modules), shape, list(named.values()), named)
        if not named:
            raise op.refuse(
                "makes a tensor that does not come from the input (constants and functional "
                "weights are not supported); supported: " + SUPPORTED
            )
        val = HANDLERS.get(classify(node, self.modules), _unsupported)(self, op)
        if isinstance(val.src, _Pending) and len(node.users) > 1:
            self.materialize(val)  # used twice: it must be a group of its own
        return val


def _block(term: dict[str, Any], target: int) -> EdgeBlock:
    if term["kind"] == "identity":
        return EdgeBlock(
            source=term["source"],
            target=target,
            kind="identity",
            param=None,
            param_shape=(),
            kernel_shape=(),
            values=None,
            n_units=term["size"],
        )
    return EdgeBlock(target=target, **{k: v for k, v in term.items() if k != "size"})


def _per_sample(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(s) for s in meta.shape[1:])


# --------------------------------------------------------------- handlers
def _weighted(b: _Builder, op: _Op) -> _Val:
    """Linear / Conv: a pending group fed by one edge block per source group."""
    path = str(op.node.target)
    module = b.modules[path]
    param = f"{path}.weight"
    if param in b.used_params:
        raise UnsupportedModelError(
            f"pathnet.to_dag: module {path!r} ({type(module).__name__}) is called more than "
            "once; shared weights cannot be one edge block"
        )
    b.used_params.add(param)
    x = op.args[0]
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        k_shape, kind = _conv_input(b, module, x, path)
    else:
        k_shape, kind = _linear_input(b, x, path)
    sources = b.sources(x)
    n_in = sum(b.groups[g]["size"] for g in sources)
    values, index = _dense_weight(module, n_in, math.prod(k_shape), path)
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    existing = _existing_mask(module)
    _note_tie(b, weight, param, existing)
    element_mask = None if existing is None else _dense_mask(existing, values.shape, index)
    terms, start = [], 0
    for g in sources:
        cols = slice(start, start + b.groups[g]["size"])
        start = cols.stop
        whole = len(sources) == 1
        if index is None and not whole:
            index = np.arange(values.size, dtype=np.int64).reshape(values.shape)
        terms.append(
            {
                "kind": kind,
                "source": g,
                "param": param,
                "param_shape": tuple(weight.shape),
                "kernel_shape": k_shape,
                "values": values if whole else values[:, cols].copy(),
                "element_mask": (
                    element_mask if whole or element_mask is None else element_mask[:, cols].copy()
                ),
                "param_index": index if whole or index is None else index[:, cols].copy(),
            }
        )
    return _Val(_Pending(terms, values.shape[0], path, op.shape), op.shape)


def _conv_input(
    b: _Builder, module: nn.Conv1d | nn.Conv2d, x: _Val, path: str
) -> tuple[tuple[int, ...], str]:
    dims = len(module.kernel_size)
    expected = "(channels, length)" if dims == 1 else "(channels, height, width)"
    if len(x.shape) != dims + 1 or x.per_unit != 1:
        raise UnsupportedModelError(
            f"pathnet.to_dag: {type(module).__name__} {path!r} receives a tensor of per-sample "
            f"shape {x.shape}; expected {expected}"
        )
    b.fix_input_mode(x, "channels", path)
    return tuple(module.kernel_size), "conv"


def _linear_input(b: _Builder, x: _Val, path: str) -> tuple[tuple[int, ...], str]:
    if len(x.shape) != 1:
        raise UnsupportedModelError(
            f"pathnet.to_dag: Linear {path!r} receives a tensor of per-sample shape "
            f"{x.shape}; only (N, features) inputs are supported (flatten first)"
        )
    # The raw input flattened is read per feature (pixel); an input pooled per
    # channel (e.g. to 1x1) and flattened is still read per channel.
    features = x.per_unit == 1 and x.shape[0] == math.prod(b.input_shape)
    if isinstance(x.src, _Cat):
        features = len(b.input_shape) == 1
    b.fix_input_mode(x, "features" if features else "channels", path)
    return ((x.per_unit,) if x.per_unit > 1 else ()), "linear"


def _dense_weight(
    module: nn.Module, n_in: int, k: int, path: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The weight as ``(n_out, n_in, k)`` values and, for a grouped conv, where each
    dense element lives in the parameter (``-1``: outside its group)."""
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    n_out = int(weight.shape[0])
    groups = int(getattr(module, "groups", 1))
    if weight.numel() * groups != n_out * n_in * k:
        raise UnsupportedModelError(
            f"pathnet.to_dag: weight of {path!r} has shape {tuple(weight.shape)}, which does "
            f"not match {n_in} input units x {k} elements per edge"
        )
    w = weight.detach().cpu()
    if w.dtype not in (torch.float32, torch.float64):
        w = w.to(torch.float64)  # half precision: numpy and the kernels want float32/64
    flat = w.numpy().reshape(n_out, n_in // groups, k)
    if not np.isfinite(flat).all():
        bad = int((~np.isfinite(flat)).sum())
        raise ValueError(f"pathnet.to_dag: parameter '{path}.weight' holds {bad} NaN/Inf values")
    if groups == 1:
        return flat.copy(), None
    # Output channel j of group g reads input channels g*a .. (g+1)*a - 1 only.
    a, per = n_in // groups, n_out // groups
    values = np.zeros((n_out, n_in, k), dtype=flat.dtype)
    index = np.full((n_out, n_in, k), -1, dtype=np.int64)
    where = np.arange(flat.size, dtype=np.int64).reshape(flat.shape)
    for g in range(groups):
        rows, cols = slice(g * per, (g + 1) * per), slice(g * a, (g + 1) * a)
        values[rows, cols] = flat[rows]
        index[rows, cols] = where[rows]
    return values, index


def _dense_mask(mask: np.ndarray, shape: tuple[int, ...], index: np.ndarray | None) -> np.ndarray:
    if index is None:
        return mask.reshape(shape)
    out = np.zeros(shape, dtype=bool)
    exists = index >= 0
    out[exists] = mask.reshape(-1)[index[exists]]
    return out


def _note_tie(b: _Builder, weight: torch.Tensor, param: str, mask: np.ndarray | None) -> None:
    """Record ``param`` as tied if its tensor was read before under another name."""
    storage = weight.untyped_storage().data_ptr()
    key = (storage, int(weight.storage_offset()), tuple(weight.shape), tuple(weight.stride()))
    if key in b.tensors:
        canon = b.tied[param] = b.tensors[key]
        other = b.masks[canon]
        if (mask is None) != (other is None) or (
            mask is not None and other is not None and not np.array_equal(mask, other)
        ):
            raise UnsupportedModelError(
                f"pathnet.to_dag: {param!r} and {canon!r} are one tied tensor but carry "
                "different masks; mask both names alike (one mask per tensor)"
            )
        return
    b.masks[param] = mask
    overlap = [name for k, name in b.tensors.items() if k[0] == storage and storage]
    if overlap:
        raise UnsupportedModelError(
            f"pathnet.to_dag: parameter {param!r} shares storage with {overlap[0]!r} but is a "
            "different view of it; only whole tied tensors (b.weight = a.weight) are supported"
        )
    b.tensors[key] = param


def _pass(b: _Builder, op: _Op) -> _Val:
    """A per-channel operation: same units, maybe another spatial size."""
    if len(op.args) != 1:
        raise op.refuse("combines several tensors; supported: " + SUPPORTED)
    x, shape = op.args[0], op.shape
    if shape != x.shape and not (len(shape) == len(x.shape) >= 2 and shape[0] == x.shape[0]):
        raise op.refuse(
            f"changes the tensor from {x.shape} to {shape}; only per-channel operations may "
            "sit between layers"
        )
    return _Val(x.src, shape, x.per_unit)


def _scale(b: _Builder, op: _Op) -> _Val:
    """Multiplying or dividing by a number is per unit; by another tensor it is not."""
    operands = [*op.node.args, *op.node.kwargs.values()]
    nodes = [a for a in operands if isinstance(a, torch.fx.Node)]
    numbers = all(isinstance(a, (int, float)) for a in operands if a not in nodes)
    if len(nodes) == 1 and numbers:
        return _pass(b, op)
    if len(op.args) > 1:
        raise op.refuse(
            "multiplies two tensors elementwise (gating, as in squeeze-and-excitation); a DAG "
            "of weighted paths cannot express a product of two activations"
        )
    raise op.refuse(
        "multiplies by a tensor that does not come from the input (a constant or buffer); "
        "only scaling by a number is supported"
    )


def _reduce(b: _Builder, op: _Op) -> _Val:
    """Global pooling written as ``x.mean(dim=(2, 3))``: spatial dims only."""
    x = op.args[0]
    node = op.node
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if isinstance(dims, int):
        dims = (dims,)
    ndim = len(x.shape) + 1
    if (
        not isinstance(dims, (tuple, list))
        or not dims
        or not all(isinstance(d, int) for d in dims)
        or x.per_unit != 1
    ):
        raise op.refuse(
            f"reduces over dim={dims!r}; only reductions over spatial dims of an (N, C, ...) "
            "tensor, such as x.mean(dim=(2, 3)), are supported"
        )
    if any(not -ndim <= d < ndim or d % ndim < 2 for d in dims):
        raise op.refuse(
            f"reduces over dims {tuple(dims)} of a {ndim}-d tensor, which include the batch or "
            "channel dimension; only spatial dims (2 and up) may be reduced"
        )
    return _Val(x.src, op.shape, 1)


def _cat(b: _Builder, op: _Op) -> _Val:
    """``torch.cat`` along channels: the units of the inputs, side by side."""
    node = op.node
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    inputs = node.args[0] if node.args else node.kwargs.get("tensors", ())
    ndim = len(op.shape) + 1
    if not isinstance(dim, int) or not -ndim <= dim < ndim or dim % ndim != 1:
        raise op.refuse(f"concatenates along dim={dim!r}; only the channel dim (1) is supported")
    items = inputs if isinstance(inputs, (tuple, list)) else ()
    vals = [op.named.get(a.name) if isinstance(a, torch.fx.Node) else None for a in items]
    if not vals or any(v is None for v in vals):
        raise op.refuse("concatenates tensors that do not all come from the input")
    parts: list[int] = []
    for v in vals:
        assert v is not None
        if v.per_unit != 1 or v.shape[1:] != op.args[0].shape[1:]:
            raise op.refuse(
                f"concatenates tensors of shapes {[a.shape for a in op.args]}; they must "
                "differ only in channels"
            )
        if v.src == 0 and v.shape != b.input_shape:
            raise op.refuse("concatenates the flattened input; concatenate channels instead")
        parts.extend(b.sources(v))
    return _Val(_Cat(tuple(parts)), op.shape)


def _reshape(b: _Builder, op: _Op) -> _Val:
    """Flattening (N, C, ...) to (N, C*...): each unit now stands for its spatial features."""
    x, shape = op.args[0], op.shape
    if shape == x.shape:
        return x
    if x.src == 0 and x.shape == b.input_shape and len(shape) == 1:
        # The raw input flattened: its features (pixels) are the input units, as in an MLP.
        return _Val(0, shape, 1)
    if len(shape) == 1 and shape[0] == math.prod(x.shape) and len(x.shape) in (2, 3):
        return _Val(x.src, shape, x.per_unit * math.prod(x.shape[1:]))
    if _singletons(x, shape):
        return _Val(x.src, shape, 1)
    raise op.refuse(
        f"reshapes {x.shape} to {shape}; only flattening (N, C, ...) to (N, -1) is supported"
    )


def _singletons(x: _Val, shape: tuple[int, ...]) -> bool:
    """``(C,)`` viewed as ``(C, 1, 1)`` or back: the same units."""
    same_c = x.per_unit == 1 and bool(shape) and bool(x.shape) and shape[0] == x.shape[0]
    return same_c and math.prod(shape) == math.prod(x.shape) == shape[0]


def _index(b: _Builder, op: _Op) -> _Val:
    """``g[:, :, None, None]``: only adding singleton dims, which keeps the units."""
    x = op.args[0]
    idx = op.node.args[1] if len(op.node.args) > 1 else None
    items = idx if isinstance(idx, tuple) else (idx,)
    plain = all(i is None or i is Ellipsis or i == slice(None) for i in items)
    if len(op.args) == 1 and plain and (op.shape == x.shape or _singletons(x, op.shape)):
        return _Val(x.src, op.shape, x.per_unit)
    raise op.refuse(
        f"indexes the tensor with {idx!r}; only adding singleton dims (x[:, :, None]) is "
        "supported, slicing units is not"
    )


def _add(b: _Builder, op: _Op) -> _Val:
    """A residual sum: one pending group fed by the terms of both operands."""
    if len(op.args) != 2:
        raise UnsupportedModelError(
            f"pathnet.to_dag: {op.where} adds a constant to a tensor; only sums of two "
            "tensors (residual connections) are supported"
        )
    a, c = op.args
    name = op.node.name
    if a.per_unit != c.per_unit or a.shape != c.shape:
        raise UnsupportedModelError(
            f"pathnet.to_dag: residual addition {name!r} of tensors with shapes "
            f"{a.shape} and {c.shape} (broadcasting sums are not supported)"
        )
    if isinstance(a.src, _Cat) or isinstance(c.src, _Cat):
        raise op.refuse(
            "adds a channel concatenation (torch.cat) to a tensor; a concatenation may only "
            "feed Linear/Conv layers and per-channel operations"
        )
    terms: list[dict[str, Any]] = []
    sizes = []
    for v in (a, c):
        if isinstance(v.src, _Pending) and v.src.group is None:
            terms.extend(v.src.terms)
            sizes.append(v.src.size)
        else:
            g = b.materialize(v)
            size = b.groups[g]["size"]
            terms.append({"kind": "identity", "source": g, "size": size})
            sizes.append(size)
    if sizes[0] != sizes[1]:
        raise UnsupportedModelError(
            f"pathnet.to_dag: residual addition {name!r} joins {sizes[0]} and {sizes[1]} units"
        )
    scopes = [t["param"].rsplit(".", 2)[0] for t in terms if t.get("param")]
    label = _common_scope(scopes) if scopes else name
    return _Val(_Pending(terms, sizes[0], f"{label}.add", op.shape), op.shape, a.per_unit)


def _unsupported(b: _Builder, op: _Op) -> _Val:
    raise op.refuse("is not supported; supported: " + SUPPORTED)


HANDLERS: dict[str, Callable[[_Builder, _Op], _Val]] = {
    "weighted": _weighted,
    "pass": _pass,
    "reshape": _reshape,
    "add": _add,
    "reduce": _reduce,
    "cat": _cat,
    "scale": _scale,
    "index": _index,
}


# ---------------------------------------------------------------- helpers
def _common_scope(paths: list[str]) -> str:
    parts = [p.split(".") for p in paths]
    common: list[str] = []
    for pieces in zip(*parts):
        if len(set(pieces)) != 1:
            break
        common.append(pieces[0])
    return ".".join(common) or paths[0]


def _existing_mask(module: nn.Module) -> np.ndarray | None:
    """A mask already applied by :func:`pathnet.apply_mask` or ``torch.nn.utils.prune``."""
    hard = getattr(module, "_pathnet_hard_mask", None)
    if hard is not None:
        return hard[0].detach().cpu().numpy().astype(bool)
    mask = getattr(module, "weight_mask", None)
    if isinstance(mask, torch.Tensor):
        return mask.detach().cpu().numpy().astype(bool)
    params = getattr(module, "parametrizations", None)
    if params is not None and "weight" in params:
        for p in params["weight"]:
            m = getattr(p, "mask", None)
            if isinstance(m, torch.Tensor):
                return m.detach().cpu().numpy().astype(bool)
    return None
