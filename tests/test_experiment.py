"""``pathnet experiment``: the named experiments, their settings and reports.

The ``--quick`` run of every experiment needs the real Fashion-MNIST (Debian's
``dataset-fashion-mnist``; CI installs it) and is skipped without it.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch

from pathnet.cli import main
from pathnet.data import Dataset, pad_images
from pathnet.experiments.config import Trial
from pathnet.experiments.named import claim_line, experiments, mean_std, run_experiment
from pathnet.train.fit import fit


def _csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _fmnist_or_skip() -> None:
    from pathnet.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion-mnist", "test")
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {str(exc).splitlines()[0]}")


def test_list_names_every_experiment(capsys):
    assert main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("learn-fast", "generalize", "sanity", "throughput", "dst"):
        assert name in out and name in experiments()


def test_unknown_experiment_and_profile_conflict(capsys):
    assert main(["experiment", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert main(["experiment", "sanity", "--quick", "--recipe", "paper"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    with pytest.raises(ValueError, match="profile must be one of"):
        run_experiment("sanity", "unused", profile="fast")


def test_quick_runs_every_experiment_and_resumes(tmp_path, capsys):
    """The CI run of ``pathnet experiment all --quick``: reports written, rerun skips all."""
    _fmnist_or_skip()
    n = torch.get_num_threads()
    try:
        assert main(["experiment", "all", "--quick", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(n)
    out = capsys.readouterr().out
    for name in ("learn-fast", "generalize", "sanity", "throughput", "dst"):
        assert f"{name}: wrote" in out
        assert (tmp_path / name / "report.md").is_file()
    rows = _csv(tmp_path / "learn-fast" / "steps.csv")
    assert {r["method"] for r in rows} == {"dense", "phew", "random"}
    assert all(math.isfinite(float(r["train_loss"])) for r in rows)
    sanity = _csv(tmp_path / "sanity" / "summary.csv")
    assert {(r["method"], r["sanity"]) for r in sanity} == {
        (m, c) for m in ("phew", "magnitude") for c in ("shuffle", "reinit_kaiming", "invert")
    }
    results = _csv(tmp_path / "generalize" / "results.csv")
    assert len(results) == 6 and all(r["finished"] == "True" for r in results)
    assert "generalizes well at 10%" in (tmp_path / "generalize" / "report.md").read_text()
    assert (tmp_path / "learn-fast" / "loss_first_epoch.png").stat().st_size > 1000
    # dynamic sparse training through the sweep runner: every rule ran, density exact
    dst = _csv(tmp_path / "dst" / "results.csv")
    assert {r["variant"] for r in dst} == {
        "static",
        "set",
        "rigl",
        "phew-regrow",
        "phew-dead-units",
    } and all(r["finished"] == "True" for r in dst)
    assert all(int(r["updates"]) > 0 for r in dst if r["variant"] != "static")
    log = _csv(tmp_path / "dst" / "log.csv")
    start = {(r["start"], r["variant"]): r["density_now"] for r in log if r["step"] == "0"}
    assert all(r["density_now"] == start[(r["start"], r["variant"])] for r in log)
    # a second run finds every trial finished
    assert main(["experiment", "generalize", "--quick", "--out", str(tmp_path)]) == 0
    assert "6 finished before, 0 to run" in capsys.readouterr().out


def test_trial_settings_keep_old_hashes_and_check_values():
    # hashes of trials written before pad/sanity/log_every/dst existed (measured on the
    # previous commit): existing sweep folders keep their names
    assert Trial.from_settings({"method": "phew", "density": 0.1}).hash == "5c9d7bcc1a43"
    old = {"method": "snip", "density": 0.05, "model": "lenet5", "epochs": 3,
           "train_subset": 500, "seed": 2, "eval_batch_size": 512}  # fmt: skip
    assert Trial.from_settings(old).hash == "1aade29c40f9"
    t = Trial.from_settings({"method": "phew", "density": 0.1, "sanity": "shuffle", "pad": 2})
    assert t.hash != Trial.from_settings({"method": "phew", "density": 0.1}).hash
    assert t.name.startswith("phew-shuffle-d0.1-s0-")
    # the shuffle's mask is its own, the re-init's the method's
    base = Trial.from_settings({"method": "phew", "density": 0.1})
    reinit = Trial.from_settings({"method": "phew", "density": 0.1, "sanity": "reinit_liu"})
    assert reinit.mask_hash == base.mask_hash != t.mask_hash
    for bad, match in (
        ({"sanity": "flip"}, "sanity must be one of"),
        ({"sanity": "invert", "method": "random"}, "has no inverted ranking"),
        ({"sanity": "shuffle", "method": "dense"}, "needs a mask"),
        ({"pad": -1}, "pad must be an integer >= 0"),
        ({"log_every": 0}, "log_every must be an integer >= 1"),
    ):
        with pytest.raises(ValueError, match=match):
            Trial.from_settings({"method": "phew", "density": 0.1, **bad})


def test_fit_log_every_windows_and_resume(tmp_path):
    import pathnet

    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=g)
    y = (x[:, 1] > 0).long()
    model = pathnet.models.mlp([4, 8, 2], seed=0)
    res = fit(model, None, (x, y), epochs=3, seed=1, progress=False, log_every=3, batch_size=32)
    # 7 batches per epoch: windows of 3, 3 and 1 steps
    assert [r["step"] for r in res.steps[:3]] == [3, 6, 7]
    assert [r["samples"] for r in res.steps[:3]] == [96, 192, 200]
    assert len(res.steps) == 9 and res.steps[-1]["epoch"] == 3
    # the window means weigh batches by size: the per-epoch mean is their weighted mean
    first = res.steps[:3]
    mean = sum(r["train_loss"] * n for r, n in zip(first, (96, 96, 8), strict=True)) / 200
    assert mean == pytest.approx(res.history[0]["train_loss"], rel=1e-6)
    # interrupted and resumed: the same rows
    fit(pathnet.models.mlp([4, 8, 2], seed=0), None, (x, y), epochs=3, seed=1, progress=False,
        log_every=3, batch_size=32, out_dir=tmp_path, stop_after=1)  # fmt: skip
    again = fit(pathnet.models.mlp([4, 8, 2], seed=0), None, (x, y), epochs=3, seed=1,
                progress=False, log_every=3, batch_size=32, out_dir=tmp_path, resume=True)  # fmt: skip
    assert again.steps == res.steps
    assert (tmp_path / "steps.csv").read_text().startswith("step,epoch,samples,train_loss")
    with pytest.raises(ValueError, match="log_every must be a positive integer"):
        fit(model, None, (x, y), epochs=1, progress=False, log_every=0)


def test_pad_images_pads_with_black():
    images = torch.rand(3, 1, 28, 28)
    mean, std = 0.2860, 0.3530
    ds = Dataset((images - mean) / std, torch.zeros(3, dtype=torch.long), 10, "fashion-mnist",
                 "test", (1, 28, 28), mean=(mean,), std=(std,))  # fmt: skip
    out = pad_images(ds, 2)
    assert out.input_shape == (1, 32, 32)
    raw = out.images * std + mean  # back to pixel values
    reference = torch.nn.functional.pad(images, (2, 2, 2, 2))
    assert torch.allclose(raw, reference, atol=1e-6)
    with pytest.raises(ValueError, match="pixels must be an integer >= 0"):
        pad_images(ds, -1)


def test_claim_line_verdicts():
    assert "**supported**" in claim_line("c", "a", [0.9, 0.91], "b", [0.5, 0.52])
    assert "fewer than 2 seeds" in claim_line("c", "a", [0.9], "b", [0.5])
    assert "**contradicted**" in claim_line("c", "a", [0.5, 0.51], "b", [0.9, 0.92])
    assert "within the seed spread" in claim_line("c", "a", [0.5, 0.7], "b", [0.55, 0.65])
    assert "not measured" in claim_line("c", "a", [], "b", [0.5])
    low = claim_line("c", "a", [1.0, 1.1], "b", [2.0, 2.1], higher_is_better=False, scale=1.0)
    assert "**supported**" in low
    assert mean_std([1.0]) == (1.0, 0.0, 1)
