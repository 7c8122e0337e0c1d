"""Forward and backward sums of path products over a :class:`LayeredDAG`.

With ``W_p`` the per-edge sums of ``|w|**p`` over unmasked elements (``p=0`` counts
elements), the forward sweep gives, for every unit ``u``,

    F(u) = sum over paths from any input unit to u of the product of W_p along it

(``F = 1`` on input units) and the backward sweep

    B(u) = sum over paths from u to any output unit of the product of W_p along it

(``B = 1`` on output units). Path counts, SynFlow's ``R``, the path-kernel trace
and layer widths are all built from these two sweeps.

Three number systems:

* ``float``: plain float64 (SynFlow on modest depths);
* ``log``: float64 mantissas with one natural-log scale per group, so nothing
  overflows on dense VGG19 or ResNet56 (:class:`ScaledVector`);
* ``exact``: Python integers (``p=0`` only), exact path counts of any size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from pathnet.graph.dag import LayeredDAG

__all__ = ["ScaledVector", "backward", "backward_log", "forward", "forward_log", "sweep_exact"]

Mode = Literal["forward", "backward"]


@dataclass(frozen=True)
class ScaledVector:
    """The vector ``values * exp(log_scale)``; ``values`` has max 1 unless all zero."""

    values: np.ndarray
    log_scale: float

    def log(self) -> np.ndarray:
        """Natural log of every entry (``-inf`` for zeros)."""
        with np.errstate(divide="ignore"):
            return np.log(self.values) + self.log_scale

    def log10(self) -> np.ndarray:
        return self.log() / math.log(10.0)


def _block_matrix(dag: LayeredDAG, b: int, p: int) -> sp.csr_matrix:
    return dag.blocks[b].weight(p)


def forward(dag: LayeredDAG, p: int = 1) -> list[np.ndarray]:
    """Forward sums ``F`` per group in float64 (may overflow on deep dense nets)."""
    out: list[np.ndarray] = [np.ones(dag.groups[0].size)]
    for g in range(1, len(dag.groups)):
        acc = np.zeros(dag.groups[g].size)
        for b in dag.in_blocks(g):
            acc += _block_matrix(dag, b, p) @ out[dag.blocks[b].source]
        out.append(acc)
    return out


def backward(dag: LayeredDAG, p: int = 1) -> list[np.ndarray]:
    """Backward sums ``B`` per group in float64 (may overflow on deep dense nets)."""
    n = len(dag.groups)
    out: list[np.ndarray | None] = [None] * n
    out[-1] = np.ones(dag.groups[-1].size)
    for g in range(n - 2, -1, -1):
        acc = np.zeros(dag.groups[g].size)
        for b in dag.out_blocks(g):
            t = out[dag.blocks[b].target]
            assert t is not None
            acc += _block_matrix(dag, b, p).T @ t
        out[g] = acc
    return [v for v in out if v is not None]


def _combine(parts: list[tuple[np.ndarray, float]], size: int) -> ScaledVector:
    """Sum ``v * exp(s)`` over parts, renormalised to max 1."""
    live = [(v, s) for v, s in parts if np.isfinite(s)]
    if not live:
        return ScaledVector(np.zeros(size), -math.inf)
    top = max(s for _, s in live)
    acc = np.zeros(size)
    for v, s in live:
        acc += v * math.exp(s - top)
    peak = float(acc.max()) if acc.size else 0.0
    if peak <= 0.0:
        return ScaledVector(np.zeros(size), -math.inf)
    return ScaledVector(acc / peak, top + math.log(peak))


def forward_log(dag: LayeredDAG, p: int = 1) -> list[ScaledVector]:
    """Forward sums ``F`` per group as overflow-free :class:`ScaledVector`."""
    out = [ScaledVector(np.ones(dag.groups[0].size), 0.0)]
    for g in range(1, len(dag.groups)):
        parts = []
        for b in dag.in_blocks(g):
            src = out[dag.blocks[b].source]
            parts.append((_block_matrix(dag, b, p) @ src.values, src.log_scale))
        out.append(_combine(parts, dag.groups[g].size))
    return out


def backward_log(dag: LayeredDAG, p: int = 1) -> list[ScaledVector]:
    """Backward sums ``B`` per group as overflow-free :class:`ScaledVector`."""
    n = len(dag.groups)
    out: list[ScaledVector | None] = [None] * n
    out[-1] = ScaledVector(np.ones(dag.groups[-1].size), 0.0)
    for g in range(n - 2, -1, -1):
        parts = []
        for b in dag.out_blocks(g):
            t = out[dag.blocks[b].target]
            assert t is not None
            parts.append((_block_matrix(dag, b, p).T @ t.values, t.log_scale))
        out[g] = _combine(parts, dag.groups[g].size)
    return [v for v in out if v is not None]


def sweep_exact(dag: LayeredDAG, direction: Mode = "forward") -> list[list[int]]:
    """Exact path counts per unit (``p=0``) as Python integers.

    ``direction="forward"`` counts paths from the inputs to each unit,
    ``"backward"`` from each unit to the outputs.
    """
    if direction not in ("forward", "backward"):
        raise ValueError(
            f"pathnet.sweep_exact: direction must be 'forward' or 'backward', got {direction!r}"
        )
    n = len(dag.groups)
    out: list[np.ndarray | None] = [None] * n

    def push(m: sp.csr_matrix, vec: np.ndarray, size: int) -> np.ndarray:
        """``m @ vec`` in Python integers (numpy object arrays)."""
        contrib = m.data.astype(np.int64).astype(object) * vec[m.indices]
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        acc = np.zeros(size, dtype=object)
        np.add.at(acc, rows, contrib)
        return acc

    if direction == "forward":
        out[0] = np.ones(dag.groups[0].size, dtype=object)
        for g in range(1, n):
            acc = np.zeros(dag.groups[g].size, dtype=object)
            for b in dag.in_blocks(g):
                src = out[dag.blocks[b].source]
                assert src is not None
                acc = acc + push(dag.blocks[b].multiplicity, src, dag.groups[g].size)
            out[g] = acc
    else:
        out[-1] = np.ones(dag.groups[-1].size, dtype=object)
        for g in range(n - 2, -1, -1):
            acc = np.zeros(dag.groups[g].size, dtype=object)
            for b in dag.out_blocks(g):
                tgt = out[dag.blocks[b].target]
                assert tgt is not None
                m = dag.blocks[b].multiplicity.T.tocsr()
                acc = acc + push(m, tgt, dag.groups[g].size)
            out[g] = acc
    return [[int(x) for x in v] for v in out if v is not None]
