"""Masks travel: torch's ``.pt`` form, ``torch.nn.utils.prune`` in and out (issue 15.4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import pathnet
from pathnet import Mask, MaskFileError, models

MODES = ["parametrize", "prune", "hard"]


def small_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(5 * 4 * 4, 4),
    )  # fmt: skip


def torch_pruned(model: nn.Module, amount: float = 0.6, seed: int = 0) -> nn.Module:
    """``model`` pruned layer by layer with torch's own random_unstructured."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            prune.random_unstructured(m, "weight", amount=amount)
    return model


def test_pt_file_is_a_plain_dict_of_bool_tensors(tmp_path):
    model = models.mlp([6, 5, 4], seed=0)
    mask = pathnet.select.select("random", model, 0.3, seed=0)
    path = mask.save(tmp_path / "m.pt")
    plain = torch.load(path, weights_only=True)
    assert type(plain) is dict and list(plain) == list(mask)
    assert all(t.dtype == torch.bool and torch.equal(t, mask[n]) for n, t in plain.items())
    back = Mask.load(path, model=model)
    assert back == mask and back.meta == {}  # meta is kept only in .npz
    assert Mask.load(mask.save(tmp_path / "m.pth")) == mask
    assert Mask.load(mask.save(tmp_path / "m.npz")).meta == mask.meta  # .npz as before
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["m.npz", "m.pt", "m.pth"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64,
                                   torch.int32, torch.uint8, torch.int8])  # fmt: skip
def test_load_accepts_zero_one_numbers(tmp_path, dtype):
    keep = torch.rand(5, 6, generator=torch.Generator().manual_seed(0)) < 0.5
    torch.save({"1.weight": keep.to(dtype), "3.weight": torch.ones(4, 5, dtype=dtype)},
               tmp_path / "m.pt")  # fmt: skip
    mask = Mask.load(tmp_path / "m.pt", model=models.mlp([6, 5, 4]))
    assert torch.equal(mask["1.weight"], keep) and bool(mask["3.weight"].all())


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (torch.full((4, 5), 0.5), r"'3\.weight' holds values other than 0 and 1 \(for example 0\.5\)"),
        (torch.full((4, 5), 2), r"'3\.weight' holds values other than 0 and 1 \(for example 2\)"),
        (torch.full((4, 5), float("nan")), r"'3\.weight' holds values other than 0 and 1"),
        (torch.full((4, 5), -1.0), r"'3\.weight' holds values other than 0 and 1"),
        (torch.ones(4, 5, dtype=torch.complex64), r"'3\.weight' must be boolean or 0/1"),
    ],
    ids=["half", "two", "nan", "minus-one", "complex"],
)  # fmt: skip
def test_load_refuses_other_numbers_naming_the_parameter(tmp_path, value, needle):
    torch.save({"1.weight": torch.ones(5, 6), "3.weight": value}, tmp_path / "m.pt")
    with pytest.raises(MaskFileError, match=needle) as info:
        Mask.load(tmp_path / "m.pt")
    assert "m.pt" in str(info.value)


@pytest.mark.parametrize(
    "make", [lambda: models.lenet5(seed=0), small_convnet], ids=["lenet5", "convnet"]
)
def test_round_trip_with_torch_prune(make):
    pruned = torch_pruned(make())
    mask = Mask.from_model(pruned)
    for path, m in pruned.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            assert torch.equal(mask[f"{path}.weight"], m.weight_mask.bool())
    x = torch.randn(3, *getattr(pruned, "input_shape", (3, 6, 6)))
    want = pruned(x)
    for mode in MODES:
        fresh = make()  # the same initial weights as `pruned` had
        pathnet.apply_mask(fresh, mask, mode=mode, mask_biases=False)
        assert Mask.from_model(fresh) == mask, mode
        torch.testing.assert_close(fresh(x), want, rtol=0, atol=0)


