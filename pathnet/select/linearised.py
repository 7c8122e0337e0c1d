"""The network as torch runs it, linearised: the exact engine behind SynFlow and the trace.

SynFlow, SynFlow-L2 and the path-kernel trace all work on the same object: a
float64 copy of the model in eval mode where every floating-point entry of the
state dict is replaced by ``|x|`` (``p=1``) or ``x**2`` (``p=2``), fed an all-ones
input of batch 1, with ``R = sum(output)``. :class:`Linearised` builds that copy
and swaps each prunable Linear / Conv2d for a layer that holds only its *alive*
weight elements and runs the numba kernels of :mod:`pathnet._kernels.linconv`;
torch runs everything else (padding, pooling, strides, BatchNorm in eval mode,
residual additions, activations), so the computation is the one autograd does on
the real network. One backward pass yields every alive element's gradient, and
pruning an element only marks it dead; dead elements are dropped from the
arrays once they are a large share, so the cost of a step falls with the
density.

Numbers are float64 throughout. Sums run in a different order than torch's own
convolutions, so the results equal float64 autograd to rounding (relative
``~1e-15``); the tests compare masks and traces with plain autograd references.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pathnet._kernels.linconv import (
    conv_backward,
    conv_forward,
    kernel_table,
    kill_below,
    row_bounds,
)
from pathnet._kernels.topk import kth_largest, tie_cut
from pathnet.graph import LayeredDAG
from pathnet.select.scoring import block_offsets

__all__ = ["Linearised", "linearised_copy"]

_CHUNKS = 4  # fixed row chunks of the backward kernel (not the thread count)
_COMPACT_AT = 0.7  # drop the dead slots once fewer than this share is alive


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


class _Layer:
    """One prunable weight's alive elements and the geometry of its layer."""

    def __init__(self, module: nn.Module, values: np.ndarray, present: np.ndarray, gbase: int):
        self.is_conv = isinstance(module, nn.Conv2d)
        shape = values.shape
        if self.is_conv:
            conv: Any = module
            if conv.groups != 1:
                raise ValueError("grouped convolutions are not supported")
            self.n_out, self.n_in, kh, kw = shape
            stride, dil = conv.stride, conv.dilation
            pad = (0, 0) if conv.padding_mode != "zeros" else conv.padding
            if isinstance(pad, str):  # 'valid'; 'same' is pre-padded
                pad = (0, 0)
            self.prepad = None
            if conv.padding_mode != "zeros" or conv.padding == "same":
                self.prepad = (conv._reversed_padding_repeated_twice, conv.padding_mode)
                if conv.padding_mode == "zeros":
                    self.prepad = (conv._reversed_padding_repeated_twice, "constant")
        else:
            self.n_out, self.n_in = shape
            kh = kw = 1
            stride, dil, pad = (1, 1), (1, 1), (0, 0)
            self.prepad = None
        self.n_k = kh * kw
        self.kbits = max(1, int(self.n_k - 1).bit_length())
        self.geom = np.array([kw, *stride, *pad, *dil], dtype=np.int64)
        self.gbase = gbase
        flat = present.reshape(self.n_out, -1)
        j, col = np.nonzero(flat)
        self.rowptr = np.concatenate([[0], np.cumsum(flat.sum(axis=1))]).astype(np.int64)
        i, k = np.divmod(col, self.n_k)
        self.code = ((i << self.kbits) | k).astype(np.int32)
        self.wabs = np.abs(values.reshape(self.n_out, -1)[j, col])
        self.bounds = row_bounds(self.rowptr, _CHUNKS)
        self.gin_buf: np.ndarray | None = None
        self.scores = np.empty(0)
        self.touched = False

    @property
    def n_slots(self) -> int:
        return int(self.code.size)

    def compact(self) -> None:
        keep = self.wabs >= 0
        cum = np.concatenate([[0], np.cumsum(keep)])
        self.rowptr = cum[self.rowptr].astype(np.int64)
        self.code = self.code[keep]
        self.wabs = self.wabs[keep]
        self.bounds = row_bounds(self.rowptr, _CHUNKS)

    def global_index(self, slots: np.ndarray) -> np.ndarray:
        """Global element indices (torch order, offset by ``gbase``) of local slots."""
        j = np.searchsorted(self.rowptr, slots, side="right") - 1
        c = self.code[slots].astype(np.int64)
        i, k = c >> self.kbits, c & ((1 << self.kbits) - 1)
        return self.gbase + (j * self.n_in + i) * self.n_k + k


