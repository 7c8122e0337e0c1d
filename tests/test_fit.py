"""Masked training: learning, zeros that stay zero, seeding, metrics files, bitwise resume."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

import pathnet
from pathnet import Mask, models
from pathnet.data import Dataset
from pathnet.train.fit import CHECKPOINT_NAME, CheckpointError, evaluate, fit, resolve_device


def separable(n: int, seed: int, dim: int = 10, classes: int = 4) -> tuple[torch.Tensor, ...]:
    """A linearly separable problem: label = argmax of a fixed random linear map."""
    g = torch.Generator().manual_seed(1234)
    w = torch.randn(dim, classes, generator=g)
    gx = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gx)
    return x, (x @ w).argmax(1)


TRAIN = separable(512, seed=0)
TEST = separable(256, seed=1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These networks are tiny: one thread is fastest, and immune to oversubscribed cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def net(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    """MLP 10-32-32-4 with optional dropout (so that seeding dropout matters)."""
    model = nn.Sequential(
        nn.Linear(10, 32),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )
    return models.kaiming_init(model, generator=torch.Generator().manual_seed(seed))


def random_mask(model: nn.Module, density: float, seed: int = 0) -> Mask:
    g = torch.Generator().manual_seed(seed)
    return Mask(
        {
            n: torch.rand(p.shape, generator=g) < density
            for n, p in pathnet.prunable_parameters(model).items()
        }
    )


FAST = {"epochs": 6, "batch_size": 64, "progress": False, "device": "cpu"}


def stored_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors that hold the weights, whatever the mask mode (orig, original or weight)."""
    out = {}
    for path, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if hasattr(module, "weight_orig"):
                out[path] = module.weight_orig
            elif hasattr(module, "parametrizations"):
                out[path] = module.parametrizations.weight.original
            else:
                out[path] = module.weight
    return out


@pytest.mark.parametrize("mode", ["hard", "parametrize", "prune"])
def test_masked_weights_stay_zero_and_the_model_learns(mode):
    model = net(0)
    mask = random_mask(model, 0.4)
    res = fit(model, mask, TRAIN, TEST, seed=0, mask_mode=mode, **FAST)
    for name, w in pathnet.prunable_parameters(model).items():
        assert bool((w[~mask[name]] == 0).all()), name
    for path, w in stored_weights(model).items():
        assert bool((w.detach()[~mask[f"{path}.weight"]] == 0).all()), path
        assert bool((w.detach()[mask[f"{path}.weight"]] != 0).any())
    assert res.completed and res.epochs_completed == 6 and len(res.history) == 6
    assert res.final["test_acc"] > 0.8  # chance is 0.25
    loss, acc = evaluate(model, TEST)
    assert acc == pytest.approx(res.final["test_acc"])
    assert loss == pytest.approx(res.final["test_loss"])


def test_dense_training_learns():
    res = fit(net(0), None, TRAIN, TEST, seed=0, **FAST)
    assert res.final["test_acc"] > 0.85
    assert res["final"] == res.final and res["history"] is res.history  # dict-style too
    assert res.test_acc == res.final["test_acc"] and json.dumps(res.to_dict())
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_fit_keeps_the_initial_weights_and_applies_the_mask():
    model = net(3)
    before = {k: v.detach().clone() for k, v in pathnet.prunable_parameters(model).items()}
    mask = random_mask(model, 0.3, seed=1)
    fit(model, mask, TRAIN, epochs=1, lr=1e-12, weight_decay=0.0, seed=0, progress=False)
    for k, w in pathnet.prunable_parameters(model).items():
        torch.testing.assert_close(w.detach(), before[k] * mask[k], rtol=0, atol=1e-9)


def test_default_recipe_schedule():
    res = fit(net(0), None, TRAIN, epochs=4, batch_size=128, seed=0, progress=False)
    assert [r["lr"] for r in res.history] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert all(r["test_acc"] is None for r in res.history)


