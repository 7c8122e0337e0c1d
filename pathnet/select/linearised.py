"""The network as torch runs it, linearised: the exact engine behind SynFlow and the trace.

SynFlow, SynFlow-L2 and the path-kernel trace all work on the same object: a
float64 copy of the model in eval mode where every floating-point entry of the
state dict is replaced by ``|x|`` (``p=1``) or ``x**2`` (``p=2``), fed an all-ones
input of batch 1, with ``R = sum(output)``. :class:`Linearised` builds that copy
(without copying the prunable weights) and swaps each prunable Linear / Conv2d
for a layer that computes with its *alive* weight elements only. torch runs
everything else (padding, pooling, strides, BatchNorm in eval mode, residual
additions, activations) and autograd carries the gradients between layers, so
the computation is the one plain autograd does on the masked network.

**Distinct columns.** On an all-ones input the activations of a convolutional
net repeat away from the borders: a convolution's output positions whose kernel
taps all read equal input columns (compared bit for bit, after a 64-bit hash)
or padding form one group, and the products need one column per group (VGG16:
25 of 1024 positions at 32x32, 25 and 53 of 256 at 16x16). The output gradient's
columns are deduplicated the same way for the input gradient (257 of 1024 at
32x32, behind the max-pool), and the fold is written directly from them.

Each layer runs in one of two modes, whichever is estimated cheaper (a cost
model measured on VGG16's layer shapes; once sparse, a layer stays sparse):

* **dense**: a *channel-compacted* dense weight (input channels that no alive
  element reads and output channels that no alive element writes are dropped:
  they contribute exactly zero), the convolution as ``W @ U`` over the distinct
  columns ``U``, the input gradient as the fold of ``(G^T @ W)^T`` (float64
  products by numpy's BLAS, one thread per part: two to three times faster than
  torch's float64 ``mm`` for these skinny shapes on the AMD EPYC we measured); the
  scores as one dot product per alive element (at most ``_DOT_COLS`` columns) or
  by a gather from the weight gradient ``G @ U^T``. Pruned elements are zeroed in
  the weight at once; the weight is rebuilt, with the channels compacted again,
  when the dead slots are dropped.
* **sparse**: the alive elements as CSR rows over the output channels, and three
  numba kernels (:mod:`pathnet._kernels.linconv`): the forward, the scores
  ``g[j] . U[col]`` and the input gradient, each touching alive elements only.
  VGG16's 2x2 layers start sparse, its 4x4 ones within the first steps; the larger
  maps turn sparse as pruning thins them.

The alive elements of every layer are parallel slot arrays (output channel,
column, forward weight, secondary key); pruned slots are marked dead and dropped
once fewer than ``_COMPACT_AT`` of a layer's slots are alive. The top-k is a
radix selection on the float64 bit patterns of the scores (exact, ties broken by
the secondary key and the global index).

**Threads.** When the caller's ``torch.get_num_threads()`` is at least two, one
helper thread works beside the caller: each layer's products and kernels are cut
into up to ``_PARTS`` (two) fixed parts, at places that depend on the sizes only,
and the caller offers all but the first to the helper (running any the helper has
not begun itself); the scores of each layer and the compaction after each pruning
step run in the background on the helper, off the critical path (the forward and
the input gradients), and are waited for where needed. Every part and task
computes the same numbers whichever thread runs it, on one torch and one BLAS
thread, so the masks and traces are the same on any thread count (tested on one
and two threads with every product cut).

Numbers are float64 throughout. The compacted products and the kernels add the
same nonzero terms as the full convolution, in another order, so results equal
float64 autograd on the masked network to rounding (relative ``~1e-15``); the
tests compare masks and traces with plain autograd references, with every layer
dense, every layer sparse and the modes chosen by cost. Speed (VGG16, SynFlow-L2
to 1% in 100 steps, 2 threads): see ``benchmarks/bench_synflow.py``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import itertools
import math
import os
import threading
from collections.abc import Callable, Collection, Iterator
from functools import partial
from typing import Any

import numpy as np
import threadpoolctl
import torch
import torch.nn.functional as F
from torch import nn

from pathnet._kernels.linconv import (
    alive_elements,
    channel_maps,
    collect_bin,
    column_hashes,
    compact_slots,
    count_bins,
    fill_weight,
    fold_columns,
    fold_table,
    gather_scores,
    kill_below,
    patch_groups,
    refine_hist,
    row_scores,
    same_columns,
    sparse_forward,
    sparse_input_grad,
    sum_columns,
    take_columns,
)
from pathnet.graph import LayeredDAG
from pathnet.select.scoring import block_offsets

__all__ = ["Linearised", "linearised_copy"]

_COMPACT_AT = 0.7  # drop a layer's dead slots once fewer than this share is alive
_CAND = 1 << 17  # the top-k bin is refined until it holds at most this many scores
_NONFINITE = 0x7FF0  # histogram bins from here up: inf and NaN scores
_FORCE_MODE: str | None = None  # tests: "dense" or "sparse" for every layer, always


def linearised_copy(
    model: nn.Module, p: int, buffers: bool = True, skip: Collection[str] = ()
) -> nn.Module:
    """Float64 eval-mode deep copy with ``|x|`` (``p=1``) or ``x**2`` (``p=2``) in every
    floating-point state-dict entry (only in the parameters if not ``buffers``), no
    gradients required. ``model`` is not modified. The parameters named in ``skip``
    are copied as empty placeholders (the caller replaces their modules)."""
    memo: dict[int, Any] = {}
    for name in skip:
        try:
            t = model.get_parameter(name)
        except AttributeError:  # not a plain parameter (a parametrization, say): copied
            continue
        memo[id(t)] = nn.Parameter(t.new_empty(0), requires_grad=False)
    net = copy.deepcopy(model, memo).double().eval()
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


_PARTS = 2  # every layer's work is cut into this many fixed parts
_state = threading.local()  # .workers: threads the parts may use in this pass


class _Task:
    """One piece of work that the helper thread or the caller runs, whichever claims
    it first (a caller that needs the result runs it itself if no one has begun)."""

    __slots__ = ("done", "error", "fn", "result", "taken")
    _lock = threading.Lock()

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn, self.taken, self.done = fn, False, threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        """Run it here unless someone already took it."""
        with _Task._lock:
            if self.taken:
                return
            self.taken = True
        try:
            with torch.no_grad():  # grad mode is per thread
                self.result = self.fn()
        except BaseException as e:  # re-raised by wait()
            self.error = e
        finally:
            self.done.set()

    def wait(self) -> Any:
        """Run it here if no one began it, else wait for it; its result."""
        self.run()
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class _Helper:
    """The second thread: the parts other threads handed over first, then the
    background work (scores, pruning) in the order it came. One torch thread."""

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.parts: collections.deque[_Task] = collections.deque()
        self.background: collections.deque[_Task] = collections.deque()
        self.pid = os.getpid()
        threading.Thread(target=self._loop, name="pathnet-linearised", daemon=True).start()

    def _loop(self) -> None:
        torch.set_num_threads(1)
        while True:
            with self.cv:
                while not self.parts and not self.background:
                    self.cv.wait()
                task = self.parts.popleft() if self.parts else self.background.popleft()
            task.run()

    def submit(self, tasks: list[_Task], background: bool = False) -> None:
        with self.cv:
            (self.background if background else self.parts).extend(tasks)
            self.cv.notify()


_helper: _Helper | None = None
_helper_lock = threading.Lock()


def _the_helper() -> _Helper:
    """The helper thread, started on first use (again in a forked child: threads do
    not survive a fork)."""
    global _helper
    with _helper_lock:
        if _helper is None or _helper.pid != os.getpid():
            _helper = _Helper()
        return _helper


def _run_parts(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the parts of one layer's work, the first here and the others offered to
    the helper thread when the caller allowed several threads (a part the helper
    has not begun when this thread gets to it runs here). The parts are fixed (cut
    at the same places whatever the thread count, each computed the same way), so
    the results do not depend on how many threads run them."""
    if getattr(_state, "workers", 1) <= 1 or len(calls) <= 1:
        return [call() for call in calls]
    tasks = [_Task(call) for call in calls[1:]]
    _the_helper().submit(tasks)
    first = calls[0]()
    return [first, *(task.wait() for task in tasks)]


