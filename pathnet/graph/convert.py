"""torch model -> :class:`LayeredDAG`, by tracing with ``torch.fx``.

The converter follows tensors, not module names. Each traced value is either a
unit group already made, or a *pending* group: the output of a Linear/Conv2d (or a
sum of such outputs and shortcuts) that becomes a group only when something
needs it as an input. That is how a residual block's last conv and its projection
shortcut both end in the block's sum group rather than in groups of their own.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from pathnet.graph.dag import EdgeBlock, LayeredDAG, UnitGroup

__all__ = ["SUPPORTED", "UnsupportedModelError", "to_dag"]


class UnsupportedModelError(ValueError):
    """A model holds an operation that a layered DAG of units cannot express."""


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
_META_METHODS = {"size", "dim", "numel"}

SUPPORTED = (
    "Linear, Conv2d (groups=1), BatchNorm1d/2d, elementwise activations, dropout, "
    "max/avg/adaptive pooling, upsampling, flatten/view/reshape to (N, -1), and "
    "residual additions"
)


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


@dataclass
class _Builder:
    model: nn.Module
    input_shape: tuple[int, ...]
    groups: list[dict[str, Any]] = field(default_factory=list)
    blocks: list[EdgeBlock] = field(default_factory=list)
    input_mode: str | None = None  # "channels" or "features", fixed at first use
    used_params: set[str] = field(default_factory=set)

    # --------------------------------------------------------------- groups
    def new_group(self, name: str, size: int, kind: str, shape: tuple[int, ...]) -> int:
        self.groups.append({"name": name, "size": int(size), "kind": kind, "shape": shape})
        return len(self.groups) - 1

    def materialize(self, val: _Val) -> int:
        src = val.src
        if isinstance(src, int):
            return src
        if src.group is None:
            kind = "sum" if len(src.terms) > 1 else "hidden"
            gid = self.new_group(src.name, src.size, kind, src.shape)
            for term in src.terms:
                self.blocks.append(self._block(term, gid))
            src.group = gid
        return src.group

    def _block(self, term: dict[str, Any], target: int) -> EdgeBlock:
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

    # -------------------------------------------------------- weighted ops
    def weighted(self, path: str, module: nn.Module, x: _Val, out_shape: tuple[int, ...]) -> _Val:
        param = f"{path}.weight"
        if param in self.used_params:
            raise UnsupportedModelError(
                f"pathnet.to_dag: module {path!r} ({type(module).__name__}) is called more than "
                "once; shared weights cannot be one edge block"
            )
        self.used_params.add(param)
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        if isinstance(module, nn.Conv2d):
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
            self._fix_input_mode(x, "channels", path)
            src = self.materialize(x)
            n_in, k_shape = self.groups[src]["size"], tuple(module.kernel_size)
            kind = "conv"
        else:  # Linear
            if len(x.shape) != 1:
                raise UnsupportedModelError(
                    f"pathnet.to_dag: Linear {path!r} receives a tensor of per-sample shape "
                    f"{x.shape}; only (N, features) inputs are supported (flatten first)"
                )
            # The raw input flattened is read per feature (pixel); an input pooled per
            # channel (e.g. to 1x1) and flattened is still read per channel.
            features = x.per_unit == 1 and x.shape[0] == math.prod(self.input_shape)
            self._fix_input_mode(x, "features" if features else "channels", path)
            src = self.materialize(x)
            n_in = self.groups[src]["size"]
            k_shape = (x.per_unit,) if x.per_unit > 1 else ()
            kind = "linear"
        n_out = int(weight.shape[0])
        k = int(np.prod(k_shape, dtype=np.int64))
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
        return _Val(_Pending([term], n_out, path, out_shape), out_shape)

    def _fix_input_mode(self, x: _Val, mode: str, path: str) -> None:
        if x.src != 0:
            return
        if self.input_mode is None:
            self.input_mode = mode
            if mode == "features" and len(self.input_shape) > 1:
                g = self.groups[0]
                g["size"] = math.prod(self.input_shape)
        elif self.input_mode != mode:
            raise UnsupportedModelError(
                f"pathnet.to_dag: the input is read both per channel and per feature (at {path!r}); "
                "a DAG needs one kind of input unit"
            )

    # ---------------------------------------------------------------- adds
    def add(self, a: _Val, b: _Val, name: str, shape: tuple[int, ...]) -> _Val:
        if a.per_unit != b.per_unit or a.shape != b.shape:
            raise UnsupportedModelError(
                f"pathnet.to_dag: residual addition {name!r} of tensors with shapes "
                f"{a.shape} and {b.shape} (broadcasting sums are not supported)"
            )
        terms: list[dict[str, Any]] = []
        sizes = []
        for v in (a, b):
            if isinstance(v.src, _Pending) and v.src.group is None:
                terms.extend(v.src.terms)
                sizes.append(v.src.size)
            else:
                g = self.materialize(v)
                size = self.groups[g]["size"]
                terms.append({"kind": "identity", "source": g, "size": size})
                sizes.append(size)
        if sizes[0] != sizes[1]:
            raise UnsupportedModelError(
                f"pathnet.to_dag: residual addition {name!r} joins {sizes[0]} and {sizes[1]} units"
            )
        scopes = [t["param"].rsplit(".", 2)[0] for t in terms if t.get("param")]
        label = _common_scope(scopes) if scopes else name
        return _Val(_Pending(terms, sizes[0], f"{label}.add", shape), shape, a.per_unit)


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


class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _per_sample(node: torch.fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(s) for s in meta.shape[1:])


def to_dag(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> LayeredDAG:
    """Convert a torch model into a :class:`LayeredDAG`.

    Parameters
    ----------
    model : torch.nn.Module
        Built from Linear, Conv2d (groups=1), BatchNorm, elementwise activations,
        pooling, dropout, flatten/view and residual additions. It is not modified
        (its train/eval flags are restored after tracing).
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(3, 32, 32)``. Defaults to
        ``model.input_shape`` (every zoo model has one).

    Returns
    -------
    LayeredDAG
        Input units are channels when the input feeds a conv, and features
        (pixels) when the flattened input feeds a Linear layer.

    Raises
    ------
    UnsupportedModelError
        For an operation the DAG cannot express; names the module and its type.
    ValueError
        For a missing or wrong ``input_shape``, or NaN/Inf weights.

    Examples
    --------
    >>> import pathnet
    >>> dag = pathnet.to_dag(pathnet.models.resnet20())
    >>> dag.groups[0].size, dag.groups[-1].size
    (3, 10)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"pathnet.to_dag: model must be a torch.nn.Module, got {type(model).__name__}"
        )
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError(
                f"pathnet.to_dag: {type(model).__name__} has no input_shape attribute; "
                "pass input_shape=(channels, height, width) or (features,)"
            )
    try:
        if any(int(s) != s for s in input_shape):  # 2.5 would silently become 2
            raise ValueError
        input_shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"pathnet.to_dag: input_shape must be a tuple of positive ints, got {input_shape!r}"
        ) from None
    if not input_shape or any(s < 1 for s in input_shape) or len(input_shape) not in (1, 3):
        raise ValueError(
            "pathnet.to_dag: input_shape must be (features,) or (channels, height, width) "
            f"with positive sizes, got {input_shape}"
        )

    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types; all mean "cannot trace"
        raise UnsupportedModelError(
            f"pathnet.to_dag: torch.fx could not trace {type(model).__name__}: {exc}. "
            "Data-dependent control flow is not supported; supported: " + SUPPORTED
        ) from exc
    gm = torch.fx.GraphModule(model, graph)
    _propagate_shapes(gm, model, input_shape)

    b = _Builder(model, input_shape)
    modules = dict(model.named_modules())
    bad = [
        f"{n.target!r} ({type(modules[str(n.target)]).__name__})"
        for n in graph.nodes
        if n.op == "call_module" and _classify(n, modules) == "unsupported"
    ]
    if bad:
        raise UnsupportedModelError(
            f"pathnet.to_dag: unsupported module{'s' if len(bad) > 1 else ''} "
            f"{', '.join(bad)} in {type(model).__name__}; supported: " + SUPPORTED
        )
    env: dict[str, Any] = {}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModelError(
            f"pathnet.to_dag: {type(model).__name__}.forward takes {len(placeholders)} "
            "tensor inputs; exactly one is supported"
        )
    output_val: _Val | None = None

    for node in graph.nodes:
        shape = _per_sample(node)
        if node.op == "placeholder":
            b.new_group("input", input_shape[0], "input", input_shape)
            env[node.name] = _Val(0, input_shape)
            continue
        if node.op == "output":
            out = node.args[0]
            if not isinstance(out, torch.fx.Node) or not isinstance(env.get(out.name), _Val):
                raise UnsupportedModelError(
                    "pathnet.to_dag: the model must return one tensor (tuples and dicts "
                    "of outputs are not supported)"
                )
            output_val = env[out.name]
            continue
        if node.op == "get_attr":
            env[node.name] = None
            continue
        tensor_args = [
            env[a.name] for a in node.all_input_nodes if isinstance(env.get(a.name), _Val)
        ]
        if shape is None:  # sizes, dims, python numbers
            env[node.name] = None
            continue
        where, op_desc = _describe(node, modules)
        if not tensor_args:
            raise UnsupportedModelError(
                f"pathnet.to_dag: {where} ({op_desc}) makes a tensor that does not come from the "
                "input (constants and functional weights are not supported); supported: "
                + SUPPORTED
            )
        kind = _classify(node, modules)
        x = tensor_args[0]
        if kind == "weighted":
            val = b.weighted(str(node.target), modules[str(node.target)], x, shape)
        elif kind == "pass":
            if len(tensor_args) != 1:
                raise UnsupportedModelError(
                    f"pathnet.to_dag: {where} ({op_desc}) combines several tensors; supported: "
                    + SUPPORTED
                )
            if shape != x.shape and not (
                len(shape) == len(x.shape) == 3 and shape[0] == x.shape[0]
            ):
                raise UnsupportedModelError(
                    f"pathnet.to_dag: {where} ({op_desc}) changes the tensor from {x.shape} to "
                    f"{shape}; only per-channel operations may sit between layers"
                )
            val = _Val(x.src, shape, x.per_unit)
        elif kind == "reshape":
            val = _reshape(x, shape, where, op_desc, input_shape)
        elif kind == "add":
            if len(tensor_args) != 2:
                raise UnsupportedModelError(
                    f"pathnet.to_dag: {where} adds a constant to a tensor; only sums of two "
                    "tensors (residual connections) are supported"
                )
            val = b.add(tensor_args[0], tensor_args[1], node.name, shape)
        else:
            raise UnsupportedModelError(
                f"pathnet.to_dag: {where} ({op_desc}) is not supported; supported: " + SUPPORTED
            )
        if isinstance(val.src, _Pending) and len(node.users) > 1:
            b.materialize(val)  # used twice: it must be a group of its own
        env[node.name] = val

    assert output_val is not None
    if output_val.src == 0:
        raise UnsupportedModelError("pathnet.to_dag: the model has no Linear or Conv2d layer")
    out_group = b.materialize(output_val)
    if out_group != len(b.groups) - 1:
        raise UnsupportedModelError(
            "pathnet.to_dag: the output tensor is not the last layer computed; "
            "models with side branches that do not reach the output are not supported"
        )
    b.groups[-1]["kind"] = "output"
    if b.input_mode is None:
        b.input_mode = "channels"
    groups = tuple(UnitGroup(g["name"], g["size"], g["kind"], tuple(g["shape"])) for g in b.groups)
    groups = (
        UnitGroup(
            "input",
            groups[0].size,
            "input",
            (groups[0].size,) if b.input_mode == "features" else input_shape,
        ),
        *groups[1:],
    )
    blocks = sorted(b.blocks, key=lambda blk: (blk.target, blk.source))
    return LayeredDAG(groups, tuple(blocks), type(model).__name__, input_shape)


