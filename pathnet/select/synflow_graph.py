"""SynFlow's graph backend: the channel-level DAG computation in float64 log space.

Scores come from two sparse sweeps per iteration (forward and backward sums of path
products, :mod:`pathnet.graph.propagate`-style, kept in log space so deep nets never
overflow); the alive elements live in flat *slots* that are pruned in place. Exact for
MLPs and conv nets with circular padding, an approximation elsewhere (see
:mod:`pathnet.select.synflow` for the measured error). :class:`Kind` says what the sweeps
weigh and which power of ``|w|`` the score takes; it is shared by every backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from pathnet._kernels.topk import (
    fill_rows,
    keep_by_cut,
    row_chunks,
    slot_bracket,
    slot_compact,
    slot_edge_sums,
    slot_kill,
    slot_revive,
    slot_sample,
    slot_scores,
    tie_cut,
)
from pathnet.graph import LayeredDAG
from pathnet.select.scoring import (
    block_offsets,
    top_k_cut,
)

__all__ = ["Kind", "SlotState", "combine", "log_sweeps", "run_graph"]


@dataclass(frozen=True)
class Kind:
    """What the sweeps weigh (``p``) and which power of ``|w|`` the score takes."""

    name: str
    p: int  # sweeps use sum |w|**p per edge
    score_power: int  # score = |w|**score_power * F * B

    @staticmethod
    def of(method: str, variant: str | None) -> Kind:
        if method == "synflow":
            return Kind("synflow", 1, 1)
        if variant is None or variant == "phew":
            return Kind("synflow_l2/phew", 2, 1)
        if variant == "gebhart":
            return Kind("synflow_l2/gebhart", 1, 2)
        raise ValueError(
            f"pathnet.select.synflow_l2: variant must be 'phew' or 'gebhart', got {variant!r}"
        )


# ------------------------------------------------------------ graph backend
class SlotState:
    """The graph backend's state: the alive elements as flat arrays (*slots*).

    Per slot: ``gidx`` global element index, ``edge`` global edge index (block
    edge offset + ``j * n_in + i``), ``logw`` the log of the score weight
    ``|w|**score_power``, ``wabs`` ``|w|`` in the parameters' precision, and an
    ``alive`` flag. The slots form *rows*, one per (block, target unit ``j``):
    the elements of all edges into ``j``, sorted by ``|w|`` ascending, so that a
    step only visits the low end of each row (see
    :func:`pathnet._kernels.topk.slot_bracket`). A pruned element only clears its
    flag; dead slots are dropped once fewer than ``_COMPACT_AT`` of the slots are
    alive. ``edge_w`` holds every edge's ``sum |w|**p`` over its alive elements,
    ``ecount`` their number.
    """

    def __init__(self, dag: LayeredDAG, kind: Kind) -> None:
        self.dag = dag
        self.kind = kind
        goff = block_offsets(dag)
        self.edge_off = [0]
        for block in dag.blocks:
            n_out, n_in = block.shape
            self.edge_off.append(self.edge_off[-1] + (n_out * n_in if block.param else 0))
        n_edges = self.edge_off[-1]
        values = [b.values for b in dag.blocks if b.values is not None]
        wdtype = np.float32 if all(v.dtype == np.float32 for v in values) else np.float64
        n = dag.n_present
        self.gidx = np.empty(n, dtype=np.int32 if dag.n_params < 2**31 else np.int64)
        self.edge = np.empty(n, dtype=np.int32 if n_edges < 2**31 else np.int64)
        self.wabs = np.empty(n, dtype=wdtype)
        self.logw = np.empty(n)
        self.alive = np.ones(n, dtype=np.bool_)
        self.row_blocks: list[tuple[int, int, int]] = []  # (block, first row, end row)
        ends: list[np.ndarray] = []
        pos = 0
        empty = np.zeros((0, 0), dtype=np.bool_)
        for b, block in enumerate(dag.blocks):
            if block.values is None:
                continue
            n_out = block.shape[0]
            flat = np.ascontiguousarray(block.values, dtype=wdtype).reshape(n_out, -1)
            keys = np.abs(flat).view(np.uint32 if wdtype == np.float32 else np.uint64)
            mask = block.element_mask
            present = empty if mask is None else mask.reshape(n_out, -1)
            per_row = block.present_mask().reshape(n_out, -1).sum(axis=1)
            end = pos + np.cumsum(per_row)
            fill_rows(
                flat,
                keys,
                keys.itemsize,
                present,
                block.n_elem,
                int(goff[b]),
                self.edge_off[b],
                kind.score_power,
                end - per_row,
                self.gidx,
                self.edge,
                self.wabs,
                self.logw,
            )
            row = sum(e.size for e in ends)
            self.row_blocks.append((b, row, row + n_out))
            ends.append(end)
            pos += int(per_row.sum())
        assert pos == n
        self.row_end = np.concatenate(ends).astype(np.int64)
        self.row_start = np.concatenate([[0], self.row_end[:-1]]).astype(np.int64)
        self.row_first = self.row_start.copy()
        self.row_cmin = np.empty(self.row_end.size)
        self.n_slots = self.n_alive = n
        self.edge_w = np.zeros(n_edges)
        self.ecount = np.zeros(n_edges, dtype=np.int64)
        slot_edge_sums(self.alive, self.edge, self.wabs, kind.p, self.edge_w, self.ecount)
        self._offsets = np.empty(n_edges)
        self._buf: tuple[np.ndarray, ...] | None = None

    def slots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = self.n_slots
        return self.alive[:n], self.gidx[:n], self.edge[:n], self.wabs[:n], self.logw[:n]

    def offsets(self) -> np.ndarray:
        """``log F(i) + log B(j)`` for every edge, in global edge order; also refills
        ``row_cmin``, a lower bound of the offsets of each row's alive elements."""
        lf, lb = log_sweeps(self.dag, self.edge_w, self.edge_off)
        for b, r0, r1 in self.row_blocks:
            block = self.dag.blocks[b]
            e0, e1 = self.edge_off[b], self.edge_off[b + 1]
            f, g = lf[block.source], lb[block.target]
            np.add(g[:, None], f[None, :], out=self._offsets[e0:e1].reshape(block.shape))
            if np.isneginf(f).any():  # a dead source unit: bound over sources still in use
                f = f[self.ecount[e0:e1].reshape(block.shape).any(axis=0)]
            self.row_cmin[r0:r1] = g + float(f.min()) if f.size else math.inf
        return self._offsets

    def step(self, k: int) -> None:
        """Keep the ``k`` alive elements that come first by (score, logw, -index)."""
        off = self.offsets()
        if self.n_alive <= _BRACKET_MIN or not self._bracket_step(off, k):
            alive, gidx, edge, wabs, logw = self.slots()
            pos, sc = slot_scores(alive, edge, logw, off)
            lw, gi = logw[pos], gidx[pos].astype(np.int64)
            drop = ~keep_by_cut(sc, lw, gi, *top_k_cut(sc, k, lw, gi))
            slot_kill(pos[drop], alive, edge, wabs, self.kind.p, self.edge_w, self.ecount)
        self.n_alive = k
        if self.n_alive < _COMPACT_AT * self.n_slots:
            p, ew, ec = self.kind.p, self.edge_w, self.ecount
            self.n_slots = slot_compact(*self.slots(), self.row_start, self.row_end, p, ew, ec)
            assert self.n_slots == self.n_alive
            self.row_first[:] = self.row_start

    def _bracket_step(self, off: np.ndarray, k: int) -> bool:
        """Prune to ``k`` alive elements through a sampled bracket of the target rank.

        One pass over the low ends of the rows kills the slots below the bracket
        and records the candidates inside it; the cut among the candidates
        finishes the step. False, with nothing pruned, if the bracket misses.
        """
        alive, gidx, edge, wabs, logw = self.slots()
        n = self.n_alive
        t = n - k  # ascending rank of the k-th largest = number of elements to prune
        probes = min(self.n_slots, _SAMPLE * self.n_slots // n + 1)
        sample = slot_sample(alive, edge, logw, off, probes)
        m = sample.size
        if m < 64:
            return False
        q = t / n
        margin = 6.0 * math.sqrt(max(q * (1.0 - q), 1.0 / m) * m) + 16.0
        lo = float(sample[int(q * m - margin)]) if q * m - margin >= 0 else -math.inf
        hi = float(sample[min(m - 1, int(q * m + margin))])

        chunks = numba.get_num_threads()
        bounds = row_chunks(self.row_end - self.row_first, chunks)
        cap_b, cap_c = t + 1, min(n, 4096 + int(n * 0.05))
        if (  # reused across steps (t only shrinks); a larger row only delays an overflow
            self._buf is None
            or self._buf[0].shape[0] != chunks
            or self._buf[0].shape[1] < cap_b
            or self._buf[1].shape[1] < cap_c
        ):
            self._buf = (
                np.empty((chunks, cap_b), dtype=np.int64),
                np.empty((chunks, cap_c)),
                np.empty((chunks, cap_c), dtype=np.int64),
                np.empty((chunks, 3), dtype=np.int64),
            )
        below, cand_s, cand_p, counts = self._buf
        p, ew, ec = self.kind.p, self.edge_w, self.ecount
        slot_bracket(
            alive,
            edge,
            wabs,
            logw,
            off,
            self.row_first,
            self.row_end,
            self.row_cmin,
            lo,
            hi,
            p,
            ew,
            ec,
            bounds,
            below,
            cand_s,
            cand_p,
            counts,
        )
        nb, nc = int(counts[:, 0].sum()), int(counts[:, 1].sum())
        if counts[:, 2].any() or not nb <= t < nb + nc:  # undo the kills
            slot_revive(below, counts, alive)
            slot_edge_sums(alive, edge, wabs, p, ew, ec)
            return False
        cs = np.concatenate([cand_s[c, : counts[c, 1]] for c in range(chunks)])
        cp = np.concatenate([cand_p[c, : counts[c, 1]] for c in range(chunks)])
        v = float(np.partition(cs, t - nb)[t - nb])
        n_gt = n - nb - nc + int(np.count_nonzero(cs > v))
        cw, cg = logw[cp], gidx[cp].astype(np.int64)
        w_cut, g_cut = tie_cut(cs, cw, cg, v, k - n_gt)
        drop = cp[~keep_by_cut(cs, cw, cg, v, float(w_cut), int(g_cut))]
        slot_kill(drop, alive, edge, wabs, p, ew, ec)
        assert nb + drop.size == t
        return True

    def kept(self) -> np.ndarray:
        """Ascending global indices of the alive elements."""
        alive, gidx, _, _, _ = self.slots()
        return np.sort(gidx[alive].astype(np.int64))


_SAMPLE = 1 << 13  # alive slots sampled per step for the bracket
_BRACKET_MIN = 1 << 17  # below this many alive elements, select with one full partition
_COMPACT_AT = 0.7  # drop the dead slots when fewer than this fraction is alive


def run_graph(dag: LayeredDAG, kind: Kind, keep: list[int]) -> np.ndarray:
    state = SlotState(dag, kind)
    for k in keep:
        if k < state.n_alive:
            state.step(k)
    return state.kept()


def log_sweeps(
    dag: LayeredDAG, edge_w: np.ndarray, edge_off: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Natural logs of the forward and backward sums per group (``-inf`` for 0).

    Dense matrix-vector products per block with one scale per group, as in
    :func:`pathnet.graph.propagate.forward_log`, on the current edge weights.
    """
    n = len(dag.groups)
    mats: list[np.ndarray | None] = []
    for b, block in enumerate(dag.blocks):
        if block.param is None:
            mats.append(None)
        else:
            mats.append(edge_w[edge_off[b] : edge_off[b + 1]].reshape(block.shape))
    ins: list[list[int]] = [[] for _ in range(n)]
    outs: list[list[int]] = [[] for _ in range(n)]
    for b, block in enumerate(dag.blocks):
        ins[block.target].append(b)
        outs[block.source].append(b)

    fwd: list[tuple[np.ndarray, float]] = [(np.ones(dag.groups[0].size), 0.0)]
    for g in range(1, n):
        parts = []
        for b in ins[g]:
            v, s = fwd[dag.blocks[b].source]
            a = mats[b]
            parts.append((v.copy() if a is None else a @ v, s))
        fwd.append(combine(parts, dag.groups[g].size))
    bwd: list[tuple[np.ndarray, float] | None] = [None] * n
    bwd[-1] = (np.ones(dag.groups[-1].size), 0.0)
    for g in range(n - 2, -1, -1):
        parts = []
        for b in outs[g]:
            t = bwd[dag.blocks[b].target]
            assert t is not None
            a = mats[b]
            parts.append((t[0].copy() if a is None else t[0] @ a, t[1]))
        bwd[g] = combine(parts, dag.groups[g].size)
    with np.errstate(divide="ignore"):
        lf = [np.log(v) + s for v, s in fwd]
        lb = [np.log(t[0]) + t[1] for t in bwd if t is not None]
    return lf, lb


def combine(parts: list[tuple[np.ndarray, float]], size: int) -> tuple[np.ndarray, float]:
    """``sum v * exp(s)`` over parts as ``(values with max 1, log scale)``."""
    live = [(v, s) for v, s in parts if math.isfinite(s)]
    if not live:
        return np.zeros(size), -math.inf
    top = max(s for _, s in live)
    acc = np.zeros(size)
    for v, s in live:
        acc += v * math.exp(s - top) if s != top else v
    peak = float(acc.max())
    if peak <= 0.0:
        return np.zeros(size), -math.inf
    return acc / peak, top + math.log(peak)
