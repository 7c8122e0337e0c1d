"""Iterative magnitude pruning: schedule, nesting, rewinding, scopes, caching and resume."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch

import pathnet
import pathnet.train.imp  # registers "imp" without importing the other methods
from pathnet import Mask, models
from pathnet.select.registry import select
from pathnet.train.fit import CheckpointError, fit
from pathnet.train.imp import imp, imp_schedule, layer_counts, magnitude_mask

# pathnet.train.imp may be the function once pathnet.train re-exports it: take the module.
imp_module = importlib.import_module("pathnet.train.imp")

g = torch.Generator().manual_seed(1234)
W = torch.randn(10, 4, generator=g)
X = torch.randn(384, 10, generator=torch.Generator().manual_seed(0))
TRAIN = (X, (X @ W).argmax(1))
N = 10 * 32 + 32 * 32 + 32 * 4  # 1472 prunable weights
OPTS = {"epochs_per_round": 2, "batch_size": 64, "progress": False, "device": "cpu"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These networks are tiny: one thread is fastest, and immune to oversubscribed cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def model(seed: int = 0) -> torch.nn.Module:
    return models.mlp([10, 32, 32, 4], seed=seed)


class Recorder:
    """Stands in for fit() inside imp(): records each call's start weights, mask and result."""

    def __init__(self, monkeypatch, interrupt_at: int | None = None) -> None:
        self.calls: list[dict] = []
        self.interrupt_at = interrupt_at
        monkeypatch.setattr(imp_module, "fit", self)

    def __call__(self, net, mask, *args, **kwargs):
        start = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if self.interrupt_at == len(self.calls) + 1:
            fit(net, mask, *args, **{**kwargs, "stop_after": 1})  # one epoch, checkpointed
            raise KeyboardInterrupt
        result = fit(net, mask, *args, **kwargs)
        trained = {k: v.detach().clone() for k, v in pathnet.prunable_parameters(net).items()}
        self.calls.append({"start": start, "mask": mask, "trained": trained, "result": result})
        return result


def is_subset(a: Mask, b: Mask) -> bool:
    return all(bool((a[k] & ~b[k]).sum() == 0) for k in a)


def test_schedule():
    assert imp_schedule(N, density=0.4) == [1177, 942, 753, 602, 588]
    assert imp_schedule(1000, rounds=3) == [800, 640, 512]
    assert imp_schedule(1000, density=0.1, fraction=0.5) == [500, 250, 125, 100]
    assert imp_schedule(1000, density=0.01, rounds=2) == [100, 10]
    with pytest.raises(ValueError, match="keeps none"):
        imp_schedule(100, density=0.001)
    with pytest.raises(ValueError, match="density"):
        imp_schedule(100, density=1.0)
    with pytest.raises(ValueError, match="at most two"):
        imp_schedule(100, density=0.5, rounds=2, fraction=0.2)


def test_layer_counts_are_proportional_and_nested():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = [int(s) for s in rng.integers(3, 50, size=rng.integers(2, 6))]
        prev = list(sizes)
        for total in sorted(rng.choice(sum(sizes), size=5, replace=False) + 1, reverse=True):
            c = layer_counts(int(total), sizes, prev)
            assert sum(c) == total and all(0 <= a <= p for a, p in zip(c, prev))
            assert all(abs(a - total * s / sum(sizes)) < 1 for a, s in zip(c, sizes))
            prev = c


def test_imp_rounds_are_nested_exact_and_rewound_to_init(monkeypatch):
    rec = Recorder(monkeypatch)
    net = model(0)
    init = {k: v.detach().clone() for k, v in net.state_dict().items()}
    res = imp(net, TRAIN, density=0.4, seed=0, **OPTS)

    assert [m.n_kept for m in res.masks] == [int(0.8**k * N) for k in range(1, 5)] + [int(0.4 * N)]
    assert [m.meta["round"] for m in res.masks] == [1, 2, 3, 4, 5]
    assert res.masks[-1].meta["density"] == pytest.approx(588 / N)
    assert res.final_mask is res[-1] and res.trained == [1, 2, 3, 4, 5]
    assert isinstance(res, list) and len(res) == 5 and res.masks == list(res)
    for a, b in zip(res.masks[1:], res.masks):
        assert is_subset(a, b)
    # The model passed in is untouched.
    assert all(torch.equal(v, init[k]) for k, v in net.state_dict().items())

    assert len(rec.calls) == 5 and rec.calls[0]["mask"] is None
    for k, call in enumerate(rec.calls, start=1):
        assert all(torch.equal(call["start"][n], init[n]) for n in init)  # rewound to init
        if k > 1:
            assert call["mask"] == res.masks[k - 2]
        # Global magnitude pruning: every kept weight outweighs every weight pruned now.
        prev = rec.calls[k - 1]["mask"]
        kept = torch.cat([call["trained"][n][res.masks[k - 1][n]].abs() for n in call["trained"]])
        dropped = torch.cat(
            [
                call["trained"][n][(prev[n] if prev is not None else True) & ~res.masks[k - 1][n]]
                .abs()
                .reshape(-1)
                for n in call["trained"]
            ]
        )
        assert kept.min() >= dropped.max()
    assert res.rounds[-1]["train"]["train_acc"] > 0.5


