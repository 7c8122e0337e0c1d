"""PHEW: walk probabilities, exact counts, complete paths, reproducibility, errors."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import pathnet
from pathnet import EdgeBlock, LayeredDAG, UnitGroup, models
from pathnet._random import child_seeds
from pathnet.select import METHODS, select
from pathnet.select import phew as P

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers
def toy_dag(w_conv: np.ndarray, w_flat: np.ndarray) -> LayeredDAG:
    """input (2 ch) -> conv 2x2 kernels -> hidden (3) -> flatten (3 positions) -> output (2)."""
    groups = (
        UnitGroup("input", 2, "input", (2, 3, 3)),
        UnitGroup("conv", 3, "hidden", (3, 3, 1)),
        UnitGroup("fc", 2, "output", (2,)),
    )
    blocks = (
        EdgeBlock(0, 1, "conv", "conv.weight", (3, 2, 2, 2), (2, 2), w_conv.reshape(3, 2, 4)),
        EdgeBlock(1, 2, "linear", "fc.weight", (2, 9), (3,), w_flat.reshape(2, 3, 3)),
    )
    return LayeredDAG(groups, blocks, "toy", (2, 3, 3))


def toy_weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    w_conv = rng.uniform(0.2, 1.5, size=(3, 2, 4)) * rng.choice([-1.0, 1.0], size=(3, 2, 4))
    w_flat = rng.uniform(0.2, 1.5, size=(2, 3, 3)) * rng.choice([-1.0, 1.0], size=(2, 3, 3))
    w_flat[:, 2, :] = 0.0  # hidden unit 2: a column of zeros, uniform fallback going forward
    return w_conv.astype(np.float32), w_flat.astype(np.float32)


def biased(w: np.ndarray, bias: str) -> tuple[np.ndarray, np.ndarray]:
    """(edge weights A, element weights) of the spec for an (n_out, n_in, n_elem) array."""
    a = np.abs(w.astype(np.float64))
    if bias == "abs":
        return a.sum(2), a
    if bias == "square":
        return (a * a).sum(2), a * a
    if bias == "inverse":
        return 1.0 / (a.sum(2) + P.INVERSE_EPS), 1.0 / (a + P.INVERSE_EPS)
    return np.ones(a.shape[:2]), np.ones(a.shape)


def normalise(x: np.ndarray, axis: int) -> np.ndarray:
    s = x.sum(axis=axis, keepdims=True)
    n = x.shape[axis]
    return np.where(s > 0, x / np.where(s > 0, s, 1.0), 1.0 / n)


def chi2_pvalue(observed: np.ndarray, expected_p: np.ndarray) -> float:
    keep = expected_p > 0
    assert observed[~keep].sum() == 0, "a zero-probability outcome was drawn"
    exp = expected_p[keep] * observed.sum()
    return float(stats.chisquare(observed[keep], exp * observed[keep].sum() / exp.sum()).pvalue)


def live_units(dag: LayeredDAG, mask, *, identity: bool) -> list[np.ndarray]:
    """Reference: per group, units on a complete input -> output path of the mask.

    Dense boolean propagation over the mask's edges (``identity`` adds the
    identity shortcuts); independent of pathnet's own walks and analysis code.
    """
    edges = []
    for blk in dag.blocks:
        if blk.param is None:
            edges.append(np.eye(blk.n_units, dtype=bool) if identity else None)
        else:
            m = np.asarray(mask[blk.param]).reshape(blk.shape[0], blk.shape[1], -1)
            edges.append(m.any(axis=2))
    n = len(dag.groups)
    fwd = [np.ones(dag.groups[0].size, dtype=bool)]
    for g in range(1, n):
        acc = np.zeros(dag.groups[g].size, dtype=bool)
        for b, blk in enumerate(dag.blocks):
            if blk.target == g and edges[b] is not None:
                acc |= (edges[b] & fwd[blk.source][None, :]).any(axis=1)
        fwd.append(acc)
    bwd = [np.zeros(gr.size, dtype=bool) for gr in dag.groups]
    bwd[-1][:] = True
    for g in range(n - 2, -1, -1):
        for b, blk in enumerate(dag.blocks):
            if blk.source == g and edges[b] is not None:
                bwd[g] |= (edges[b] & bwd[blk.target][:, None]).any(axis=0)
    return [f & b for f, b in zip(fwd, bwd)]


def assert_on_complete_paths(dag: LayeredDAG, mask, *, identity: bool) -> None:
    live = live_units(dag, mask, identity=identity)
    for blk in dag.blocks:
        if blk.param is None:
            continue
        m = np.asarray(mask[blk.param]).reshape(blk.shape[0], blk.shape[1], -1)
        j, i, _ = np.nonzero(m)
        assert live[blk.target][j].all() and live[blk.source][i].all(), blk.param


def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 10),
    )
    model.input_shape = (3, 8, 8)
    return model


@pytest.fixture(scope="module")
def resnet_dag() -> LayeredDAG:
    return pathnet.to_dag(models.resnet20(seed=0))


# -------------------------------------------------------- walk probabilities
@pytest.mark.parametrize("bias", P.BIASES)
def test_forward_steps_match_analytic_probabilities(bias):
    w_conv, w_flat = toy_weights()
    dag = toy_dag(w_conv, w_flat)
    graph = P.prepare(dag, bias=bias, flatten="channel")
    elems, lens, _ = P.sample_walks(graph, 0, 120_000, seed=11)
    fwd = elems[0::4]  # walks 0, 4, 8, ...: forward from input unit 0
    assert (lens[0::4] == 2).all()
    b0, j, i, e1 = graph.decode(fwd[:, 0])
    b1, k, j2, e2 = graph.decode(fwd[:, 1])
    assert (b0 == 0).all() and (b1 == 1).all() and (i == 0).all() and (j2 == j).all()
    observed = np.zeros((3, 4, 2, 3))
    np.add.at(observed, (j, e1, k, e2), 1)

    a1, ew1 = biased(w_conv, bias)
    a2, _ = biased(w_flat, bias)
    p_j = normalise(a1[:, 0], 0)  # forward from unit 0: A[j, 0] / sum_j' A[j', 0]
    p_e = normalise(ew1[:, 0, :], 1)  # kernel element by the biased |w|
    p_k = normalise(a2, 0)  # column of zeros (hidden unit 2) -> uniform
    uniform_pos = np.full(3, 1 / 3)  # flatten edge: spatial position uniformly
    expected = (
        p_j[:, None, None, None]
        * p_e[:, :, None, None]
        * p_k.T[:, None, :, None]
        * uniform_pos[None, None, None, :]
    )
    assert chi2_pvalue(observed.ravel(), expected.ravel()) > 1e-3


@pytest.mark.parametrize("bias", P.BIASES)
def test_backward_steps_match_analytic_probabilities(bias):
    w_conv, w_flat = toy_weights()
    dag = toy_dag(w_conv, w_flat)
    graph = P.prepare(dag, bias=bias, flatten="channel")
    elems, lens, _ = P.sample_walks(graph, 0, 120_000, seed=12)
    bwd = elems[1::4]  # walks 1, 5, 9, ...: backward from output unit 0
    assert (lens[1::4] == 2).all()
    b1, k, j, e2 = graph.decode(bwd[:, 0])
    b0, j2, i, e1 = graph.decode(bwd[:, 1])
    assert (b1 == 1).all() and (b0 == 0).all() and (k == 0).all() and (j2 == j).all()
    observed = np.zeros((3, 3, 2, 4))
    np.add.at(observed, (j, e2, i, e1), 1)

    a1, ew1 = biased(w_conv, bias)
    a2, _ = biased(w_flat, bias)
    p_j = normalise(a2[0], 0)  # backward from output 0: A[0, j] / sum_j' A[0, j']
    p_i = normalise(a1, 1)  # then A[j, i] / sum_i' A[j, i']
    p_e = normalise(ew1, 2)
    uniform_pos = np.full(3, 1 / 3)
    expected = (
        p_j[:, None, None, None]
        * uniform_pos[None, :, None, None]
        * p_i[:, None, :, None]
        * p_e[:, None, :, :]
    )
    assert chi2_pvalue(observed.ravel(), expected.ravel()) > 1e-3


# ------------------------------------------- flatten edges walked by position
@pytest.mark.parametrize("bias", P.BIASES)
def test_flatten_forward_steps_pick_the_position_then_the_weight(bias):
    """The authors' walk: position uniformly, then j by the biased |W[j, c*HW + pos]|."""
    w_conv, w_flat = toy_weights()
    dag = toy_dag(w_conv, w_flat)
    graph = P.prepare(dag, bias=bias)  # flatten="position" is the default
    elems, lens, _ = P.sample_walks(graph, 0, 120_000, seed=21)
    fwd = elems[0::4]  # forward from input unit 0
    assert (lens[0::4] == 2).all()
    b0, j, i, e1 = graph.decode(fwd[:, 0])
    b1, k, j2, e2 = graph.decode(fwd[:, 1])
    assert (b0 == 0).all() and (b1 == 1).all() and (i == 0).all() and (j2 == j).all()
    observed = np.zeros((3, 4, 2, 3))
    np.add.at(observed, (j, e1, k, e2), 1)

    a1, ew1 = biased(w_conv, bias)
    _, ew2 = biased(w_flat, bias)  # single weights of the flatten edge, (k, j, pos)
    p_j = normalise(a1[:, 0], 0)
    p_e = normalise(ew1[:, 0, :], 1)
    p_k = normalise(ew2, 0)  # over targets k, per (channel j, position); zeros -> uniform
    expected = (
        p_j[:, None, None, None]
        * p_e[:, :, None, None]
        * np.full(3, 1 / 3)[None, None, None, :]
        * p_k.transpose(1, 0, 2)[:, None, :, :]
    )
    assert chi2_pvalue(observed.ravel(), expected.ravel()) > 1e-3


