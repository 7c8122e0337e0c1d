"""SynFlow and SynFlow-L2: the DAG backend against autograd, exact counts, bottlenecks."""

from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import pathnet
from pathnet import models
from pathnet.graph.propagate import backward_log, forward_log
from pathnet.models import kaiming_init
from pathnet.select import select, synflow_graph, target_count
from pathnet.select import synflow as S
from pathnet.select.linearised import Linearised
from pathnet.select.scoring import flatten_scores, mask_from_global, present_indices, top_k
from pathnet.select.synflow import schedule, synflow_scores
from tests.reference import autograd_synflow_mask, autograd_synflow_scores

VARIANTS = [("synflow", None), ("synflow_l2", "phew"), ("synflow_l2", "gebhart")]


def opts(method: str, variant: str | None, **kw):
    return kw if variant is None else {**kw, "variant": variant}


# ------------------------------------------------------------------ test nets
def circ_conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, padding=1, padding_mode="circular", bias=False)


class CircNet(nn.Module):
    """Conv chain with circular padding: every kernel element sees the same input sums."""

    def __init__(self, bn: bool = False) -> None:
        super().__init__()
        self.net = nn.Sequential(
            circ_conv(3, 8),
            nn.BatchNorm2d(8) if bn else nn.Identity(),
            nn.ReLU(),
            nn.MaxPool2d(2),
            circ_conv(8, 12, stride=2),
            nn.ReLU(),
            circ_conv(12, 12),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(12 * 2 * 2, 10),
        )
        self.input_shape = (3, 16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CircRes(nn.Module):
    """Two residual blocks (identity and 1x1 projection shortcut), circular padding."""

    def __init__(self) -> None:
        super().__init__()
        self.c0, self.c1, self.c2 = circ_conv(3, 8), circ_conv(8, 8), circ_conv(8, 8)
        self.c3, self.c4 = circ_conv(8, 16, stride=2), circ_conv(16, 16)
        self.sc = nn.Conv2d(8, 16, 1, stride=2, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)
        self.input_shape = (3, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c0(x))
        x = torch.relu(self.c2(torch.relu(self.c1(x))) + x)
        x = torch.relu(self.c4(torch.relu(self.c3(x))) + self.sc(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    return kaiming_init(model, generator=torch.Generator().manual_seed(seed))


NETS = {
    "mlp": lambda: models.mlp([30, 20, 16, 10], seed=0),
    "circ": lambda: seeded(CircNet()),
    "circ_bn": lambda: seeded(CircNet(bn=True)),
    "circ_res": lambda: seeded(CircRes()),
}


# --------------------------------------------------------- independent scores
def autograd_scores(model: nn.Module, method: str, variant: str | None) -> dict[str, np.ndarray]:
    """One step's scores by autograd, written out for each variant."""
    if method == "synflow":
        return {
            k: v.detach().numpy()
            for k, v in autograd_synflow_scores(model, model.input_shape).items()
        }
    net = copy.deepcopy(model).double().eval()
    theta = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p * p if variant == "phew" else p.abs())
    net(torch.ones((1, *model.input_shape), dtype=torch.float64)).sum().backward()
    out = {}
    for n, p in net.named_parameters():
        if p.dim() > 1:
            g = p.grad.abs()
            out[n] = (g * theta[n].abs() if variant == "phew" else g * theta[n] ** 2).numpy()
    return out


@pytest.mark.parametrize(("method", "variant"), VARIANTS)
@pytest.mark.parametrize("net", ["mlp", "circ", "circ_res"])
def test_graph_scores_equal_autograd(net, method, variant):
    model = NETS[net]()
    ref = autograd_scores(model, method, variant)
    got = synflow_scores(pathnet.to_dag(model), method, variant=variant or "phew")
    assert set(got) == set(ref)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=0)


def test_scores_on_masked_dag_equal_autograd_on_masked_model(rng):
    model = models.mlp([12, 10, 8, 4], seed=3)
    keep = {
        n: torch.from_numpy(rng.random(tuple(p.shape)) < 0.4)
        for n, p in pathnet.prunable_parameters(model).items()
    }
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in pathnet.prunable_parameters(masked).items():
            p.mul_(keep[n])
    ref = autograd_scores(masked, "synflow_l2", "phew")
    got = synflow_scores(pathnet.to_dag(model).with_mask(keep), "synflow_l2")
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-9, atol=0)