def test_from_model_reads_global_pruning_and_leaves_unpruned_layers_whole():
    model = small_convnet()
    params = [(model[0], "weight"), (model[2], "weight")]  # not the Linear
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=0.8)
    prune.l1_unstructured(model[0], "weight", amount=0.5)  # a PruningContainer on top
    mask = Mask.from_model(model)
    assert torch.equal(mask["0.weight"], model[0].weight_mask.bool())
    assert torch.equal(mask["2.weight"], model[2].weight_mask.bool())
    assert bool(mask["5.weight"].all())
    assert mask["0.weight"].sum() < 0.2 * 162
    model[0].weight_mask.fill_(1)  # the Mask holds copies
    assert mask["0.weight"].sum() < 0.2 * 162


def test_prune_mode_state_dict_is_torch_prune_state_dict():
    """``mode="prune"`` leaves what ``torch.nn.utils.prune`` itself leaves."""
    model = small_convnet()
    mask = Mask.from_model(torch_pruned(small_convnet()))
    pathnet.apply_mask(model, mask, mode="prune", mask_biases=False)
    theirs = small_convnet()
    for path, m in theirs.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            prune.custom_from_mask(m, "weight", mask[f"{path}.weight"].float())
    ours, expected = model.state_dict(), theirs.state_dict()
    assert list(ours) == list(expected)
    assert {k for k in ours if k.endswith(("weight_orig", "weight_mask"))} == {
        f"{i}.weight_{s}" for i in (0, 2, 5) for s in ("orig", "mask")
    }
    for key in ours:
        assert ours[key].dtype == expected[key].dtype, key
    torch.testing.assert_close(ours["0.weight_mask"], expected["0.weight_mask"])
    # a torch user loads it into their own pruned model and removes the pruning as usual
    theirs.load_state_dict(ours)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(theirs(x), model(x), rtol=0, atol=0)
    for m in (theirs[0], theirs[2], theirs[5]):
        prune.remove(m, "weight")
    assert Mask.from_model(theirs).density == 1  # nothing held any more: all kept
    for i in (0, 2, 5):  # but the pruned weights are baked in as zeros
        assert bool((theirs[i].weight[~mask[f"{i}.weight"]] == 0).all())


def test_prune_mode_with_bias_masks_uses_torch_names_for_biases():
    model = small_convnet()
    keep = dict(Mask.from_model(torch_pruned(small_convnet())))
    keep["0.weight"][1] = False  # unit 1 of the first conv is dead
    pathnet.apply_mask(model, Mask(keep), mode="prune")
    state = model.state_dict()
    assert "0.bias_orig" in state and state["0.bias_mask"].tolist()[1] == 0.0
    assert model[0].bias[1] == 0 and state["0.bias_orig"][1] == 0


def test_pt_file_with_an_expanded_view_is_refused(tmp_path):
    """1 stored byte viewed as 10**9 elements must not be materialised."""
    torch.save({"w": torch.ones(1, dtype=torch.bool).expand(10**9)}, tmp_path / "m.pt")
    assert (tmp_path / "m.pt").stat().st_size < 10_000
    with pytest.raises(MaskFileError, match=r"'w' in .*m\.pt.* not a dense tensor with its own"):
        Mask.load(tmp_path / "m.pt")


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        ([torch.ones(2, dtype=torch.bool)], "holds a list, not a dict"),
        ({"w": {"nested": torch.ones(2)}}, "not a dict of parameter name -> tensor"),
        ({1: torch.ones(2)}, "not a dict of parameter name -> tensor"),
        ({"w": torch.ones(3).to_sparse()}, "not a dense tensor"),
    ],
    ids=["list", "nested", "int-key", "sparse"],
)
def test_pt_files_of_other_shapes_are_refused(tmp_path, obj, needle):
    torch.save(obj, tmp_path / "m.pt")
    with pytest.raises(MaskFileError, match=needle):
        Mask.load(tmp_path / "m.pt")


def test_pt_file_with_code_is_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"w": Evil()}, tmp_path / "m.pt")
    with pytest.raises(MaskFileError, match=r"m\.pt"):
        Mask.load(tmp_path / "m.pt")
    assert not marker.exists()