@pytest.mark.parametrize("bias", P.BIASES)
def test_flatten_backward_steps_pick_the_flat_input_by_weight(bias):
    """The authors' walk: the flat input idx by the biased |W[j, idx]|, channel idx // HW."""
    w_conv, w_flat = toy_weights()
    dag = toy_dag(w_conv, w_flat)
    graph = P.prepare(dag, bias=bias)
    elems, lens, _ = P.sample_walks(graph, 0, 120_000, seed=22)
    bwd = elems[1::4]  # backward from output unit 0
    assert (lens[1::4] == 2).all()
    b1, k, j, e2 = graph.decode(bwd[:, 0])
    b0, j2, i, e1 = graph.decode(bwd[:, 1])
    assert (b1 == 1).all() and (b0 == 0).all() and (k == 0).all() and (j2 == j).all()
    observed = np.zeros((3, 3, 2, 4))
    np.add.at(observed, (j, e2, i, e1), 1)

    a1, ew1 = biased(w_conv, bias)
    _, ew2 = biased(w_flat, bias)
    p_flat = ew2[0] / ew2[0].sum()  # (channel, position) of output 0's row
    p_i = normalise(a1, 1)
    p_e = normalise(ew1, 2)
    expected = p_flat[:, :, None, None] * p_i[:, None, :, None] * p_e[:, None, :, :]
    assert chi2_pvalue(observed.ravel(), expected.ravel()) > 1e-3