def test_rewind_to_iteration_k(monkeypatch):
    rec = Recorder(monkeypatch)
    res = imp(model(0), TRAIN, density=0.7, rewind=5, seed=3, **OPTS)
    assert len(res.masks) == 2

    captured = {}

    def grab(step, net):
        if step == 5:
            captured.update({k: v.detach().clone() for k, v in net.state_dict().items()})

    fit(model(0), None, TRAIN, epochs=2, batch_size=64, seed=3, progress=False, step_callback=grab)
    start = rec.calls[1]["start"]
    assert all(torch.equal(start[k], captured[k]) for k in captured)
    init = model(0).state_dict()
    assert not torch.equal(start["1.weight"], init["1.weight"])


def test_layer_scope_prunes_every_layer_alike_global_does_not(monkeypatch):
    rec = Recorder(monkeypatch)
    opts = {**OPTS, "epochs_per_round": 1}
    layer = imp(model(0), TRAIN, density=0.4, scope="layer", seed=0, **opts)
    sizes = {k: v.numel() for k, v in pathnet.prunable_parameters(model(0)).items()}
    for k, m in enumerate(layer.masks, start=1):
        d = m.n_kept / N
        for name, t in m.items():
            assert abs(int(t.sum()) - d * sizes[name]) < 1, (k, name)
        # within each layer, the largest trained weights among those present survive
        call, prev = rec.calls[k - 1], rec.calls[k - 1]["mask"]
        for name, w in call["trained"].items():
            present = prev[name] if prev is not None else torch.ones_like(m[name])
            if (present & ~m[name]).any():
                assert w[m[name]].abs().min() >= w[present & ~m[name]].abs().max()
    glob = imp(model(0), TRAIN, density=0.4, scope="global", seed=0, **opts)
    assert glob.final_mask.n_kept == layer.final_mask.n_kept == int(0.4 * N)
    spread = [
        np.ptp([int(t.sum()) / t.numel() for t in r.final_mask.values()]) for r in (glob, layer)
    ]
    assert spread[0] > 0.05 > spread[1]


def test_finished_rounds_are_cached_and_skipped(tmp_path, monkeypatch):
    first = imp(model(0), TRAIN, density=0.55, seed=0, out_dir=tmp_path, **OPTS)
    assert first.trained == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.glob("mask_*.npz")) == [
        "mask_01.npz",
        "mask_02.npz",
        "mask_03.npz",
    ]
    state = json.loads((tmp_path / "imp.json").read_text())
    assert [r["round"] for r in state["rounds"]] == [1, 2, 3]
    assert Mask.load(tmp_path / "mask_02.npz") == first.masks[1]

    rec = Recorder(monkeypatch)
    again = imp(model(0), TRAIN, density=0.55, seed=0, out_dir=tmp_path, **OPTS)
    assert rec.calls == [] and again.trained == []
    assert again.masks == first.masks
    assert [m.meta["round"] for m in again.masks] == [1, 2, 3]

    with pytest.raises(ValueError, match="another run"):
        imp(model(0), TRAIN, density=0.55, seed=1, out_dir=tmp_path, **OPTS)
    with pytest.raises(ValueError, match="init"):
        imp(model(1), TRAIN, density=0.55, seed=0, out_dir=tmp_path, **OPTS)


def test_interrupted_imp_resumes_to_the_same_masks(tmp_path, monkeypatch):
    reference = imp(model(0), TRAIN, density=0.55, rewind=3, seed=0, **OPTS)
    # Interrupted after the first epoch of round 2.
    Recorder(monkeypatch, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        imp(model(0), TRAIN, density=0.55, rewind=3, seed=0, out_dir=tmp_path, **OPTS)
    assert (tmp_path / "mask_01.npz").exists() and not (tmp_path / "mask_02.npz").exists()
    rec = Recorder(monkeypatch)
    resumed = imp(model(0), TRAIN, density=0.55, rewind=3, seed=0, out_dir=tmp_path, **OPTS)
    assert resumed.trained == [2, 3]
    assert rec.calls[0]["result"].resumed_from == 1
    assert resumed.masks == reference.masks


def test_damaged_state_is_a_clear_error(tmp_path):
    imp(model(0), TRAIN, density=0.7, seed=0, out_dir=tmp_path, **OPTS)
    (tmp_path / "imp.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"imp\.json"):
        imp(model(0), TRAIN, density=0.7, seed=0, out_dir=tmp_path, **OPTS)


def test_select_imp_returns_the_final_mask():
    net = model(0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    mask = select("imp", net, 0.6, seed=0, train_data=TRAIN, epochs_per_round=1, progress=False)
    assert mask.n_kept == int(0.6 * N)
    assert mask.meta["method"] == "imp" and mask.meta["round"] == 3
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    with pytest.raises(ValueError, match="train_data"):
        select("imp", net, 0.6, seed=0)
    with pytest.raises(ValueError, match="torch model"):
        select("imp", pathnet.to_dag(net), 0.6, seed=0, train_data=TRAIN)


def test_magnitude_mask_breaks_ties_by_index():
    w = {"a": torch.ones(2, 3), "b": torch.ones(4)}
    m = magnitude_mask(w, 4)
    assert m["a"].tolist() == [[True, True, True], [True, False, False]] and not m["b"].any()
    m = magnitude_mask({"a": torch.ones(2, 3), "b": torch.full((4,), 2.0)}, 5)
    assert m["b"].all() and m["a"].tolist() == [[True, False, False], [False, False, False]]
    prev = {
        "a": torch.tensor([[False, True, True], [True, True, True]]),
        "b": torch.ones(4, dtype=torch.bool),
    }
    m = magnitude_mask(w, 2, previous=prev)
    assert m["a"].tolist() == [[False, True, True], [False, False, False]]
    with pytest.raises(ValueError, match="n_keep"):
        magnitude_mask(w, 11)
