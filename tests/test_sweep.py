"""Sweeps: configuration and hashing, executors, skip and resume after a kill, collect."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pathnet.cli import _add_sweep_parsers as add_parsers
from pathnet.cli import main as sweep_main
from pathnet.experiments import SweepConfig, Trial, collect, load_config, run_sweep
from pathnet.experiments.sweep import trial_states

ROOT = Path(__file__).resolve().parents[1]


def _fashion_mnist() -> bool:
    from pathnet.data import DatasetError, find_dataset

    try:
        find_dataset("fashion-mnist", "train")
        find_dataset("fashion-mnist", "test")
    except DatasetError:
        return False
    return True


needs_fmnist = pytest.mark.skipif(not _fashion_mnist(), reason="Fashion-MNIST not found")


def _two_methods() -> list[str]:
    """Two cheap selection methods that this checkout registers."""
    from pathnet.select.registry import METHODS, _load_builtin_methods

    _load_builtin_methods()
    found = [m for m in ("random", "magnitude", "synflow", "phew", "random_paths") if m in METHODS]
    assert len(found) >= 2, sorted(METHODS)
    return found[:2]


def quick_sweep(path: Path, *, epochs: int = 1, train_subset: int = 500, seeds: int = 2,
                densities: tuple[float, ...] = (0.1, 0.02), methods: list[str] | None = None,
                ) -> Path:  # fmt: skip
    """Write a small Fashion-MNIST MLP sweep file; 2 methods x densities x seeds."""
    methods = methods or _two_methods()
    lines = [
        "[grid]",
        f"method = {json.dumps(methods)}",
        f"density = {json.dumps(list(densities))}",
        f"seed = {json.dumps(list(range(seeds)))}",
        "[fixed]",
        'model = "mlp"',
        'dataset = "fashion-mnist"',
        f"epochs = {epochs}",
        "batch_size = 100",
        f"train_subset = {train_subset}",
        "test_subset = 500",
    ]
    for m in methods:
        if m.startswith("synflow"):
            lines += [f"[method_options.{m}]", "iterations = 10"]
    path.write_text("\n".join(lines) + "\n")
    return path


def results(sweep_dir: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in (sweep_dir / "trials").glob("*/result.json")
    }


def starts(folder: Path) -> int:
    lines = (folder / "runs.jsonl").read_text().splitlines()
    return sum(json.loads(x)["event"] == "start" for x in lines)


# ------------------------------------------------------------------ configuration
def test_trial_hash_is_canonical_and_names_the_folder() -> None:
    a = Trial.from_settings({"method": "phew", "density": 0.1, "lr": 1, "dataset": "fmnist"})
    b = Trial.from_settings(
        {"dataset": "fashion-mnist", "lr": 1.0, "density": 0.1, "method": "PHEW", "seed": 0}
    )
    assert a == b and a.hash == b.hash
    assert re.fullmatch(r"phew-d0\.1-s0-[0-9a-f]{12}", a.name)
    assert Trial.from_dict(a.to_dict()) == a
    other_seed = Trial.from_settings({"method": "phew", "density": 0.1, "seed": 1})
    assert other_seed.hash != a.hash and other_seed.mask_hash == a.mask_hash
    for change in ({"mask_seed": 1}, {"init_seed": 1}, {"density": 0.05}):
        t = Trial.from_settings({"method": "phew", "density": 0.1, **change})
        assert t.mask_hash != a.mask_hash, change
    # training settings leave the mask alone
    assert Trial.from_settings({"method": "phew", "density": 0.1, "epochs": 3}).mask_hash == (
        a.mask_hash
    )


def test_grid_is_seed_major_deduplicated_and_shares_masks() -> None:
    config = SweepConfig.from_dict(
        {
            "grid": {"method": ["phew", "dense"], "density": [0.1, 0.02], "seed": [0, 1, 2]},
            "fixed": {"epochs": 1},
        }
    )
    trials = config.trials()
    assert len(trials) == 3 * (2 + 1)  # dense: density 1 whatever the grid says
    assert [t.seed for t in trials] == sorted(t.seed for t in trials)
    assert len({t.hash for t in trials}) == len(trials)
    assert len({t.mask_hash for t in trials if t.method == "phew"}) == 2
    assert {t.density for t in trials if t.method == "dense"} == {1.0}


def test_example_config_loads() -> None:
    config = load_config(ROOT / "examples" / "sweep_fmnist.toml")
    trials = config.trials()
    assert len(trials) == 8
    assert len({t.mask_hash for t in trials}) == 4
    assert {t.method for t in trials} == {"phew", "synflow_l2"}
    assert all(t.method_options == {"iterations": 100} for t in trials if t.method == "synflow_l2")
    assert config.out == "runs/sweep_fmnist"


def test_yaml_and_toml_give_the_same_trials(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    doc = {"grid": {"method": ["phew"], "density": [0.1, 0.05]}, "fixed": {"epochs": 2}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    (tmp_path / "s.toml").write_text(
        '[grid]\nmethod = ["phew"]\ndensity = [0.1, 0.05]\n[fixed]\nepochs = 2\n'
    )
    a = [t.hash for t in load_config(tmp_path / "s.yaml").trials()]
    b = [t.hash for t in load_config(tmp_path / "s.toml").trials()]
    assert a == b and len(a) == 2


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"grid": {"method": ["phew"]}}, "no 'density'"),
        ({"grid": {"method": ["phew"], "density": [0.1]}, "epochs": 3}, "top-level"),
        ({"grid": {"method": ["phew"], "density": [0.1], "lrate": [1]}}, "lrate"),
        ({"grid": {"method": ["phew"], "density": 0.1}}, "non-empty list"),
        ({"grid": {"method": ["phew"], "density": [0.1]}, "fixed": {"density": 0.2}}, "both"),
        ({"grid": {"method": ["phew"], "density": [1.5]}}, r"\(0, 1\]"),
        ({"grid": {"method": ["nope"], "density": [0.1]}}, "unknown method"),
        ({"grid": {"method": ["phew"], "density": [0.1], "model": ["nope"]}}, "unknown model"),
        ({"grid": {"method": ["phew"], "density": [0.1], "dataset": ["nope"]}}, "data set"),
        ({"grid": {"method": ["phew"], "density": [0.1], "seed": [-1]}}, "seed"),
        (
            {"grid": {"method": ["phew"], "density": [0.1]}, "method_options": {"snip": {"a": 1}}},
            "does not run",
        ),
    ],
)
def test_config_errors_are_one_clear_line(doc: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        SweepConfig.from_dict(doc)
    assert "\n" not in str(info.value)


def test_unparsable_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\nmethod = 1\n")
    with pytest.raises(ValueError, match=r"cannot parse .*bad\.toml"):
        load_config(bad)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


# ----------------------------------------------------------------------- the CLI
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pathnet")
    add_parsers(p.add_subparsers(dest="command", required=True))
    return p


def test_parsers_have_help_everywhere_and_defaults() -> None:
    p = parser()
    args = p.parse_args(["sweep", "s.toml", "--executor", "slurm", "--array-parallelism", "8"])
    assert args.executor == "slurm" and args.array_parallelism == 8 and args.workers == 1
    assert args.func.__name__ == "cmd_sweep"
    args = p.parse_args(["collect", "runs/x", "--no-figure"])
    assert args.no_figure and args.func.__name__ == "cmd_collect"
    subparsers = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.dest}"
    with pytest.raises(SystemExit):
        p.parse_args(["sweep", "s.toml", "--workers", "0"])


def test_cli_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.toml").write_text('[grid]\nmethod = ["nope"]\ndensity = [0.1]\n')
    assert sweep_main(["sweep", str(tmp_path / "s.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pathnet sweep: error: unknown method 'nope'") and err.count("\n") == 1
    assert sweep_main(["collect", str(tmp_path)]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_main_cli_has_the_subcommands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pathnet.cli import build_parser, main

    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    if "sweep" not in subparsers.choices:
        pytest.skip("pathnet.cli does not add the sweep subcommands yet")
    cfg = tmp_path / "s.toml"
    cfg.write_text('[grid]\nmethod = ["phew"]\ndensity = [0.1, 0.05]\n')
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "2 pending" in capsys.readouterr().out
    assert main(["collect", str(tmp_path / "out")]) == 2


def test_slurm_array_is_submitted_with_its_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SLURM path, up to sbatch: a fake sbatch records the job array script."""
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\ncp "$1" {bin_dir}/script.sh\necho "Submitted batch job 4242"\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = SweepConfig.from_dict(
        {"grid": {"method": ["phew"], "density": [0.1, 0.05], "seed": [0, 1, 2]}}
    )
    report = run_sweep(
        config,
        tmp_path / "sweep",
        executor="slurm",
        array_parallelism=2,
        slurm_partition="gpu",
        gpus_per_node=1,
        slurm_options={"account": "abc"},
        wait=False,
        log=lambda _: None,
    )
    script = (bin_dir / "script.sh").read_text()
    for line in ("--array=0-5%2", "--partition=gpu", "--account=abc", "--gpus-per-node=1"):
        assert f"#SBATCH {line}\n" in script, line
    assert report.jobs == [f"4242_{k}" for k in range(6)] and not report.waited
    assert (tmp_path / "sweep" / "sweep.json").is_file()


