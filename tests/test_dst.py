"""Dynamic sparse training (pathnet.train.dst): exact density, zeros, rules, resume, DDP."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import pathnet
from pathnet import Mask, models
from pathnet.mask import bias_masks, prunable_parameters
from pathnet.mask.core import applied_mask
from pathnet.train import DST, fit
from pathnet.train.dst import drop_smallest, grow_rigl, phew_grow, update_mask


# ------------------------------------------------------------------ helpers
def mlp() -> torch.nn.Module:
    return models.mlp([20, 24, 16, 4], seed=0)


def lenet() -> torch.nn.Module:
    return models.build("lenet5", seed=0)


def data(model: torch.nn.Module, n: int = 192, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *model.input_shape, generator=g)
    y = torch.randint(0, 4 if model.input_shape == (20,) else 10, (n,), generator=g)
    return x, y


def start_mask(model: torch.nn.Module, density: float = 0.2, seed: int = 0) -> Mask:
    return pathnet.select.select("random", model, density, seed=seed)


RUN = {"epochs": 2, "batch_size": 32, "seed": 3, "progress": False, "device": "cpu"}


def _brute_top(score: np.ndarray, cand: np.ndarray, k: int, largest: bool) -> set[int]:
    """The k candidates with the largest (smallest) score, ties to the lower index: by sorting tuples."""
    items = [(float(score.flat[i]), i) for i in range(score.size) if cand.flat[i]]
    items.sort(key=lambda t: ((-t[0]) if largest else t[0], t[1]))
    return {i for _, i in items[:k]}


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"rule": "magic"}, "rule must be one of"),
        ({"every": 0}, "every must be an integer >= 1"),
        ({"every": 2.5}, "every must be an integer >= 1"),
        ({"fraction": 0.0}, "fraction must be in (0, 1)"),
        ({"fraction": 1.0}, "fraction must be in (0, 1)"),
        ({"fraction": float("nan")}, "fraction must be in (0, 1)"),
        ({"stop": 0}, "stop must be in (0, 1]"),
        ({"stop": 1.5}, "stop must be in (0, 1]"),
        ({"schedule": "linear"}, "schedule must be one of"),
        ({"regrow": "dead"}, "regrow must be one of"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"log_paths": 1}, "log_paths must be True or False"),
        ({"max_walks": 0}, "max_walks must be a positive integer"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=r"pathnet\.train\.dst") as info:
        DST(**kwargs)
    assert needle in str(info.value)


def test_dict_round_trip_and_unknown_keys() -> None:
    d = DST("phew", every=7, fraction=0.4, schedule="constant", stop=0.5, regrow="dead_units")
    assert DST.from_dict(d.to_dict()) == d
    with pytest.raises(ValueError, match="unknown DST field"):
        DST.from_dict({**d.to_dict(), "rate": 1})


def test_cosine_schedule_values() -> None:
    d = DST("rigl", every=10, fraction=0.3, stop=0.75)
    total = 1000
    for s in (0, 10, 100, 375, 500, 749, 750):
        expected = 0.3 * (1 + math.cos(math.pi * s / 750)) / 2
        assert d.fraction_at(s, total) == pytest.approx(expected, rel=0, abs=1e-15)
    assert d.fraction_at(375, total) == pytest.approx(0.15)
    assert DST(schedule="constant", fraction=0.3).fraction_at(700, total) == 0.3
    assert [s for s in range(1, total + 1) if d.is_update(s, total)] == list(range(10, 751, 10))


def test_refusals_name_the_problem() -> None:
    model = mlp()
    x, y = data(model)
    with pytest.raises(ValueError, match="mask_mode='hard'"):
        fit(model, start_mask(model), (x, y), mask_mode="parametrize", dst=DST(), **RUN)
    with pytest.raises(ValueError, match="needs a mask"):
        fit(model, None, (x, y), dst=DST(), **RUN)
    with pytest.raises(TypeError, match=r"dst must be a pathnet\.train\.DST"):
        fit(model, start_mask(model), (x, y), dst={"rule": "set"}, **RUN)  # type: ignore[arg-type]
    tied = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4), torch.nn.Flatten()
    )
    tied[2].weight = tied[0].weight
    tied.input_shape = (4,)  # type: ignore[assignment]
    keep = torch.rand(4, 4, generator=torch.Generator().manual_seed(0)) < 0.5
    tmask = Mask({"0.weight": keep, "2.weight": keep}, tied=[("0.weight", "2.weight")])
    xs, ys = torch.randn(16, 4), torch.randint(0, 4, (16,))
    with pytest.raises(ValueError, match="tied weights"):
        fit(tied, tmask, (xs, ys), dst=DST(), **RUN)


# ------------------------------------------------------------------ selection against references
def test_drop_and_rigl_growth_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = np.round(rng.normal(size=(7, 5)), 1)  # ties on purpose
        keep = rng.random((7, 5)) < 0.4
        k = int(rng.integers(0, keep.sum() + 1))
        got = drop_smallest(np.abs(w), keep, k)
        assert set(np.flatnonzero(got)) == _brute_top(np.abs(w), keep, k, largest=False)
        g = np.round(rng.normal(size=(7, 5)), 1)
        kg = int(rng.integers(0, (~keep).sum() + 1))
        got = grow_rigl(np.abs(g), ~keep, kg)
        assert set(np.flatnonzero(got)) == _brute_top(np.abs(g), ~keep, kg, largest=True)


def test_update_counts_are_exact_and_exclude_the_dropped() -> None:
    model = mlp()
    mask = start_mask(model, 0.3)
    weights = prunable_parameters(model)
    grads = {n: torch.randn(p.shape) for n, p in weights.items()}
    for rule in ("set", "rigl"):
        new, info = update_mask(DST(rule, fraction=0.5), mask, weights, 1, 100, grads=grads)
        for n in mask:
            kept = int(mask[n].sum())
            k = min(math.floor(0.5 * kept + 0.5), mask[n].numel() - kept)  # cosine at step 1 ~0.5
            assert int(new[n].sum()) == kept
            grown = new[n] & ~mask[n]
            assert info["layers"][n]["grown"] == int(grown.sum()) == info["layers"][n]["dropped"]
            assert abs(int(grown.sum()) - k) <= 1
            dropped = mask[n] & ~new[n]
            assert not bool((grown & mask[n]).any()) and not bool((dropped & new[n]).any())


def test_rigl_grows_the_top_dense_gradient_during_training() -> None:
    """At every update, the grown positions are the top-|dense gradient| among the weights not
    kept; the dense gradient is checked against a separate full-batch autograd computation."""
    model = mlp()
    x, y = data(model, n=64)
    mask = start_mask(model, 0.25)
    dst = DST("rigl", every=3, fraction=0.4, stop=1.0)
    seen: dict[str, Any] = {"mask": Mask({k: v.clone() for k, v in mask.items()}), "checked": 0}
    before: dict[str, Any] = {}

    def snapshot(m: torch.nn.Module) -> None:
        before.clear()
        before.update({k: v.detach().clone() for k, v in m.state_dict().items()})

    snapshot_model = mlp()

    def cb(step: int, m: torch.nn.Module) -> None:
        now = Mask.from_model(m)
        if dst.is_update(step, 6):
            old = seen["mask"]
            # the dense gradient of this (full) batch at the weights before the step
            snapshot_model.load_state_dict(
                {k: v for k, v in before.items() if not k.endswith("_mask")}, strict=False
            )
            snapshot_model.zero_grad()
            F.cross_entropy(snapshot_model(x), y).backward()
            params = prunable_parameters(m)
            ref_params = prunable_parameters(snapshot_model)
            for n in old:
                g = params[n].grad
                assert g is not None
                torch.testing.assert_close(g, ref_params[n].grad, rtol=1e-5, atol=1e-7)
                grown = (now[n] & ~old[n]).numpy()
                k = int(grown.sum())
                want = _brute_top(g.abs().double().numpy(), (~old[n]).numpy(), k, largest=True)
                assert set(np.flatnonzero(grown)) == want, n
            seen["checked"] += 1
        seen["mask"] = now
        snapshot(m)

    snapshot(model)  # before step 1: the model as fit will mask it
    before_masked = {k: v * mask[k] if k in mask else v for k, v in before.items()}
    before.clear()
    before.update(before_masked)
    b0 = bias_masks(model, mask)
    for k, v in b0.items():
        before[k] = before[k] * v
    fit(model, mask, (x, y), epochs=6, batch_size=64, seed=0, progress=False, device="cpu",
        momentum=0.0, weight_decay=0.0, dst=dst, step_callback=cb)  # fmt: skip
    assert seen["checked"] == 2


# ------------------------------------------------------------------ invariants in training
@pytest.mark.parametrize("rule", ["set", "rigl", "phew"])
@pytest.mark.parametrize("arch", ["mlp", "lenet5"])
@pytest.mark.parametrize("regrow", ["any", "dead_units"])
def test_density_exact_and_pruned_zero_after_every_step(rule: str, arch: str, regrow: str) -> None:
    model = mlp() if arch == "mlp" else lenet()
    x, y = data(model, n=128)
    mask = start_mask(model, 0.1)
    counts = {n: int(v.sum()) for n, v in mask.items()}
    masks: list[Mask] = []

    def cb(step: int, m: torch.nn.Module) -> None:
        now = Mask.from_model(m)
        assert {n: int(v.sum()) for n, v in now.items()} == counts, step
        for n, p in prunable_parameters(m).items():
            assert bool((p.detach()[~now[n]] == 0).all()), (step, n)
        modules = dict(m.named_modules())
        for bname, keep in bias_masks(m, now).items():
            path = bname.rsplit(".", 1)[0]
            bias = modules[path].bias.detach()
            assert bool((bias[~keep] == 0).all()), (step, bname)
            held = applied_mask(modules[path], "bias")
            assert torch.equal(held if held is not None else torch.ones_like(keep), keep)
        masks.append(now)

    dst = DST(rule, every=2, fraction=0.3, regrow=regrow, log_paths=arch == "mlp")
    res = fit(model, mask, (x, y), dst=dst, step_callback=cb, **RUN)
    assert len(masks) == 8
    assert res.mask == masks[-1]
    assert res.mask != mask  # the mask did move
    log = res.dst_log
    assert log is not None and [r["step"] for r in log] == [0, 2, 4, 6]
    for row in log:
        for n, layer in row["layers"].items():
            assert layer["kept"] == counts[n] and layer["dropped"] == layer["grown"]
        assert row["density"] == pytest.approx(mask.density, abs=0)
        assert row["effective_params"] <= mask.n_kept
        assert set(row["widths"]) >= {"input"}
    assert log[1]["grown"] > 0
    if arch == "mlp":
        assert all(isinstance(r["log10_paths"], float) for r in log)
        assert all(isinstance(r["log10_trace"], float) for r in log)


def test_seed_determinism() -> None:
    def run(seed: int, rule: str) -> Mask:
        model = mlp()
        x, y = data(model)
        dst = DST(rule, every=2, fraction=0.3, seed=seed, log_paths=False)
        out = fit(model, start_mask(model), (x, y), dst=dst, **RUN).mask
        assert out is not None
        return out

    for rule in ("set", "phew"):
        assert run(0, rule) == run(0, rule)
        assert run(0, rule) != run(1, rule)


def test_dead_units_regrowth_revives_dead_units() -> None:
    model = models.mlp([6, 5, 3], seed=0)
    full = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in prunable_parameters(model).items()}
    full["1.weight"][0] = False  # hidden unit 0 has no input: dead
    full["1.weight"][1, :3] = False
    full["3.weight"][:, 2] = False  # hidden unit 2 has no output: dead
    mask = Mask(full)
    dag = pathnet.to_dag(model)
    weights = prunable_parameters(model)
    for rule in ("set", "phew"):
        dst = DST(rule, fraction=0.1, regrow="dead_units", schedule="constant")
        new, _ = update_mask(
            dst,
            mask,
            weights,
            1,
            10,
            dag=dag,
            init_weights={k: v.detach() for k, v in weights.items()},
        )
        g1 = new["1.weight"] & ~mask["1.weight"]
        g3 = new["3.weight"] & ~mask["3.weight"]
        # layer 1: 3 growable candidates into dead unit 0 ... any edge into unit 0 or 2
        assert bool(g1[[0, 2]].sum() == g1.sum()), rule
        assert bool(g3[:, [0, 2]].sum() == g3.sum()), rule


def test_phew_grow_respects_candidates_quotas_and_falls_back() -> None:
    model = models.mlp([12, 10, 6, 3], seed=0)
    dag = pathnet.to_dag(model)
    vals = {n: p.detach().abs().numpy() for n, p in prunable_parameters(model).items()}
    rng = np.random.default_rng(0)
    cand = {n: rng.random(v.shape) < 0.5 for n, v in vals.items()}
    quotas = {n: int(c.sum()) // 3 for n, c in cand.items()}
    grown, info = phew_grow(dag, vals, cand, quotas, seed=5)
    for n in vals:
        assert int(grown[n].sum()) == quotas[n]
        assert not bool((grown[n] & ~cand[n]).any())
    assert info["walks"] > 0 and sum(info["fallback"].values()) == 0
    again, _ = phew_grow(dag, vals, cand, quotas, seed=5)
    assert all(np.array_equal(grown[n], again[n]) for n in vals)
    few, info = phew_grow(dag, vals, cand, quotas, seed=5, max_walks=1)
    assert sum(info["fallback"].values()) > 0
    for n in vals:
        assert int(few[n].sum()) == quotas[n] and not bool((few[n] & ~cand[n]).any())
    with pytest.raises(ValueError, match="cannot grow"):
        phew_grow(dag, vals, cand, {**quotas, "1.weight": 10**6}, seed=0)


# ------------------------------------------------------------------ resume
@pytest.mark.parametrize("rule", ["set", "rigl", "phew"])
def test_resume_is_bitwise(rule: str, tmp_path: Path) -> None:
    dst = DST(rule, every=3, fraction=0.3, regrow="dead_units" if rule == "phew" else "any")
    settings = {**RUN, "epochs": 3}

    def run(**kw: Any) -> tuple[torch.nn.Module, Any]:
        model = mlp()
        x, y = data(model)
        return model, fit(model, start_mask(model), (x, y), dst=dst, **settings, **kw)

    full_model, full = run()
    run(out_dir=tmp_path, stop_after=1)
    resumed_model, resumed = run(out_dir=tmp_path, resume=True)
    assert resumed.resumed_from == 1
    for k, v in full_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[k], v), k
    assert resumed.mask == full.mask
    assert resumed.dst_log == full.dst_log
    # a resume with another DST is refused
    with pytest.raises(ValueError, match="other settings"):
        model = mlp()
        fit(model, start_mask(model), data(model), dst=DST(rule, every=4), out_dir=tmp_path,
            resume=True, **settings)  # fmt: skip


# ------------------------------------------------------------------ DDP
WORLD = 2


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    from pathnet.train.ddp import fit_ddp

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for rule in ("rigl", "phew"):
            model = mlp()
            x, y = data(model, n=96)
            res = fit_ddp(
                model,
                start_mask(model),
                (x, y),
                epochs=2,
                batch_size=24,
                seed=1,
                dst=DST(rule, every=2, fraction=0.3, log_paths=False),
            )
            results[rule] = {
                "mask": dict(res.mask.items()),
                "state": {k: v.clone() for k, v in model.state_dict().items()},
                "log": res.dst_log,
            }
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_same_mask_on_every_rank(tmp_path: Path) -> None:
    mp.spawn(
        _ddp_worker, args=(WORLD, str(tmp_path / "pg"), str(tmp_path)), nprocs=WORLD, join=True
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    model = mlp()
    mask = start_mask(model)
    for rule in ("rigl", "phew"):
        a, b = ranks[0][rule], ranks[1][rule]
        assert Mask(a["mask"]) == Mask(b["mask"]), rule
        assert Mask(a["mask"]) != mask, rule
        for n, keep in a["mask"].items():
            assert int(keep.sum()) == int(mask[n].sum())
            assert bool((a["state"][n][~keep] == 0).all())
        for k in a["state"]:
            assert torch.equal(a["state"][k], b["state"][k]), (rule, k)
        assert a["log"] == b["log"] and [r["step"] for r in a["log"]] == [0, 2, 4, 6]
