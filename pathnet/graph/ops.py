"""Which torch operations :func:`pathnet.to_dag` understands, and how it names them.

:func:`classify` maps a traced ``torch.fx`` node to the key of its handler in
:data:`pathnet.graph.handlers.HANDLERS`; everything else is refused with a
message that names the node (:func:`describe`) and, for a few well-known
modules, why (:func:`refusal`).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

__all__ = ["SUPPORTED", "WEIGHTED_MODULES", "classify", "describe", "refusal"]

SUPPORTED = (
    "Linear, Conv1d/Conv2d (grouped and depthwise included), BatchNorm1d/2d, elementwise "
    "activations, dropout, max/avg/adaptive pooling, spatial mean/sum/amax, upsampling, "
    "flatten/view/reshape to (N, -1), scaling by a number, channel concatenation "
    "(torch.cat along dim 1) and residual additions"
)

# ------------------------------------------------------------ operation tables
WEIGHTED_MODULES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)
# Modules refused with a reason beyond "not supported".
REFUSALS: dict[type[nn.Module], str] = {
    nn.LayerNorm: "normalises each sample across its units and so couples every unit with "
    "every other; a DAG of paths has no such edges (BatchNorm, which is per unit, is fine)",
    nn.GroupNorm: "normalises each sample across groups of units and so couples the units of "
    "a group; a DAG of paths has no such edges (BatchNorm, which is per unit, is fine)",
    nn.Conv3d: "is a 3-d convolution; only Conv1d and Conv2d are supported",
}
_PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.AvgPool1d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool1d,
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
    F.dropout1d,
    F.dropout2d,
    F.max_pool1d,
    F.avg_pool1d,
    F.adaptive_avg_pool1d,
    F.adaptive_max_pool1d,
    torch.max_pool1d,
    torch.avg_pool1d,
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
_RESHAPE_FUNCTIONS: set[Any] = {torch.flatten, torch.reshape, torch.unsqueeze}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze"}
_ADD_FUNCTIONS: set[Any] = {operator.add, operator.iadd, torch.add}
_ADD_METHODS = {"add", "add_"}
_REDUCE_FUNCTIONS: set[Any] = {torch.mean, torch.sum, torch.amax}
_REDUCE_METHODS = {"mean", "sum", "amax"}
_CAT_FUNCTIONS: set[Any] = {torch.cat, torch.concat, torch.concatenate}
_MUL_FUNCTIONS: set[Any] = {operator.mul, operator.imul, operator.truediv, torch.mul, torch.div}
_MUL_METHODS = {"mul", "mul_", "div", "div_"}
_FUNCTION_KINDS = (
    (_ADD_FUNCTIONS, "add"),
    (_RESHAPE_FUNCTIONS, "reshape"),
    (_PASS_FUNCTIONS, "pass"),
    (_REDUCE_FUNCTIONS, "reduce"),
    (_CAT_FUNCTIONS, "cat"),
    (_MUL_FUNCTIONS, "scale"),
    ({operator.getitem}, "index"),
)
_METHOD_KINDS = (
    (_ADD_METHODS, "add"),
    (_RESHAPE_METHODS, "reshape"),
    (_PASS_METHODS, "pass"),
    (_REDUCE_METHODS, "reduce"),
    (_MUL_METHODS, "scale"),
)


def classify(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    """The handler key of a node (a key of :data:`HANDLERS`, or ``"unsupported"``)."""
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, WEIGHTED_MODULES):
            return "weighted"
        if isinstance(mod, nn.Flatten):
            return "reshape"
        if isinstance(mod, _PASS_MODULES):
            return "pass"
        return "unsupported"
    table = {"call_function": _FUNCTION_KINDS, "call_method": _METHOD_KINDS}.get(node.op, ())
    for members, kind in table:
        try:
            if node.target in members:
                return kind
        except TypeError:  # an unhashable target
            break
    return "unsupported"


def refusal(module: nn.Module) -> str:
    """Why a module is refused, for the message that names it."""
    for cls, why in REFUSALS.items():
        if isinstance(module, cls):
            return f", which {why}"
    return ""


def describe(node: torch.fx.Node, modules: dict[str, nn.Module]) -> tuple[str, str]:
    """``(where, what)`` for messages: ``("module 'fc'", "Linear")``."""
    if node.op == "call_module":
        mod = modules[str(node.target)]
        return f"module {node.target!r}", type(mod).__name__
    if node.op == "call_method":
        return f"node {node.name!r}", f"method .{node.target}()"
    name = getattr(node.target, "__name__", str(node.target))
    return f"node {node.name!r}", f"function {name}"