# --------------------------------------------------------------- running sweeps
@needs_fmnist
def test_local_pool_and_submitit_local_run_the_same_trials(tmp_path: Path) -> None:
    cfg = load_config(quick_sweep(tmp_path / "s.toml"))
    lines: list[str] = []
    pool = run_sweep(cfg, tmp_path / "pool", workers=2, log=lines.append)
    assert pool.ok and pool.count("done") == 8, lines
    done = results(tmp_path / "pool")
    assert len(done) == 8
    assert len(list((tmp_path / "pool" / "masks").glob("*.npz"))) == 4
    for name, doc in done.items():
        assert doc["epochs_completed"] == 1 and 0.1 < doc["final"]["test_acc"] <= 1, name
        assert doc["mask"]["density"] == pytest.approx(doc["config"]["density"], rel=0.01)
        assert doc["n_train"] == 500 and doc["n_test"] == 500
        assert starts(tmp_path / "pool" / "trials" / name) == 1

    pytest.importorskip("submitit")
    sub = run_sweep(cfg, tmp_path / "sub", executor="submitit-local", log=lines.append)
    assert sub.ok and sub.count("done") == 8 and len(sub.jobs) == 1, lines
    again = results(tmp_path / "sub")
    assert set(again) == set(done)
    for name in done:  # a trial is a function of its configuration
        assert again[name]["final"]["test_acc"] == pytest.approx(
            done[name]["final"]["test_acc"], abs=0.01
        )

    # Everything is finished: a second run redoes nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "pool").glob("trials/*/result.json")}
    rerun = run_sweep(cfg, tmp_path / "pool", workers=2, log=lines.append)
    assert rerun.ok and rerun.count("skipped") == 8
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # collect: one row per trial, the figure.
    out = collect(tmp_path / "pool")
    rows = list(csv.DictReader(out.csv.open()))
    assert len(rows) == 8 and not out.missing
    assert {"trial", "hash", "method", "density", "seed", "mask_seed", "test_acc"} <= set(rows[0])
    assert out.figure is not None and out.figure.stat().st_size > 10_000
    assert {r["runs"] for r in out.summary} == {2}


