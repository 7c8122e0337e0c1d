"""Masks: round trips, safe files, and pruned weights that stay zero."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

import pathnet
from pathnet import Mask, MaskFileError, models


def random_mask(model: nn.Module, density: float, seed: int = 0) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask(
        {
            n: torch.rand(p.shape, generator=g) < density
            for n, p in pathnet.prunable_parameters(model).items()
        }
    )


def test_dag_selection_to_mask_and_back():
    model = models.resnet20(seed=0)
    dag = pathnet.to_dag(model)
    rng = np.random.default_rng(0)
    selected = {
        b: rng.choice(blk.n_params, size=max(1, blk.n_params // 10), replace=False)
        for b, blk in enumerate(dag.blocks)
        if blk.prunable
    }
    mask = dag.mask_from_elements(selected)
    back = dag.elements_from_mask(mask)
    for b, idx in selected.items():
        np.testing.assert_array_equal(back[b], np.sort(idx))
    # element (j, i, e) is parameter element (j*n_in+i)*n_elem+e: check one by hand
    blk = dag.block_of("layer1.0.conv1.weight")
    b = dag.blocks.index(blk)
    j, i, a, c = 5, 7, 2, 1
    flat = (j * 16 + i) * 9 + a * 3 + c
    m2 = dag.mask_from_elements({b: np.array([flat])})
    assert m2["layer1.0.conv1.weight"][j, i, a, c] and m2.n_kept == 1


def test_mask_from_edges_keeps_whole_kernels():
    dag = pathnet.to_dag(models.lenet5())
    b = dag.params.index("features.3.weight")
    m = dag.mask_from_edges({b: (np.array([2]), np.array([4]))})
    assert m.n_kept == 25 and bool(m["features.3.weight"][2, 4].all())


def test_masked_dag_drops_edges():
    model = models.mlp([3, 2], seed=0)
    keep = torch.tensor([[True, False, False], [False, False, False]])
    dag = pathnet.to_dag(model).with_mask({"1.weight": keep})
    assert dag.n_present == 1 and dag.n_edges == 1
    assert dag.to_networkx().number_of_edges() == 1


def test_to_dag_reads_applied_mask():
    model = models.mlp([6, 5, 4], seed=0)
    mask = random_mask(model, 0.5)
    pathnet.apply_mask(model, mask)
    assert pathnet.to_dag(model).to_mask() == mask


def test_save_load_round_trip(tmp_path):
    model = models.vgg11()
    mask = random_mask(model, 0.05)
    mask.meta["method"] = "test"
    path = mask.save(tmp_path / "m.npz")
    loaded = Mask.load(path, model=model)
    assert loaded == mask and loaded.meta["method"] == "test"
    assert loaded.density == pytest.approx(mask.density)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left


@pytest.mark.parametrize("problem", ["missing", "extra", "shape"])
def test_mask_that_does_not_fit_is_refused_by_name(tmp_path, problem):
    model = models.mlp([4, 3, 2])
    d = dict(random_mask(model, 0.5))
    if problem == "missing":
        del d["3.weight"]
        needle = "missing ['3.weight']"
    elif problem == "extra":
        d["fc9.weight"] = torch.ones(2, 2, dtype=torch.bool)
        needle = "fc9.weight"
    else:
        d["1.weight"] = torch.ones(4, 3, dtype=torch.bool)
        needle = "'1.weight' has shape (4, 3)"
    Mask(d).save(tmp_path / "m.npz")
    with pytest.raises(ValueError) as err:
        Mask.load(tmp_path / "m.npz", model=model)
    assert needle in str(err.value)
    with pytest.raises(ValueError):
        pathnet.apply_mask(model, Mask(d))


def test_truncated_and_foreign_files_are_refused(tmp_path):
    model = models.mlp([4, 3, 2])
    path = random_mask(model, 0.5).save(tmp_path / "m.npz")
    data = path.read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(MaskFileError, match="cannot read"):
        Mask.load(tmp_path / "t.npz")
    np.savez(tmp_path / "other.npz", header=np.frombuffer(b'{"format": "x"}', dtype=np.uint8))
    with pytest.raises(MaskFileError, match="not a pathnet mask"):
        Mask.load(tmp_path / "other.npz")


def test_crafted_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    np.savez(tmp_path / "evil.npz", header=np.array([Evil()], dtype=object))
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(Evil(), fh)
    for name in ("evil.npz", "evil.pkl"):
        with pytest.raises(MaskFileError):
            Mask.load(tmp_path / name)
    assert not marker.exists()


def test_non_boolean_masks_are_refused():
    with pytest.raises(ValueError, match="dtype bool"):
        Mask({"w": torch.ones(2, 2)})


@pytest.mark.parametrize("mode", ["parametrize", "prune", "hard"])
@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_pruned_weights_stay_zero_through_sgd(mode, arch):
    torch.manual_seed(0)
    if arch == "mlp":
        model, shape = models.mlp([8, 6, 4], seed=0), (8,)
    else:
        model, shape = models.resnet20(seed=0), (3, 8, 8)
    mask = random_mask(model, 0.3)
    pathnet.apply_mask(model, mask, mode=mode)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True
    )
    x = torch.randn(4, *shape)
    y = torch.randint(0, 4 if arch == "mlp" else 10, (4,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    params = pathnet.prunable_parameters(model)
    moved = 0
    for name, keep in mask.items():
        w = params[name].detach()
        assert torch.all(w[~keep] == 0), name
        moved += int((w[keep] != 0).sum())
    assert moved > 0  # the kept weights do train
    # the stored parameters themselves are zero too (momentum/decay cannot revive them)
    for n, p in model.named_parameters():
        if p.dim() > 1:
            key = n.replace(".parametrizations.weight.original", ".weight").replace("_orig", "")
            assert torch.all(p.detach()[~mask[key]] == 0), n


def test_remove_mask_bakes_zeros():
    model = models.mlp([5, 4, 3], seed=0)
    mask = random_mask(model, 0.5)
    pathnet.apply_mask(model, mask)
    pathnet.remove_mask(model)
    names = [n for n, _ in model.named_parameters()]
    assert "1.weight" in names
    assert pathnet.to_dag(model).n_params == 32
    assert torch.all(model[1].weight[~mask["1.weight"]] == 0)


# ------------------------------------------------------------------ bias masks
def small_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(5 * 4 * 4, 4),
    )  # fmt: skip


def mask_with_dead_units(model: nn.Module, seed: int = 0) -> Mask:
    """A random mask in which units 0 and 2 of every module keep no weight."""
    d = dict(random_mask(model, 0.5, seed))
    for keep in d.values():
        keep[[0, 2]] = False
        keep[1].view(-1)[0] = True  # unit 1 is alive everywhere
    return Mask(d)


def effective_biases(model: nn.Module) -> dict[str, torch.Tensor]:
    """The bias each masked module uses in its forward, by module path."""
    return {
        path: m.bias.detach().clone()
        for path, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    }


def test_bias_masks_mark_units_without_weights():
    model = small_convnet()
    mask = mask_with_dead_units(model)
    got = pathnet.mask.bias_masks(model, mask)
    assert set(got) == {"0.bias", "2.bias", "5.bias"}
    for name, keep in mask.items():
        want = [bool(keep[j].any()) for j in range(keep.shape[0])]  # unit j alive?
        assert got[name.replace("weight", "bias")].tolist() == want
        assert want[0] is False and want[1] is True
    no_bias = nn.Sequential(nn.Linear(3, 2, bias=False))
    assert pathnet.mask.bias_masks(no_bias, {"0.weight": torch.ones(2, 3, dtype=bool)}) == {}


@pytest.mark.parametrize("mode", ["parametrize", "prune", "hard"])
@pytest.mark.parametrize("mask_biases", [True, False])
def test_dead_unit_biases_stay_zero_through_sgd(mode, mask_biases):
    model = small_convnet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.bias.uniform_(0.5, 1.0)  # no bias starts at zero
    mask = mask_with_dead_units(model)
    before = effective_biases(model)
    pathnet.apply_mask(model, mask, mode=mode, mask_biases=mask_biases)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True
    )
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 4, (8,), generator=g)
    for _ in range(4):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model(x)  # prune mode recomputes module.bias in the forward pre-hook
    after = effective_biases(model)
    dead = pathnet.mask.bias_masks(model, mask)
    for path, b in after.items():
        keep = dead[f"{path}.bias"]
        if mask_biases:
            assert torch.all(b[~keep] == 0), path
        else:
            assert torch.all(b[~keep] != 0), path  # old behaviour: they train
            assert not torch.equal(b[~keep], before[path][~keep]), path
        assert not torch.equal(b[keep], before[path][keep]), path  # live biases train
    if mask_biases:  # the stored parameters are zero too (decay/momentum cannot revive them)
        for n, p in model.named_parameters():
            if p.dim() == 1:
                path = n.split(".")[0]
                assert torch.all(p.detach()[~dead[f"{path}.bias"]] == 0), n


@pytest.mark.parametrize("mode", ["parametrize", "prune", "hard"])
def test_remove_mask_frees_biases(mode):
    model = small_convnet()
    mask = mask_with_dead_units(model)
    pathnet.apply_mask(model, mask, mode=mode)
    pathnet.remove_mask(model)
    assert sorted(n for n, _ in model.named_parameters()) == sorted(
        n for n, _ in small_convnet().named_parameters()
    )
    assert not any(hasattr(m, "_pathnet_hard_bias_mask") for m in model.modules())
    assert model[5].bias.detach()[0] == 0  # baked in
    x = torch.randn(2, 3, 6, 6)
    model(x).sum().backward()
    assert model[5].bias.grad[0] == 2  # and free again (no ReLU after the last layer)


# ------------------------------------------------------------------ aliasing
@pytest.mark.parametrize("mode", ["parametrize", "prune", "hard"])
def test_apply_mask_never_shares_the_masks_tensors(mode):
    model_a, model_b = small_convnet(), small_convnet()
    mask = mask_with_dead_units(model_a)
    density, kept = mask.density, {n: t.clone() for n, t in mask.items()}
    pathnet.apply_mask(model_a, mask, mode=mode)
    pathnet.apply_mask(model_b, mask, mode=mode)
    # a later load_state_dict (a resume) writes every buffer, masks included, in place
    state = model_a.state_dict()
    for key, value in state.items():
        if key.endswith("mask"):
            state[key] = torch.ones_like(value)
    model_a.load_state_dict(state)
    for module in model_a.modules():  # in-place writes to whatever the model holds
        for attr in ("_pathnet_hard_mask", "_pathnet_hard_bias_mask"):
            if hasattr(module, attr):
                getattr(module, attr)[0].fill_(True)
    assert mask.density == density
    assert all(torch.equal(mask[n], kept[n]) for n in mask)
    assert pathnet.to_dag(model_b, (3, 6, 6)).to_mask() == mask  # the other model: untouched


def test_hard_mode_reapplies_the_mask_after_load_state_dict():
    model = small_convnet()
    mask = mask_with_dead_units(model)
    pathnet.apply_mask(model, mask, mode="hard")
    state = {k: torch.ones_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    for name, keep in mask.items():
        w = pathnet.prunable_parameters(model)[name].detach()
        assert torch.all(w[~keep] == 0) and torch.all(w[keep] == 1), name
    dead = pathnet.mask.bias_masks(model, mask)
    assert torch.all(model[0].bias.detach()[~dead["0.bias"]] == 0)


# ------------------------------------------------------------------ tied parameters
class TiedMLP(nn.Module):
    """``b.weight = a.weight``: one 100x100 tensor under two names."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b, self.out = nn.Linear(100, 100), nn.Linear(100, 100), nn.Linear(100, 3)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.b(torch.relu(self.a(x)))))


