"""The sweep as a grid definition: each trial builds a model, selects a mask and trains it.

Layout of a sweep folder (the runner's, :mod:`pathnet.experiments.runner`, plus)::

    masks/<mask-hash>.npz           one mask per mask key, shared by the trials that need it
    trials/<name>/checkpoint.pt     fit's checkpoint, every epoch (an interrupted trial resumes)
    trials/<name>/metrics.csv|json  fit's per-epoch metrics

A trial whose ``result.json`` exists is skipped; one without is (re)started and resumes
from its last epoch checkpoint. A lock on ``masks/<hash>.lock`` lets the first trial that
needs a mask build it while the others wait.

>>> from pathnet.experiments.config import SweepConfig
>>> grid = sweep_grid(SweepConfig.from_dict({"grid": {"method": ["phew"], "density": [0.1]}}))
>>> [t.name[:-13] for t in grid.trials], grid.kind
(['phew-d0.1-s0'], 'sweep')
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pathnet.experiments.collect import result_row
from pathnet.experiments.config import DATA_METHODS, SweepConfig, Trial
from pathnet.experiments.grid import (
    Grid,
    GridReport,
    GridTrial,
    RunOptions,
    _flock,
    jsonable,
    run_one,
    trial_dir,
    trial_state,
)
from pathnet.experiments.lookups import splits
from pathnet.experiments.runner import SlurmOptions, run_grid

__all__ = [
    "MASKS_DIR",
    "SweepReport",
    "build_mask",
    "report_lines",
    "run_sweep",
    "run_trial",
    "state_lines",
    "sweep_grid",
    "trial_states",
]

_PREFIX = "pathnet.experiments"

MASKS_DIR = "masks"

#: What :func:`run_sweep` returns (the runner's report).
SweepReport = GridReport


# --------------------------------------------------------------------------- one trial
def _datasets(trial: Trial, data_root: str | None, download: bool) -> tuple[Any, Any]:
    """Train and test splits of the trial's dataset (loaded once per process), subset."""
    from pathnet.data import pad_images

    train, test = splits(trial.dataset, data_root, download)
    train = _subset(train, trial.train_subset, "train_subset")
    test = _subset(test, trial.test_subset, "test_subset")
    if trial.pad:
        train, test = pad_images(train, trial.pad), pad_images(test, trial.pad)
    return train, test


def _subset(ds: Any, n: int | None, what: str) -> Any:
    from pathnet.data import subset_per_class

    if n is None or n >= len(ds):
        return ds
    per_class = n // ds.num_classes
    if per_class < 1:
        raise ValueError(
            f"{_PREFIX}: {what} = {n} keeps no sample of each of the {ds.num_classes} classes"
        )
    return subset_per_class(ds, per_class, seed=0)


def build_mask(
    trial: Trial, model: Any, sweep_dir: str | os.PathLike[str], *, train: Any = None
) -> tuple[Any, Path | None]:
    """The trial's mask from ``masks/<mask-hash>.npz``, built there first if missing.

    ``model`` must be the trial's freshly built model (the mask is selected on it; it is
    not modified). Concurrent callers wait on a lock while the first one builds.
    Returns ``(None, None)`` for the dense baseline.
    """
    from pathnet import sanity
    from pathnet.mask import Mask, MaskFileError
    from pathnet.select.registry import select

    key = trial.mask_key()
    if key is None:
        return None, None
    path = Path(sweep_dir) / MASKS_DIR / f"{trial.mask_hash}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    if trial.sanity.startswith("shuffle"):  # built from the method's own (shared) mask
        base, _ = build_mask(trial.base(), model, sweep_dir, train=train)
    with _flock(path.with_suffix(".lock")):
        if path.is_file():
            with contextlib.suppress(MaskFileError):  # a damaged file is rebuilt
                return Mask.load(path, model=model), path
        options = dict(trial.method_options)
        if trial.method in DATA_METHODS:
            from pathnet.data import subset_per_class

            if train is None:
                raise ValueError(f"{_PREFIX}: method {trial.method!r} needs training data")
            batch = subset_per_class(train, 10, seed=trial.mask_seed)
            options["data"] = (batch.images, batch.labels)
        if trial.sanity.startswith("shuffle"):
            preserve = "unit_fan_in" if trial.sanity == "shuffle_fan_in" else "layer"
            mask = sanity.layerwise_shuffle(base, seed=trial.mask_seed, preserve=preserve)  # type: ignore[arg-type]
        elif trial.sanity == "invert":
            mask = sanity.invert(trial.method, model, trial.density, seed=trial.mask_seed,
                                 **options)  # fmt: skip
        else:
            mask = select(trial.method, model, trial.density, seed=trial.mask_seed, **options)
        mask.meta.update(mask_key=key, init_seed=trial.init_seed)
        mask.save(path)
    return mask, path