def test_same_seed_same_result_other_seed_differs():
    runs = [fit(net(0, dropout=0.3), None, TRAIN, seed=s, **FAST).model for s in (5, 5, 6)]
    a, b, c = (dict(m.state_dict()) for m in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fit_leaves_global_random_state_alone():
    model = net(0, dropout=0.3)  # building it draws from the global generator
    torch.manual_seed(99)
    np.random.seed(99)  # noqa: NPY002
    random.seed(99)
    expect = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    torch.manual_seed(99)
    np.random.seed(99)  # noqa: NPY002
    random.seed(99)
    fit(model, None, TRAIN, epochs=1, seed=0, progress=False)
    got = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(expect[0], got[0])
    assert np.array_equal(expect[1], got[1]) and expect[2] == got[2]


def assert_same_state(m1: nn.Module, m2: nn.Module) -> None:
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert set(s1) == set(s2)
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k


def strip_time(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


@pytest.mark.parametrize("mode", ["hard", "parametrize", "prune"])
def test_resume_is_bitwise_identical(tmp_path, mode):
    opts = {**FAST, "epochs": 3, "seed": 11, "mask_mode": mode}
    mask = random_mask(net(0), 0.5)
    full = fit(net(0, dropout=0.2), mask, TRAIN, TEST, **opts)

    first = fit(net(0, dropout=0.2), mask, TRAIN, TEST, out_dir=tmp_path, stop_after=2, **opts)
    assert not first.completed and first.epochs_completed == 2
    # A fresh process would rebuild the model the same way; its weights are replaced.
    second = fit(net(0, dropout=0.2), mask, TRAIN, TEST, out_dir=tmp_path, resume=True, **opts)
    assert second.resumed_from == 2 and second.epochs_run == 1 and second.completed
    assert_same_state(full.model, second.model)
    assert strip_time(full.history) == strip_time(second.history)


def test_resume_after_keyboard_interrupt(tmp_path):
    opts = {**FAST, "epochs": 3, "seed": 2}
    full = fit(net(1, dropout=0.2), None, TRAIN, **opts)

    def interrupt(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(net(1, dropout=0.2), None, TRAIN, out_dir=tmp_path, callback=interrupt, **opts)
    resumed = fit(net(1, dropout=0.2), None, TRAIN, out_dir=tmp_path, resume=True, **opts)
    assert resumed.resumed_from == 2
    assert_same_state(full.model, resumed.model)

    # Resuming a finished run trains nothing and hands back its weights.
    again = fit(net(7), None, TRAIN, out_dir=tmp_path, resume=True, **opts)
    assert again.epochs_run == 0 and again.completed
    assert_same_state(full.model, again.model)


def test_metrics_files(tmp_path):
    res = fit(net(0), None, TRAIN, TEST, out_dir=tmp_path, seed=0, **{**FAST, "epochs": 3})
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "time_s",
    }
    assert float(rows[-1]["test_acc"]) == pytest.approx(res.final["test_acc"])
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["completed"] and doc["epochs_completed"] == 3
    assert doc["config"]["seed"] == 0 and doc["config"]["batch_size"] == 64
    assert len(doc["history"]) == 3 and doc["history"][0]["lr"] == pytest.approx(0.1)
    assert (tmp_path / CHECKPOINT_NAME).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, damage):
    opts = {**FAST, "epochs": 2, "seed": 0}
    fit(net(0), None, TRAIN, out_dir=tmp_path, stop_after=1, **opts)
    path = tmp_path / CHECKPOINT_NAME
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match=r"checkpoint|pathnet"):
        fit(net(0), None, TRAIN, out_dir=tmp_path, resume=True, **opts)
    # Not silently restarted: the damaged file is still there.
    assert path.exists()


def test_resume_with_other_settings_is_refused(tmp_path):
    fit(net(0), None, TRAIN, out_dir=tmp_path, stop_after=1, **{**FAST, "epochs": 2, "seed": 0})
    with pytest.raises(ValueError, match="other settings"):
        fit(net(0), None, TRAIN, out_dir=tmp_path, resume=True, **{**FAST, "epochs": 2, "seed": 1})
    with pytest.raises(ValueError, match="mask"):
        fit(
            net(0),
            random_mask(net(0), 0.5),
            TRAIN,
            out_dir=tmp_path,
            resume=True,
            **{**FAST, "epochs": 2, "seed": 0},
        )


def test_dataset_input_and_augmentation():
    x, y = TRAIN
    images = x.reshape(-1, 1, 2, 5).contiguous()
    ds = Dataset(
        images=images, labels=y, num_classes=4, name="toy", split="train", input_shape=(1, 2, 5)
    )
    tx, ty = TEST
    test = Dataset(
        images=tx.reshape(-1, 1, 2, 5).contiguous(),
        labels=ty,
        num_classes=4,
        name="toy",
        split="test",
        input_shape=(1, 2, 5),
    )
    model = models.mlp([10, 32, 4], input_shape=(1, 2, 5), seed=0)
    res = fit(model, None, ds, test, seed=0, **FAST)
    assert res.final["test_acc"] > 0.8
    a = fit(models.mlp([10, 8, 4], seed=0), None, ds, augment=True, seed=0, **{**FAST, "epochs": 1})
    b = fit(models.mlp([10, 8, 4], seed=0), None, ds, augment=True, seed=0, **{**FAST, "epochs": 1})
    assert_same_state(a.model, b.model)


def test_amp_is_ignored_on_cpu_with_a_warning():
    with pytest.warns(RuntimeWarning, match="amp"):
        res = fit(net(0), None, TRAIN, amp=True, seed=0, **{**FAST, "epochs": 1})
    assert res.device == "cpu"


def test_bad_arguments():
    x, y = TRAIN
    with pytest.raises(ValueError, match="labels"):
        fit(net(0), None, (x, y[:-1]), **FAST)
    with pytest.raises(ValueError, match="augment"):
        fit(net(0), None, TRAIN, augment=True, **FAST)
    with pytest.raises(ValueError, match="epochs"):
        fit(net(0), None, TRAIN, epochs=0, progress=False)
    with pytest.raises(ValueError, match="mask_mode"):
        fit(net(0), None, TRAIN, mask_mode="soft", **FAST)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not fit"):
        fit(net(0), random_mask(models.mlp([10, 4]), 0.5), TRAIN, **FAST)
    with pytest.raises(TypeError):
        fit(net(0), None, [1, 2, 3], **FAST)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out_dir"):
        fit(net(0), None, TRAIN, resume=True, **FAST)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("gpu0")


def test_seed_none_is_recorded_and_replayable():
    a = fit(net(0), None, TRAIN, seed=None, **{**FAST, "epochs": 1})
    b = fit(net(0), None, TRAIN, seed=a.seed, **{**FAST, "epochs": 1})
    assert_same_state(a.model, b.model)