def test_flatten_walks_on_a_torch_net_follow_its_linear_weights():
    """conv -> flatten (8 channels x 2x2) -> Linear: frequencies against the torch weight."""
    model = small_convnet()
    w = model[7].weight.detach().double().abs().numpy()  # (10, 32), column c * 4 + pos
    dag = pathnet.to_dag(model)
    graph = P.prepare(dag)
    elems, lens, _ = P.sample_walks(graph, 0, 160_000, seed=23)
    assert (lens == 3).all()
    last = len(dag.blocks) - 1
    # backward from output 0 (walks 1, 21, 41, ...: outputs round robin over 10)
    b, k, c, pos = graph.decode(elems[1::20, 0])
    assert (b == last).all() and (k == 0).all()
    observed = np.bincount(c * 4 + pos, minlength=32)
    assert chi2_pvalue(observed, w[0] / w[0].sum()) > 1e-3
    # forward: the step out of channel 3 of the last conv, whatever walk reached it
    fwd = elems[0::2]
    b, k, c, pos = graph.decode(fwd[:, 2])
    assert (b == last).all()
    sel = c == 3
    observed = np.zeros((4, 10))
    np.add.at(observed, (pos[sel], k[sel]), 1)
    cols = w[:, 12:16].T  # (pos, k)
    expected = 0.25 * cols / cols.sum(axis=1, keepdims=True)
    assert chi2_pvalue(observed.ravel(), expected.ravel()) > 1e-3


def test_flatten_channel_option_keeps_the_channel_walk():
    dag = pathnet.to_dag(small_convnet())
    a = select("phew", dag, 0.2, seed=4)
    b = select("phew", dag, 0.2, seed=4, flatten="channel")
    assert a.meta["flatten"] == "position" and b.meta["flatten"] == "channel"
    assert a.n_kept == b.n_kept and a != b
    with pytest.raises(ValueError, match=r"pathnet\.select\.phew: flatten must be one of"):
        select("phew", dag, 0.2, flatten="pixel")