def _background(fn: Callable[[], Any]) -> _Task | None:
    """``fn`` as background work for the helper thread when this pass may use several
    threads (the caller waits for the task before it needs the result); else run
    now (``None``)."""
    if not _DEFER or getattr(_state, "workers", 1) <= 1:
        fn()
        return None
    task = _Task(fn)
    _the_helper().submit([task], background=True)
    return task


_blas_controller: Any = None


def _blas() -> Any:
    """The threadpoolctl controller of the BLAS libraries loaded (numpy's)."""
    global _blas_controller
    if _blas_controller is None:
        _blas_controller = threadpoolctl.ThreadpoolController()
    return _blas_controller


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch and numpy's BLAS on one thread per part: each layer's matrix
    products and kernels are cut into ``_PARTS`` fixed parts that run on the caller
    and the helper thread when the caller's torch allows several
    (``torch.get_num_threads()``), each part on one thread, so the float64 results
    do not depend on the caller's thread count."""
    if getattr(_state, "inside", False):  # nested: the outer context holds the settings
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _state.workers, _state.inside = min(threads, _PARTS), True
    try:
        with _blas().limit(limits=1, user_api="blas"):  # numpy's BLAS: one thread per part
            yield
    finally:
        _state.workers, _state.inside = 1, False
        torch.set_num_threads(threads)


_DEFER = True  # scores and compaction in the background on the helper thread
_MIN_PART = 1 << 18  # less work than this many elements (or slots) is not cut


