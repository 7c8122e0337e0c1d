"""Hostile and awkward inputs to training: tampered checkpoints, masks smuggled in through a
resume, short schedules, extended runs, IMP's progress (issues 16.6-16.8 and 15.8)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pathnet
from pathnet import Mask, models
from pathnet.cli import main
from pathnet.train.checkpoint import CHECKPOINT_NAME, CheckpointError
from pathnet.train.config import TrainConfig
from pathnet.train.fit import fit
from tests.strategies import write_fashion

OPTS = {"batch_size": 16, "seed": 0, "progress": False, "device": "cpu"}


def data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 6, generator=torch.Generator().manual_seed(0))
    return x, (x[:, 0] > 0).long()


def net() -> torch.nn.Module:
    return models.mlp([6, 8, 2], seed=0)


def half_mask(model: torch.nn.Module) -> Mask:
    g = torch.Generator().manual_seed(3)
    return Mask(
        {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in pathnet.prunable_parameters(model).items()}
    )  # fmt: skip


def effective(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights the model computes with (through any parametrization)."""
    mods = dict(model.named_modules())
    out = {}
    for name in half_mask(net()):
        module = mods[name.rsplit(".", 1)[0]]
        out[name] = module.weight.detach().clone()
    return out


def tamper(path: Path, change) -> None:
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


# ------------------------------------------------------------------ 16.6 / 16.7: the mask wins
@pytest.mark.parametrize("mode", ["hard", "parametrize", "prune"])
def test_a_resume_never_revives_pruned_weights(tmp_path, mode):
    mask = half_mask(net())
    before = {k: v.clone() for k, v in mask.items()}
    fit(net(), mask, data(), epochs=3, mask_mode=mode, out_dir=tmp_path, stop_after=1, **OPTS)

    def revive(state):  # every mask buffer all ones, every stored weight non-zero
        for key, value in state["model"].items():
            if (key.endswith("mask") and value.dtype == torch.bool) or key.endswith(".0.mask"):
                value.fill_(True)
            elif key.endswith("weight_mask"):
                value.fill_(1.0)
            elif value.is_floating_point() and value.dim() == 2:
                value[value == 0] = 1.0

    tamper(tmp_path / CHECKPOINT_NAME, revive)
    model = net()
    fit(model, mask, data(), epochs=3, mask_mode=mode, out_dir=tmp_path, resume=True, **OPTS)
    for name, w in effective(model).items():
        assert torch.all(w[~before[name]] == 0), (mode, name)
    assert all(torch.equal(mask[k], before[k]) for k in before)  # the caller's mask untouched


# ------------------------------------------------------------------ 16.7: structure
def _set(key, value):
    def change(state):
        state[key] = value

    return change


def _config(key, value):
    def change(state):
        state["config"][key] = value

    return change


def _drop(key):
    def change(state):
        del state[key]

    return change


def _rng(state):
    state["rng"]["torch"] = "not a state"


def _rng_numpy(state):
    state["rng"]["numpy"] = {"bit_generator": 7}


@pytest.mark.parametrize(
    "change",
    [
        _set("epoch", 999999),  # above epochs: once gave epochs_run=-999999
        _set("epoch", 10**40),
        _set("epoch", -1),
        _set("epoch", "1"),
        _set("step", 2**70),
        _set("config", [1, 2]),
        _config("epochs", 10**40),
        _config("seed", "zero"),
        _config("milestones", "80,120"),
        _set("history", {"a": 1}),
        _set("history", []),
        _set("rng", 5),
        _set("model", [1, 2]),
        _set("model", {"0.weight": "x"}),
        _set("optimizer", "x"),
        _set("version", 2**64),
        _set("version", float("inf")),
        _drop("rng"),
        _drop("config"),
        _rng,
        _rng_numpy,
    ],
)
def test_tampered_checkpoints_are_checkpoint_errors(tmp_path, change):
    fit(net(), None, data(), epochs=2, out_dir=tmp_path, stop_after=1, **OPTS)
    path = tmp_path / CHECKPOINT_NAME
    tamper(path, change)
    damaged = path.read_bytes()
    with pytest.raises(CheckpointError, match=CHECKPOINT_NAME):
        fit(net(), None, data(), epochs=2, out_dir=tmp_path, resume=True, **OPTS)
    assert path.read_bytes() == damaged


# ------------------------------------------------------------------ 16.8: short schedules
@pytest.mark.parametrize(
    "epochs, milestones",
    [(1, ()), (2, (1,)), (3, (1, 2)), (4, (2, 3)), (5, (2, 3)), (8, (4, 6)), (160, (80, 120))],
)
def test_default_milestones(epochs, milestones):
    assert TrainConfig(epochs=epochs).resolved_milestones() == milestones


def test_two_epochs_never_drop_the_lr_100x_at_once():
    res = fit(net(), None, data(), epochs=2, **OPTS)
    assert [r["lr"] for r in res.history] == pytest.approx([0.1, 0.01])