@pytest.mark.parametrize("name", ["resnet20", "mlp"])
def test_flatten_option_changes_nothing_without_a_spatial_flatten(name):
    """H*W = 1 (ResNet20 pools to 1x1) or no flatten at all: both options, same mask."""
    model = models.resnet20(seed=0) if name == "resnet20" else models.mlp([30, 20, 10], seed=0)
    dag = pathnet.to_dag(model)
    for kw in ({}, {"bias": "square", "skip": "weighted"}):
        a = select("phew", dag, 0.05, seed=6, flatten="position", **kw)
        assert a == select("phew", dag, 0.05, seed=6, flatten="channel", **kw)


def test_flatten_walks_respect_an_existing_mask():
    model = small_convnet()
    dag = pathnet.to_dag(model)
    keep = select("random", dag, 0.4, seed=0)
    masked = dag.with_mask(keep)
    for kw in ({}, {"skip": "weighted", "bias": "uniform"}):
        mask = select("phew", masked, 0.1, seed=1, **kw)
        assert mask.n_kept == int(0.1 * dag.n_params)
        assert all(bool((mask[k] <= keep[k]).all()) for k in mask)
        assert_on_complete_paths(dag, mask, identity=False)
        nested = P.phew_nested(masked, [0.05, 0.1], seed=1, **kw)
        assert nested[1] == mask


def residual_dag(shortcut: str) -> LayeredDAG:
    """input -> h1 -> h2 -> sum(h2 via W2, h1 via shortcut) -> output, 2 units each."""
    rng = np.random.default_rng(3)

    def lin(src: int, dst: int, name: str) -> EdgeBlock:
        w = rng.uniform(0.2, 2.0, size=(2, 2, 1)).astype(np.float32)
        return EdgeBlock(src, dst, "linear", name, (2, 2), (), w)

    groups = (
        UnitGroup("input", 2, "input", (2,)),
        UnitGroup("h1", 2, "hidden", (2,)),
        UnitGroup("h2", 2, "hidden", (2,)),
        UnitGroup("sum", 2, "sum", (2,)),
        UnitGroup("out", 2, "output", (2,)),
    )
    skip = (
        EdgeBlock(1, 3, "identity", None, (), (), None, n_units=2)
        if shortcut == "identity"
        else lin(1, 3, "proj.weight")
    )
    blocks = (lin(0, 1, "l1.weight"), lin(1, 2, "l2.weight"), skip, lin(2, 3, "l3.weight"))
    blocks += (lin(3, 4, "l4.weight"),)
    return LayeredDAG(groups, blocks, "res", (2,))


@pytest.mark.parametrize("shortcut", ["identity", "projection"])
@pytest.mark.parametrize("skip", P.SKIPS)
def test_residual_choices_match_policy(shortcut, skip):
    dag = residual_dag(shortcut)
    graph = P.prepare(dag, skip=skip)
    _, _, nodes = P.sample_walks(graph, 0, 80_000, seed=5, record_nodes=True)
    off = dag.offsets
    # forward walks from input unit 0: where does the walk go after h1?
    fwd = nodes[0::4]
    at_h1 = fwd[:, 1] - off[1]
    nxt = fwd[:, 2]
    to_sum = nxt >= off[3]
    u = 0
    sel = at_h1 == u
    w_l2 = np.abs(dag.blocks[1].values[:, u, 0].astype(np.float64))
    if skip == "reference":
        p_sum = 0.0 if shortcut == "identity" else 0.5
    else:
        w_skip = 1.0 if shortcut == "identity" else np.abs(dag.blocks[2].values[:, u, 0]).sum()
        p_sum = w_skip / (w_skip + w_l2.sum())
    observed = np.array([(~to_sum[sel]).sum(), to_sum[sel].sum()])
    if p_sum == 0.0:
        assert observed[1] == 0
    else:
        assert chi2_pvalue(observed, np.array([1 - p_sum, p_sum])) > 1e-3
    # backward walks from output unit 0: from the sum, via h2 or straight to h1?
    bwd = nodes[1::4]
    via_h1 = (bwd[:, 2] >= off[1]) & (bwd[:, 2] < off[2])
    s = bwd[:, 1] - off[3]
    sel = s == 0
    w_l3 = np.abs(dag.blocks[3].values[0, :, 0].astype(np.float64)).sum()
    if skip == "reference":
        p_h1 = 0.0 if shortcut == "identity" else 0.5
    else:
        w_skip = 1.0 if shortcut == "identity" else np.abs(dag.blocks[2].values[0, :, 0]).sum()
        p_h1 = w_skip / (w_skip + w_l3)
    observed = np.array([(~via_h1[sel]).sum(), via_h1[sel].sum()])
    if p_h1 == 0.0:
        assert observed[1] == 0
    else:
        assert chi2_pvalue(observed, np.array([1 - p_h1, p_h1])) > 1e-3


