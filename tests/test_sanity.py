"""pathnet.sanity: layer-wise shuffle, re-initialisation, inverted rankings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pathnet.mask import Mask, tied_groups
from pathnet.sanity import invert, inverted_method, layerwise_shuffle, reinitialize


def _w(net: nn.Module, name: str) -> torch.Tensor:
    return net.get_parameter(name)


def _random_mask(shape: tuple[int, ...], density: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < density


@pytest.fixture
def mask() -> Mask:
    # uneven rows so that "unit_fan_in" is a real constraint
    a = _random_mask((64, 3, 3, 3), 0.2, 0)
    a[0] = False
    a[1] = True
    b = _random_mask((10, 256), 0.1, 1)
    return Mask({"conv.weight": a, "fc.weight": b}, meta={"method": "demo"})


@pytest.mark.parametrize("preserve", ["layer", "unit_fan_in"])
def test_shuffle_counts_positions_determinism(mask: Mask, preserve: str) -> None:
    s = layerwise_shuffle(mask, seed=3, preserve=preserve)  # type: ignore[arg-type]
    assert s.meta["method"] == "demo" and s.meta["sanity"]["preserve"] == preserve
    for name in mask:
        old, new = mask[name], s[name]
        assert new.shape == old.shape and new.dtype == torch.bool
        assert int(new.sum()) == int(old.sum())
        if preserve == "unit_fan_in":
            rows_old = old.reshape(old.shape[0], -1).sum(1)
            assert torch.equal(new.reshape(new.shape[0], -1).sum(1), rows_old)
        # overlap near the random expectation k^2 / n (not identity)
        k, n = int(old.sum()), old.numel()
        overlap = int((old & new).sum())
        expected = k * k / n
        assert overlap < k
        assert abs(overlap - expected) < 5 * math.sqrt(expected) + 2
    assert layerwise_shuffle(mask, seed=3, preserve=preserve) == s  # type: ignore[arg-type]
    assert layerwise_shuffle(mask, seed=4, preserve=preserve) != s  # type: ignore[arg-type]


def test_shuffle_layer_positions_uniform() -> None:
    # each position kept with probability k/n over many seeds
    keep = torch.zeros(40, dtype=torch.bool)
    keep[:10] = True
    m = Mask({"w": keep.reshape(4, 10)})
    freq = torch.stack([layerwise_shuffle(m, seed=s)["w"].double() for s in range(400)]).mean(0)
    assert float((freq - 0.25).abs().max()) < 0.11  # 5 sigma: sqrt(.25*.75/400) = 0.022


def test_shuffle_tied_and_bad_input() -> None:
    w = _random_mask((8, 8), 0.3, 0)
    m = Mask({"a.weight": w, "b.weight": w.clone()}, tied=[("a.weight", "b.weight")])
    s = layerwise_shuffle(m, seed=0)
    assert torch.equal(s["a.weight"], s["b.weight"]) and s.tied == m.tied
    assert s.n_kept == m.n_kept
    with pytest.raises(ValueError, match="preserve"):
        layerwise_shuffle(m, seed=0, preserve="unit")  # type: ignore[arg-type]


def _kaiming_std(keep: torch.Tensor) -> torch.Tensor:
    return torch.full((keep.shape[0],), math.sqrt(2.0 / keep[0].numel()))


@pytest.mark.parametrize("scheme", ["kaiming", "liu", "evci"])
def test_reinitialize_std_matches_formula(scheme: str) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    keep0 = _random_mask((512, 512), 0.1, 0)
    keep0[:256, :] = _random_mask((256, 512), 0.3, 1)  # two different unit fan-ins
    keep1 = _random_mask((10, 512), 0.1, 2)
    mask = Mask({"0.weight": keep0, "2.weight": keep1})
    new = reinitialize(net, mask, scheme=scheme, seed=5)  # type: ignore[arg-type]
    for k, v in net.state_dict().items():  # input model unchanged
        assert torch.equal(v, before[k])
    w = _w(new, "0.weight").detach().double()
    assert bool((w[~keep0] == 0).all())
    assert bool((_w(new, "2.weight")[~keep1] == 0).all())
    fan_in, n, kept = 512, keep0.numel(), int(keep0.sum())
    if scheme == "kaiming":
        want = {"top": math.sqrt(2 / fan_in), "bottom": math.sqrt(2 / fan_in)}
    elif scheme == "liu":
        s = math.sqrt(2 * n / (fan_in * kept))
        want = {"top": s, "bottom": s}
    else:
        want = {"top": math.sqrt(2 / (0.3 * 512)), "bottom": math.sqrt(2 / (0.1 * 512))}
    for half, rows in (("top", slice(0, 256)), ("bottom", slice(256, 512))):
        vals = w[rows][keep0[rows]]
        rel = float(vals.std()) / want[half]
        assert abs(rel - 1) < 0.03, (scheme, half, rel)  # ~5 sigma for >= 13k samples
        assert abs(float(vals.mean())) < 0.05 * want[half]
    if scheme == "evci":  # per unit: std_j * sqrt(kept_j / 2) ~ 1 on average
        k_j = keep0.sum(1).double()
        ratio = (w.pow(2).sum(1) / k_j).sqrt() / (2 / k_j).sqrt()
        assert abs(float(ratio.mean()) - 1) < 0.02
    assert bool((_w(new, "0.bias") == 0).all()) and bool((_w(new, "2.bias") == 0).all())


def test_reinitialize_deterministic_conv_bn_tied() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 8), nn.Linear(8, 8)
    )
    net[4].weight = net[3].weight  # type: ignore[index]
    with torch.no_grad():
        _w(net, "1.weight").fill_(2.0)
    conv = _random_mask((8, 3, 3, 3), 0.3, 0)
    lin = _random_mask((8, 8), 0.5, 1)
    mask = Mask({"0.weight": conv, "3.weight": lin, "4.weight": lin}, tied=tied_groups(net))
    a = reinitialize(net, mask, scheme="evci", seed=1)
    b = reinitialize(net, mask, scheme="evci", seed=1)
    c = reinitialize(net, mask, scheme="evci", seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(_w(a, "0.weight"), _w(c, "0.weight"))
    assert _w(a, "3.weight") is _w(a, "4.weight")
    assert bool((_w(a, "1.weight") == 1).all()) and float(_w(net, "1.weight").detach()[0]) == 2.0
    assert bool((_w(a, "0.weight")[~conv] == 0).all()) and bool(
        (_w(a, "3.weight")[~lin] == 0).all()
    )
    with pytest.raises(ValueError, match="scheme"):
        reinitialize(net, mask, scheme="xavier")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not fit"):
        reinitialize(net, Mask({"0.weight": conv}), seed=0)


def test_reinitialize_same_on_any_thread_count() -> None:
    net = nn.Sequential(nn.Linear(64, 64))
    mask = Mask({"0.weight": _random_mask((64, 64), 0.2, 0)})
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _w(reinitialize(net, mask, scheme="liu", seed=9), "0.weight")
        torch.set_num_threads(2)
        two = _w(reinitialize(net, mask, scheme="liu", seed=9), "0.weight")
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one, two)


def test_inverted_methods() -> None:
    assert inverted_method("phew") == ("phew", {"bias": "inverse"})
    for name in ("random", "erk", "random_paths", "synflow"):
        assert inverted_method(name) is None
    with pytest.raises(ValueError, match="no inverted ranking"):
        invert("random", nn.Linear(2, 2), 0.5)


def test_invert_magnitude_keeps_smallest() -> None:
    import pathnet

    model = pathnet.models.mlp([20, 10, 5], seed=0)
    low = invert("magnitude", model, 0.2)
    high = pathnet.select.select("magnitude", model, 0.2)
    assert low.n_kept == high.n_kept and low.meta["sanity"]["check"] == "invert"
    params = pathnet.mask.prunable_parameters(model)
    w = torch.cat([p.detach().abs().ravel() for p in params.values()])
    kept = torch.cat([low[n].ravel() for n in params])
    assert float(w[kept].max()) <= float(w[~kept].min())
    assert int((kept & torch.cat([high[n].ravel() for n in params])).sum()) == 0


def test_invert_snip_grasp_phew() -> None:
    import pathnet
    from pathnet.select.baselines import grasp_scores, snip_scores
    from pathnet.select.scoring import flatten_scores

    model = pathnet.models.mlp([20, 10, 5], seed=0)
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(20, 20, generator=g), torch.arange(20) % 5)
    dag = pathnet.to_dag(model)
    for method, fn, sign in (("snip", snip_scores, 1.0), ("grasp", grasp_scores, -1.0)):
        mask = invert(method, model, 0.2, data=data)
        scores = sign * flatten_scores(dag, fn(dag, model, data))
        kept = torch.cat([mask[n].ravel() for n in pathnet.mask.prunable_parameters(model)])
        assert mask.n_kept == int(0.2 * 250)
        assert (
            scores[kept.numpy()].max() <= scores[~kept.numpy()].min()
        )  # kept what the method drops
    inv = invert("phew", model, 0.2, seed=0)
    assert inv.meta["bias"] == "inverse" and inv.n_kept == int(0.2 * 250)
    assert inv == pathnet.select.select("phew", model, 0.2, seed=0, bias="inverse")