def _mask_doc(trial: Trial, mask: Any, mask_path: Path | None, folder: Path) -> Any:
    if mask is None:
        return None
    return {
        "file": os.path.relpath(mask_path, folder) if mask_path else None,
        "hash": trial.mask_hash,
        "density": mask.density,
        "n_kept": mask.n_kept,
        "n_total": mask.n_total,
    }


def compute_trial(task: GridTrial, folder: Path, root: Path, options: RunOptions) -> dict[str, Any]:
    """The sweep's compute function: build, select (or load the shared mask), train."""
    import torch

    from pathnet import models
    from pathnet.train import fit

    trial = Trial.from_dict(task.params)
    train, test = _datasets(trial, options.data_root, options.download)
    model = models.build(trial.model, seed=trial.init_seed, **trial.model_options)
    shape = tuple(getattr(model, "input_shape", ()))
    if shape and tuple(train.input_shape) != shape:
        raise ValueError(
            f"{_PREFIX}: model {trial.model} takes inputs {shape} but {trial.dataset} has "
            f"{tuple(train.input_shape)}"
        )
    threads = torch.get_num_threads()
    mask, mask_path = build_mask(trial, model, root, train=train)
    torch.set_num_threads(threads)  # whatever selection did to the thread pools
    if trial.sanity.startswith("reinit_"):
        from pathnet.sanity import reinitialize

        scheme = trial.sanity.removeprefix("reinit_")
        model = reinitialize(model, mask, scheme=scheme, seed=trial.init_seed)  # type: ignore[arg-type]
    extra: dict[str, Any] = {}
    if trial.dst is not None:
        from pathnet.train.dst import DST

        extra["dst"] = DST.from_dict(trial.dst)
    result = fit(
        model,
        mask,
        train,
        test,
        **trial.train.to_dict(),
        seed=trial.seed,
        device=options.device,
        out_dir=folder,
        resume=True,
        progress=options.progress,
        log_every=trial.log_every,
        **extra,
    )
    return jsonable(
        {
            "config": trial.to_dict(),
            "mask": _mask_doc(trial, mask, mask_path, folder),
            "final": result.final,
            "history": result.history,
            "epochs_completed": result.epochs_completed,
            "resumed_from": result.resumed_from,
            "n_train": len(train),
            "n_test": len(test),
            "device": result.device,
            "threads": torch.get_num_threads(),
            "steps": result.steps,
            **_dst_doc(result),
        }
    )


def _dst_doc(result: Any) -> dict[str, Any]:
    """A dynamic sparse run's log and final density (nothing for a static mask)."""
    if not result.dst_log:
        return {}
    return {"dst_log": result.dst_log, "final_density": result.mask.density}


def _grid_trial(trial: Trial) -> GridTrial:
    return GridTrial(trial.name, trial.hash, trial.to_dict(), {"mask": trial.mask_hash})


