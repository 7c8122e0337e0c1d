"""Dynamic sparse training: drop and regrow weights during training at a fixed density.

A :class:`DST` config, given to :func:`pathnet.train.fit` (``fit(..., dst=DST(...))``)
or :func:`pathnet.train.ddp.fit_ddp`, makes the mask change during training. Every
``every`` optimizer steps, up to ``stop`` of the run, each prunable layer drops its
``k`` smallest-magnitude kept weights and regrows exactly ``k`` weights that it did not
keep, so the number of weights kept per layer never changes:

* ``rule="set"`` (Mocanu et al. 2018): the ``k`` new weights uniformly at random;
* ``rule="rigl"`` (Evci et al. 2020): the ``k`` largest ``|dense gradient|`` of the
  current batch;
* ``rule="phew"``: the first ``k`` new weights that PHEW's biased random walks cross
  (Patil & Dovrolis 2021), walked on the current network (see :func:`phew_grow`).

``regrow="dead_units"`` restricts the candidates to edges of dead units (width
restoration, see :func:`update_mask`). The exact rules:

**Schedule.** Update ``t`` happens after optimizer step ``s`` (counted from 1 over the
run) when ``s % every == 0`` and ``s <= stop * total_steps`` (``total_steps = epochs *
batches per epoch``). Its drop fraction is ``fraction`` (``schedule="constant"``) or
RigL's cosine decay ``fraction * (1 + cos(pi * s / (stop * total_steps))) / 2``
(``schedule="cosine"``). A run extended on resume (a larger ``epochs``) follows the
schedule of its new length from then on.

**Drop.** In each layer (each distinct weight tensor) keeping ``n`` weights of ``N``,
``k = min(floor(fraction_t * n + 1/2), N - n)``; the ``k`` kept weights with the
smallest ``|w|`` are dropped (ties: lower flat index first).

**Grow.** Exactly ``k`` weights among those not kept *before* the drop: the weights just
dropped cannot come back in the same update (as in RigL). New weights start at exactly
zero (RigL's convention, for every rule) and their optimizer momentum is zeroed; the
momentum of every weight and bias the new mask prunes is zeroed too, so pruned weights
stay exactly zero. Bias masks follow the mask as in :func:`pathnet.apply_mask`
(``mask_biases=True``): the bias of a unit that keeps no incoming weight is zero.

**Dense gradient (RigL).** In ``mask_mode="hard"`` the weights are plain parameters but a
gradient hook zeroes the pruned entries. Before the backward pass of an update step,
:class:`DSTRun` removes that hook (the mask it holds stays), so ``weight.grad`` after the
step is the dense gradient of the current batch (with DDP: averaged over the ranks);
the optimizer step then moves pruned weights too, and the update sets every weight the
new mask prunes back to zero with its momentum, so kept weights follow exactly the
trajectory they would have without the dense gradient. ``"parametrize"`` and
``"prune"`` modes are refused.

>>> import torch, pathnet
>>> from pathnet.train import fit
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(256, 8, generator=g); y = (x[:, 0] > 0).long()
>>> model = pathnet.models.mlp([8, 16, 2], seed=0)
>>> mask = pathnet.select.select("random", model, 0.3, seed=0)
>>> res = fit(model, mask, (x, y), epochs=2, batch_size=32, seed=0, progress=False,
...           dst=DST("set", every=4, fraction=0.3, seed=0))
>>> res.mask.n_kept == mask.n_kept, [r["step"] for r in res.dst_log]
(True, [0, 4, 8, 12])
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pathnet.mask import Mask, apply_mask, bias_masks, prunable_parameters, tied_groups
from pathnet.mask.core import HARD_ATTRS, _module_path

__all__ = [
    "DST",
    "REGROWS",
    "RULES",
    "SCHEDULES",
    "DSTRun",
    "check_dst",
    "drop_smallest",
    "grow_rigl",
    "grow_set",
    "phew_grow",
    "update_mask",
]

_PREFIX = "pathnet.train.dst"
RULES = ("set", "rigl", "phew")
SCHEDULES = ("cosine", "constant")
REGROWS = ("any", "dead_units")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclass(frozen=True)
class DST:
    """How the mask changes during training (see the module docstring for the exact rules).

    Parameters
    ----------
    rule : {"set", "rigl", "phew"}
        How weights regrow: at random, by largest ``|dense gradient|``, or along PHEW's
        biased random walks on the current network.
    every : int, default 100
        Optimizer steps between updates (>= 1).
    fraction : float, default 0.3
        Drop fraction of the first update, in (0, 1).
    schedule : {"cosine", "constant"}, default "cosine"
        RigL's cosine decay of the fraction to 0 at ``stop``, or a constant fraction.
    stop : float, default 0.75
        No update after this fraction of the run's optimizer steps, in (0, 1] (RigL: 0.75).
    regrow : {"any", "dead_units"}, default "any"
        ``"dead_units"``: grow only edges into or out of units that are dead after the
        drop (on no complete input -> output path of kept weights); a layer with fewer
        such edges than its quota takes all of them and grows the rest by the rule
        among its other candidates.
    seed : int, default 0
        Seed of SET's draws and PHEW's walks; update ``t`` draws from ``(seed, step)``.
    log_paths : bool, default True
        Also log the path count and path-kernel trace (log10) after every update.
    max_walks : int, optional
        PHEW: walks per update before the remaining quotas are filled at random
        (counted as ``fallback`` in the log); default ``max(10**5, 50 * k_total)``.

    Examples
    --------
    >>> d = DST("rigl", every=50, fraction=0.5)
    >>> d.fraction_at(0, 1000), round(d.fraction_at(375, 1000), 4), d.fraction_at(750, 1000)
    (0.5, 0.25, 0.0)
    >>> DST.from_dict(d.to_dict()) == d
    True
    >>> DST("magic")
    Traceback (most recent call last):
    ...
    ValueError: pathnet.train.dst: rule must be one of 'set', 'rigl', 'phew', got 'magic'
    """

    rule: str = "rigl"
    every: int = 100
    fraction: float = 0.3
    schedule: str = "cosine"
    stop: float = 0.75
    regrow: str = "any"
    seed: int = 0
    log_paths: bool = True
    max_walks: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("rule", RULES), ("schedule", SCHEDULES), ("regrow", REGROWS)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(
                    f"{_PREFIX}: {name} must be one of {', '.join(map(repr, allowed))}, "
                    f"got {value!r}"
                )
        if not _is_int(self.every) or self.every < 1:
            raise ValueError(f"{_PREFIX}: every must be an integer >= 1, got {self.every!r}")
        for name in ("fraction", "stop"):
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            hi_ok = (v < 1) if name == "fraction" else (v <= 1)
            if not ok or not (v > 0 and hi_ok):
                interval = "(0, 1)" if name == "fraction" else "(0, 1]"
                raise ValueError(f"{_PREFIX}: {name} must be in {interval}, got {v!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"{_PREFIX}: seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.log_paths, bool):
            raise ValueError(f"{_PREFIX}: log_paths must be True or False, got {self.log_paths!r}")
        if self.max_walks is not None and (not _is_int(self.max_walks) or self.max_walks < 1):
            raise ValueError(
                f"{_PREFIX}: max_walks must be a positive integer or None, got {self.max_walks!r}"
            )
        object.__setattr__(self, "every", int(self.every))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "fraction", float(self.fraction))
        object.__setattr__(self, "stop", float(self.stop))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (for checkpoints and sweep trials)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DST:
        """Inverse of :meth:`to_dict`; unknown keys are a ``ValueError`` naming them."""
        if not isinstance(d, Mapping):
            raise ValueError(f"{_PREFIX}: expected a dict of DST fields, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, d)) - names)
        if unknown:
            raise ValueError(
                f"{_PREFIX}: unknown DST field(s) {unknown}; fields are {sorted(names)}"
            )
        return cls(**dict(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def end_step(self, total_steps: int) -> float:
        """``stop * total_steps``: no update after this step."""
        return self.stop * total_steps

    def is_update(self, step: int, total_steps: int) -> bool:
        """Whether optimizer step ``step`` (from 1) is followed by an update."""
        return step >= 1 and step % self.every == 0 and step <= self.end_step(total_steps)

    def fraction_at(self, step: int, total_steps: int) -> float:
        """The drop fraction at step ``step``: constant, or RigL's cosine
        ``fraction * (1 + cos(pi * step / (stop * total_steps))) / 2``."""
        if self.schedule == "constant":
            return self.fraction
        t_end = self.end_step(total_steps)
        x = min(max(step / t_end, 0.0), 1.0) if t_end > 0 else 1.0
        return self.fraction * (1.0 + math.cos(math.pi * x)) / 2.0


# ------------------------------------------------------------------ selection, per layer
def drop_smallest(w_abs: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Bool array: the ``k`` kept entries with the smallest ``w_abs`` (ties: lower index).

    >>> drop_smallest(np.array([0.3, 0.1, 0.1, 0.0]), np.array([1, 1, 1, 0], bool), 2)
    array([False,  True,  True, False])
    """
    return _first_k(w_abs, keep, k, "drop", "kept weights")


