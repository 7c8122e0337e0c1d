"""Baselines (random, random_global, ERK, magnitude, SNIP, GraSP) and the shared top-k."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pathnet
from pathnet import models
from pathnet.select import select, target_count
from pathnet.select.baselines import erk_counts, grasp_scores, layer_counts, snip_scores
from pathnet.select.scoring import flatten_scores, top_k, top_k_cut

DATA_FREE = ["random", "random_global", "erk", "magnitude"]


def kept_per_param(mask) -> dict[str, int]:
    return {n: int(t.sum()) for n, t in mask.items()}


def tiny_data(model: nn.Module, n: int = 20, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *model.input_shape), generator=g)
    y = torch.arange(n) % classes
    return x, y


def tiny_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 4),
    )
    model.input_shape = (2, 6, 6)
    return models.kaiming_init(model, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------- top-k
def brute_top_k(scores, k, secondary=None):
    n = scores.size
    sec = np.zeros(n) if secondary is None else secondary
    order = np.lexsort((np.arange(n), -sec, -scores))
    keep = np.zeros(n, dtype=bool)
    keep[order[:k]] = True
    return keep


@pytest.mark.parametrize("n", [1, 7, 1000, 300_000])
def test_top_k_exact_with_ties(rng, n):
    for trial in range(6):
        s = rng.standard_normal(n)
        sec = rng.integers(0, 3, n).astype(float) if trial % 2 else None
        if trial == 1:
            s = np.round(s, 1)  # many ties
        if trial == 2:
            s[: n // 2] = -np.inf
        if trial == 3:
            s[:] = 0.5
        k = int(rng.integers(1, n + 1))
        got = top_k(s, k, sec)
        assert got.sum() == k
        np.testing.assert_array_equal(got, brute_top_k(s, k, sec))


def test_top_k_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        top_k(np.array([1.0, np.nan]), 1)
    with pytest.raises(ValueError, match="cannot keep"):
        top_k(np.array([1.0, 2.0]), 3)
    with pytest.raises(ValueError, match="cannot keep"):
        top_k_cut(np.array([1.0, 2.0]), 0)


# ------------------------------------------------------------ data-free
@pytest.mark.parametrize("method", DATA_FREE)
def test_exact_counts_and_seeds(method):
    model = models.lenet5(seed=0)
    dag = pathnet.to_dag(model)
    for density in (0.9, 0.1, 0.013, 1.0):
        a = select(method, dag, density, seed=3)
        assert a.n_kept == target_count(dag, density)
        assert a == select(method, model, density, seed=3)
    if method != "magnitude":
        assert select(method, dag, 0.1, seed=3) != select(method, dag, 0.1, seed=4)
        gen = np.random.default_rng(5)
        assert select(method, dag, 0.1, seed=gen).n_kept == target_count(dag, 0.1)


def test_random_has_the_same_density_in_every_layer():
    dag = pathnet.to_dag(models.vgg11(seed=0))
    for density in (0.1, 0.0123):
        mask = select("random", dag, density, seed=0)
        m = target_count(dag, density)
        for name, kept in kept_per_param(mask).items():
            exact = m * dag.block_of(name).n_params / dag.n_params
            assert abs(kept - exact) < 1, (name, kept, exact)
        assert sum(layer_counts(dag, density).values()) == m


def test_random_is_uniform_within_a_layer():
    dag = pathnet.to_dag(models.mlp([10, 10, 2], seed=0))
    hits = np.zeros(100)
    for seed in range(400):
        hits += select("random", dag, 0.3, seed=seed)["1.weight"].numpy().ravel()
    p = hits / 400
    expected = layer_counts(dag, 0.3)[0] / 100
    assert abs(p.mean() - expected) < 1e-12
    assert np.abs(p - expected).max() < 4.5 * np.sqrt(expected * (1 - expected) / 400)


def rigl_erk_densities(shapes, density):
    """RigL's ERK, written out (no rounding): density_l = eps * sum(shape)/prod(shape)."""
    raw = np.array([sum(s) / np.prod(s) for s in shapes])
    size = np.array([np.prod(s) for s in shapes], dtype=float)
    dense = np.zeros(len(shapes), bool)
    total = density * size.sum()
    while True:
        eps = (total - size[dense].sum()) / (raw[~dense] * size[~dense]).sum()
        over = ~dense & (eps * raw > 1)
        if not over.any():
            return np.where(dense, 1.0, eps * raw)
        dense |= over