def run_trial(
    trial: Trial,
    sweep_dir: str | os.PathLike[str],
    *,
    data_root: str | None = None,
    download: bool = False,
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Run one trial to completion, or skip it if finished, or resume it if interrupted.

    Returns a status dict: ``name``, ``hash``, ``status`` (``"done"``: ran now;
    ``"skipped"``: was finished; ``"busy"``: another process holds it), ``test_acc``,
    ``seconds``, ``resumed_from``. Errors propagate (see :func:`run_sweep` for the
    executors, which record them).
    """
    options = RunOptions(data_root=data_root, download=download, device=device, progress=progress)
    return run_one(_grid_trial(trial), compute_trial, sweep_dir, options)


def _rows(doc: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {"results": [result_row(doc)]}


# --------------------------------------------------------------------------- the sweep
def sweep_grid(config: SweepConfig) -> Grid:
    """The grid definition of a sweep: its trials, :func:`compute_trial`, one row each."""
    return Grid(
        kind="sweep",
        trials=tuple(_grid_trial(t) for t in config.trials()),
        compute=compute_trial,
        rows=_rows,
        name=config.name or "sweep",
        plan={
            "source": str(config.source) if config.source else None,
            "config": config.to_dict(),
        },
    )


def trial_states(config: SweepConfig, sweep_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per trial of ``config``: name, hash, mask hash and state in ``sweep_dir``.

    The state is ``"finished"``, ``"partial"`` (``epochs_completed`` of ``epochs``, from
    its metrics), ``"failed"`` (an error recorded, no checkpoint yet) or ``"pending"``.
    """
    rows = []
    for t in config.trials():
        folder = trial_dir(sweep_dir, t)
        state, epochs_done = trial_state(folder), 0
        if state == "finished":
            epochs_done = t.train.epochs
        else:
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads((folder / "metrics.json").read_text())
                epochs_done = int(doc.get("epochs_completed", 0))
            if epochs_done:
                state = "partial"
        rows.append(
            {
                "name": t.name,
                "hash": t.hash,
                "mask": t.mask_hash or "",
                "state": state,
                "epochs": f"{epochs_done}/{t.train.epochs}",
            }
        )
    return rows


def run_sweep(
    config: SweepConfig,
    sweep_dir: str | os.PathLike[str],
    *,
    executor: str = "local",
    workers: int = 1,
    options: RunOptions | None = None,
    trials_per_job: int = 1,
    timeout_min: int = 240,
    array_parallelism: int = 64,
    slurm_partition: str | None = None,
    gpus_per_node: int | None = None,
    cpus_per_task: int | None = None,
    mem_gb: float | None = None,
    slurm_options: Mapping[str, Any] | None = None,
    wait: bool = True,
    log: Callable[[str], None] = print,
) -> SweepReport:
    """Run every unfinished trial of ``config`` into ``sweep_dir`` on an executor.

    :func:`pathnet.experiments.runner.run_grid` on :func:`sweep_grid` of ``config``;
    ``options`` defaults to the config's ``data_root``.

    Parameters
    ----------
    config : SweepConfig
    sweep_dir : path-like
        The sweep's folder (created); see the module notes for its layout.
    executor : {"local", "submitit-local", "slurm"}
    workers : int, default 1
        ``local``: worker processes (1 runs in this process); ``submitit-local``: jobs.
    options : RunOptions, optional
        Data root, download, device, torch threads per trial (default: the CPUs shared
        among the workers), progress bars.
    trials_per_job : int, default 1
        ``slurm``: trials run one after the other in each array task.
    timeout_min : int, default 240
        submitit executors: time limit of one job, in minutes.
    array_parallelism : int, default 64
        ``slurm``: array tasks running at once (``slurm_array_parallelism``).
    slurm_partition, gpus_per_node, cpus_per_task, mem_gb, slurm_options
        ``slurm`` job resources; ``slurm_options`` holds further submitit ``slurm_*``
        parameters without the prefix (``{"account": "abc", "qos": "high"}``).
    wait : bool, default True
        submitit executors: wait for the jobs (False: submit and return).
    log : callable, default print
        Receives one line per finished trial and a few about the jobs.

    Returns
    -------
    SweepReport
    """
    slurm = SlurmOptions(
        trials_per_job=trials_per_job,
        timeout_min=timeout_min,
        array_parallelism=array_parallelism,
        partition=slurm_partition,
        gpus_per_node=gpus_per_node,
        cpus_per_task=cpus_per_task,
        mem_gb=mem_gb,
        extra=dict(slurm_options or {}),
    )
    return run_grid(
        sweep_grid(config),
        sweep_dir,
        executor=executor,
        workers=workers,
        options=options or RunOptions(data_root=config.data_root),
        slurm=slurm,
        wait=wait,
        log=log,
    )


def state_lines(rows: list[dict[str, Any]], sweep_dir: str | os.PathLike[str]) -> list[str]:
    """What ``pathnet sweep --dry-run`` prints: the :func:`trial_states` table and a count."""
    from pathnet._text import format_table

    states = [r["state"] for r in rows]
    counts = ", ".join(
        f"{states.count(s)} {s}" for s in ("finished", "partial", "failed", "pending")
    )
    return [
        format_table(rows, ["name", "state", "epochs", "mask"]),
        f"{len(rows)} trials in {sweep_dir}: {counts}",
    ]


def report_lines(report: SweepReport, sweep_dir: str | os.PathLike[str]) -> list[str]:
    """What ``pathnet sweep`` prints once :func:`run_sweep` returns."""
    if not report.waited:
        return [
            f"pathnet sweep: when the jobs end, `pathnet collect {sweep_dir}` makes the table "
            "and figure"
        ]
    failed = report.failures()
    lines = [
        f"pathnet sweep: {report.total} trials: {report.count('done')} ran, "
        f"{report.count('skipped')} were finished before, {len(failed)} failed, "
        f"{report.count('busy')} busy in another process"
    ]
    for s in failed:
        lines.append(
            f"  failed: {s['name']}: {s['error']} (see {sweep_dir}/trials/{s['name']}/error.txt)"
        )
    if report.ok:
        lines.append(
            f"pathnet sweep: done; `pathnet collect {sweep_dir}` makes the table and figure"
        )
    else:
        lines.append("pathnet sweep: incomplete; run the same command again to retry or resume")
    return lines