def grow_rigl(score: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Bool array: the ``k`` candidates with the largest ``score`` (ties: lower index).

    >>> grow_rigl(np.array([0.5, 2.0, 2.0, 9.0]), np.array([1, 1, 1, 0], bool), 2)
    array([False,  True,  True, False])
    """
    eligible = candidates.ravel().astype(bool)
    if 0 <= k <= np.count_nonzero(eligible) and np.isnan(score.ravel()[eligible]).any():
        raise ValueError(f"{_PREFIX}: the dense gradient holds NaN; did training diverge?")
    return _first_k(-score, candidates, k, "grow", "candidates")


def _first_k(key: np.ndarray, eligible: np.ndarray, k: int, verb: str, what: str) -> np.ndarray:
    """Bool array: the ``k`` eligible entries with the smallest ``key`` (ties: lower index)."""
    flat = eligible.ravel()
    idx = np.flatnonzero(flat)
    if not 0 <= k <= idx.size:
        raise ValueError(f"{_PREFIX}: cannot {verb} {k} of {idx.size} {what}")
    order = np.argsort(key.ravel()[idx], kind="stable")
    out = np.zeros(flat.shape, dtype=bool)
    out[idx[order[:k]]] = True
    return out.reshape(eligible.shape)


def grow_set(candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Bool array: ``k`` candidates drawn uniformly without replacement.

    >>> int(grow_set(np.ones(10, bool), 3, np.random.default_rng(0)).sum())
    3
    """
    flat = candidates.ravel()
    idx = np.flatnonzero(flat)
    if not 0 <= k <= idx.size:
        raise ValueError(f"{_PREFIX}: cannot grow {k} of {idx.size} candidates")
    out = np.zeros(flat.shape, dtype=bool)
    if k:
        out[rng.choice(idx, size=k, replace=False)] = True
    return out.reshape(candidates.shape)


# ------------------------------------------------------------------ PHEW regrowth
def _single_blocks(dag: Any, names: list[str]) -> dict[str, int]:
    out = {}
    for name in names:
        blocks = dag.blocks_of(name)
        if len(blocks) != 1 or name in dag.tied:
            raise ValueError(
                f"{_PREFIX}: PHEW regrowth needs one edge block per parameter; {name!r} "
                f"has {len(blocks)} (a layer reading a concatenation, or tied weights)"
            )
        out[name] = blocks[0]
    return out


def phew_grow(
    dag: Any,
    values: Mapping[str, np.ndarray],
    candidates: Mapping[str, np.ndarray],
    quotas: Mapping[str, int],
    *,
    seed: int,
    max_walks: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Grow ``quotas[name]`` candidates per parameter along PHEW's biased random walks.

    The walks are :func:`pathnet.select.phew.sample_walks` on ``dag`` (its structure;
    no element mask) whose edge values are ``values`` (``bias="abs"``: a unit's next
    edge with probability proportional to the edge's ``sum |value|``, a kernel element
    proportional to ``|value|``). Even walks start round robin at the input units and
    go forward, odd walks at the output units and go backward, as in :func:`pathnet.
    select.phew.phew`. The walks' elements are read in walk order (walk 0's elements
    in path order, then walk 1's, ...); an element is grown when it is a candidate, not
    grown yet, and its parameter's quota is not yet met. Walks run in batches until
    every quota is met or ``max_walks`` walks are used (default ``max(10**5, 50 *
    sum(quotas))``); a quota still open then is filled uniformly at random among the
    parameter's remaining candidates (``fallback`` in the returned info).

    Parameters
    ----------
    dag : LayeredDAG
        The network's structure (:func:`pathnet.to_dag`), one block per parameter.
    values : mapping of str to numpy.ndarray
        Parameter-shaped edge values the walks are biased by (``|w|`` or any
        non-negative weights); a layer of all zeros is refused by ``prepare``.
    candidates : mapping of str to bool numpy.ndarray
        Parameter-shaped: which elements may grow.
    quotas : mapping of str to int
        How many to grow per parameter (at most its candidates).
    seed : int
        Seed of the walks.

    Returns
    -------
    (grown, info)
        ``grown``: parameter-shaped bool arrays; ``info``: ``walks`` (used),
        ``fallback`` (per parameter, grown at random after ``max_walks``).

    Examples
    --------
    >>> import pathnet
    >>> model = pathnet.models.mlp([6, 5, 3], seed=0)
    >>> dag = pathnet.to_dag(model)
    >>> w = {n: p.detach().abs().numpy() for n, p in pathnet.prunable_parameters(model).items()}
    >>> cand = {n: np.ones(a.shape, bool) for n, a in w.items()}
    >>> grown, info = phew_grow(dag, w, cand, {"1.weight": 4, "3.weight": 2}, seed=0)
    >>> {n: int(g.sum()) for n, g in grown.items()}, sum(info["fallback"].values())
    ({'1.weight': 4, '3.weight': 2}, 0)
    """
    from pathnet.select.phew import sample_walks
    from pathnet.select.walkgraph import prepare

    names = list(quotas)
    where = _single_blocks(dag, names)
    blocks = list(dag.blocks)
    for name in names:
        b = where[name]
        blk = blocks[b]
        v = blk.from_param(np.asarray(values[name], dtype=np.float64), fill=0.0)
        blocks[b] = replace(blk, values=np.ascontiguousarray(v), element_mask=None)
    graph = prepare(replace(dag, blocks=tuple(blocks)), bias="abs")
    n_el = graph.n_elements
    layer_of = np.full(n_el, -1, dtype=np.int64)
    cand = np.zeros(n_el, dtype=bool)
    to_param: list[np.ndarray] = []
    offs: list[int] = []
    for li, name in enumerate(names):
        b = where[name]
        blk = blocks[b]
        off = int(graph.elem_off[b])
        offs.append(off)
        if blk.param_index is None:
            pidx = np.arange(blk.n_params, dtype=np.int64)
        else:
            pidx = blk.param_index.reshape(-1)
        to_param.append(pidx)
        c = np.asarray(candidates[name], dtype=bool).reshape(-1)
        exists = pidx >= 0
        cb = np.zeros(blk.n_params, dtype=bool)
        cb[exists] = c[pidx[exists]]
        cand[off : off + blk.n_params] = cb
        layer_of[off : off + blk.n_params] = li
    need = np.array([int(quotas[n]) for n in names], dtype=np.int64)
    avail = np.bincount(layer_of[cand], minlength=len(names))
    if (need > avail).any() or (need < 0).any():
        bad = names[int(np.flatnonzero((need > avail) | (need < 0))[0])]
        raise ValueError(f"{_PREFIX}: cannot grow {int(quotas[bad])} weights in {bad!r}")
    total = int(need.sum())
    limit = max(10**5, 50 * total) if max_walks is None else int(max_walks)
    grown = np.zeros(n_el, dtype=bool)
    done = 0
    width = max(graph.max_elems, 1)
    while need.sum() > 0 and done < limit:
        n = int(min(limit - done, max(256, 2 * int(need.sum())), (1 << 22) // width))
        elems, lens, _ = sample_walks(graph, done, n, seed)
        done += n
        valid = np.arange(elems.shape[1])[None, :] < lens[:, None]
        seq = elems[valid]  # walk order, then path order within a walk
        seq = seq[cand[seq]]
        if not seq.size:
            continue
        _, first = np.unique(seq, return_index=True)
        ordered = seq[np.sort(first)]
        lay = layer_of[ordered]
        for lyr in np.flatnonzero(need > 0):
            take = ordered[lay == lyr][: need[lyr]]
            grown[take] = True
            cand[take] = False
            need[lyr] -= take.size
    fallback: dict[str, int] = {}
    if need.sum() > 0:
        rng = np.random.default_rng([int(seed) & (2**63 - 1), 0x66616C6C])  # "fall"
        for lyr in np.flatnonzero(need > 0):
            pool = np.flatnonzero(cand & (layer_of == lyr))
            take = rng.choice(pool, size=int(need[lyr]), replace=False)
            grown[take] = True
            fallback[names[lyr]] = int(need[lyr])
    out = {}
    for li, name in enumerate(names):
        blk = blocks[where[name]]
        flat = np.zeros(int(np.prod(blk.param_shape, dtype=np.int64)), dtype=bool)
        g = grown[offs[li] : offs[li] + blk.n_params]
        pidx = to_param[li]
        flat[pidx[g & (pidx >= 0)]] = True
        out[name] = flat.reshape(blk.param_shape)
    return out, {"walks": done, "fallback": {n: fallback.get(n, 0) for n in names}}


# ------------------------------------------------------------------ one update
def _dead_incident(dag: Any, mask: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per parameter, the elements whose edge joins a unit on no complete path of ``mask``."""
    from pathnet.analysis import active_units

    alive = active_units(dag, {k: np.asarray(v) for k, v in mask.items()})
    out = {}
    for name in mask:
        blk = dag.block_of(name)
        dead_edge = (~alive[blk.target])[:, None] | (~alive[blk.source])[None, :]
        per_elem = np.broadcast_to(dead_edge[:, :, None], blk.values.shape)
        out[name] = blk.to_param(np.ascontiguousarray(per_elem), fill=False).astype(bool)
    return out


def update_mask(
    dst: DST,
    mask: Mapping[str, Any],
    weights: Mapping[str, Tensor],
    step: int,
    total_steps: int,
    *,
    grads: Mapping[str, Tensor | None] | None = None,
    init_weights: Mapping[str, Tensor] | None = None,
    dag: Any = None,
) -> tuple[Mask, dict[str, Any]]:
    """One DST update: the new mask and its log entries (no model is modified).

    Parameters
    ----------
    dst : DST
    mask : Mask or mapping of str to bool tensor
        The current mask (one entry per distinct weight tensor).
    weights : mapping of str to tensor
        The current weights (``|w|`` ranks the drop).
    step, total_steps : int
        Optimizer step of this update (from 1) and of the whole run (the schedule).
    grads : mapping of str to tensor, optional
        ``rule="rigl"``: the dense gradients of the current batch.
    init_weights : mapping of str to tensor, optional
        ``rule="phew"``: the weights at initialisation; the walks' edge values are
        ``|w|`` on the weights kept after the drop and ``|w_init|`` on all others.
    dag : LayeredDAG, optional
        The model's structure; needed by ``rule="phew"`` and ``regrow="dead_units"``.

    Returns
    -------
    (Mask, dict)
        The new mask, and ``fraction`` and per-layer ``layers`` (``dropped``,
        ``grown``, ``fallback``), ``walks``.

    Notes
    -----
    ``regrow="dead_units"``: the candidates of a layer are its weights not kept before
    the drop whose edge's source or target unit is dead after the drop (not on any
    complete input -> output path of kept weights, :func:`pathnet.analysis.
    active_units`; inputs and outputs count as units). When a layer has at least ``k``
    such candidates, the rule picks ``k`` among them; otherwise all of them grow and
    the remaining ones are picked by the rule among the layer's other candidates.
    """
    frac = dst.fraction_at(step, total_steps)
    names = list(mask)
    keep = {n: torch.as_tensor(mask[n]).cpu().numpy().astype(bool) for n in names}
    w_abs = {n: weights[n].detach().abs().double().cpu().numpy() for n in names}
    drop: dict[str, np.ndarray] = {}
    ks: dict[str, int] = {}
    for n in names:
        kept = int(keep[n].sum())
        ks[n] = min(math.floor(frac * kept + 0.5), keep[n].size - kept)
        drop[n] = drop_smallest(w_abs[n], keep[n], ks[n])
    after = {n: keep[n] & ~drop[n] for n in names}
    cand = {n: ~keep[n] for n in names}
    forced = {n: np.zeros(keep[n].shape, dtype=bool) for n in names}
    quota = dict(ks)
    if dst.regrow == "dead_units":
        if dag is None:
            raise ValueError(f"{_PREFIX}: regrow='dead_units' needs the model's DAG")
        dead = _dead_incident(dag, after)
        for n in names:
            c0 = cand[n] & dead[n]
            if int(c0.sum()) >= quota[n]:
                cand[n] = c0
            else:
                forced[n] = c0
                cand[n] = cand[n] & ~c0
                quota[n] -= int(c0.sum())
    info: dict[str, Any] = {"fraction": frac, "walks": 0}
    fallback = dict.fromkeys(names, 0)
    if dst.rule == "set":
        rng = np.random.default_rng([dst.seed, int(step)])
        grown = {n: grow_set(cand[n], quota[n], rng) for n in names}
    elif dst.rule == "rigl":
        if grads is None or any(grads.get(n) is None for n in names):
            missing = [n for n in names if grads is None or grads.get(n) is None]
            raise ValueError(f"{_PREFIX}: rule='rigl' needs the dense gradients of {missing}")
        assert grads is not None
        grown = {
            n: grow_rigl(grads[n].detach().abs().double().cpu().numpy(), cand[n], quota[n])  # type: ignore[union-attr]
            for n in names
        }
    else:
        if dag is None or init_weights is None:
            raise ValueError(f"{_PREFIX}: rule='phew' needs the model's DAG and initial weights")
        vals = {
            n: np.where(after[n], w_abs[n], init_weights[n].detach().abs().double().cpu().numpy())
            for n in names
        }
        seed = int(np.random.default_rng([dst.seed, int(step)]).integers(0, 2**62))
        grown, walk_info = phew_grow(dag, vals, cand, quota, seed=seed, max_walks=dst.max_walks)
        info["walks"] = walk_info["walks"]
        fallback = walk_info["fallback"]
    new = {}
    layers = {}
    for n in names:
        g = grown[n] | forced[n]
        new[n] = torch.from_numpy(after[n] | g)
        assert int(g.sum()) == ks[n] and not (g & keep[n]).any()
        layers[n] = {"dropped": ks[n], "grown": int(g.sum()), "fallback": int(fallback[n])}
    info["layers"] = layers
    meta = dict(getattr(mask, "meta", {}) or {})
    return Mask(new, meta=meta), info


# ------------------------------------------------------------------ the run
def check_dst(dst: Any, mask_mode: str, mask: Mask | None) -> str:
    """Refuse what dynamic sparse training cannot run with; the config as JSON (for the record)."""
    if not isinstance(dst, DST):
        raise TypeError(f"{_PREFIX}: dst must be a pathnet.train.DST, got {type(dst).__name__}")
    if mask_mode != "hard":
        raise ValueError(
            f"{_PREFIX}: dst needs mask_mode='hard' (plain weight parameters, whose dense "
            f"gradient and mask can change in place), got mask_mode={mask_mode!r}"
        )
    if mask is None:
        raise ValueError(
            f"{_PREFIX}: dynamic sparse training needs a mask to start from (got mask=None); "
            "select one first, e.g. pathnet.select.select('random', model, 0.05)"
        )
    return dst.to_json()


def _check_rows(rows: Any) -> bool:
    return isinstance(rows, list) and all(isinstance(r, dict) for r in rows)


class DSTRun:
    """The DST state of one training run: the current mask, its log, the hooks.

    :func:`pathnet.train.fit` and :func:`pathnet.train.ddp.fit_ddp` drive it: create it
    (before the mask is applied, so it sees the initial weights), :meth:`attach` it
    once the optimizer and the first step are known, call :meth:`on_step` after every
    optimizer step, put :meth:`state_dict` into every checkpoint and :meth:`close` it
    at the end.

    Parameters
    ----------
    dst : DST
    model : torch.nn.Module
        The model as given to ``fit`` (its prunable weights are the initial weights).
    mask : Mask
        The run's initial mask.
    saved : dict, optional
        The checkpoint being resumed: its ``"dst"`` entry replaces the mask and log.
    broadcast : callable, optional
        ``broadcast(mask) -> mask``: makes every process hold the same mask (DDP).

    Notes
    -----
    :attr:`log` has one row for the initial mask (step 0) and one per update: ``step``,
    ``epoch`` (1-based epoch of the step; 0 for the initial row), ``fraction``,
    ``dropped``, ``grown``, ``fallback`` (PHEW weights grown at random after
    ``max_walks``), ``walks`` (totals), ``density``, ``layers`` (per parameter:
    ``kept``, ``density``, ``dropped``, ``grown``, ``fallback``), ``widths`` (per unit
    group, the units on a complete input -> output path, :func:`pathnet.analysis.
    layer_widths`), ``effective_params`` and, with ``log_paths``, ``log10_paths``
    (:func:`pathnet.analysis.path_count`) and ``log10_trace``
    (:func:`pathnet.analysis.path_kernel_trace`, ``method="network"``, on the current
    weights); None where the value is ``-inf``.
    """

    def __init__(
        self,
        dst: DST,
        model: nn.Module,
        mask: Mask | None,
        *,
        saved: Mapping[str, Any] | None = None,
        path: str | Path | None = None,
        broadcast: Callable[[Mask], Mask] | None = None,
    ) -> None:
        if not isinstance(dst, DST):
            raise TypeError(f"{_PREFIX}: dst must be a pathnet.train.DST, got {type(dst).__name__}")
        if mask is None:
            raise ValueError(
                f"{_PREFIX}: dynamic sparse training needs a mask to start from (got mask=None); "
                "select one first, e.g. pathnet.select.select('random', model, 0.05)"
            )
        tied = tied_groups(model)
        if tied:
            raise ValueError(
                f"{_PREFIX}: tied weights {tied} are not supported by dynamic sparse training"
            )
        self.dst = dst
        self.broadcast = broadcast
        self.mask: Mask = Mask({k: v.clone() for k, v in mask.items()}, meta=mask.meta)
        self.log: list[dict[str, Any]] = []
        self.init: dict[str, Tensor] = {
            n: p.detach().to("cpu", copy=True) for n, p in prunable_parameters(model).items()
        }
        from pathnet.graph import to_dag

        try:  # the structure, for the walks, dead units and the log's analyses
            self.dag: Any = to_dag(model)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{_PREFIX}: cannot convert the model to a DAG for the DST log and "
                f"regrowth ({exc}); give the model an input_shape attribute"
            ) from exc
        if saved is not None:
            self._load(saved.get("dst"), path)
        self.model: nn.Module | None = None
        self.optimizer: Any = None
        self.total_steps = 0
        self.steps_per_epoch = 1

    def _load(self, state: Any, path: Any) -> None:
        from pathnet.train.checkpoint import CheckpointError

        def fail(problem: str) -> None:
            raise CheckpointError(
                f"pathnet.train: checkpoint {str(path)!r} has no usable DST state ({problem}); "
                "it was written without dst=, or is damaged"
            )

        if not isinstance(state, dict):
            fail("no 'dst' entry")
        for key in ("config", "mask", "init", "log"):
            if key not in state:
                fail(f"'dst' lacks {key!r}")
        if state["config"] != self.dst.to_dict():
            fail(f"its DST is {state['config']!r}, not {self.dst.to_dict()!r}")
        m, init = state["mask"], state["init"]
        for what, d, dtype in (("mask", m, torch.bool), ("init", init, None)):
            if not isinstance(d, dict) or set(d) != set(self.mask):
                fail(f"its {what} names other parameters")
            for k, v in d.items():
                if not isinstance(v, Tensor) or v.shape != self.mask[k].shape:
                    fail(
                        f"its {what} for {k!r} is not a tensor of shape {tuple(self.mask[k].shape)}"
                    )
                if dtype is not None and v.dtype != dtype:
                    fail(f"its {what} for {k!r} has dtype {v.dtype}")
        if not _check_rows(state["log"]):
            fail("its log is not a list of rows")
        for k in self.mask:
            if int(m[k].sum()) != int(self.mask[k].sum()):
                fail(
                    f"its mask keeps {int(m[k].sum())} weights of {k!r}, the run {int(self.mask[k].sum())}"
                )
        self.mask = Mask({k: v.clone() for k, v in m.items()}, meta=self.mask.meta)
        self.init = {k: v.clone() for k, v in init.items()}
        self.log = [dict(r) for r in state["log"]]

    def attach(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        total_steps: int,
        steps_per_epoch: int,
        step: int,
    ) -> None:
        """Start (or resume, at ``step``) driving ``model``, masked with :attr:`mask` in hard mode."""
        self.model, self.optimizer = model, optimizer
        self.total_steps, self.steps_per_epoch = int(total_steps), max(1, int(steps_per_epoch))
        for name in self.mask:
            module = model.get_submodule(_module_path(name))
            if getattr(module, HARD_ATTRS["weight"], None) is None:
                raise ValueError(
                    f"{_PREFIX}: {name!r} is not held in mask_mode 'hard'; dynamic sparse "
                    "training needs mask_mode='hard' (plain weight parameters)"
                )
        if step == 0 and not self.log:
            self.log.append(self._row(0, 0.0, None))
        self._arm(step + 1)

    def _arm(self, next_step: int) -> None:
        """Let the dense gradient through the hard-mode hooks for RigL's update step."""
        if self.dst.rule != "rigl" or not self.dst.is_update(next_step, self.total_steps):
            return
        assert self.model is not None
        for name in self.mask:  # remove the hook that zeroes the pruned entries' gradient
            module = self.model.get_submodule(_module_path(name))
            getattr(module, HARD_ATTRS["weight"])[1].remove()

    def on_step(self, step: int) -> None:
        """After optimizer step ``step``: update the mask if it is an update step."""
        if self.dst.is_update(step, self.total_steps):
            self.update(step)
        self._arm(step + 1)

    def update(self, step: int) -> None:
        model = self.model
        assert model is not None
        params = prunable_parameters(model)
        grads = {n: params[n].grad for n in self.mask} if self.dst.rule == "rigl" else None
        new, info = update_mask(
            self.dst,
            self.mask,
            params,
            step,
            self.total_steps,
            grads=grads,
            init_weights=self.init,
            dag=self.dag,
        )
        if self.broadcast is not None:
            new = self.broadcast(new)
        old = self.mask
        self.mask = new
        self._rebuild(old, new)
        self.log.append(self._row(step, info["fraction"], info))

    def _rebuild(self, old: Mask, new: Mask) -> None:
        """Zero what the new mask prunes and what it grows, with their momentum; re-mask."""
        model, opt = self.model, self.optimizer
        assert model is not None
        params = prunable_parameters(model)
        state = opt.state if opt is not None else {}
        with torch.no_grad():
            for n, keep in new.items():
                p = params[n]
                grown = keep & ~old[n]
                live = (keep & ~grown).to(p.device)
                p.masked_fill_(~live, 0)  # exactly 0, even where a NaN was
                buf = state.get(p, {}).get("momentum_buffer")
                if isinstance(buf, Tensor):
                    buf.masked_fill_(~live, 0)
        apply_mask(model, Mask({k: v.clone() for k, v in new.items()}), mode="hard")
        modules = dict(model.named_modules())
        with torch.no_grad():
            for bname, bkeep in bias_masks(model, new).items():
                path, _, attr = bname.rpartition(".")
                b = getattr(modules[path], attr)
                buf = state.get(b, {}).get("momentum_buffer")
                if isinstance(buf, Tensor):
                    buf.masked_fill_(~bkeep.to(buf.device), 0)

    def _row(self, step: int, fraction: float, info: Mapping[str, Any] | None) -> dict[str, Any]:
        from pathnet import analysis

        m = self.mask
        epoch = 0 if step == 0 else (step - 1) // self.steps_per_epoch + 1
        layers = {}
        for n, keep in m.items():
            li = info["layers"][n] if info is not None else {}
            layers[n] = {
                "kept": int(keep.sum()),
                "density": int(keep.sum()) / keep.numel(),
                "dropped": int(li.get("dropped", 0)),
                "grown": int(li.get("grown", 0)),
                "fallback": int(li.get("fallback", 0)),
            }
        row: dict[str, Any] = {
            "step": int(step),
            "epoch": int(epoch),
            "fraction": float(fraction),
            "dropped": sum(v["dropped"] for v in layers.values()),
            "grown": sum(v["grown"] for v in layers.values()),
            "fallback": sum(v["fallback"] for v in layers.values()),
            "walks": int(info["walks"]) if info is not None else 0,
            "density": m.density,
            "layers": layers,
        }
        dag = self.dag.with_mask(m)
        widths = analysis.layer_widths(dag)
        row["widths"] = {w.name: int(w.active) for w in widths}
        row["effective_params"] = int(analysis.effective_params(dag))  # type: ignore[arg-type]
        if self.dst.log_paths:
            lp = float(analysis.path_count(dag))
            row["log10_paths"] = lp if math.isfinite(lp) else None
            assert self.model is not None
            tr = float(analysis.path_kernel_trace(self.model, m, method="network", log10=True))
            row["log10_trace"] = tr if math.isfinite(tr) else None
        return row

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the DST config, current mask, initial weights and log."""
        return {
            "config": self.dst.to_dict(),
            "mask": {k: v.clone() for k, v in self.mask.items()},
            "init": {k: v.clone() for k, v in self.init.items()},
            "log": [dict(r) for r in self.log],
        }

    def close(self) -> None:
        """Re-apply the current mask (undoing a pending dense-gradient hook)."""
        if self.model is not None:
            apply_mask(self.model, Mask({k: v.clone() for k, v in self.mask.items()}), mode="hard")
