"""torch model -> :class:`LayeredDAG`, by tracing with ``torch.fx``.

:func:`to_dag` runs in four steps: check the input shape, trace the model and
propagate a zero batch through it (to know every tensor's shape), hand each
traced node to its handler (:mod:`pathnet.graph.handlers`), and turn the groups
and blocks collected into a validated :class:`LayeredDAG`.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch
import torch.fx
from torch import nn

from pathnet.graph.dag import LayeredDAG, UnitGroup
from pathnet.graph.handlers import UnsupportedModelError, _Builder, _Val
from pathnet.graph.ops import SUPPORTED, WEIGHTED_MODULES, classify, describe, refusal

__all__ = ["SUPPORTED", "UnsupportedModelError", "to_dag"]


def to_dag(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> LayeredDAG:
    """Convert a torch model into a :class:`LayeredDAG`.

    Parameters
    ----------
    model : torch.nn.Module
        Built from Linear, Conv1d/Conv2d (grouped and depthwise included),
        BatchNorm, elementwise activations, pooling (``x.mean(dim=(2, 3))``
        included), dropout, flatten/view, residual additions and channel
        concatenations (``torch.cat(..., dim=1)``). It is not modified (its
        train/eval flags are restored after tracing). Half-precision weights are
        read as float64. Refused with a message naming the node: products of
        two tensors (squeeze-and-excitation gating), LayerNorm and GroupNorm
        (they couple the units of a sample: a DAG of paths has no such edges),
        slicing channels, and every other operation.
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(3, 32, 32)``, ``(features,)`` or, for a
        model with Conv1d, ``(channels, length)``. Defaults to
        ``model.input_shape`` (every zoo model has one).

    Returns
    -------
    LayeredDAG
        Input units are channels when the input feeds a conv, and features
        (pixels) when the flattened input feeds a Linear layer. A layer that
        reads a concatenation gets one block per concatenated input (the
        concatenation's units are its inputs' units); a grouped conv is one
        block whose cross-group elements do not exist; a tensor shared by two
        modules (``b.weight = a.weight``) keeps both blocks and is listed in
        :attr:`LayeredDAG.tied`.

    Raises
    ------
    UnsupportedModelError
        For an operation the DAG cannot express; names the module and its type.
    ValueError
        For a missing or wrong ``input_shape``, NaN/Inf weights, or parameters
        on the meta device (no values to read).

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
    shape = _input_shape(model, input_shape)
    _check_tensors(model)
    modules = dict(model.named_modules())
    graph = _trace(model, shape, modules)
    builder, output = _walk(graph, modules, shape, type(model).__name__)
    return _assemble(builder, output, type(model).__name__)


# ------------------------------------------------------------------ step 1
def _input_shape(model: nn.Module, input_shape: Any) -> tuple[int, ...]:
    """The validated per-sample input shape (argument or ``model.input_shape``)."""
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
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"pathnet.to_dag: input_shape must be a tuple of positive ints, got {input_shape!r}"
        ) from None
    one_d = any(isinstance(m, nn.Conv1d) for m in model.modules())
    if not shape or any(s < 1 for s in shape) or len(shape) not in ((1, 2, 3) if one_d else (1, 3)):
        raise ValueError(
            "pathnet.to_dag: input_shape must be (features,) or (channels, height, width) "
            f"(or (channels, length) for a model with Conv1d) with positive sizes, got {shape}"
        )
    return shape