@needs_fmnist
def test_killed_sweep_resumes_without_redoing_finished_trials(tmp_path: Path) -> None:
    method = _two_methods()[0]
    cfg_path = quick_sweep(
        tmp_path / "s.toml", epochs=3, train_subset=3000, methods=[method], densities=(0.1, 0.05)
    )
    sweep_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "pathnet.cli", "sweep", str(cfg_path), "--out",
           str(sweep_dir), "--threads", "1"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    trials = sweep_dir / "trials"
    try:
        deadline = time.monotonic() + 120
        while True:
            finished = list(trials.glob("*/result.json"))
            partial = [
                p.parent
                for p in trials.glob("*/checkpoint.pt")
                if not (p.parent / "result.json").exists()
            ]
            if finished and partial:
                break
            assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr}"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    before = {
        p.parent.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in trials.glob("*/result.json")
    }
    interrupted = {p.name for p in partial} - set(before)
    assert interrupted

    states = {r["name"]: r["state"] for r in trial_states(load_config(cfg_path), sweep_dir)}
    assert all(states[n] == "finished" for n in before)

    assert sweep_main(["sweep", str(cfg_path), "--out", str(sweep_dir), "--threads", "1"]) == 0
    after = results(sweep_dir)
    assert len(after) == 4
    for name, (data, mtime) in before.items():  # not redone
        path = trials / name / "result.json"
        assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime
        assert starts(trials / name) == 1
    for name in interrupted:  # resumed from its checkpoint, not restarted
        assert after[name]["resumed_from"] >= 1
        assert after[name]["epochs_completed"] == 3
        assert starts(trials / name) == 2
    for name in set(after) - set(before) - interrupted:
        assert starts(trials / name) == 1 and after[name]["resumed_from"] is None
