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
convolutions: as pruning goes on, whole channels die and the cost of a step falls.

Numbers are float64 throughout. The compacted convolutions add the same nonzero
terms as the full ones, possibly in another order (a different matrix shape), so
results equal float64 autograd on the masked network to rounding (relative
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

from pathnet._kernels.topk import kth_largest
from pathnet.graph import LayeredDAG
from pathnet.select.scoring import block_offsets

__all__ = ["Linearised", "linearised_copy"]


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
            pad = conv.padding
            if conv.padding_mode != "zeros" or isinstance(pad, str):
                mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
                if pad != "valid":
                    self.prepad = (conv._reversed_padding_repeated_twice, mode)
                pad = (0, 0)
            self.padding = tuple(pad)
        a = np.abs(values.astype(np.float64)).ravel()
        self.base = torch.from_numpy(a**p if p != 1 else a)  # the forward weights
        self.sec = a**score_power  # |w| ** score_power
        self.gbase = gbase
        self.alive = np.flatnonzero(present.ravel()).astype(np.int64)  # ascending
        self.weight = torch.zeros(0, dtype=torch.float64)
        self.scores = np.zeros(0)
        self.compact()

    def compact(self) -> None:
        """Rebuild the compacted dense weight from ``alive``."""
        row = self.n_in * self.n_k
        j, rest = np.divmod(self.alive, row)
        i, k = np.divmod(rest, self.n_k)
        out_idx, jc = np.unique(j, return_inverse=True)
        in_idx, ic = np.unique(i, return_inverse=True)
        self.cidx = torch.from_numpy((jc * in_idx.size + ic) * self.n_k + k)
        w = torch.zeros(out_idx.size * in_idx.size * self.n_k, dtype=torch.float64)
        w[self.cidx] = self.base[torch.from_numpy(self.alive)]
        shape = (out_idx.size, in_idx.size, *self.shape[2:])
        self.weight = w.reshape(shape).requires_grad_(True)
        self.out_idx = None if out_idx.size == self.n_out else torch.from_numpy(out_idx)
        self.in_idx = None if in_idx.size == self.n_in else torch.from_numpy(in_idx)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output (no bias) on input ``x`` (batch 1)."""
        if self.prepad is not None:
            x = F.pad(x, self.prepad[0], mode=self.prepad[1])
        if self.alive.size == 0:  # no alive element: the output is zero
            w = torch.zeros((1, 1, *self.shape[2:]), dtype=x.dtype)
            x = x[:, :1] * 0
        else:
            w = self.weight
            if self.in_idx is not None:
                x = x.index_select(1, self.in_idx)
        if self.is_conv:
            y = F.conv2d(x, w, None, self.stride, self.padding, self.dilation)
        else:
            y = F.linear(x, w.reshape(w.shape[0], -1))
        if self.alive.size == 0:
            return y.new_zeros((y.shape[0], self.n_out, *y.shape[2:]))
        if self.out_idx is not None:
            y = y.new_zeros((y.shape[0], self.n_out, *y.shape[2:])).index_copy(1, self.out_idx, y)
        return y

    def global_index(self, slots: np.ndarray) -> np.ndarray:
        """Global element indices (torch order, offset by ``gbase``) of local slots."""
        return self.gbase + self.alive[slots]


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
        sizes = [layer.alive.size for layer in self.layers]
        self.slot_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.scores = np.zeros(int(self.slot_off[-1]))
        for layer, a, b in zip(self.layers, self.slot_off[:-1], self.slot_off[1:]):
            layer.scores = self.scores[a:b]
        self.n_alive = int(self.slot_off[-1])

    def total(self) -> float:
        """``R = sum(net(ones))`` of the current alive elements."""
        with torch.no_grad():
            return float(self.net(self.x).sum())

    def backward(self) -> np.ndarray:
        """One forward and backward pass; the score of every alive element, in
        ascending global index order."""
        for layer in self.layers:
            layer.weight.grad = None
        self.net(self.x).sum().backward()
        for layer in self.layers:
            g = layer.weight.grad
            if g is None or layer.alive.size == 0:  # no gradient reaches it: autograd's is None
                layer.scores[:] = 0.0
                continue
            s = g.reshape(-1)[layer.cidx].numpy()
            if self.absolute:
                s = np.abs(s)
            if self.score_power:
                s = s * layer.sec[layer.alive]
            layer.scores[:] = s
        return self.scores

    def global_index(self, slots: np.ndarray) -> np.ndarray:
        """Global element indices of global slots (any order)."""
        return np.concatenate([layer.gbase + layer.alive for layer in self.layers])[slots]

    def prune_to(self, k: int) -> None:
        """Keep the ``k`` alive elements first by (score desc, ``|w|**score_power`` desc,
        global index asc), as scored by the last :meth:`backward`."""
        s = self.scores
        if not np.isfinite(s).all():
            raise OverflowError("the scores overflow float64")
        v = float(kth_largest(s, int(k)))
        keep = s > v
        r = k - int(np.count_nonzero(keep))
        tied = np.flatnonzero(s == v)
        if r >= tied.size:
            keep[tied] = True
        else:  # break the ties at v: secondary key desc, then global index asc
            sec = np.concatenate([layer.sec[layer.alive] for layer in self.layers])[tied]
            order = np.lexsort((tied, -sec))  # slots ascend with the global index
            keep[tied[order[:r]]] = True
        for layer, a, b in zip(self.layers, self.slot_off[:-1], self.slot_off[1:]):
            flags = keep[a:b]
            if not flags.all():
                layer.alive = layer.alive[flags]
                layer.compact()
        self._layout()
        assert self.n_alive == k

    def kept(self) -> np.ndarray:
        """Ascending global indices of the alive elements."""
        parts = [layer.gbase + layer.alive for layer in self.layers]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def grad_sum(self) -> float:
        """Sum over the alive elements of the last backward's scores."""
        return float(math.fsum(self.scores))