@pytest.mark.parametrize("density", [0.5, 0.1, 0.02])
def test_erk_layer_densities(density):
    model = models.mlp([400, 60, 40, 3], seed=0)  # the last layer saturates at high density
    dag = pathnet.to_dag(model)
    counts = erk_counts(dag, density)
    m = target_count(dag, density)
    assert sum(counts.values()) == m
    blocks = [b for b in dag.blocks if b.param]
    want = rigl_erk_densities([b.param_shape for b in blocks], m / dag.n_params)
    for k, blk, d in zip(counts.values(), blocks, want):
        assert abs(k - d * blk.n_params) < 1, (blk.param, k, d * blk.n_params)
    mask = select("erk", dag, density, seed=0)
    assert kept_per_param(mask) == {blk.param: k for blk, k in zip(blocks, counts.values())}
    if density == 0.5:
        assert counts[len(blocks) - 1] == blocks[-1].n_params  # dense


def test_magnitude_keeps_the_largest_weights():
    model = models.mlp([30, 20, 10], seed=1)
    dag = pathnet.to_dag(model)
    w = np.concatenate(
        [
            p.detach().abs().double().numpy().ravel()
            for p in pathnet.prunable_parameters(model).values()
        ]
    )
    w[5] = w[6] = w[7] = np.sort(w)[-40]  # ties: lower index first
    with torch.no_grad():
        flat = torch.from_numpy(w[:600].reshape(20, 30)).float()
        model[1].weight.copy_(flat * torch.sign(model[1].weight))
    dag = pathnet.to_dag(model)
    w = np.concatenate([np.abs(b.values.astype(np.float64)).ravel() for b in dag.blocks])
    for k in (1, 40, 41, 300):
        mask = select("magnitude", dag, k / dag.n_params + 1e-12)
        got = np.concatenate([mask[b.param].numpy().ravel() for b in dag.blocks])
        np.testing.assert_array_equal(got, brute_top_k(w, k))


def test_existing_mask_is_respected(rng):
    model = models.mlp([20, 16, 8], seed=2)
    keep = {
        n: torch.from_numpy(rng.random(tuple(p.shape)) < 0.5)
        for n, p in pathnet.prunable_parameters(model).items()
    }
    masked = pathnet.apply_mask(copy.deepcopy(model), pathnet.Mask(keep), mode="prune")
    data = tiny_data(model, classes=8)
    for method in [*DATA_FREE, "snip", "grasp"]:
        extra = {"data": data} if method in ("snip", "grasp") else {}
        m = select(method, masked, 0.2, seed=0, **extra)
        assert m.n_kept == int(0.2 * 448)
        assert all(not (m[n] & ~keep[n]).any() for n in keep), method
    with pytest.raises(ValueError, match="only"):
        select("random", masked, 0.9)


# ------------------------------------------------------------ SNIP and GraSP
def independent_snip(model, x, y):
    net = copy.deepcopy(model).double().eval()
    loss = F.cross_entropy(net(x.double()), y)
    params = [p for p in net.parameters() if p.dim() > 1]
    grads = torch.autograd.grad(loss, params)
    names = [n for n, p in net.named_parameters() if p.dim() > 1]
    return {n: (g * p).abs().detach().numpy() for n, g, p in zip(names, grads, params)}


def independent_grasp(model, x, y, temperature=200.0):
    """-theta * (H g) with the full Hessian of the loss over the prunable weights."""
    net = copy.deepcopy(model).double().eval()
    named = [(n, p) for n, p in net.named_parameters() if p.dim() > 1]
    shapes = [p.shape for _, p in named]
    sizes = [p.numel() for _, p in named]
    theta = torch.cat([p.detach().reshape(-1) for _, p in named])

    def loss_of(flat):
        params = dict(net.named_parameters())
        parts = torch.split(flat, sizes)
        for (n, _), part, shape in zip(named, parts, shapes):
            params[n] = part.reshape(shape)
        out = torch.func.functional_call(net, params, (x.double(),))
        return F.cross_entropy(out / temperature, y)

    g = torch.autograd.functional.jacobian(loss_of, theta)
    h = torch.autograd.functional.hessian(loss_of, theta)
    score = -theta * (h @ g)
    return {
        n: s.reshape(shape).numpy()
        for (n, _), s, shape in zip(named, torch.split(score, sizes), shapes)
    }