def tied_mask(model: nn.Module, density: float, seed: int = 0) -> Mask:
    d = dict(random_mask(model, density, seed))
    d["b.weight"] = d["a.weight"].clone()
    return Mask(d)


def test_tied_groups_are_found_by_storage():
    model = TiedMLP()
    assert pathnet.mask.tied_groups(model) == [("a.weight", "b.weight")]
    assert pathnet.mask.tied_groups(model, "bias") == []
    model.b.bias = model.a.bias
    assert pathnet.mask.tied_groups(model, "bias") == [("a.bias", "b.bias")]
    assert pathnet.mask.tied_groups(models.mlp([4, 3, 2])) == []


def test_unequal_masks_for_tied_weights_are_refused_naming_both():
    model = TiedMLP()
    differ = random_mask(model, 0.05)  # a.weight and b.weight drawn independently
    for call in (lambda: pathnet.apply_mask(model, differ, mode="hard"),
                 lambda: differ.check(model),
                 lambda: Mask(differ, tied=[("a.weight", "b.weight")])):  # fmt: skip
        with pytest.raises(ValueError, match=r"'a\.weight' and 'b\.weight' share one tensor"):
            call()
    assert not hasattr(model.a, "_pathnet_hard_mask")


@pytest.mark.parametrize("mode", ["parametrize", "prune", "hard"])
def test_tied_weights_keep_exactly_the_masks_zeros(mode):
    model = TiedMLP()
    mask = tied_mask(model, 0.05)
    pathnet.apply_mask(model, mask, mode=mode)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    x, y = torch.randn(16, 100), torch.randint(0, 3, (16,))
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    keep = mask["a.weight"]
    for module in (model.a, model.b):
        w = module.weight.detach()
        assert torch.equal(w != 0, keep), mode  # every kept weight alive, every other zero
    stored = pathnet.mask.core.stored_tensor(model.a, "weight")
    assert stored is pathnet.mask.core.stored_tensor(model.b, "weight")  # still tied
    assert torch.equal(stored.detach() != 0, keep)
    from_model = Mask.from_model(model)
    assert from_model == mask and from_model.tied == (("a.weight", "b.weight"),)
    assert from_model.n_total == 10_000 + 300  # the shared tensor counted once
    assert from_model.density == pytest.approx((int(keep.sum()) + int(mask["out.weight"].sum())) / 10_300)  # fmt: skip