def _cut(n: int, work: int | None = None) -> list[tuple[int, int]]:
    """Up to ``_PARTS`` non-empty contiguous ranges covering ``range(n)``; one if the
    ``work`` (default ``n``) is below ``_PARTS * _MIN_PART``. The cut depends on the
    sizes only, never on the thread count."""
    parts = _PARTS if (n if work is None else work) >= _PARTS * _MIN_PART else 1
    edges = [n * q // parts for q in range(parts + 1)]
    return [(a, b) for a, b in itertools.pairwise(edges) if a < b]


_MIN_ROWS_FWD = 1 << 14  # sparse forward: fewer slots than this are not cut
_MIN_ROWS_GRAD = 1 << 16  # sparse input gradient: fewer slots than this are not cut


def _row_cut(rowptr: np.ndarray, min_part: int) -> list[tuple[int, int]]:
    """Up to ``_PARTS`` contiguous row ranges with about equal numbers of slots (one
    below ``_PARTS * min_part`` slots)."""
    n = int(rowptr[-1])
    if n < _PARTS * min_part:
        return [(0, rowptr.size - 1)]
    edges = [0]
    for q in range(1, _PARTS):
        edges.append(max(edges[-1], int(np.searchsorted(rowptr, n * q // _PARTS))))
    edges.append(rowptr.size - 1)
    return list(itertools.pairwise(edges))


_DOT_COLS = 32  # dense layers with at most this many distinct columns score slot by slot
_REPEAT_MIN = 64  # matrices with fewer columns are used as they are
_REPEAT_SHARE = 0.85  # ... and those with more distinct columns than this share


def _column_ids(a: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(first, inv)``: ``a[:, first]`` are the distinct columns of the C-contiguous
    ``a`` (bit for bit) and ``a == a[:, first][:, inv]``. Columns are grouped by a
    64-bit hash and then compared; ``None`` on a hash collision (never seen: it
    would only cost the saving)."""
    n_p = a.shape[1]
    hashes = np.empty(n_p, dtype=np.uint64)
    cuts = _cut(n_p, a.size)
    _run_parts([partial(column_hashes, a, p0, p1, hashes) for p0, p1 in cuts])
    _, first, inv = np.unique(hashes, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    rep = first[inv]
    if not all(_run_parts([partial(same_columns, a, rep, p0, p1) for p0, p1 in cuts])):
        return None
    return first, inv


def _distinct_columns(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`_column_ids` of the contiguous ``a`` as tensors; ``None`` if ``a`` has
    under ``_REPEAT_MIN`` columns or too few repeats to pay."""
    if a.shape[1] < _REPEAT_MIN:
        return None
    ids = _column_ids(a.numpy())
    if ids is None or ids[0].size > _REPEAT_SHARE * a.shape[1]:
        return None
    return torch.from_numpy(ids[0]), torch.from_numpy(ids[1])


def _group_sum(g: torch.Tensor, inv: torch.Tensor | None, n: int) -> torch.Tensor:
    """The columns of the contiguous ``g`` summed by group ``inv`` (``n`` groups), in
    column order."""
    if inv is None:
        return g
    out = g.new_empty((g.shape[0], n))
    sum_columns(g.numpy(), inv.numpy(), out.numpy())
    return out


def _take(a: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``a[:, idx]`` of the contiguous ``a``."""
    out = a.new_empty((a.shape[0], idx.shape[0]))
    take_columns(a.detach().numpy(), idx.numpy(), out.numpy())
    return out


def _sparse_cost(n_slots: int, n_cols: int) -> float:
    """Estimated ns of a sparse-mode step (forward, scores, input gradient) over
    ``n_slots`` slots with ``n_cols`` (distinct) columns; fitted to timings of the
    kernels on VGG16's layer shapes, one thread (a variant fitted to numpy's BLAS
    alone, which turns the 2x2 layers dense at first, was slower end to end)."""
    return n_slots * (3.0 + 0.45 * n_cols)


def _dense_cost(n_dense: int, n_slots: int, n_cols: int) -> float:
    """Estimated ns of a dense-mode step: three float64 matrix products over the
    ``n_dense`` entries of the compacted weight and ``n_cols`` (distinct) columns,
    then the scores."""
    return n_dense * max(6.5, 0.155 * n_cols) + n_slots * 1.7


class _Layer:
    """One prunable weight: its alive elements, in dense or sparse mode.

    The alive elements are parallel arrays in torch order (output channel ``j``,
    column ``col = i * n_k + k`` of the flattened weight, forward weight ``base``,
    secondary key ``sec``; dead slots have ``base = -1``), dropped once fewer than
    ``_COMPACT_AT`` of the slots are alive. In *dense* mode the
    layer also keeps a channel-compacted dense weight (``cidx``: each element's
    index in it) and runs BLAS matrix products; in *sparse* mode it runs the CSR
    kernels of :mod:`pathnet._kernels.linconv` over the alive elements only. A
    layer turns sparse, for good, once that is estimated cheaper.
    """

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
        self._j, self._col, self._base, self._sec, counts = alive_elements(
            present.ravel(), a, self.n_in * self.n_k, p, score_power
        )
        self._cidx = np.empty(self._j.size, dtype=np.int64)
        self.n_alive = int(self._j.size)
        self._views(counts)
        self.n_p: int | None = None  # output positions, known after a forward
        self.n_cols = 0  # distinct columns of unfold(x) in the last forward (0: none yet)
        self.token = torch.zeros((), dtype=torch.float64, requires_grad=True)
        self.scored = False
        self.owner: Any = None  # the Linearised network (its score settings and tasks)
        self.scores = np.zeros(0)
        self.offset = 0  # of ``scores`` in the network's score array
        self.weight: torch.Tensor | None = None
        self.sparse = _FORCE_MODE == "sparse"  # else the first run() chooses
        self.pending: _Task | None = None  # the kill and tidy of the last pruning step

    def _views(self, counts: np.ndarray) -> None:
        n = self.n_slots = self.n_alive
        self.j, self.col, self.base = self._j[:n], self._col[:n], self._base[:n]
        self.sec, self.cidx = self._sec[:n], self._cidx[:n]
        self.rowptr = np.zeros(self.n_out + 1, dtype=np.int64)
        np.cumsum(counts, out=self.rowptr[1:])

    def build_dense(self) -> None:
        """Rebuild the channel-compacted dense weight from the (compacted) slots."""
        omap, imap, n_o, n_i = channel_maps(self.j, self.col, self.n_out, self.n_in, self.n_k)
        w = torch.zeros(n_o * n_i * self.n_k, dtype=torch.float64)
        self.ucol = np.empty(self.n_slots, dtype=np.int32)
        fill_weight(
            self.j, self.col, self.base, omap, imap, n_i, self.n_k, w.numpy(), self.cidx, self.ucol
        )
        self.weight = w.reshape((n_o, n_i, *self.shape[2:])).requires_grad_(True)
        self.out_idx = None if n_o == self.n_out else torch.from_numpy(np.flatnonzero(omap >= 0))
        self.in_idx = None if n_i == self.n_in else torch.from_numpy(np.flatnonzero(imap >= 0))
        self.rowmap = omap

    def kill(self, shift: int, prefix: int) -> None:
        """Kill the alive elements whose score's bits from ``shift`` up are at most
        ``prefix`` (zeroing their dense weight entries in dense mode)."""
        dense = self.weight is not None
        w = self.weight.detach().reshape(-1).numpy() if self.weight is not None else np.zeros(0)
        sc, base, cidx = self.scores, self.base, self.cidx
        self.n_alive -= sum(
            _run_parts(
                [
                    partial(kill_below, sc[a:b], shift, prefix, base[a:b], cidx[a:b], w, dense)
                    for a, b in _cut(self.n_slots)
                ]
            )
        )

    def tidy(self) -> None:
        """After :meth:`kill`: drop the dead slots once fewer than ``_COMPACT_AT`` are
        alive, then :meth:`settle`."""
        if self.n_alive < _COMPACT_AT * self.n_slots:
            counts = np.zeros(self.n_out, dtype=np.int64)
            n = compact_slots(self.j, self.col, self.base, self.sec, self.cidx, counts)
            assert n == self.n_alive
            self._views(counts)
            self.weight = None  # stale: rebuilt (channel-compacted again) if still dense
        self.settle()

    def settle(self) -> None:
        """Turn sparse, for good, once that is estimated cheaper (known once a forward
        gave the output size); else make sure the dense weight exists."""
        if self.sparse:
            return
        if self.n_p is not None and _FORCE_MODE != "dense":
            n_dense = (
                self.n_out * self.n_in * self.n_k if self.weight is None else self.weight.numel()
            )
            n_cols = self.n_cols or self.n_p  # distinct columns in the last forward
            if _FORCE_MODE == "sparse" or _sparse_cost(self.n_slots, n_cols) < _dense_cost(
                n_dense, self.n_slots, n_cols
            ):
                self.sparse, self.weight = True, None
                return
        if self.weight is None:
            self.build_dense()

    def global_index(self) -> np.ndarray:
        """Global element indices (torch order, offset by ``gbase``) of the alive elements."""
        alive = self.base >= 0
        return (
            self.gbase + self.j[alive].astype(np.int64) * (self.n_in * self.n_k) + self.col[alive]
        )

    def out_size(self, size: tuple[int, ...]) -> tuple[int, ...]:
        """Output spatial size of a convolution on an input of spatial ``size``."""
        return tuple(
            (n + 2 * pad - dil * (kk - 1) - 1) // st + 1
            for n, kk, st, pad, dil in zip(
                size, self.kernel, self.stride, self.padding, self.dilation
            )
        )

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """The ``(n_in * n_k, positions)`` matrix a weight row multiplies."""
        if not self.is_conv:
            return x.reshape(-1, 1)
        assert self.n_p is not None  # set by run(), the only caller's caller
        parts = _run_parts(  # by input channels: blocks of rows
            [
                partial(F.unfold, x[:, a:b], self.kernel, self.dilation, self.padding, self.stride)
                for a, b in _cut(x.shape[1], x.shape[1] * self.n_k * self.n_p)
            ]
        )
        return parts[0][0] if len(parts) == 1 else torch.cat([t[0] for t in parts])

    def geometry(self, size: tuple[int, ...]) -> np.ndarray:
        """``(h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)`` of the convolution on an
        input of spatial ``size``, as the grouping and fold kernels take it."""
        k, st, pad, dil = self.kernel, self.stride, self.padding, self.dilation
        return np.array([*size, *self.out_size(size), *k, *st, *pad, *dil], dtype=np.int64)

    def columns(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(u, inv)``: the distinct columns of :meth:`unfold` ``(x)`` and the column
        of ``u`` that each output position reads (``inv``; ``None``: ``u`` is the
        whole unfold). Positions are grouped when every kernel tap reads the same
        input column (compared bit for bit) or padding at both; on an all-ones
        input that leaves a few dozen of VGG16's 1024 positions at 32x32."""
        assert self.n_p is not None
        self.n_cols = self.n_p
        if not self.is_conv or self.n_p < _REPEAT_MIN:
            return self.unfold(x), None
        n_i, h, w = x.shape[1:]
        ids = _column_ids(x.reshape(n_i, h * w).contiguous().numpy())
        if ids is None:
            return self.unfold(x), None
        inv, first, idx, ok = patch_groups(ids[1], ids[0].size, self.geometry((h, w)))
        if not ok or first.size > _REPEAT_SHARE * self.n_p:
            return self.unfold(x), None
        ph, pw = self.padding
        xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
        u = xp.reshape(n_i, -1)[:, torch.from_numpy(idx.reshape(-1))]
        self.n_cols = first.size
        return u.reshape(n_i * self.n_k, first.size), torch.from_numpy(inv)

    def fold_table(
        self, cols: tuple[torch.Tensor, torch.Tensor] | None, size: tuple[int, ...]
    ) -> np.ndarray | None:
        """For :func:`_fold`: the column of the gradient that each position of an input
        of spatial ``size`` reads per tap (``cols``: the distinct output-gradient
        columns, or ``None`` for all of them); ``None`` for a Linear layer."""
        if not self.is_conv:
            return None
        geom = self.geometry(size)
        col_of = np.arange(geom[2] * geom[3], dtype=np.int64) if cols is None else cols[1].numpy()
        return fold_table(geom, col_of)

    def ready(self) -> None:
        """Wait for this layer's pending kill and tidy (:meth:`Linearised.prune_to`)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.wait()

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output (no bias) on input ``x`` (batch 1)."""
        self.ready()
        if self.prepad is not None:
            x = F.pad(x, self.prepad[0], mode=self.prepad[1])
        size = self.out_size(tuple(x.shape[2:])) if self.is_conv else ()
        self.n_p = int(np.prod(size, dtype=np.int64))
        self.settle()
        if self.n_alive == 0:  # no alive element: the output is zero
            return x.new_zeros((1, self.n_out, *size))
        if self.sparse:
            return _Sparse.apply(x, self.token, self)
        if self.in_idx is not None:
            x = x.index_select(1, self.in_idx)
        w = self.weight
        assert w is not None
        if self.is_conv:
            y = _Conv.apply(x, w, self)
        else:
            y = F.linear(x, w.reshape(w.shape[0], -1))
        if self.out_idx is not None:
            y = y.new_zeros((1, self.n_out, *y.shape[2:])).index_copy(1, self.out_idx, y)
        return y


class _Conv(torch.autograd.Function):
    """A batch-1 convolution as ``W @ U`` (compacted ``W``; ``U`` the distinct
    columns of ``unfold(x)``, :meth:`_Layer.columns`), each product cut into fixed
    parts (:func:`_cut`, by its size).

    The backward defers the scores (:meth:`Linearised.score_rows`, or the weight
    gradient ``G1 @ U^T`` and a gather, ``G1`` the output gradient summed over the
    positions each column stands for) and computes the input gradient as the fold
    of ``(G2^T @ W)^T`` from the distinct columns ``G2`` of the output gradient (cut
    by input channels; reads ``W`` in its memory order).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, layer: _Layer) -> torch.Tensor:
        u, inv = layer.columns(x)
        w2 = w.reshape(w.shape[0], -1)
        ctx.save_for_backward(u, w2)
        ctx.layer, ctx.size, ctx.inv = layer, tuple(x.shape[2:]), inv
        y = u.new_empty((w2.shape[0], u.shape[1]))
        work = w2.numel() * u.shape[1] // 8  # ~ multiply-adds per slot-kernel step
        _run_parts([partial(_mm, w2[a:b], u, y[a:b]) for a, b in _cut(y.shape[0], work)])
        if inv is not None:
            y = _take(y, inv)
        return y.reshape(1, w.shape[0], *layer.out_size(ctx.size))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        u, w2 = ctx.saved_tensors
        layer: _Layer = ctx.layer
        g = grad.reshape(w2.shape[0], -1).contiguous()
        inv = ctx.inv

        gs = _group_sum(g, inv, u.shape[1])
        if u.shape[1] <= _DOT_COLS:  # each score as one dot product over the columns
            layer.owner.score_rows(layer, layer.rowmap, layer.ucol, u.detach(), gs)
        else:  # the weight gradient as a product, then a gather (off the critical path)
            gw = partial(_mm, gs, u.T)
            layer.owner.defer(lambda: layer.owner.gather(layer, gw().reshape(-1).numpy()))
        if not ctx.needs_input_grad[0]:
            return None, None, None
        gcols = _distinct_columns(g)
        gd = g if gcols is None else _take(g, gcols[0])
        k, table = layer.n_k, layer.fold_table(gcols, ctx.size)

        def part(a: int, b: int) -> torch.Tensor:  # input channels a..b: fold their columns
            gu = _mm(gd.T, w2[:, a * k : b * k]).T  # W in memory order
            return _fold(layer, gu, table, ctx.size)

        work = w2.numel() * gd.shape[1] // 8
        gxs = _run_parts([partial(part, a, b) for a, b in _cut(w2.shape[1] // k, work)])
        return torch.cat(gxs, dim=1), None, None


def _mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b`` in float64 by numpy's BLAS (into ``out`` if given)."""
    an, bn = a.detach().numpy(), b.detach().numpy()
    if out is None:
        return torch.from_numpy(an @ bn)
    np.matmul(an, bn, out=out.numpy())
    return out


def _fold(
    layer: _Layer, gu: torch.Tensor, table: np.ndarray | None, size: tuple[int, ...]
) -> torch.Tensor:
    """The input gradient from the gradient ``gu`` of the unfolded columns
    (:meth:`_Layer.fold_table`: which column each input position reads per tap)."""
    if table is None:
        return gu.reshape(1, -1)
    gx = torch.empty((gu.shape[0] // layer.n_k, table.shape[0]), dtype=torch.float64)
    fold_columns(gu.contiguous().numpy(), table, gx.numpy())
    return gx.reshape(1, gx.shape[0], *size)


class _Sparse(torch.autograd.Function):
    """A batch-1 Linear or convolution over the alive elements only (CSR rows).

    The forward is ``y[j] = sum base * U[col]`` per output channel (``U`` the
    distinct columns of ``unfold(x)``); the backward defers each alive element's
    score (its gradient ``g[j] . U[col]``, transformed as the network asks:
    :meth:`Linearised.score_rows`) and accumulates the input gradient. ``token`` (a
    scalar that requires grad) keeps the layer in the autograd graph when ``x`` does
    not require grad.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, token: torch.Tensor, layer: _Layer) -> torch.Tensor:
        u, inv = layer.columns(x)
        u = u.contiguous()
        y = torch.empty((layer.n_out, u.shape[1]), dtype=torch.float64)
        un, yn = u.numpy(), y.numpy()
        _run_parts(
            [
                partial(sparse_forward, layer.rowptr, layer.col, layer.base, un, yn, a, b)
                for a, b in _row_cut(layer.rowptr, _MIN_ROWS_FWD)  # rows do not depend on it
            ]
        )
        ctx.save_for_backward(u)
        ctx.layer, ctx.size, ctx.inv = layer, tuple(x.shape[2:]), inv
        if inv is not None:
            y = _take(y, inv)
        shape = (1, layer.n_out, *layer.out_size(ctx.size)) if layer.is_conv else (1, layer.n_out)
        return y.reshape(shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (u,) = ctx.saved_tensors
        layer: _Layer = ctx.layer
        net: Linearised = layer.owner
        g = grad.reshape(layer.n_out, -1).contiguous()
        inv = ctx.inv

        net.score_rows(layer, np.arange(layer.n_out), layer.col, u, _group_sum(g, inv, u.shape[1]))
        if not ctx.needs_input_grad[0]:
            return None, None, None
        gcols = _distinct_columns(g)
        gd = (g if gcols is None else _take(g, gcols[0])).numpy()
        table = layer.fold_table(gcols, ctx.size)

        def part(r0: int, r1: int) -> torch.Tensor:
            gu = torch.zeros((u.shape[0], gd.shape[1]), dtype=torch.float64)
            sparse_input_grad(layer.rowptr, layer.col, layer.base, gd, gu.numpy(), r0, r1)
            return _fold(layer, gu, table, ctx.size)  # fold is linear: the parts' sum is the fold

        gxs = _run_parts([partial(part, a, b) for a, b in _row_cut(layer.rowptr, _MIN_ROWS_GRAD)])
        gx = gxs[0]
        for other in gxs[1:]:
            gx += other
        return gx, None, None


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
        prunable = [b.param for b in dag.blocks if b.param is not None and b.values is not None]
        self.net = linearised_copy(model, p, buffers, skip=prunable)
        off = block_offsets(dag)
        found: list[tuple[str, Any, Any]] = []
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
            found.append((path, module, partial(_Layer, module, values, present, int(off[b]))))
        layers: list[Any] = [None] * len(found)

        def build(q: int) -> None:  # the layers are independent: any thread builds any
            for i in range(q, len(found), _PARTS):
                layers[i] = found[i][2](p, score_power)

        with _one_thread():  # the parts may use threads
            _run_parts([partial(build, q) for q in range(_PARTS)])
        self.layers: list[_Layer] = layers
        for (path, module, _), layer in zip(found, layers):
            bias = module.bias.detach() if module.bias is not None else None
            parent, _, attr = path.rpartition(".")
            holder = self.net.get_submodule(parent) if parent else self.net
            setattr(holder, attr, _LayerModule(layer, bias))
        self.x = torch.ones((1, *dag.input_shape), dtype=torch.float64)
        for layer in self.layers:
            layer.owner = self
        self.sec = score_power != 0  # scores carry the factor |w| ** score_power
        self._pending: list[_Task] = []  # this backward's deferred tasks
        self.scores = np.zeros(sum(layer.n_alive for layer in self.layers))
        self._layout()

    # ------------------------------------------------------------------ state
    def _settle(self) -> None:
        """Wait for every layer's pending kill and tidy, then lay out the scores."""
        for layer in self.layers:
            layer.ready()
        if self._stale:
            n = self.n_alive
            self._layout()
            assert self.n_alive == n

    def _layout(self) -> None:
        """Point every layer's scores at its range of the shared score array."""
        self._stale = False
        sizes = [layer.n_slots for layer in self.layers]
        self.slot_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        for layer, a, b in zip(self.layers, self.slot_off[:-1], self.slot_off[1:]):
            layer.scores, layer.offset = self.scores[a:b], int(a)
        self.n_alive = sum(layer.n_alive for layer in self.layers)

    def total(self) -> float:
        """``R = sum(net(ones))`` of the current alive elements."""
        with torch.no_grad(), _one_thread():
            return float(self.net(self.x).sum())

    def backward(self) -> np.ndarray:
        """One forward and backward pass; the score of every slot, layer after layer
        in torch order (``-1``: dead; a view, valid until the next pruning step).

        Each layer's scores are computed off the critical path (:meth:`defer`) while
        the input gradients carry on down the network."""
        for layer in self.layers:
            layer.scored = False
        self._pending = []
        with _one_thread():
            try:
                out = self.net(self.x).sum()
                self._settle()  # every layer waited for its own pruning in the forward
                for layer in self.layers:
                    if layer.weight is not None:
                        layer.weight.grad = None
                if out.requires_grad:  # else no alive weight reaches the output: all grads zero
                    out.backward()
            finally:  # from the end, the tasks the helper has not begun run here
                for task in reversed(self._pending):
                    task.run()
                for task in self._pending:
                    task.wait()
        for layer in self.layers:
            if layer.scored:
                continue
            g = None if layer.weight is None else layer.weight.grad
            if g is None or layer.n_alive == 0:  # no gradient reaches it: autograd's is None
                layer.scores[:] = np.where(layer.base >= 0, 0.0, -1.0)
            else:
                with _one_thread():  # the parts may use threads
                    self.gather(layer, g.detach().reshape(-1).numpy())
        return self.scores[: self.slot_off[-1]]

    def defer(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the background when this pass may use several threads (the
        end of :meth:`backward` waits for it), else now. Deferred work writes its
        own layer's scores only, so the order does not matter."""
        task = _background(fn)
        if task is not None:
            self._pending.append(task)

    def score_rows(
        self,
        layer: _Layer,
        rowmap: np.ndarray,
        cols: np.ndarray,
        u: torch.Tensor,
        g: torch.Tensor,
    ) -> None:
        """Defer the scores of ``layer`` as dot products of the output gradient rows
        ``g[rowmap[r]]`` with the unfolded columns ``u[cols[s]]`` (:func:`row_scores`;
        one task: cutting it into pieces of 2^16 slots was slower)."""
        un, gn, rowptr = u.numpy(), g.numpy(), layer.rowptr
        self.defer(
            partial(
                row_scores,
                rowptr,
                rowmap,
                cols,
                un,
                gn,
                layer.base,
                layer.sec,
                self.absolute,
                self.sec,
                layer.scores,
                0,
                rowptr.size - 1,
            )
        )
        layer.scored = True

    def gather(self, layer: _Layer, g: np.ndarray) -> None:
        """A dense layer's scores from its compacted weight gradient ``g``."""

        def part(a: int, b: int) -> None:
            gather_scores(
                g,
                layer.cidx[a:b],
                layer.base[a:b],
                layer.sec[a:b],
                self.absolute,
                self.sec,
                layer.scores[a:b],
            )

        _run_parts([partial(part, a, b) for a, b in _cut(layer.n_slots)])
        layer.scored = True

    def _histogram(self) -> np.ndarray:
        """The alive scores counted by the top 16 bits of their float64 patterns
        (dead slots, scored ``-1``, land in bins from ``0x8000`` up and are dropped)."""
        scores = self.scores[: self.slot_off[-1]]
        hists = np.zeros((_PARTS, 4, 1 << 16), dtype=np.int64)
        with _one_thread():  # the parts may use threads
            _run_parts(
                [
                    partial(count_bins, scores[a:b], hists[q])
                    for q, (a, b) in enumerate(_cut(scores.size))
                ]
            )
        hist = hists.sum(axis=(0, 1))
        hist[0x8000:] = 0
        return hist

    def _by_layers(self, fn: Callable[[int, _Layer], Any]) -> None:
        """``fn(q, layer)`` for every layer, on up to ``_PARTS`` threads ``q`` that take
        the layers largest first from a shared queue (work on separate layers is
        independent: which thread does a layer never changes a result)."""
        queue = collections.deque(sorted(self.layers, key=lambda layer: -layer.n_slots))

        def run(q: int) -> None:
            workers, _state.workers = getattr(_state, "workers", 1), 1  # no nested parts
            try:
                while True:
                    try:
                        layer = queue.popleft()
                    except IndexError:
                        return
                    fn(q, layer)
            finally:
                _state.workers = workers

        with _one_thread():  # the parts may use threads
            _run_parts([partial(run, q) for q in range(_PARTS)])

    def _top_bin(self, hist: np.ndarray, k: int) -> tuple[int, int, int, int]:
        """``(shift, prefix, need, n)``: the ``n`` scores whose bits from ``shift`` up
        are ``prefix`` hold the ``k``-th largest, which is the ``need``-th largest of
        them; ``n <= _CAND`` unless all bits are used. ``hist``: :meth:`_histogram`."""
        shift, prefix, need = 48, 0, k
        while True:
            above = np.cumsum(hist[::-1])  # above[m]: scores in the top m + 1 bins
            m = int(np.searchsorted(above, need))  # first m with above[m] >= need
            b = (1 << 16) - 1 - m
            need -= int(above[m - 1]) if m else 0
            prefix = (prefix << 16) | b
            if hist[b] <= _CAND or shift == 0:
                return shift, prefix, need, int(hist[b])
            shift -= 16
            hists = np.zeros((_PARTS, 1 << 16), dtype=np.int64)
            self._by_layers(partial(_refine_layer, shift, prefix, hists))
            hist = hists.sum(axis=0)

    def prune_to(self, k: int) -> None:
        """Keep the ``k`` alive elements first by (score desc, ``|w|**score_power`` desc,
        global index asc), as scored by the last :meth:`backward` (``absolute`` scores).

        Radix selection on the float64 bit patterns, which order like the values for
        non-negative numbers: the histogram of the scores' top 16 bits finds the bin
        of the ``k``-th largest (refined by the next 16 bits while it holds over
        ``_CAND`` scores); the bin's scores are
        sorted by the full key, and one pass keeps everything above the bin plus
        the bin's winners. Exact and deterministic. Dead slots (score ``-1``, a
        negative pattern) never match a bin."""
        self._settle()
        if not 0 <= k <= self.n_alive:
            raise ValueError(f"k must be in [0, {self.n_alive}], got {k}")
        if k == self.n_alive:
            return
        hist = self._histogram()
        if hist[_NONFINITE:].any():
            raise OverflowError("the scores overflow float64")
        if int(hist.sum()) != self.n_alive:
            raise ValueError("prune_to needs non-negative scores (absolute=True)")
        if k == 0:
            shift, prefix = 0, np.iinfo(np.int64).max  # nothing is above
        else:
            shift, prefix, need, n = self._top_bin(hist, k)
            vals, secs = np.empty((_PARTS, n)), np.empty((_PARTS, n))
            slots = np.empty((_PARTS, n), dtype=np.int64)
            got = np.zeros(_PARTS, dtype=np.int64)

            def collect(q: int, layer: _Layer) -> None:
                got[q] = collect_bin(
                    layer.scores,
                    layer.sec,
                    shift,
                    prefix,
                    layer.offset,
                    vals[q],
                    secs[q],
                    slots[q],
                    int(got[q]),
                )

            self._by_layers(collect)
            assert got.sum() == n
            vals, secs, slots = (
                np.concatenate([a[q, : got[q]] for q in range(_PARTS)]) for a in (vals, secs, slots)
            )
            self.scores[_winners(vals, secs, slots, need)] = np.inf  # above every bin
        # Each layer's kill and tidy run in the background while the next forward
        # starts: the helper takes them from the last layer, and the forward runs
        # those of the first layers itself (``_Layer.ready``) unless already begun.
        with _one_thread():
            for layer in reversed(self.layers):
                layer.pending = _background(partial(_kill_tidy, layer, shift, prefix))
        self.n_alive, self._stale = k, True

    def kept(self) -> np.ndarray:
        """Ascending global indices of the alive elements."""
        self._settle()
        parts = [layer.global_index() for layer in self.layers]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def grad_sum(self) -> float:
        """Sum over the alive elements of the last backward's scores."""
        self._settle()
        alive = np.concatenate([layer.base >= 0 for layer in self.layers])
        return float(math.fsum(self.scores[: self.slot_off[-1]][alive]))


def _winners(vals: np.ndarray, secs: np.ndarray, slots: np.ndarray, need: int) -> np.ndarray:
    """The slots of the ``need`` first candidates by (value desc, secondary key desc,
    slot asc): a partition finds the ``need``-th largest value ``v``; the candidates
    above ``v`` win, and the ties at ``v`` are sorted."""
    v = np.partition(vals, vals.size - need)[vals.size - need]
    above = vals > v
    tied = np.flatnonzero(vals == v)
    rest = need - int(np.count_nonzero(above))
    order = np.lexsort((slots[tied], -secs[tied]))[:rest]  # tied values: sec desc, slot asc
    return np.concatenate([slots[above], slots[tied[order]]])


def _kill_tidy(layer: _Layer, shift: int, prefix: int) -> None:
    layer.kill(shift, prefix)
    layer.tidy()


def _refine_layer(shift: int, prefix: int, hists: np.ndarray, q: int, layer: _Layer) -> None:
    refine_hist(layer.scores, shift, prefix, hists[q])
