"""The grid runner: the trials of a grid definition, run resumably on a pool, submitit or SLURM.

A *grid definition* (:class:`Grid`) is data: the trials (each a name, a hash and
JSON-ready parameters), the module-level function that computes one trial, and how a
finished trial's result becomes table rows. The sweep (:mod:`pathnet.experiments.sweep`),
the reproduction (:mod:`pathnet.experiments.reproduce`) and the IMP comparison
(:mod:`pathnet.experiments.imp_similarity`) are three such definitions, all run by
:func:`run_grid`.

Layout of a grid folder::

    sweep.json                      the plan: the grid's description and trial names
    trials/<name>/config.json       the trial's parameters
    trials/<name>/runs.jsonl        one line per start, end and failure of the trial
    trials/<name>/result.json       written atomically last: the trial is finished
    trials/<name>/error.txt         traceback of the last failure
    submitit/<job-id>/              submitit's pickles and logs (submitit executors)

A trial's compute function may write more into its folder (the sweep: checkpoints and
metrics) or into the grid folder (the sweep: ``masks/``). A trial whose ``result.json``
exists is skipped; one without is (re)started. A lock on ``trials/<name>/.lock``
(``fcntl.flock``, released when its holder dies) keeps two runners off the same trial.

The executors (``local``, ``submitit-local``, ``slurm``) are described in
:mod:`pathnet.experiments.executors`; the grid types and one trial's run in
:mod:`pathnet.experiments.grid`.

Examples
--------
>>> import tempfile
>>> from pathnet.experiments.grid import demo_compute
>>> grid = Grid(
...     kind="demo",
...     trials=tuple(GridTrial(f"t{k}", f"{k:012x}", {"k": k}) for k in range(3)),
...     compute=demo_compute,
... )
>>> with tempfile.TemporaryDirectory() as root:
...     report = run_grid(grid, root, log=lambda line: None)
...     again = run_grid(grid, root, log=lambda line: None)
...     tables, missing = grid.collect(root)
>>> report.count("done"), again.count("skipped"), tables["rows"], missing
(3, 3, [{'k': 0, 'k2': 0}, {'k': 1, 'k2': 1}, {'k': 2, 'k2': 4}], [])
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pathnet.experiments.executors import (
    EXECUTORS,
    SlurmOptions,
    _Tally,
    run_local,
    run_submitit,
)
from pathnet.experiments.grid import (
    _PLAN_FORMAT,
    _VERSION,
    ERROR_FILE,
    RESULT_FILE,
    SWEEP_FILE,
    TRIALS_DIR,
    Grid,
    GridReport,
    GridTrial,
    RunOptions,
    _now,
    _status,
    collect_rows,
    jsonable,
    read_result,
    run_one,
    trial_dir,
    trial_state,
    write_json,
)

__all__ = [
    "EXECUTORS",
    "RESULT_FILE",
    "Grid",
    "GridReport",
    "GridTrial",
    "RunOptions",
    "SlurmOptions",
    "collect_rows",
    "failure_message",
    "jsonable",
    "read_result",
    "run_grid",
    "run_one",
    "trial_dir",
    "trial_state",
    "write_json",
]

_PREFIX = "pathnet.experiments"


def _check_run_args(executor: str, workers: int, slurm: SlurmOptions) -> None:
    if executor not in EXECUTORS:
        raise ValueError(
            f"{_PREFIX}: executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"
        )
    for key, value in (
        ("workers", workers),
        ("trials_per_job", slurm.trials_per_job),
        ("array_parallelism", slurm.array_parallelism),
        ("timeout_min", slurm.timeout_min),
    ):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{_PREFIX}: {key} must be a positive integer, got {value!r}")


def run_grid(
    grid: Grid,
    root: str | os.PathLike[str],
    *,
    executor: str = "local",
    workers: int = 1,
    options: RunOptions | None = None,
    slurm: SlurmOptions | None = None,
    wait: bool = True,
    log: Callable[[str], None] = print,
    on_status: Callable[[dict[str, Any]], None] | None = None,
) -> GridReport:
    """Run every unfinished trial of ``grid`` into the folder ``root`` on an executor.

    Parameters
    ----------
    grid : Grid
    root : path-like
        The grid's folder (created); see the module notes for its layout.
    executor : {"local", "submitit-local", "slurm"}
    workers : int, default 1
        ``local``: worker processes (1 runs in this process); ``submitit-local``: jobs.
    options : RunOptions, optional
        Data root, download, device, torch threads per trial (default: the CPUs shared
        among the workers), progress bars.
    slurm : SlurmOptions, optional
        Shape of the submitit jobs (trials per SLURM array task, time limit, resources).
    wait : bool, default True
        submitit executors: wait for the jobs (False: submit and return).
    log : callable, default print
        Receives one line per finished trial and a few about the jobs.
    on_status : callable, optional
        Receives each trial's status dict as it comes in (a progress bar, for instance).

    Returns
    -------
    GridReport
    """
    slurm = slurm or SlurmOptions()
    _check_run_args(executor, workers, slurm)
    options = options or RunOptions()
    if options.data_root:  # the jobs may start elsewhere
        options = replace(options, data_root=str(Path(options.data_root).resolve()))
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    plan = {"format": _PLAN_FORMAT, "version": _VERSION, **grid.plan}
    plan["trials"] = [{"name": t.name, "hash": t.hash, **t.meta} for t in grid.trials]
    write_json(root / SWEEP_FILE, {**plan, "written": _now()})
    report = GridReport(sweep_dir=root, total=len(grid.trials))
    pending = []
    for t in grid.trials:
        done = read_result(trial_dir(root, t))
        if done is None:
            pending.append(t)
        else:
            report.statuses.append(_status(t, "skipped", done))
    log(
        f"pathnet {grid.kind}: {len(grid.trials)} trials, {len(grid.trials) - len(pending)} "
        f"finished before, {len(pending)} to run ({executor}) in {root}"
    )
    tally = _Tally(report, len(pending), log, on_status)
    if not pending:
        return report
    if executor == "local":
        run_local(pending, grid.compute, str(root), options, workers, tally)
    else:
        run_submitit(grid, pending, root, executor, workers, options, slurm, wait, tally)
    return report


def failure_message(kind: str, report: GridReport) -> str:
    """One line naming the unfinished trials of ``report`` (and where a traceback is)."""
    failed = report.failures()
    if not failed:
        busy = report.count("busy")
        return f"pathnet {kind}: {busy} of {report.total} trial(s) busy in another process"
    first = failed[0]
    where = report.sweep_dir / TRIALS_DIR / first["name"] / ERROR_FILE
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return (
        f"pathnet {kind}: {len(failed)} of {report.total} trial(s) failed; {first['name']}: "
        f"{first['error']}{more}; traceback in {where}"
    )