def test_walks_alternate_and_start_round_robin(resnet_dag):
    graph = P.prepare(resnet_dag)
    _, lens, nodes = P.sample_walks(graph, 0, 40, seed=1, record_nodes=True)
    off = resnet_dag.offsets
    last = len(resnet_dag.groups) - 1
    for w in range(40):
        path = nodes[w][nodes[w] >= 0]
        if w % 2 == 0:
            assert path[0] == (w // 2) % 3  # input channels 0, 1, 2, 0, ...
            assert off[last] <= path[-1] < off[last + 1]
        else:
            assert path[0] == off[last] + (w // 2) % 10  # output classes 0..9
            assert path[-1] < off[1]
        assert lens[w] == len(path) - 1  # one weight per edge, no identity edge taken


def test_chunking_does_not_change_walks(resnet_dag):
    graph = P.prepare(resnet_dag)
    a, la, _ = P.sample_walks(graph, 0, 1500, seed=9)
    b1, lb1, _ = P.sample_walks(graph, 0, 701, seed=9)
    b2, lb2, _ = P.sample_walks(graph, 701, 799, seed=9)
    assert np.array_equal(la, np.concatenate([lb1, lb2]))
    for k in range(1500):
        row = b1[k] if k < 701 else b2[k - 701]
        assert np.array_equal(a[k, : la[k]], row[: la[k]])


# ----------------------------------------------------- counts and invariants
@pytest.mark.parametrize(
    ("name", "density"),
    [("mlp", 0.002), ("mlp", 0.1), ("lenet5", 0.05), ("lenet5", 0.5), ("resnet20", 0.01)],
)
def test_exactly_m_distinct_weights(name, density):
    model = models.build(name, seed=0)
    mask = select("phew", model, density, seed=3)
    m = int(density * sum(p.numel() for p in pathnet.prunable_parameters(model).values()))
    assert mask.n_kept == m
    assert mask.meta["target"] == m and mask.meta["method"] == "phew"
    mask.check(model)


def test_last_walk_is_cut_at_m_in_walk_order(resnet_dag):
    """Replay the walks in Python: the mask is the first m distinct elements, in walk order."""
    mask = P.phew(resnet_dag, 0.02, seed=4)
    graph = P.prepare(resnet_dag)
    m, walks = mask.meta["target"], mask.meta["walks"]
    elems, lens, _ = P.sample_walks(graph, 0, walks, seed=int(child_seeds(4, 1)[0]))
    seen: dict[int, None] = {}
    for k in range(walks):
        for e in elems[k, : lens[k]]:
            if len(seen) < m:
                seen.setdefault(int(e), None)
    assert len(seen) == m
    expected = np.zeros(graph.n_elements, dtype=bool)
    expected[list(seen)] = True
    got = np.concatenate([np.asarray(mask[b.param]).ravel() for b in resnet_dag.blocks if b.param])
    assert np.array_equal(got, expected)
    # and the walk before the last one did not reach m yet
    before = {int(e) for k in range(walks - 1) for e in elems[k, : lens[k]]}
    assert len(before) < m


def test_compression_is_an_alternative_to_density(resnet_dag):
    a = select("phew", resnet_dag, 0.01, seed=2)
    b = select("phew", resnet_dag, compression=2, seed=2)
    assert a == b
    assert b.meta["density"] == pytest.approx(0.01) and b.meta["compression"] == pytest.approx(2)


@pytest.mark.parametrize("model_fn", [lambda: models.mlp([20, 15, 10, 5], seed=1), small_convnet])
@pytest.mark.parametrize("density", [0.05, 0.2])
def test_selected_weights_lie_on_complete_paths(model_fn, density):
    """Walks span the depth. (The last walk is cut at m: on a network of a few
    hundred weights and a handful of walks its prefix could still dangle.)"""
    model = model_fn()
    dag = pathnet.to_dag(model)
    mask = select("phew", dag, density, seed=0)
    assert_on_complete_paths(dag, mask, identity=False)


@pytest.mark.parametrize("skip", P.SKIPS)
def test_resnet_weights_lie_on_complete_paths(resnet_dag, skip):
    mask = select("phew", resnet_dag, 0.01, seed=0, skip=skip)
    # the reference policy never takes an identity shortcut: paths exist without them
    assert_on_complete_paths(resnet_dag, mask, identity=skip == "weighted")


def test_resnet_reference_policy_takes_projections_half_the_time(resnet_dag):
    """From layer1's last sum, forward walks take layer2.0's projection or its conv1, 50/50."""
    graph = P.prepare(resnet_dag)
    _, _, nodes = P.sample_walks(graph, 0, 4000, seed=3, record_nodes=True)
    off = resnet_dag.offsets
    assert resnet_dag.groups[8].name == "layer2.0.conv1"
    fwd = nodes[0::2]
    via_conv = ((fwd >= off[8]) & (fwd < off[9])).any(axis=1)
    assert abs(via_conv.mean() - 0.5) < 0.05


def test_kernel_conserved_selects_whole_kernels():
    model = small_convnet()
    dag = pathnet.to_dag(model)
    mask = select("phew", dag, 0.2, seed=1, kernel_conserved=True)
    assert mask.n_kept == int(0.2 * dag.n_params)
    partial = 0
    for blk in dag.blocks:
        m = np.asarray(mask[blk.param]).reshape(blk.shape[0], blk.shape[1], -1)
        counts = m.sum(axis=2)
        if blk.kind == "conv":
            partial += int(((counts > 0) & (counts < blk.n_elem)).sum())
    assert partial <= 1  # only the kernel that reaches m may be cut


def _mean_selected_rank(dag: LayeredDAG, mask) -> float:
    """Mean percentile of |w| among the selected weights, within their layer."""
    ranks = []
    for blk in dag.blocks:
        w = np.abs(blk.values.ravel())
        pct = stats.rankdata(w) / w.size
        ranks.append(pct[np.asarray(mask[blk.param]).ravel()])
    return float(np.concatenate(ranks).mean())


def test_bias_options_order_selected_magnitudes():
    dag = pathnet.to_dag(models.mlp([100, 80, 60, 10], seed=2))
    rank = {
        b: _mean_selected_rank(dag, select("phew", dag, 0.05, seed=0, bias=b)) for b in P.BIASES
    }
    assert rank["inverse"] < 0.45 < rank["uniform"] < 0.55 < rank["abs"] < rank["square"]


def test_uniform_bias_ignores_weights():
    a = pathnet.to_dag(models.lenet5(seed=0))
    b = pathnet.to_dag(models.lenet5(seed=1))
    ma = select("random_paths", a, 0.05, seed=6)
    mb = select("random_paths", b, 0.05, seed=6)
    assert ma == mb
    assert ma == select("phew", a, 0.05, seed=6, bias="uniform")
    assert ma != select("phew", a, 0.05, seed=6)
    assert "random_paths" in METHODS


def test_walks_go_round_a_fully_masked_layer(resnet_dag):
    keep = {b.param: np.ones(b.param_shape, dtype=bool) for b in resnet_dag.blocks if b.param}
    keep["layer3.0.conv1.weight"][:] = False  # layer3.0 is left with its projection shortcut
    masked = resnet_dag.with_mask(keep)
    mask = select("phew", masked, 0.05, seed=0)
    assert mask.n_kept == int(0.05 * resnet_dag.n_params)
    assert not mask["layer3.0.conv1.weight"].any() and not mask["layer3.0.conv2.weight"].any()
    assert mask["layer3.0.shortcut.0.weight"].any()
    assert_on_complete_paths(resnet_dag, mask, identity=False)


def test_existing_mask_restricts_the_walks(resnet_dag):
    first = select("phew", resnet_dag, 0.2, seed=3)
    masked = resnet_dag.with_mask(first)
    second = select("phew", masked, 0.05, seed=4)
    assert second.n_kept == int(0.05 * resnet_dag.n_params)
    for name in first:
        assert not (second[name] & ~first[name]).any()
    assert_on_complete_paths(resnet_dag, second, identity=False)
    # conserved kernels keep only the present elements of a masked kernel
    third = select("phew", masked, 0.05, seed=4, kernel_conserved=True, skip="weighted")
    assert third.n_kept == int(0.05 * resnet_dag.n_params)
    for name in first:
        assert not (third[name] & ~first[name]).any()
    assert_on_complete_paths(resnet_dag, third, identity=True)
    # asking for every reachable weight returns the mask itself (no walk needed)
    assert select("phew", masked, 0.2, seed=5) == first


def test_model_is_not_modified():
    model = models.mlp([30, 20, 10], seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    select("phew", model, 0.1, seed=0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_vgg16_keeps_every_unit_active_at_one_percent():
    dag = pathnet.to_dag(models.vgg16(seed=0))
    mask = select("phew", dag, 0.01, seed=0)
    assert mask.n_kept == int(0.01 * dag.n_params)
    n_in = [np.zeros(g.size, dtype=bool) for g in dag.groups]
    n_out = [np.zeros(g.size, dtype=bool) for g in dag.groups]
    for blk in dag.blocks:
        edges = np.asarray(mask[blk.param]).reshape(blk.shape[0], blk.shape[1], -1).any(axis=2)
        n_in[blk.target] |= edges.any(axis=1)
        n_out[blk.source] |= edges.any(axis=0)
    assert n_out[0].all() and n_in[-1].all()  # every input channel and class is used
    for g in range(1, len(dag.groups) - 1):
        assert n_in[g].all() and n_out[g].all(), dag.groups[g].name
    live = live_units(dag, mask, identity=False)
    assert all(v.all() for v in live)


def test_agrees_with_the_plain_python_walks_of_the_benchmark(resnet_dag):
    """The authors'-style Python baseline needs as many walks and fills layers alike."""
    from benchmarks import reference_phew as ref

    m = int(0.03 * resnet_dag.n_params)
    masks, walks, count = ref.phew_masks(
        resnet_dag, m, *ref.generate_probability(resnet_dag), seed=0
    )
    ours = P.phew(resnet_dag, 0.03, seed=0)
    assert count == m == ours.n_kept
    assert abs(walks - ours.meta["walks"]) <= 0.05 * walks
    for b, blk in enumerate(resnet_dag.blocks):
        if blk.param is None:
            continue
        theirs, mine = int(masks[b].sum()), int(ours[blk.param].sum())
        assert abs(theirs - mine) <= 5 * np.sqrt(theirs) + 5, blk.param


# ---------------------------------------------------------- reproducibility
_HASH_SCRIPT = textwrap.dedent(
    """
    import hashlib, numba, numpy as np, pathnet
    from pathnet.select import select
    dag = pathnet.to_dag(pathnet.models.resnet20(seed=0))
    h = hashlib.sha256()
    for kw in ({}, {"skip": "weighted", "bias": "square"}, {"kernel_conserved": True}):
        mask = select("phew", dag, 0.03, seed=123, **kw)
        for name in sorted(mask):
            h.update(name.encode()); h.update(np.packbits(mask[name].numpy().ravel()).tobytes())
    print(numba.get_num_threads(), h.hexdigest())
    """
)


def test_same_seed_same_mask_on_one_and_two_threads():
    digests = {}
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", _HASH_SCRIPT],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        n, digest = out.stdout.split()
        assert n == threads
        digests[threads] = digest
    assert digests["1"] == digests["2"]


def test_seeds(resnet_dag):
    a = select("phew", resnet_dag, 0.05, seed=1)
    assert a == select("phew", resnet_dag, 0.05, seed=1)
    assert a != select("phew", resnet_dag, 0.05, seed=2)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert select("phew", resnet_dag, 0.05, seed=g1) == select("phew", resnet_dag, 0.05, seed=g2)


def _digest(mask) -> str:
    h = hashlib.sha256()
    for name in sorted(mask):
        h.update(np.packbits(mask[name].numpy().ravel()).tobytes())
    return h.hexdigest()


def test_every_option_combination_runs(resnet_dag):
    digests = set()
    for bias, skip, kc in itertools.product(P.BIASES, P.SKIPS, (False, True)):
        mask = select("phew", resnet_dag, 0.02, seed=0, bias=bias, skip=skip, kernel_conserved=kc)
        assert mask.n_kept == int(0.02 * resnet_dag.n_params)
        assert mask.meta["options"] == {"bias": bias, "skip": skip, "kernel_conserved": kc}
        digests.add(_digest(mask))
    assert len(digests) == 16


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "density", [0.0, -0.1, 1.5, float("nan"), float("inf"), "a lot", "0.5", True, None]
)
def test_density_out_of_range(resnet_dag, density):
    with pytest.raises(ValueError, match=r"pathnet\.select\.phew: density must be in \(0, 1\]"):
        P.phew(resnet_dag, density)
    with pytest.raises(ValueError, match="density"):
        select("phew", resnet_dag, density)


def test_density_keeping_nothing(resnet_dag):
    with pytest.raises(ValueError, match=r"pathnet\.select\.phew: density=1e-07 .* keeps none"):
        P.phew(resnet_dag, 1e-7)


def test_target_larger_than_the_network(resnet_dag):
    masked = resnet_dag.with_mask(select("phew", resnet_dag, 0.1, seed=0))
    with pytest.raises(ValueError, match=r"pathnet\.select\.phew: .* expected density <= 0\.0999"):
        P.phew(masked, 0.5)


def _with_values(dag: LayeredDAG, b: int, values: np.ndarray) -> LayeredDAG:
    blocks = list(dag.blocks)
    blocks[b] = replace(blocks[b], values=values)
    return replace(dag, blocks=tuple(blocks))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("b", [0, 1])
def test_nan_and_inf_weights(bad, b):
    w_conv, w_flat = toy_weights()
    dag = toy_dag(w_conv, w_flat)
    values = dag.blocks[b].values.copy()
    values[1, 1, 1] = bad
    with pytest.raises(ValueError, match=r"pathnet\.select\.phew: parameter '.*' holds 1 NaN/Inf"):
        P.phew(_with_values(dag, b, values), 0.5)


def test_all_zero_layer():
    model = models.mlp([10, 8, 4], seed=0)
    with torch.no_grad():
        model[3].weight.zero_()
    with pytest.raises(
        ValueError, match=r"pathnet\.select\.phew: parameter '3\.weight' is all zeros"
    ):
        select("phew", model, 0.1)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("bias", "abs2", "bias must be one of 'abs', 'square', 'inverse', 'uniform'"),
        ("skip", "none", "skip must be one of 'reference', 'weighted'"),
        ("kernel_conserved", "yes", "kernel_conserved must be True or False"),
        ("max_walks", 0, "max_walks must be a positive int"),
    ],
)
def test_bad_option_values(resnet_dag, option, value, message):
    with pytest.raises(ValueError, match=rf"pathnet\.select\.phew: {message}"):
        select("phew", resnet_dag, 0.1, **{option: value})


def test_unknown_option_and_fixed_bias(resnet_dag):
    with pytest.raises(TypeError, match=r"pathnet\.select\.phew: unknown option \['walks'\]"):
        select("phew", resnet_dag, 0.1, walks=3)
    with pytest.raises(ValueError, match="random_paths: bias is fixed to 'uniform'"):
        select("random_paths", resnet_dag, 0.1, bias="abs")
    with pytest.raises(TypeError, match="expected a LayeredDAG"):
        P.phew(models.mlp([4, 2]), 0.5)


def test_max_walks_exhausted():
    model = models.mlp([10, 8, 4], seed=0)
    with torch.no_grad():  # zeros among non-zero weights: abs-biased walks never pick them
        model[1].weight[0, 3] = 0.0
        model[1].weight[1, 4] = 0.0
    with pytest.raises(RuntimeError, match=r"pathnet\.select\.phew: .*max_walks=2,000"):
        select("phew", model, 0.999, seed=0, max_walks=2000)


# ------------------------------------------------ nested selection (one walk sequence)
@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
@pytest.mark.parametrize("options", [{}, {"bias": "uniform"}, {"kernel_conserved": True}])
def test_nested_masks_equal_individual_calls(name, options):
    from pathnet.select.phew import phew, phew_nested

    dag = pathnet.to_dag(pathnet.models.build(name, seed=3))
    densities = [0.02, 0.3, 0.1, 0.3, 0.6]
    nested = phew_nested(dag, densities, seed=11, **options)
    for d, mask in zip(densities, nested):
        single = phew(dag, d, seed=11, **options)
        assert mask == single, (name, d)
        assert mask.n_kept == int(d * dag.n_params)
    # prefixes: a lower density keeps a subset of a higher one
    lo, hi = nested[0], nested[-1]
    assert all(bool((lo[k] <= hi[k]).all()) for k in lo)


def test_nested_refuses_bad_densities():
    from pathnet.select.phew import phew_nested

    dag = pathnet.to_dag(pathnet.models.mlp([4, 3, 2], seed=0))
    with pytest.raises(ValueError, match="density must be in"):
        phew_nested(dag, [0.5, 1.5])
    with pytest.raises(ValueError, match="at least one"):
        phew_nested(dag, [])


def test_half_precision_dag_values_walk_like_their_float32_copy():
    w_conv, w_flat = toy_weights()
    half = toy_dag(w_conv.astype(np.float16), w_flat.astype(np.float16))
    wide = toy_dag(
        w_conv.astype(np.float16).astype(np.float32), w_flat.astype(np.float16).astype(np.float32)
    )
    for kw in ({}, {"bias": "square", "flatten": "channel"}):
        assert P.phew(half, 0.4, seed=2, **kw) == P.phew(wide, 0.4, seed=2, **kw)