def test_log_scores_do_not_overflow_on_deep_dense_nets():
    dag = pathnet.to_dag(models.resnet56(seed=0))
    logs = synflow_scores(dag, "synflow", log=True)
    finite = np.concatenate([v.ravel() for v in logs.values()])
    assert np.isfinite(finite).all()


# ---------------------------------------------------------- backends agree
@pytest.mark.parametrize(("method", "variant"), VARIANTS)
@pytest.mark.parametrize("net", sorted(NETS))
def test_graph_and_autograd_backends_give_identical_masks(net, method, variant):
    model = NETS[net]()
    for density in (0.2, 0.02):
        graph = select(
            method, model, density, **opts(method, variant, iterations=25, backend="graph")
        )
        auto = select(
            method, model, density, **opts(method, variant, iterations=25, backend="autograd")
        )
        assert graph == auto, (net, density)
        assert graph.n_kept == target_count(pathnet.to_dag(model), density)


def reference_synflow(dag, density, iterations, method, variant):
    """The schedule done the slow, obvious way: full scores of the masked DAG, top-k."""
    power = 2 if variant == "gebhart" else 1
    mask = None
    for k in schedule(dag.n_params, dag.n_present, density, iterations):
        d = dag if mask is None else dag.with_mask(mask)
        alive = present_indices(d)
        if k >= alive.size:
            continue
        s = flatten_scores(d, synflow_scores(d, method, variant=variant or "phew", log=True))
        w = flatten_scores(d, {b.param: np.abs(b.values) for b in d.blocks if b.param})
        with np.errstate(divide="ignore"):
            secondary = power * np.log(w.astype(np.float64))
        mask = mask_from_global(d, alive[top_k(s[alive], k, secondary[alive])])
    return mask


@pytest.mark.parametrize("path", ["bracket", "fallback", "undo"])
@pytest.mark.parametrize(("method", "variant"), VARIANTS)
def test_fast_graph_backend_equals_obvious_loop(monkeypatch, path, method, variant):
    # small thresholds so that a small net takes the bracketed path (or always falls back,
    # or brackets too high, kills too many, undoes the kills and falls back)
    monkeypatch.setattr(synflow_graph, "_BRACKET_MIN", 64)
    monkeypatch.setattr(synflow_graph, "_SAMPLE", 1 << 10 if path != "fallback" else 16)
    undone = []
    if path == "undo":
        sample, revive = synflow_graph.slot_sample, synflow_graph.slot_revive
        monkeypatch.setattr(synflow_graph, "slot_sample", lambda *a: sample(*a) + 3.0)
        monkeypatch.setattr(synflow_graph, "slot_revive", lambda *a: undone.append(revive(*a)))
    model = seeded(CircRes(), seed=5)
    dag = pathnet.to_dag(model)
    for density in (0.3, 0.03):
        fast = select(method, dag, density, **opts(method, variant, iterations=12, backend="graph"))
        assert fast == reference_synflow(dag, density, 12, method, variant)
    assert bool(undone) == (path == "undo")


@pytest.mark.slow
def test_vgg16_circular_padding_backends_agree():
    model = models.vgg16(seed=0)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.padding_mode = "circular"
    graph = select("synflow_l2", model, 0.01, iterations=4, backend="graph")
    auto = select("synflow_l2", model, 0.01, iterations=4, backend="autograd")
    assert graph == auto


@pytest.mark.slow
def test_resnet20_circular_padding_backends_agree_without_bn_eps():
    # identity shortcuts skip two BatchNorms, whose eval-mode 1/sqrt(1 + eps) the DAG
    # does not model; with eps = 0 and circular padding the backends agree exactly
    model = models.resnet20(seed=0)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.padding_mode = "circular"
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.0
    graph = select("synflow_l2", model, 0.05, iterations=10, backend="graph")
    assert graph == select("synflow_l2", model, 0.05, iterations=10, backend="autograd")


