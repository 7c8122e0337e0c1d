"""The grid runner on small grid definitions: skip, failure and retry, locks, pool, collect;
reproduce as a grid definition (reruns reuse its trials and give the same tables)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from pathnet.experiments.grid import _flock, demo_compute
from pathnet.experiments.runner import (
    Grid,
    GridTrial,
    RunOptions,
    failure_message,
    read_result,
    run_grid,
    run_one,
    trial_dir,
    trial_state,
)

QUIET = {"log": lambda line: None}


def grid_of(n: int, compute: Any = demo_compute) -> Grid:
    return Grid(
        kind="demo",
        trials=tuple(GridTrial(f"t{k}", f"{k:012x}", {"k": k}) for k in range(n)),
        compute=compute,
    )


def flaky(trial: GridTrial, folder: Path, root: Path, options: RunOptions) -> dict[str, Any]:
    """Fails for odd k until a file ``fixed`` exists in the grid folder."""
    if trial.params["k"] % 2 and not (root / "fixed").exists():
        raise ValueError(f"odd k = {trial.params['k']}")
    return demo_compute(trial, folder, root, options)


def not_finite(trial: GridTrial, folder: Path, root: Path, options: RunOptions) -> dict[str, Any]:
    return {"tables": {"rows": [{"k": trial.params["k"], "x": math.nan, "y": math.inf}]}}


def test_runs_then_skips_and_collects_in_trial_order(tmp_path):
    grid = grid_of(4)
    report = run_grid(grid, tmp_path, **QUIET)
    assert report.ok and report.count("done") == 4
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.glob("trials/*/result.json")}
    again = run_grid(grid, tmp_path, **QUIET)
    assert again.ok and again.count("skipped") == 4
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    tables, missing = grid.collect(tmp_path)
    assert tables == {"rows": [{"k": k, "k2": k * k} for k in range(4)]} and missing == []
    plan = json.loads((tmp_path / "sweep.json").read_text())
    assert [t["name"] for t in plan["trials"]] == ["t0", "t1", "t2", "t3"]
    doc = read_result(trial_dir(tmp_path, grid.trials[2]))
    assert doc is not None and doc["hash"] == grid.trials[2].hash and doc["seconds"] >= 0
    config = json.loads((tmp_path / "trials" / "t2" / "config.json").read_text())
    assert config == {"name": "t2", "hash": grid.trials[2].hash, "k": 2}


def test_failures_are_recorded_and_retried(tmp_path):
    grid = grid_of(4, flaky)
    report = run_grid(grid, tmp_path, **QUIET)
    assert not report.ok and report.count("done") == 2 and len(report.failures()) == 2
    assert [trial_state(tmp_path / "trials" / f"t{k}") for k in range(4)] == [
        "finished", "failed", "finished", "failed"
    ]  # fmt: skip
    error = (tmp_path / "trials" / "t1" / "error.txt").read_text()
    assert "ValueError: odd k = 1" in error and "Traceback" in error
    message = failure_message("demo", report)
    assert "2 of 4 trial(s) failed" in message and "t1" in message and "error.txt" in message
    tables, missing = grid.collect(tmp_path)
    assert missing == ["t1", "t3"] and len(tables["rows"]) == 2
    (tmp_path / "fixed").touch()
    retry = run_grid(grid, tmp_path, **QUIET)
    assert retry.ok and retry.count("done") == 2 and retry.count("skipped") == 2
    assert not (tmp_path / "trials" / "t1" / "error.txt").exists()
    events = [json.loads(x)["event"] for x in (tmp_path / "trials/t1/runs.jsonl").open()]
    assert events == ["start", "failed", "start", "done"]


def test_a_locked_trial_is_left_to_its_holder(tmp_path):
    grid = grid_of(1)
    folder = trial_dir(tmp_path, grid.trials[0])
    folder.mkdir(parents=True)
    with _flock(folder / ".lock") as got:
        assert got
        status = run_one(grid.trials[0], demo_compute, tmp_path, RunOptions())
        assert status["status"] == "busy" and read_result(folder) is None
    assert run_one(grid.trials[0], demo_compute, tmp_path, RunOptions())["status"] == "done"


def test_pool_gives_the_same_tables(tmp_path):
    grid = grid_of(5)
    seen: list[str] = []
    report = run_grid(
        grid, tmp_path / "pool", workers=2, on_status=lambda s: seen.append(s["name"]), **QUIET
    )
    assert report.ok and sorted(seen) == [f"t{k}" for k in range(5)]
    assert grid.collect(tmp_path / "pool") == grid_of(5).collect(
        run_grid(grid_of(5), tmp_path / "one", **QUIET).sweep_dir
    )


def test_non_finite_results_round_trip(tmp_path):
    grid = grid_of(1, not_finite)
    run_grid(grid, tmp_path, **QUIET)
    (row,) = grid.collect(tmp_path)[0]["rows"]
    assert math.isnan(row["x"]) and row["y"] == math.inf


def test_bad_grids_and_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="names two trials 't0'"):
        Grid(
            kind="demo",
            trials=(GridTrial("t0", "a", {}), GridTrial("t0", "b", {})),
            compute=demo_compute,
        )
    for kwargs, needle in (
        ({"executor": "cloud"}, "executor must be one of"),
        ({"workers": 0}, "workers must be a positive integer"),
    ):
        with pytest.raises(ValueError, match=needle):
            run_grid(grid_of(1), tmp_path, **kwargs, **QUIET)


# ------------------------------------------------------------------ reproduce
def test_reproduce_is_a_grid_whose_reruns_reuse_trials(tmp_path):
    from pathnet.experiments.reproduce import RUNS_DIR, ReproduceConfig, reproduce, reproduce_grid

    config = ReproduceConfig(
        models=("mlp",),
        methods=("random", "magnitude"),
        densities=(0.1, 0.05),
        seeds=(0, 1),
        workers=1,
        accuracy=False,
    )
    grid = reproduce_grid(config, accuracy=False)
    assert len(grid.trials) == 4 and {t.params["task"] for t in grid.trials} == {"paths"}
    lines: list[str] = []
    first = reproduce(tmp_path, config, progress=False, log=lines.append)
    assert len(first["results"]) == 8 and len(list((tmp_path / RUNS_DIR / "trials").iterdir())) == 4
    csv_first = (tmp_path / "reproduce_results.csv").read_bytes()
    widths_first = (tmp_path / "reproduce_widths.csv").read_bytes()
    second = reproduce(tmp_path, config, progress=False, log=lines.append)
    assert any("4 of 4 trials were finished before" in line for line in lines)
    assert second["results"] == first["results"]
    assert (tmp_path / "reproduce_results.csv").read_bytes() == csv_first
    assert (tmp_path / "reproduce_widths.csv").read_bytes() == widths_first
    # one row per (model, method, density, seed), methods in the configured order
    assert [(r["method"], r["density"], r["seed"]) for r in first["results"]][:4] == [
        ("random", 0.1, 0), ("random", 0.1, 1), ("random", 0.05, 0), ("random", 0.05, 1)
    ]  # fmt: skip


def test_nested_forms_equal_separate_calls():
    import pathnet
    from pathnet.experiments.reproduce import nested_form, select_all
    from pathnet.select import select

    model = pathnet.models.mlp(sizes=(20, 16, 8, 4), seed=0)
    dag = pathnet.to_dag(model)
    densities = [0.5, 0.2, 0.1]
    for method in ("random", "magnitude", "erk"):
        assert nested_form(method) is not None
        masks, seconds = select_all(method, dag, model, densities, 3, {})
        assert seconds >= 0
        for d, mask in zip(densities, masks):
            assert mask == select(method, dag, d, seed=3), (method, d)
    assert nested_form("snip") is None
