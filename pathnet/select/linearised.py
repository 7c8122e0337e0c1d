"""The network as torch runs it, linearised: the exact engine behind SynFlow and the trace.

SynFlow, SynFlow-L2 and the path-kernel trace all work on the same object: a
float64 copy of the model in eval mode where every floating-point entry of the
state dict is replaced by ``|x|`` (``p=1``) or ``x**2`` (``p=2``), fed an all-ones
input of batch 1, with ``R = sum(output)``. :class:`Linearised` builds that copy
and swaps each prunable Linear / Conv2d for a layer that convolves with the
*alive* weight elements only, *channel-compacted*: input channels that no alive
element reads and output channels that no alive element writes are dropped from
the convolution (they contribute exactly zero), and the output is scattered back
to its full channel count. torch runs everything (float64 convolutions, padding,
pooling, strides, BatchNorm in eval mode, residual additions, activations) and
autograd gives every alive element's gradient in one backward pass, so the
computation is the one plain autograd does on the masked network, on smaller
convolutions: as pruning goes on, whole channels die and the cost of a step falls
(VGG16, SynFlow-L2 to 1%: the last block's 512x512 convolutions are about
300x100 wide at step 75 of 100). A convolution runs as ``W @ unfold(x)``, its
backward as ``G @ unfold(x)^T`` and ``fold((G^T @ W)^T)``, all on one torch
thread; numba (:mod:`pathnet._kernels.linconv`) keeps the alive elements, gathers
their scores and finds the k-th largest. Pruned elements are zeroed in the
compacted weight at once and dropped from the arrays (with a recompaction of the
channels) once fewer than ``_COMPACT_AT`` of a layer's slots are alive.

Numbers are float64 throughout. The compacted convolutions add the same nonzero
terms as the full ones, possibly in another order (a different matrix shape), so
results equal float64 autograd on the masked network to rounding (relative
``~1e-15``); the tests compare masks and traces with plain autograd references.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathnet._kernels.linconv import (
    alive_elements,
    channel_maps,
    compact_slots,
    fill_weight,
    gather_scores,
    kill_slots,
    kth_largest_nonneg,
)
from pathnet.graph import LayeredDAG
from pathnet.select.scoring import block_offsets

__all__ = ["Linearised", "linearised_copy"]

_COMPACT_AT = 0.7  # drop a layer's dead slots once fewer than this share is alive


def linearised_copy(model: nn.Module, p: int, buffers: bool = True) -> nn.Module:
    """Float64 eval-mode deep copy with ``|x|`` (``p=1``) or ``x**2`` (``p=2``) in every
    floating-point state-dict entry (only in the parameters if not ``buffers``), no
    gradients required. ``model`` is not modified."""
    net = copy.deepcopy(model).double().eval()
    entries = net.state_dict().values() if buffers else net.parameters()
    with torch.no_grad():
        for t in entries:
            if t.is_floating_point():
                if p == 2:
                    t.mul_(t)
                else:
                    t.abs_()
    for q in net.parameters():
        q.requires_grad_(False)
    return net


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: the matrices of a batch-1 network are small (a
    second thread gains little and, on a busy machine, its OpenMP waits cost more
    than the work), and the float64 results then do not depend on the caller's
    thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Layer:
    """One prunable weight: its alive elements and the compacted dense weight."""

    def __init__(
        self,
        module: nn.Module,
        values: np.ndarray,
        present: np.ndarray,
        gbase: int,
        p: int,
        score_power: int,
    ) -> None:
        self.is_conv = isinstance(module, nn.Conv2d)
        self.shape = tuple(int(s) for s in values.shape)
        self.n_out, self.n_in = self.shape[:2]
        self.n_k = int(np.prod(self.shape[2:], dtype=np.int64)) if self.is_conv else 1
        self.prepad: tuple[Any, str] | None = None
        if self.is_conv:
            conv: Any = module
            if conv.groups != 1:
                raise ValueError("grouped convolutions are not supported")
            self.stride, self.dilation = tuple(conv.stride), tuple(conv.dilation)
            self.kernel = tuple(conv.kernel_size)
            pad = conv.padding
            if conv.padding_mode != "zeros" or isinstance(pad, str):
                mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
                if pad != "valid":
                    self.prepad = (conv._reversed_padding_repeated_twice, mode)
                pad = (0, 0)
            self.padding = tuple(pad)
        a = np.ascontiguousarray(values).ravel()
        self.gbase = gbase
        # the alive elements in torch order; base: forward weight (-1: dead)
        self.j, self.i, self.k, self.base, self.sec = alive_elements(
            present.ravel(), a, self.n_in, self.n_k, p, score_power
        )
        self.n_alive = self.n_slots
        self.scores = np.zeros(0)
        self.compact()

    @property
    def n_slots(self) -> int:
        return int(self.base.size)

    def compact(self) -> None:
        """Drop the dead slots; rebuild the compacted dense weight."""
        if self.n_alive < self.n_slots:
            n = compact_slots(self.j, self.i, self.k, self.base, self.sec)
            self.j, self.i, self.k = self.j[:n].copy(), self.i[:n].copy(), self.k[:n].copy()
            self.base, self.sec = self.base[:n].copy(), self.sec[:n].copy()
        omap, imap, n_o, n_i = channel_maps(self.j, self.i, self.n_out, self.n_in)
        self.omap, self.imap = omap, imap
        w = torch.zeros(n_o * n_i * self.n_k, dtype=torch.float64)
        self.cidx = np.empty(self.n_slots, dtype=np.int64)
        fill_weight(
            self.j, self.i, self.k, self.base, omap, imap, n_i, self.n_k, w.numpy(), self.cidx
        )
        self.weight = w.reshape((n_o, n_i, *self.shape[2:])).requires_grad_(True)
        self.out_idx = None if n_o == self.n_out else torch.from_numpy(np.flatnonzero(omap >= 0))
        self.in_idx = None if n_i == self.n_in else torch.from_numpy(np.flatnonzero(imap >= 0))

    def global_index(self, slots: np.ndarray) -> np.ndarray:
        """Global element indices (torch order, offset by ``gbase``) of local slots."""
        j, i, k = (self.j[slots].astype(np.int64), self.i[slots], self.k[slots])
        return self.gbase + (j * self.n_in + i) * self.n_k + k

    def out_size(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """Output spatial size of a convolution on an input of spatial ``size``."""
        return tuple(
            (n + 2 * pad - dil * (kk - 1) - 1) // st + 1
            for n, kk, st, pad, dil in zip(
                size, self.kernel, self.stride, self.padding, self.dilation
            )
        )

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output (no bias) on input ``x`` (batch 1)."""
        if self.prepad is not None:
            x = F.pad(x, self.prepad[0], mode=self.prepad[1])
        if self.n_alive == 0:  # no alive element: the output is zero
            size = self.out_size(tuple(x.shape[2:])) if self.is_conv else ()
            return x.new_zeros((1, self.n_out, *size))
        if self.in_idx is not None:
            x = x.index_select(1, self.in_idx)
        w = self.weight
        if self.is_conv:
            y = _Conv.apply(x, w, self)
        else:
            y = F.linear(x, w.reshape(w.shape[0], -1))
        if self.out_idx is not None:
            y = y.new_zeros((1, self.n_out, *y.shape[2:])).index_copy(1, self.out_idx, y)
        return y