# ------------------------------------------------------------------ step 2
class _Tracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, WEIGHTED_MODULES):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _trace(
    model: nn.Module, input_shape: tuple[int, ...], modules: dict[str, nn.Module]
) -> torch.fx.Graph:
    """The fx graph of ``model``, every node annotated with its tensor shape.

    Unsupported modules are refused before the shapes are computed, so that a
    module torch cannot run on the traced input is named, not the input shape.
    """
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # fx raises many types; all mean "cannot trace"
        raise UnsupportedModelError(
            f"pathnet.to_dag: torch.fx could not trace {type(model).__name__}: {exc}. "
            "Data-dependent control flow is not supported; supported: " + SUPPORTED
        ) from exc
    bad = [
        f"{n.target!r} ({type(modules[str(n.target)]).__name__}){refusal(modules[str(n.target)])}"
        for n in graph.nodes
        if n.op == "call_module" and classify(n, modules) == "unsupported"
    ]
    if bad:
        raise UnsupportedModelError(
            f"pathnet.to_dag: unsupported module{'s' if len(bad) > 1 else ''} "
            f"{', '.join(bad)} in {type(model).__name__}; supported: " + SUPPORTED
        )
    gm = torch.fx.GraphModule(model, graph)
    _propagate_shapes(gm, model, input_shape)
    return graph


def _propagate_shapes(
    gm: torch.fx.GraphModule, model: nn.Module, input_shape: tuple[int, ...]
) -> None:
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
            desc, op = describe(prop.node, dict(model.named_modules()))
            where = f" at {desc} ({op})"
        raise ValueError(
            f"pathnet.to_dag: input_shape {input_shape} does not fit {type(model).__name__}"
            f"{where}: {type(cause).__name__}: {str(cause).strip().splitlines()[0]}"
        ) from exc
    finally:
        for m, flag in flags.items():
            m.train(flag)


# ------------------------------------------------------------------ step 3
def _walk(
    graph: torch.fx.Graph,
    modules: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    model_name: str,
) -> tuple[_Builder, _Val]:
    """Hand every node to its handler; returns the builder and the output value."""
    n_inputs = sum(n.op == "placeholder" for n in graph.nodes)
    if n_inputs != 1:
        raise UnsupportedModelError(
            f"pathnet.to_dag: {model_name}.forward takes {n_inputs} tensor inputs; "
            "exactly one is supported"
        )
    builder = _Builder(modules, input_shape)
    env: dict[str, Any] = {}
    output: _Val | None = None
    for node in graph.nodes:
        if node.op == "placeholder":
            builder.new_group("input", input_shape[0], "input", input_shape)
            env[node.name] = _Val(0, input_shape)
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, torch.fx.Node) or not isinstance(env.get(out.name), _Val):
                raise UnsupportedModelError(
                    "pathnet.to_dag: the model must return one tensor (tuples and dicts "
                    "of outputs are not supported)"
                )
            output = env[out.name]
        elif node.op == "get_attr":
            env[node.name] = None
        else:
            env[node.name] = builder.apply(node, env)
    assert output is not None
    return builder, output


def _check_tensors(model: nn.Module) -> None:
    """Refuse meta tensors (no values to read) with a message that says what to do."""
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in named:
            if t.is_meta:
                raise ValueError(
                    f"pathnet.to_dag: {kind} {name!r} of {type(model).__name__} is on the meta "
                    "device and has no values; materialise the model first, e.g. "
                    "model.to_empty(device='cpu') and then load_state_dict(...) or "
                    "reset_parameters()"
                )


# ------------------------------------------------------------------ step 4
def _assemble(b: _Builder, output: _Val, model_name: str) -> LayeredDAG:
    """Groups and blocks -> a validated :class:`LayeredDAG`, the output group last."""
    if output.src == 0:
        raise UnsupportedModelError("pathnet.to_dag: the model has no Linear or Conv2d layer")
    if b.materialize(output) != len(b.groups) - 1:
        raise UnsupportedModelError(
            "pathnet.to_dag: the output tensor is not the last layer computed; "
            "models with side branches that do not reach the output are not supported"
        )
    b.groups[-1]["kind"] = "output"
    size = b.groups[0]["size"]
    features = b.input_mode == "features"
    groups = [
        UnitGroup("input", size, "input", (size,) if features else b.input_shape),
        *(UnitGroup(g["name"], g["size"], g["kind"], tuple(g["shape"])) for g in b.groups[1:]),
    ]
    blocks = sorted(b.blocks, key=lambda blk: (blk.target, blk.source))
    return LayeredDAG(tuple(groups), tuple(blocks), model_name, b.input_shape, b.tied)
