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
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from pathnet.graph.dag import EdgeBlock

__all__ = ["SUPPORTED", "UnsupportedModelError"]


class UnsupportedModelError(ValueError):
    """A model holds an operation that a layered DAG of units cannot express."""


SUPPORTED = (
    "Linear, Conv2d (groups=1), BatchNorm1d/2d, elementwise activations, dropout, "
    "max/avg/adaptive pooling, upsampling, flatten/view/reshape to (N, -1), and "
    "residual additions"
)

# ------------------------------------------------------------ operation tables
WEIGHTED_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
_PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
    nn.Identity,
    nn.Softmax,
    nn.LogSoftmax,
)
_PASS_FUNCTIONS: set[Any] = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardtanh,
    F.hardswish,
    F.softplus,
    F.dropout,
    F.dropout2d,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    F.interpolate,
    F.softmax,
    F.log_softmax,
    F.batch_norm,
    torch.relu,
    torch.relu_,
    torch.sigmoid,
    torch.tanh,
    torch.nn.functional.sigmoid,
    torch.nn.functional.tanh,
    torch.softmax,
    torch.log_softmax,
    torch.max_pool2d,
    torch.dropout,
}
_PASS_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "contiguous",
    "clone",
    "detach",
    "softmax",
    "log_softmax",
    "clamp",
    "clamp_min",
    "clamp_",
    "float",
    "double",
    "to",
}
_RESHAPE_FUNCTIONS: set[Any] = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze"}
_ADD_FUNCTIONS: set[Any] = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}


def classify(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    """The handler key of a node: ``"weighted"``, ``"pass"``, ``"reshape"``,
    ``"add"`` or ``"unsupported"``."""
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, WEIGHTED_MODULES):
            return "weighted"
        if isinstance(mod, nn.Flatten):
            return "reshape"
        if isinstance(mod, _PASS_MODULES):
            return "pass"
        return "unsupported"
    if node.op == "call_function":
        if node.target in _ADD_FUNCTIONS:
            return "add"
        if node.target in _RESHAPE_FUNCTIONS:
            return "reshape"
        if node.target in _PASS_FUNCTIONS:
            return "pass"
        return "unsupported"
    if node.op == "call_method":
        if node.target in _ADD_METHODS:
            return "add"
        if node.target in _RESHAPE_METHODS:
            return "reshape"
        if node.target in _PASS_METHODS:
            return "pass"
    return "unsupported"


def describe(node: torch.fx.Node, modules: dict[str, nn.Module]) -> tuple[str, str]:
    """``(where, what)`` for messages: ``("module 'fc'", "Linear")``."""
    if node.op == "call_module":
        mod = modules[str(node.target)]
        return f"module {node.target!r}", type(mod).__name__
    if node.op == "call_method":
        return f"node {node.name!r}", f"method .{node.target}()"
    name = getattr(node.target, "__name__", str(node.target))
    return f"node {node.name!r}", f"function {name}"


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
class _Val:
    src: int | _Pending  # a group index, or a pending group
    shape: tuple[int, ...]  # per-sample tensor shape
    per_unit: int = 1  # for a flattened tensor: features per unit


@dataclass(frozen=True)
class _Op:
    """One traced node, as a handler sees it."""

    node: torch.fx.Node
    where: str  # "module 'fc'" / "node 'add_1'"
    what: str  # "Linear" / "function add"
    shape: tuple[int, ...]  # per-sample output shape
    args: list[_Val]  # values of the tensor inputs, in order

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

    def new_group(self, name: str, size: int, kind: str, shape: tuple[int, ...]) -> int:
        self.groups.append({"name": name, "size": int(size), "kind": kind, "shape": shape})
        return len(self.groups) - 1

    def materialize(self, val: _Val) -> int:
        """The group index of ``val``, making its pending group now if needed."""
        src = val.src
        if isinstance(src, int):
            return src
        if src.group is None:
            kind = "sum" if len(src.terms) > 1 else "hidden"
            gid = self.new_group(src.name, src.size, kind, src.shape)
            self.blocks.extend(_block(term, gid) for term in src.terms)
            src.group = gid
        return src.group

    def fix_input_mode(self, x: _Val, mode: str, path: str) -> None:
        """Input units are channels or features (pixels), fixed by the first reader."""
        if x.src != 0:
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
        args = [env[a.name] for a in node.all_input_nodes if isinstance(env.get(a.name), _Val)]
        op = _Op(node, *describe(node, self.modules), shape, args)
        if not args:
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
    return EdgeBlock(
        source=term["source"],
        target=target,
        kind=term["kind"],
        param=term["param"],
        param_shape=term["param_shape"],
        kernel_shape=term["kernel_shape"],
        values=term["values"],
        element_mask=term["element_mask"],
    )