# ------------------------------------- the default: the network as torch runs it
def zero_padded(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.padding_mode = "zeros"
    return model


ZERO_NETS = {
    "mlp": NETS["mlp"],
    "zero_bn": lambda: zero_padded(seeded(CircNet(bn=True))),
    "zero_res": lambda: zero_padded(seeded(CircRes(), seed=3)),
    "resnet20": lambda: models.resnet20(seed=0),
}


def same_mask(got, ref: dict) -> bool:
    return set(got) == set(ref) and all(np.array_equal(np.asarray(got[n]), ref[n]) for n in ref)


@pytest.mark.parametrize("mode", [None, "sparse"])
@pytest.mark.parametrize(("method", "variant"), VARIANTS)
@pytest.mark.parametrize("net", sorted(ZERO_NETS))
def test_network_backend_equals_plain_autograd_reference(net, method, variant, mode, monkeypatch):
    # zero padding, max/avg pooling, strides, BatchNorm in eval mode, residual additions;
    # layers chosen dense or sparse by cost, or every layer sparse from the start
    if net == "resnet20" and (variant == "gebhart" or mode == "sparse"):
        pytest.skip("covered by the other variants; keeps the default run short")
    import pathnet.select.linearised as lin_module

    monkeypatch.setattr(lin_module, "_FORCE_MODE", mode)
    model = ZERO_NETS[net]()
    iterations = 6 if net == "resnet20" else 12
    for density in (0.1, 0.05, 0.02):
        got = select(method, model, density, **opts(method, variant, iterations=iterations))
        ref = autograd_synflow_mask(model, density, iterations, method, variant or "phew")
        assert same_mask(got, ref), (net, density)
        assert got.meta["backend"] == "network"


@pytest.mark.slow
@pytest.mark.parametrize("density", [0.1, 0.05, 0.02])
def test_network_backend_equals_plain_autograd_reference_vgg16(density):
    model = models.vgg16(seed=0)
    got = select("synflow_l2", model, density, iterations=3)
    assert same_mask(got, autograd_synflow_mask(model, density, 3, "synflow_l2"))


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_network_backend_is_the_same_on_one_and_two_threads(mode, monkeypatch):
    # every product and kernel cut into its two fixed parts (even tiny ones), run on
    # one thread or on two: the same masks, and those of the autograd reference
    import pathnet.select.linearised as lin_module

    monkeypatch.setattr(lin_module, "_FORCE_MODE", mode)
    for name in ("_MIN_PART", "_MIN_ROWS_FWD", "_MIN_ROWS_GRAD"):
        monkeypatch.setattr(lin_module, name, 1)
    model = ZERO_NETS["zero_res"]()
    threads = torch.get_num_threads()
    masks = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            masks.append(select("synflow_l2", model, 0.02, iterations=8))
    finally:
        torch.set_num_threads(threads)
    assert masks[0] == masks[1]
    assert same_mask(masks[0], autograd_synflow_mask(model, 0.02, 8, "synflow_l2"))


@pytest.mark.parametrize("mode", ["dense", "sparse", None])
@pytest.mark.parametrize("net", ["zero_bn", "zero_res"])
def test_network_backend_equals_reference_when_channels_die(net, mode, monkeypatch):
    # at 0.5% whole channels die: the compacted convolutions and the dropped slots;
    # every layer dense (torch products), every layer sparse (CSR kernels), or chosen
    import pathnet.select.linearised as lin_module

    monkeypatch.setattr(lin_module, "_FORCE_MODE", mode)
    model = ZERO_NETS[net]()
    dag = pathnet.to_dag(model)
    lin = Linearised(model, dag, 2, 1, absolute=True)
    for k in S.schedule(dag.n_params, dag.n_present, 0.005, 8):
        lin.backward()
        lin.prune_to(k)
    if mode == "dense":
        assert any(layer.weight.shape[:2] != layer.shape[:2] for layer in lin.layers)
    else:
        assert any(layer.sparse for layer in lin.layers)
    got = select("synflow_l2", model, 0.005, iterations=8)
    assert got == mask_from_global(dag, lin.kept())
    assert same_mask(got, autograd_synflow_mask(model, 0.005, 8, "synflow_l2"))


def test_prune_to_keeps_the_top_k_by_score_secondary_key_and_index(rng):
    """The radix selection of Linearised.prune_to against a plain sort on scores with
    ties, huge ranges, subnormal gaps and bins that need every refinement level."""

    model = pathnet.models.mlp([40, 60, 50, 10], seed=0)
    for trial in range(40):
        net = Linearised(model, pathnet.to_dag(model), 2, 1, absolute=True)
        n = net.n_alive
        kind = trial % 5
        if kind == 0:
            s = rng.random(n)
        elif kind == 1:  # many exact ties: the secondary key, then the index decide
            s = rng.integers(0, 5, n).astype(float)
        elif kind == 2:  # many orders of magnitude
            s = np.exp(rng.normal(0, 30, n))
        elif kind == 3:  # subnormal differences
            s = rng.integers(0, 3, n) + rng.random(n) * 1e-300
        else:  # one top-16-bit bin: the selection refines down to the last bits
            s = 1.0 + rng.integers(0, 4000, n) * 2.0**-52
        net.scores[:n] = s
        sec = np.concatenate([layer.sec for layer in net.layers])
        index = net.kept()
        k = int(rng.integers(0, n + 1))
        want = np.sort(index[np.lexsort((index, -sec, -s))[:k]])
        net.prune_to(k)
        assert np.array_equal(net.kept(), want)
        assert net.n_alive == k


@pytest.mark.parametrize("net", ["mlp", "circ", "circ_res"])
def test_graph_equals_network_on_circular_padding(net):
    model = NETS[net]()
    for density in (0.2, 0.02):
        network = select("synflow_l2", model, density, iterations=15)
        assert network == select("synflow_l2", model, density, iterations=15, backend="graph")


def test_a_dag_alone_needs_backend_graph():
    dag = pathnet.to_dag(models.mlp([6, 5, 3], seed=0))
    with pytest.raises(ValueError, match=r"needs the torch model.*backend='graph'"):
        select("synflow_l2", dag, 0.5)
    with pytest.raises(ValueError, match="needs the torch model"):
        S.synflow_nested(dag, [0.5])
    assert select("synflow_l2", dag, 0.5, backend="graph").n_kept == 22


# ------------------------------------------------------ counts and contract
@pytest.mark.parametrize(("method", "variant"), VARIANTS)
def test_exact_count_schedule_and_determinism(method, variant):
    model = models.lenet5(seed=1)
    dag = pathnet.to_dag(model)
    for density, iterations in [(0.5, 1), (0.1, 7), (0.013, 30), (1.0, 3)]:
        kw = opts(method, variant, iterations=iterations, backend="graph")
        a = select(method, dag, density, **kw)
        b = select(method, model, density, **kw)
        assert a == b
        assert a.n_kept == target_count(dag, density)
    assert schedule(1000, 1000, 0.1, 4) == [562, 316, 177, 100]
    assert schedule(1000, 500, 0.1, 3)[0] == 464  # never more than what is present


@pytest.mark.parametrize("mode", ["parametrize", "prune", "hard"])
def test_existing_mask_is_respected(rng, mode):
    model = models.mlp([20, 16, 8], seed=2)
    keep = {
        n: torch.from_numpy(rng.random(tuple(p.shape)) < 0.5)
        for n, p in pathnet.prunable_parameters(model).items()
    }
    masked = pathnet.apply_mask(copy.deepcopy(model), pathnet.Mask(keep), mode=mode)
    for backend in ("graph", "autograd"):
        m = select("synflow_l2", masked, 0.1, iterations=10, backend=backend)
        assert m.n_kept == int(0.1 * 16 * 28)
        assert all(not (m[n] & ~keep[n]).any() for n in keep)
    assert select("synflow_l2", masked, 0.1, iterations=10) == select(
        "synflow_l2", masked, 0.1, iterations=10, backend="autograd"
    )
    # the masked model still works: scoring a copy must not unregister anything
    assert masked(torch.ones(2, 20)).shape == (2, 8)
    assert pathnet.to_dag(masked).n_present == sum(int(k.sum()) for k in keep.values())


@pytest.mark.parametrize("backend", ["network", "graph", "autograd"])
def test_model_is_not_modified(backend):
    model = models.resnet20(seed=0)
    model.train()
    model.layer1[0].conv1.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    select("synflow_l2", model, 0.1, iterations=2, backend=backend)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert model.training and all(m.training for m in model.modules())


def test_errors_are_clear():
    model = models.mlp([6, 5, 3], seed=0)
    dag = pathnet.to_dag(model)
    with pytest.raises(ValueError, match="needs the torch model"):
        select("synflow", dag, 0.5, backend="autograd")
    with pytest.raises(ValueError, match="backend must be"):
        select("synflow", model, 0.5, backend="gpu")
    with pytest.raises(ValueError, match="variant must be"):
        select("synflow_l2", model, 0.5, variant="l2")
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        select("synflow", model, 0.5, iterations=0)
    with pytest.raises(TypeError, match="iterations must be an int"):
        select("synflow", model, 0.5, iterations=2.5)
    with pytest.raises(ValueError, match="keeps none"):
        select("synflow", model, 0.001)
    with pytest.raises(ValueError, match="density must be in"):
        select("synflow", model, 1.5)


# ----------------------------------------------------------------- bottleneck
def min_width_fraction(dag, mask) -> tuple[float, int]:
    """Smallest fraction (and count) of a hidden group's units on a complete path."""
    d = dag.with_mask(mask)
    f, b = forward_log(d, p=0), backward_log(d, p=0)
    widths = [
        (int(((fv.values > 0) & (bv.values > 0)).sum()), g.size)
        for g, fv, bv in zip(d.groups, f, b)
        if g.kind in ("hidden", "sum")
    ]
    active, size = min(widths, key=lambda w: w[0] / w[1])
    return active / size, min(a for a, _ in widths)


def phew_registered() -> bool:
    return importlib.util.find_spec("pathnet.select.phew") is not None


needs_phew = pytest.mark.skipif(not phew_registered(), reason="PHEW is not written yet")


def assert_bottleneck(name: str, density: float, iterations: int) -> None:
    model = models.build(name, seed=0)
    dag = pathnet.to_dag(model)
    l2 = min_width_fraction(dag, select("synflow_l2", model, density, iterations=iterations))
    phew = min_width_fraction(dag, select("phew", dag, density, seed=0))
    assert l2[0] < phew[0], (name, density, l2, phew)
    assert l2[1] <= phew[1], (name, density, l2, phew)


@needs_phew
def test_synflow_l2_is_narrower_than_phew_fast():
    assert_bottleneck("resnet20", 0.05, iterations=20)


@needs_phew
@pytest.mark.slow
@pytest.mark.parametrize("density", [0.05, 0.02])
@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_synflow_l2_is_narrower_than_phew(name, density):
    assert_bottleneck(name, density, iterations=100)


# ------------------------------------------------- nested schedule (pathnet reproduce)
@pytest.mark.parametrize("method", ["synflow", "synflow_l2"])
def test_nested_single_density_equals_synflow(method):
    from pathnet.select.synflow import synflow_nested

    model = models.lenet5(seed=2)
    dag = pathnet.to_dag(model)
    (nested,) = synflow_nested(dag, [0.05], method=method, iterations=12, backend="graph")
    assert nested == pathnet.select(method, dag, 0.05, iterations=12, backend="graph")


def test_nested_masks_record_one_schedule():
    from pathnet.select import synflow as S

    dag = pathnet.to_dag(models.resnet20(seed=1))
    densities = [0.5, 0.02, 0.1]
    masks = S.synflow_nested(dag, densities, method="synflow_l2", iterations=15, backend="graph")
    counts = [int(d * dag.n_params) for d in densities]
    assert [m.n_kept for m in masks] == counts
    # the same schedule run separately and stopped at each checkpoint gives the same mask
    keep = sorted(
        set(S.schedule(dag.n_params, dag.n_present, 0.02, 15)) | set(counts), reverse=True
    )
    kind = S.Kind.of("synflow_l2", "phew")
    for mask, k in zip(masks, counts):
        gidx = S.run_graph(dag, kind, [s for s in keep if s >= k])
        assert mask == S.mask_from_global(dag, gidx)
    # nested: every lower-density mask inside the higher ones
    lo, mid, hi = masks[1], masks[2], masks[0]
    for name in lo:
        assert bool((lo[name] <= mid[name]).all() and (mid[name] <= hi[name]).all())


def _parts_in_child(queue) -> None:  # runs in a forked child
    import pathnet.select.linearised as lin_module

    lin_module._state.workers = 2
    queue.put(lin_module._run_parts([lambda: 1, lambda: 2]))


def test_parts_run_in_a_forked_child():
    # the parent's worker thread does not survive a fork: the child starts its own pool
    # (torch itself cannot run multi-threaded in a child forked after it did; the parts
    # run one torch thread each, so they can)
    import multiprocessing

    import pathnet.select.linearised as lin_module

    lin_module._state.workers = 2
    try:
        assert lin_module._run_parts([lambda: 1, lambda: 2]) == [1, 2]  # starts the pool
    finally:
        lin_module._state.workers = 1
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_parts_in_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=60) == [1, 2]
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