# ------------------------------------------------------------------ 15.8: extending a run
def test_a_finished_run_can_be_extended(tmp_path):
    first = fit(net(), None, data(), epochs=1, out_dir=tmp_path, **OPTS)
    assert first.completed
    more = fit(net(), None, data(), epochs=2, out_dir=tmp_path, resume=True, **OPTS)
    assert more.resumed_from == 1 and more.epochs_run == 1 and more.completed
    fresh_model = net()
    fresh = fit(fresh_model, None, data(), epochs=2, **OPTS)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in fresh.history]
    assert [{k: v for k, v in r.items() if k != "time_s"} for r in more.history] == strip
    for k, v in fresh_model.state_dict().items():
        assert torch.equal(more.model.state_dict()[k], v), k

    # Longer with a new milestone ahead of the completed epochs: the lr follows it.
    longer = fit(net(), None, data(), epochs=6, milestones=[1, 3], out_dir=tmp_path, resume=True,
                 **OPTS)  # fmt: skip
    assert [r["lr"] for r in longer.history] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001, 0.001, 0.001]
    )


def test_extending_refuses_what_would_change_the_past(tmp_path):
    fit(net(), None, data(), epochs=4, out_dir=tmp_path, **OPTS)
    with pytest.raises(ValueError, match="extended, not shortened"):
        fit(net(), None, data(), epochs=3, out_dir=tmp_path, resume=True, **OPTS)
    with pytest.raises(ValueError, match="already trained"):
        fit(net(), None, data(), epochs=8, milestones=[1], out_dir=tmp_path, resume=True, **OPTS)


def test_cli_resume_extends_epochs(tmp_path, capsys):
    root = write_fashion(tmp_path / "data" / "fashion-mnist", 30).parent
    base = ["train", "mlp", "--data-root", root, "--batch-size", "10", "--device", "cpu",
            "--out", tmp_path / "run"]  # fmt: skip
    assert main([str(a) for a in [*base, "--epochs", "1"]]) == 0
    assert main([str(a) for a in [*base, "--epochs", "2", "--resume"]]) == 0
    out = capsys.readouterr().out
    assert "after 2 epochs" in out


def test_cli_imp_prints_its_rounds(tmp_path, capsys):
    root = write_fashion(tmp_path / "data" / "fashion-mnist", 30).parent
    argv = ["imp", "mlp", "--density", "0.6", "--data-root", root, "--epochs", "1",
            "--batch-size", "10", "--device", "cpu", "--out", tmp_path / "imp"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    for k in (1, 2, 3):  # densities 0.8, 0.64, then 0.6
        assert f"imp round {k}/3: training at density" in out
        assert f"round {k}/3: density" in out
    assert "round 3/3: density 60.00" in out


# ------------------------------------------------------------------ 16: property tests
def _leaves(tree, path=()):
    """Paths to every value in a checkpoint (into dicts, lists and tuples)."""
    yield path
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _leaves(v, (*path, i))


def _replace(tree, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(tree, dict):
        return {**tree, head: _replace(tree[head], rest, value)}
    items = list(tree)
    items[head] = _replace(items[head], rest, value)
    return type(tree)(items) if isinstance(tree, tuple) else items


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([torch.zeros(3), torch.ones(2, 2, dtype=torch.bool), torch.tensor(7)]),
)


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    fit(net(), half_mask(net()), data(), epochs=2, momentum=0.9, out_dir=folder, stop_after=1,
        **OPTS)  # fmt: skip
    return folder / CHECKPOINT_NAME


def _resume_only_refuses(folder: Path) -> None:
    """Resuming either works or raises CheckpointError (or the 'other settings' refusal)."""
    try:
        res = fit(net(), half_mask(net()), data(), epochs=2, out_dir=folder, resume=True, **OPTS)
    except CheckpointError:
        return
    except ValueError as exc:
        assert "other settings" in str(exc), exc
        assert type(exc) is ValueError
        return
    assert res.epochs_completed == 2 and 0 <= res.epochs_run <= 1
    for name, w in pathnet.prunable_parameters(res.model).items():
        assert torch.all(w[~half_mask(net())[name]] == 0)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_mutated_field_is_refused_or_harmless(tmp_path_factory, valid_checkpoint, data):
    state = torch.load(valid_checkpoint, weights_only=True)
    paths = list(_leaves(state))
    path = data.draw(st.sampled_from(paths[1:]), label="path")
    junk = data.draw(JUNK, label="junk")
    folder = tmp_path_factory.mktemp("mut")
    torch.save(_replace(state, path, junk), folder / CHECKPOINT_NAME)
    _resume_only_refuses(folder)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_bytes_in_a_checkpoint_are_refused_or_harmless(tmp_path_factory, valid_checkpoint,
                                                              data):  # fmt: skip
    raw = bytearray(valid_checkpoint.read_bytes())
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        i = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[i] = data.draw(st.integers(0, 255), label="byte")
    if data.draw(st.booleans(), label="cut"):
        raw = raw[: data.draw(st.integers(0, len(raw)), label="length")]
    folder = tmp_path_factory.mktemp("bytes")
    (folder / CHECKPOINT_NAME).write_bytes(bytes(raw))
    _resume_only_refuses(folder)