def _per_sample(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(s) for s in meta.shape[1:])


# --------------------------------------------------------------- handlers
def _weighted(b: _Builder, op: _Op) -> _Val:
    """Linear / Conv2d: a pending group fed by one edge block of the weight."""
    path = str(op.node.target)
    module = b.modules[path]
    param = f"{path}.weight"
    if param in b.used_params:
        raise UnsupportedModelError(
            f"pathnet.to_dag: module {path!r} ({type(module).__name__}) is called more than "
            "once; shared weights cannot be one edge block"
        )
    b.used_params.add(param)
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    x = op.args[0]
    if isinstance(module, nn.Conv2d):
        src, n_in, k_shape, kind = _conv_source(b, module, x, path)
    else:
        src, n_in, k_shape, kind = _linear_source(b, x, path)
    n_out = int(weight.shape[0])
    k = math.prod(k_shape)
    if weight.numel() != n_out * n_in * k:
        raise UnsupportedModelError(
            f"pathnet.to_dag: weight of {path!r} has shape {tuple(weight.shape)}, which does "
            f"not match {n_in} input units x {k} elements per edge"
        )
    values = weight.detach().cpu().numpy().reshape(n_out, n_in, k).copy()
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"pathnet.to_dag: parameter {param!r} holds {bad} NaN/Inf values")
    element_mask = _existing_mask(module)
    if element_mask is not None:
        element_mask = element_mask.reshape(values.shape)
    term = {
        "kind": kind,
        "source": src,
        "param": param,
        "param_shape": tuple(weight.shape),
        "kernel_shape": k_shape,
        "values": values,
        "element_mask": element_mask,
    }
    return _Val(_Pending([term], n_out, path, op.shape), op.shape)


def _conv_source(
    b: _Builder, module: nn.Conv2d, x: _Val, path: str
) -> tuple[int, int, tuple[int, ...], str]:
    if module.groups != 1:
        raise UnsupportedModelError(
            f"pathnet.to_dag: module {path!r} (Conv2d) has groups={module.groups}; "
            "grouped and depthwise convolutions are not supported (groups=1 only)"
        )
    if len(x.shape) != 3 or x.per_unit != 1:
        raise UnsupportedModelError(
            f"pathnet.to_dag: Conv2d {path!r} receives a tensor of per-sample shape "
            f"{x.shape}; expected (channels, height, width)"
        )
    b.fix_input_mode(x, "channels", path)
    src = b.materialize(x)
    return src, b.groups[src]["size"], tuple(module.kernel_size), "conv"


def _linear_source(b: _Builder, x: _Val, path: str) -> tuple[int, int, tuple[int, ...], str]:
    if len(x.shape) != 1:
        raise UnsupportedModelError(
            f"pathnet.to_dag: Linear {path!r} receives a tensor of per-sample shape "
            f"{x.shape}; only (N, features) inputs are supported (flatten first)"
        )
    # The raw input flattened is read per feature (pixel); an input pooled per
    # channel (e.g. to 1x1) and flattened is still read per channel.
    features = x.per_unit == 1 and x.shape[0] == math.prod(b.input_shape)
    b.fix_input_mode(x, "features" if features else "channels", path)
    src = b.materialize(x)
    k_shape = (x.per_unit,) if x.per_unit > 1 else ()
    return src, b.groups[src]["size"], k_shape, "linear"


def _pass(b: _Builder, op: _Op) -> _Val:
    """A per-channel operation: same units, maybe another spatial size."""
    if len(op.args) != 1:
        raise op.refuse("combines several tensors; supported: " + SUPPORTED)
    x, shape = op.args[0], op.shape
    if shape != x.shape and not (len(shape) == len(x.shape) == 3 and shape[0] == x.shape[0]):
        raise op.refuse(
            f"changes the tensor from {x.shape} to {shape}; only per-channel operations may "
            "sit between layers"
        )
    return _Val(x.src, shape, x.per_unit)


def _reshape(b: _Builder, op: _Op) -> _Val:
    """Flattening (N, C, H, W) to (N, C*H*W): each unit now stands for H*W features."""
    x, shape = op.args[0], op.shape
    if shape == x.shape:
        return x
    if x.src == 0 and x.shape == b.input_shape and len(shape) == 1:
        # The raw input flattened: its features (pixels) are the input units, as in an MLP.
        return _Val(0, shape, 1)
    if len(shape) == 1 and shape[0] == math.prod(x.shape) and len(x.shape) == 3:
        return _Val(x.src, shape, x.per_unit * x.shape[1] * x.shape[2])
    raise op.refuse(
        f"reshapes {x.shape} to {shape}; only flattening (N, C, H, W) to (N, C*H*W) is supported"
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