@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_snip_and_grasp_scores_equal_independent_autograd(net):
    model = models.mlp([6, 5, 4], seed=0) if net == "mlp" else tiny_convnet()
    x, y = tiny_data(model)
    dag = pathnet.to_dag(model)
    snip = snip_scores(dag, model, (x, y))
    for name, ref in independent_snip(model, x, y).items():
        np.testing.assert_allclose(snip[name], ref, rtol=1e-10, atol=1e-300)
    grasp = grasp_scores(dag, model, (x, y))
    ref_grasp = independent_grasp(model, x, y)
    for name, ref in ref_grasp.items():
        np.testing.assert_allclose(grasp[name], ref, rtol=1e-7, atol=1e-12 * np.abs(ref).max())
    # the masks: SNIP keeps the largest scores, GraSP the smallest
    k = target_count(dag, 0.3)
    s = flatten_scores(dag, independent_snip(model, x, y))
    g = flatten_scores(dag, ref_grasp)
    for method, scores in [("snip", s), ("grasp", -g)]:
        mask = select(method, model, 0.3, data=(x, y))
        got = np.concatenate([mask[b.param].numpy().ravel() for b in dag.blocks])
        np.testing.assert_array_equal(got, brute_top_k(scores, k))


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_methods_errors(method):
    model = models.mlp([6, 5, 4], seed=0)
    x, y = tiny_data(model)
    with pytest.raises(ValueError, match="real data"):
        select(method, model, 0.5)
    with pytest.raises(ValueError, match="torch model"):
        select(method, pathnet.to_dag(model), 0.5, data=(x, y))
    with pytest.raises(ValueError, match="pair"):
        select(method, model, 0.5, data=x)
    with pytest.raises(ValueError, match="integer"):
        select(method, model, 0.5, data=(x, y.float()))
    with pytest.raises(ValueError, match="labels must lie"):
        select(method, model, 0.5, data=(x, y + 10))


@pytest.mark.parametrize("method", ["snip", "grasp", *DATA_FREE])
def test_model_is_not_modified(method):
    model = models.resnet20(seed=0)
    model.train()
    model.fc.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])
    extra = {"data": (x, y)} if method in ("snip", "grasp") else {}
    select(method, model, 0.1, seed=0, **extra)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("method", ["random", "random_global", "erk", "magnitude"])
def test_nested_baselines_equal_individual_calls(method):
    from pathnet.select.baselines import baseline_nested

    model = models.resnet20(seed=4)
    with torch.no_grad():  # ties for magnitude: equal |w| in one layer
        model.fc.weight[:, :8] = 0.125
    dag = pathnet.to_dag(model)
    densities = [0.3, 0.02, 0.1]
    for d, mask in zip(densities, baseline_nested(method, dag, densities, seed=9)):
        assert mask == pathnet.select(method, dag, d, seed=9), (method, d)


# ------------------------------------------------ half precision and meta tensors
ALL_DATA_FREE = ["phew", "random_paths", "synflow", "synflow_l2", *DATA_FREE]


def _options(method: str) -> dict:
    return {"iterations": 4} if method.startswith("synflow") else {}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("net", ["mlp", "conv"])
def test_half_precision_models_are_scored_in_float64(dtype, net):
    """A float16/bfloat16 model selects exactly as its float64 copy does, and is left alone."""
    model = (models.mlp([12, 8, 4], seed=0) if net == "mlp" else tiny_convnet()).to(dtype)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wide = copy.deepcopy(model).to(torch.float64)
    data = tiny_data(model)
    for method in [*ALL_DATA_FREE, "snip", "grasp"]:
        extra = {"data": data} if method in ("snip", "grasp") else _options(method)
        mask = select(method, model, 0.3, seed=0, **extra)
        assert mask == select(method, wide, 0.3, seed=0, **extra), method
        assert mask.n_kept == target_count(pathnet.to_dag(wide), 0.3)
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k
    nested = pathnet.select.select_nested("phew", model, [0.1, 0.3], seed=0)
    assert nested[1] == select("phew", wide, 0.3, seed=0)


def test_meta_device_models_are_refused_with_what_to_do():
    model = nn.Sequential(nn.Linear(6, 4, device="meta"), nn.ReLU(), nn.Linear(4, 2, device="meta"))
    model.input_shape = (6,)
    for method in [*ALL_DATA_FREE, "snip"]:
        with pytest.raises(ValueError, match=r"pathnet\.select: .*meta device.*to_empty") as info:
            select(method, model, 0.5, seed=0)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="meta device"):
        pathnet.select.select_nested("random", model, [0.5], seed=0)


def test_integer_parameters_are_refused():
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    model.input_shape = (6,)
    model[0].weight = nn.Parameter(torch.ones(4, 6, dtype=torch.int64), requires_grad=False)
    with pytest.raises(ValueError, match=r"dtype torch\.int64; expected floating-point"):
        select("phew", model, 0.5, seed=0)