def test_tied_masks_count_once_and_survive_files(tmp_path):
    model = TiedMLP()
    plain = tied_mask(model, 0.3)
    assert plain.n_total == 20_300  # without ties every name counts
    for suffix in ("npz", "pt"):
        path = plain.save(tmp_path / f"m.{suffix}")
        loaded = Mask.load(path, model=model)
        assert loaded == plain and loaded.tied == (("a.weight", "b.weight"),)
        assert loaded.n_total == 10_300
    tied = Mask(plain, tied=[("a.weight", "b.weight")])
    assert Mask.load(tied.save(tmp_path / "t.npz")).tied == tied.tied  # kept in .npz


def test_shared_bias_is_kept_where_any_unit_lives():
    model = TiedMLP()
    model.b.weight = nn.Parameter(model.a.weight.detach().clone())  # untie the weights
    model.b.bias = model.a.bias  # but share the bias
    d = dict(random_mask(model, 0.5))
    d["a.weight"][:3] = False  # units 0-2 dead in a
    d["b.weight"][:2] = False  # units 0-1 dead in b
    d["b.weight"][2] = True
    bias = pathnet.mask.bias_masks(model, Mask(d))
    assert bias["a.bias"][:3].tolist() == [False, False, True] and bool(bias["a.bias"][3:].all())
    assert torch.equal(bias["a.bias"], bias["b.bias"])
    pathnet.apply_mask(model, Mask(d), mode="hard")
    assert model.a.bias[:3].tolist() == [0.0, 0.0, model.b.bias[2].item()] != [0.0, 0.0, 0.0]


def test_hard_mask_holds_pruned_weights_at_zero_through_nan_and_inf():
    """Regression (found by test_hostile_train's mutated checkpoints): a product with the
    mask turned NaN/inf pruned entries into NaN; the hard mask fills them with 0."""
    import pathnet

    model = pathnet.models.mlp([4, 3, 2], seed=0)
    keep = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) < 0.5
            for n, p in pathnet.prunable_parameters(model).items()}  # fmt: skip
    with torch.no_grad():
        model[1].weight[~keep["1.weight"]] = float("nan")  # pruned entries already NaN
    pathnet.apply_mask(model, keep, mode="hard")
    assert torch.all(model[1].weight[~keep["1.weight"]] == 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    (model(torch.full((2, 4), float("inf"))).sum()).backward()  # inf/NaN gradients
    opt.step()
    for name, p in pathnet.prunable_parameters(model).items():
        assert torch.all(p[~keep[name]] == 0), name