class _LayerFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, token: torch.Tensor, owner: Any, idx: int) -> Any:
        layer: _Layer = owner.layers[idx]
        if x.shape[0] != 1:
            raise ValueError("the linearised network runs at batch 1")
        inp = x.detach()[0].contiguous().numpy()
        if not layer.is_conv:
            if inp.ndim != 1:
                raise ValueError("a Linear layer must receive a (1, features) input")
            inp = inp.reshape(-1, 1, 1)
        _, h, w = inp.shape
        kw = int(layer.geom[0])
        kh = layer.n_k // kw
        sy, sx, py, px, dy, dx = (int(v) for v in layer.geom[1:])
        ho = (h + 2 * py - dy * (kh - 1) - 1) // sy + 1
        wo = (w + 2 * px - dx * (kw - 1) - 1) // sx + 1
        table = kernel_table(layer.n_k, layer.geom, h, w, ho, wo)
        hw = np.array([h, w, ho, wo, sy, sx], dtype=np.int64)
        flat = inp.reshape(-1)
        out = np.empty(layer.n_out * ho * wo)
        conv_forward(
            flat, layer.rowptr, layer.code, layer.wabs, owner.p, layer.kbits, table, hw, out
        )
        ctx.table, ctx.hw = table, hw
        out = out.reshape(layer.n_out, ho, wo)
        ctx.inp, ctx.owner, ctx.idx, ctx.shape = inp, owner, idx, x.shape
        res = torch.from_numpy(out)
        return res[None] if layer.is_conv else res.reshape(1, -1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        owner = ctx.owner
        layer: _Layer = owner.layers[ctx.idx]
        inp = ctx.inp
        gout = grad.detach().reshape(layer.n_out, *(grad.shape[2:] or (1, 1))).contiguous()
        need = bool(ctx.needs_input_grad[0])
        if need and (layer.gin_buf is None or layer.gin_buf.shape[1] != inp.size):
            layer.gin_buf = np.empty((_CHUNKS, inp.size))
        buf = layer.gin_buf if need else np.empty((_CHUNKS, 1))
        assert buf is not None
        conv_backward(
            inp.reshape(-1),
            gout.numpy().reshape(-1),
            layer.rowptr,
            layer.code,
            layer.wabs,
            owner.p,
            owner.score_power,
            owner.absolute,
            layer.kbits,
            ctx.table,
            ctx.hw,
            layer.bounds,
            need,
            buf,
            layer.scores,
        )
        layer.touched = True
        gin = torch.from_numpy(buf.sum(axis=0)).reshape(ctx.shape) if need else None
        return gin, None, None, None


class _LayerModule(nn.Module):
    def __init__(self, owner: Linearised, idx: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.owner, self.idx, self.bias = owner, idx, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.owner.layers[self.idx]
        if layer.prepad is not None:
            x = F.pad(x, layer.prepad[0], mode=layer.prepad[1])
        y = _LayerFn.apply(x, self.owner.token, self.owner, self.idx)
        if self.bias is not None:
            y = y + (self.bias.view(1, -1, 1, 1) if layer.is_conv else self.bias)
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
        self.token = torch.zeros((), dtype=torch.float64, requires_grad=True)
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
            layer = _Layer(module, values, present, int(off[b]))
            self.layers.append(layer)
            bias = module.bias.detach() if module.bias is not None else None
            parent, _, attr = path.rpartition(".")
            holder = self.net.get_submodule(parent) if parent else self.net
            setattr(holder, attr, _LayerModule(self, len(self.layers) - 1, bias))
        self.x = torch.ones((1, *dag.input_shape), dtype=torch.float64)
        self._layout()

    # ------------------------------------------------------------------ state
    def _layout(self) -> None:
        sizes = [layer.n_slots for layer in self.layers]
        self.slot_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.scores = np.empty(int(self.slot_off[-1]))
        for layer, a, b in zip(self.layers, self.slot_off[:-1], self.slot_off[1:]):
            layer.scores = self.scores[a:b]
        self.n_alive = sum(int((layer.wabs >= 0).sum()) for layer in self.layers)

    def total(self) -> float:
        """``R = sum(net(ones))`` of the current alive elements."""
        with torch.no_grad():
            return float(self.net(self.x).sum())

    def backward(self) -> np.ndarray:
        """One forward and backward pass; the scores of every slot (``-1``: dead)."""
        for layer in self.layers:
            layer.touched = False
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # torch only runs the small tensor ops; numba the layers
        try:
            self.net(self.x).sum().backward()
        finally:
            torch.set_num_threads(threads)
        for layer in self.layers:
            if not layer.touched:  # no gradient reaches it: autograd's grad is None
                layer.scores[:] = np.where(layer.wabs >= 0, 0.0, -1.0)
        return self.scores

    def secondary(self, slots: np.ndarray) -> np.ndarray:
        """``|w| ** score_power`` (float64) of global slots."""
        out = np.empty(slots.size)
        for layer, lo, hi in self._split(slots):
            a = layer.wabs[slots[lo:hi]].astype(np.float64)
            out[lo:hi] = a**self.score_power
        return out

    def global_index(self, slots: np.ndarray) -> np.ndarray:
        """Global element indices of global slots (ascending slots in, same order out)."""
        out = np.empty(slots.size, dtype=np.int64)
        for layer, lo, hi in self._split(slots):
            out[lo:hi] = layer.global_index(slots[lo:hi])
        return out

    def _split(self, slots: np.ndarray) -> list[tuple[_Layer, int, int]]:
        """For sorted global slots: (layer, lo, hi) with slots[lo:hi] made local in place."""
        cuts = np.searchsorted(slots, self.slot_off)
        parts = []
        for n, layer in enumerate(self.layers):
            lo, hi = int(cuts[n]), int(cuts[n + 1])
            if hi > lo:
                slots[lo:hi] -= self.slot_off[n]
                parts.append((layer, lo, hi))
        return parts

    def prune_to(self, k: int) -> None:
        """Keep the ``k`` alive elements first by (score desc, ``|w|**score_power`` desc,
        global index asc), as scored by the last :meth:`backward`."""
        s = self.scores
        if not np.isfinite(s).all():
            raise OverflowError("the scores overflow float64")
        v = float(kth_largest(s, int(k)))
        n_gt = int(np.count_nonzero(s > v))
        tied = np.flatnonzero(s == v)
        for layer, a, b in zip(self.layers, self.slot_off[:-1], self.slot_off[1:]):
            kill_below(s[a:b], v, layer.wabs)
        r = k - n_gt
        if r < tied.size:  # break the ties at v: secondary key, then the global index
            sec = self.secondary(tied.copy())
            gidx = self.global_index(tied.copy())
            w_cut, g_cut = tie_cut(np.zeros(tied.size), sec, gidx, 0.0, r)
            drop = tied[(sec < w_cut) | ((sec == w_cut) & (gidx > g_cut))]
            for layer, lo, hi in self._split(drop):
                layer.wabs[drop[lo:hi]] = -1
        self.n_alive = k
        if k < _COMPACT_AT * self.scores.size:
            for layer in self.layers:
                layer.compact()
            self._layout()
            assert self.n_alive == k

    def kept(self) -> np.ndarray:
        """Ascending global indices of the alive elements."""
        parts = []
        for layer in self.layers:
            parts.append(layer.global_index(np.flatnonzero(layer.wabs >= 0)))
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def grad_sum(self) -> float:
        """Sum over the alive elements of the last backward's scores."""
        parts = [layer.scores[layer.wabs >= 0] for layer in self.layers]
        return float(math.fsum(np.concatenate(parts))) if parts else 0.0