def _describe(node: torch.fx.Node, modules: dict[str, nn.Module]) -> tuple[str, str]:
    if node.op == "call_module":
        mod = modules[str(node.target)]
        return f"module {node.target!r}", type(mod).__name__
    if node.op == "call_method":
        return f"node {node.name!r}", f"method .{node.target}()"
    name = getattr(node.target, "__name__", str(node.target))
    return f"node {node.name!r}", f"function {name}"


def _classify(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
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
    return "unsupported"


def _reshape(
    x: _Val, shape: tuple[int, ...], where: str, op_desc: str, input_shape: tuple[int, ...]
) -> _Val:
    if shape == x.shape:
        return x
    if x.src == 0 and x.shape == input_shape and len(shape) == 1:
        # The raw input flattened: its features (pixels) are the input units, as in an MLP.
        return _Val(0, shape, 1)
    if len(shape) == 1 and shape[0] == math.prod(x.shape) and len(x.shape) == 3:
        return _Val(x.src, shape, x.per_unit * x.shape[1] * x.shape[2])
    raise UnsupportedModelError(
        f"pathnet.to_dag: {where} ({op_desc}) reshapes {x.shape} to {shape}; only flattening "
        "(N, C, H, W) to (N, C*H*W) is supported"
    )


def _propagate_shapes(
    gm: torch.fx.GraphModule, model: nn.Module, input_shape: tuple[int, ...]
) -> None:
    import contextlib
    import io

    from torch.fx.passes.shape_prop import ShapeProp

    class _Prop(ShapeProp):  # remembers the node that failed
        node: torch.fx.Node | None = None

        def run_node(self, n: torch.fx.Node) -> Any:
            self.node = n
            return super().run_node(n)

    first = next(iter(model.parameters()), None)
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    device = first.device if first is not None else torch.device("cpu")
    flags = {m: m.training for m in model.modules()}
    prop = _Prop(gm)
    try:
        model.eval()
        # ShapeProp prints a traceback of its own before raising; the error below says it all.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            prop.propagate(torch.zeros((2, *input_shape), dtype=dtype, device=device))
    except Exception as exc:
        cause: BaseException = exc
        while cause.__cause__ is not None:  # ShapeProp wraps the error torch raised
            cause = cause.__cause__
        where = ""
        if prop.node is not None and prop.node.op not in ("placeholder", "output"):
            desc, op = _describe(prop.node, dict(model.named_modules()))
            where = f" at {desc} ({op})"
        raise ValueError(
            f"pathnet.to_dag: input_shape {input_shape} does not fit {type(model).__name__}"
            f"{where}: {type(cause).__name__}: {str(cause).strip().splitlines()[0]}"
        ) from exc
    finally:
        for m, flag in flags.items():
            m.train(flag)