class _Conv(torch.autograd.Function):
    """A batch-1 convolution as ``W @ unfold(x)`` (compacted ``W``).

    The backward computes the input gradient as ``fold((G^T @ W)^T)`` (reads ``W``
    in its memory order: about twice as fast as torch's float64 convolution
    backward on VGG16's 512-channel layers) and no dense weight gradient: it
    keeps ``G`` and ``unfold(x)`` on the layer, whose alive elements get their
    gradients ``G[j] . unfold(x)[i, k]`` from :func:`conv_scores`.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, layer: _Layer) -> torch.Tensor:
        u = F.unfold(x, layer.kernel, layer.dilation, layer.padding, layer.stride)[0]
        w2 = w.reshape(w.shape[0], -1)
        ctx.save_for_backward(u, w2)
        ctx.layer, ctx.size = layer, tuple(x.shape[2:])
        return (w2 @ u).reshape(1, w.shape[0], *layer.out_size(ctx.size))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        u, w2 = ctx.saved_tensors
        layer: _Layer = ctx.layer
        g = grad.reshape(w2.shape[0], -1).contiguous()
        gw = (g @ u.T).reshape(layer.weight.shape) if ctx.needs_input_grad[1] else None
        gx = None
        if ctx.needs_input_grad[0]:
            gx = F.fold(
                (g.T @ w2).T[None],
                ctx.size,
                layer.kernel,
                layer.dilation,
                layer.padding,
                layer.stride,
            )
        return gx, gw, None


class _LayerModule(nn.Module):
    def __init__(self, layer: _Layer, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.layer, self.bias = layer, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise ValueError("the linearised network runs at batch 1")
        y = self.layer.run(x)
        if self.bias is not None:
            y = y + (self.bias.view(1, -1, 1, 1) if self.layer.is_conv else self.bias)
        return y


class Linearised:
    """The linearised float64 network of ``model`` with the alive elements of ``dag``.

    Parameters
    ----------
    model : torch.nn.Module
        Never modified; its prunable weights must be those of ``dag``.
    dag : LayeredDAG
        ``to_dag(model)``, possibly masked: its masked elements start dead.
    p : {1, 2}
        Forward weights and state entries ``|x|`` or ``x**2``.
    score_power : {0, 1, 2}
        Scores are ``g * |w| ** score_power`` with ``g = dR/dw`` (``|g|`` if ``absolute``).
    absolute : bool
        Take ``|g|`` (SynFlow) or the signed gradient (the trace).
    buffers : bool
        Transform the buffers (BatchNorm running statistics) too, as the SynFlow
        code does, or only the parameters, as the PHEW authors' trace code does.

    Examples
    --------
    >>> import pathnet
    >>> model = pathnet.models.mlp([3, 4, 2], seed=0)
    >>> net = Linearised(model, pathnet.to_dag(model), 2, 1, absolute=True)
    >>> scores = net.backward()
    >>> net.prune_to(10)
    >>> net.n_alive, net.kept().size
    (10, 10)
    """

    def __init__(
        self,
        model: nn.Module,
        dag: LayeredDAG,
        p: int,
        score_power: int,
        absolute: bool,
        buffers: bool = True,
    ) -> None:
        self.p, self.score_power, self.absolute = p, score_power, absolute
        self.net = linearised_copy(model, p, buffers)
        self.layers: list[_Layer] = []
        off = block_offsets(dag)
        for b, block in enumerate(dag.blocks):
            if block.param is None or block.values is None:
                continue
            path = block.param.rsplit(".", 1)[0] if "." in block.param else ""
            module = self.net.get_submodule(path)
            if not isinstance(module, (nn.Linear, nn.Conv2d)) or not path:
                raise ValueError(
                    f"parameter {block.param!r} does not belong to a Linear or Conv2d submodule"
                )
            if block.param_index is not None or getattr(module, "groups", 1) != 1:
                raise ValueError(
                    f"parameter {block.param!r} is a grouped convolution or reads a channel "
                    "concatenation, which the exact network computation does not support "
                    "yet; ask for the DAG approximation (backend='graph' for SynFlow, "
                    "method='graph' for the analyses)"
                )
            values = block.values.reshape(block.param_shape)
            present = block.present_mask().reshape(block.param_shape)
            layer = _Layer(module, values, present, int(off[b]), p, score_power)
            self.layers.append(layer)
            bias = module.bias.detach() if module.bias is not None else None
            parent, _, attr = path.rpartition(".")
            holder = self.net.get_submodule(parent) if parent else self.net
            setattr(holder, attr, _LayerModule(layer, bias))
        self.x = torch.ones((1, *dag.input_shape), dtype=torch.float64)
        self._layout()

    # ------------------------------------------------------------------ state
    def _layout(self) -> None:
        sizes = [layer.n_slots for layer in self.layers]
        self.slot_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.scores = np.zeros(int(self.slot_off[-1]))
        for layer, a, b in zip(self.layers, self.slot_off[:-1], self.slot_off[1:]):
            layer.scores = self.scores[a:b]
        self.n_alive = sum(layer.n_alive for layer in self.layers)

    def total(self) -> float:
        """``R = sum(net(ones))`` of the current alive elements."""
        with torch.no_grad(), _one_thread():
            return float(self.net(self.x).sum())

    def backward(self) -> np.ndarray:
        """One forward and backward pass; the score of every slot (``-1``: dead)."""
        for layer in self.layers:
            layer.weight.grad = None
        with _one_thread():
            out = self.net(self.x).sum()
            if out.requires_grad:  # else no alive weight reaches the output: all grads zero
                out.backward()
        for layer in self.layers:
            g = layer.weight.grad
            if g is None or layer.n_alive == 0:  # no gradient reaches it: autograd's is None
                layer.scores[:] = np.where(layer.base >= 0, 0.0, -1.0)
            else:
                gather_scores(
                    g.detach().reshape(-1).numpy(),
                    layer.cidx,
                    layer.base,
                    layer.sec,
                    self.absolute,
                    self.score_power != 0,
                    layer.scores,
                )
        return self.scores

    def prune_to(self, k: int) -> None:
        """Keep the ``k`` alive elements first by (score desc, ``|w|**score_power`` desc,
        global index asc), as scored by the last :meth:`backward` (``absolute`` scores)."""
        s = self.scores
        if not np.isfinite(s).all():
            raise OverflowError("the scores overflow float64")
        v = float(kth_largest_nonneg(s, int(k)))  # >= 0: dead slots score -1
        keep = s > v
        r = k - int(np.count_nonzero(keep))
        tied = np.flatnonzero(s == v)
        if r >= tied.size:
            keep[tied] = True
        else:  # break the ties at v: secondary key desc, then global index asc
            sec = np.concatenate([layer.sec for layer in self.layers])[tied]
            order = np.lexsort((tied, -sec))  # slots ascend with the global index
            keep[tied[order[:r]]] = True
        relayout = False
        for layer, a, b in zip(self.layers, self.slot_off[:-1], self.slot_off[1:]):
            killed = kill_slots(
                keep[a:b], layer.base, layer.cidx, layer.weight.detach().reshape(-1).numpy()
            )
            layer.n_alive -= killed
            if killed and layer.n_alive < _COMPACT_AT * layer.n_slots:
                layer.compact()
                relayout = True
        if relayout:
            self._layout()
        self.n_alive = sum(layer.n_alive for layer in self.layers)
        assert self.n_alive == k

    def kept(self) -> np.ndarray:
        """Ascending global indices of the alive elements."""
        parts = [layer.global_index(np.flatnonzero(layer.base >= 0)) for layer in self.layers]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def grad_sum(self) -> float:
        """Sum over the alive elements of the last backward's scores."""
        alive = np.concatenate([layer.base >= 0 for layer in self.layers])
        return float(math.fsum(self.scores[alive]))
