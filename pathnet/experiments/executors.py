"""Executors of the grid runner: a local process pool, submitit's local jobs, SLURM arrays.

``local``
    A pool of ``workers`` processes on this machine (``workers=1``: in this process).
    With CUDA and several GPUs each worker gets one (``CUDA_VISIBLE_DEVICES``).
``submitit-local``
    submitit's local executor: the pending trials are dealt round robin into ``workers``
    jobs, each a process that runs its trials in turn.
``slurm``
    A SLURM job array through submitit, one trial per array task (``trials_per_job``
    groups short ones), at most ``array_parallelism`` running at once. A task that times
    out or is preempted is requeued and resumes.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pathnet.experiments.grid import (
    Compute,
    Grid,
    GridReport,
    GridTrial,
    RunOptions,
    _run_safely,
    _status,
)

__all__ = ["EXECUTORS", "SUBMITIT_DIR", "SlurmOptions", "TrialBatch", "run_local", "run_submitit"]

_PREFIX = "pathnet.experiments"

EXECUTORS = ("local", "submitit-local", "slurm")
SUBMITIT_DIR = "submitit"


def _set_threads(threads: int | None) -> None:
    """Give torch and numba (read at its import, else set now) ``threads`` threads each."""
    if not threads:
        return
    import torch

    torch.set_num_threads(int(threads))
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(int(threads))


@dataclass(frozen=True)
class TrialBatch:
    """What one submitit job runs: a list of trials, one after the other.

    It is checkpointable: on a timeout or preemption submitit requeues it with the same
    arguments; the finished trials are then skipped and the interrupted one resumes.
    """

    root: str
    compute: Compute
    options: RunOptions

    def __call__(self, trials: Sequence[GridTrial]) -> list[dict[str, Any]]:
        _set_threads(self.options.threads)
        return [_run_safely(t, self.compute, self.root, self.options) for t in trials]

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


@dataclass(frozen=True)
class SlurmOptions:
    """How submitit jobs are shaped (``submitit-local`` and ``slurm`` executors)."""

    trials_per_job: int = 1
    timeout_min: int = 240
    array_parallelism: int = 64
    partition: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _chunks(items: Sequence[Any], n: int) -> list[list[Any]]:
    """``n`` round-robin groups (fewer if there are fewer items).

    >>> _chunks([0, 1, 2, 3, 4], 2)
    [[0, 2, 4], [1, 3]]
    """
    n = max(1, min(n, len(items)))
    return [list(items[i::n]) for i in range(n)]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def _visible_gpus(device: str) -> list[str]:
    """GPU ids to deal out to local workers (only for device 'auto' or 'cuda')."""
    if device not in ("auto", "cuda"):
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    import torch

    return [str(k) for k in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _init_worker(counter: Any, threads: int | None, gpus: Sequence[str]) -> None:
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    _set_threads(threads)


def _line(k: int, n: int, s: Mapping[str, Any]) -> str:
    text = f"[{k}/{n}] {s['status']:7s} {s['name']}"
    if s.get("test_acc") is not None:
        text += f"  test_acc {s['test_acc']:.4f}"
    if s["status"] == "done" and s.get("seconds") is not None:
        text += f"  {s['seconds']:.1f} s"
        if s.get("resumed_from"):
            text += f" (resumed after epoch {s['resumed_from']})"
    if s.get("error"):
        text += f"  {s['error']}"
    return text


class _Tally:
    """Appends statuses to the report, logs a line for each and calls ``on_status``."""

    def __init__(
        self,
        report: GridReport,
        n: int,
        log: Callable[[str], None],
        on_status: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.report, self.n, self.k, self.log, self.on_status = report, n, 0, log, on_status

    def __call__(self, s: dict[str, Any]) -> None:
        self.k += 1
        self.report.statuses.append(s)
        self.log(_line(self.k, self.n, s))
        if self.on_status is not None:
            self.on_status(s)


def run_local(
    pending: list[GridTrial],
    compute: Compute,
    root: str,
    options: RunOptions,
    workers: int,
    tally: _Tally,
) -> None:
    if workers <= 1:
        _set_threads(options.threads)
        for trial in pending:
            tally(_run_safely(trial, compute, root, options))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # no fork after torch has started threads
    threads = options.threads or max(1, _cpus() // workers)
    counter = ctx.Value("i", 0)
    gpus = _visible_gpus(options.device)
    with ProcessPoolExecutor(
        max_workers=min(workers, len(pending)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(counter, threads, gpus),
    ) as pool:
        futures = {pool.submit(_run_safely, t, compute, root, options): t for t in pending}
        try:
            for fut in as_completed(futures):
                try:
                    s = fut.result()
                except Exception as exc:  # the worker died (out of memory, killed)
                    error = f"worker process died: {type(exc).__name__}: {exc}"
                    s = _status(futures[fut], "failed", error=error)
                tally(s)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _submitit_executor(kind: str, root: Path, name: str, slurm: SlurmOptions) -> Any:
    try:
        import submitit
    except ImportError:
        raise ValueError(
            f"{_PREFIX}: --executor {kind} needs submitit (pip install submitit)"
        ) from None
    cluster = "local" if kind == "submitit-local" else "slurm"
    missing = [c for c in ("sbatch", "srun") if shutil.which(c) is None]
    if cluster == "slurm" and missing:
        raise ValueError(
            f"{_PREFIX}: --executor slurm: no `{missing[0]}` on PATH; run on a SLURM login "
            f"node, or use --executor local or submitit-local"
        )
    executor = submitit.AutoExecutor(folder=root / SUBMITIT_DIR / "%j", cluster=cluster)
    params: dict[str, Any] = {"name": name, "timeout_min": int(slurm.timeout_min)}
    for key in ("gpus_per_node", "cpus_per_task", "mem_gb"):
        if getattr(slurm, key) is not None:
            params[key] = getattr(slurm, key)
    if cluster == "slurm":
        params["slurm_array_parallelism"] = int(slurm.array_parallelism)
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        params.update({f"slurm_{k}": v for k, v in slurm.extra.items()})
    try:
        executor.update_parameters(**params)
    except (NameError, AssertionError, ValueError) as exc:
        raise ValueError(f"{_PREFIX}: submitit refused the job parameters: {exc}") from None
    return executor


def run_submitit(
    grid: Grid,
    pending: list[GridTrial],
    root: Path,
    executor: str,
    workers: int,
    options: RunOptions,
    slurm: SlurmOptions,
    wait: bool,
    tally: _Tally,
) -> None:
    report = tally.report
    n_jobs = (
        workers if executor == "submitit-local" else math.ceil(len(pending) / slurm.trials_per_job)
    )
    groups = _chunks(pending, n_jobs)
    if options.threads is None:
        per_job = slurm.cpus_per_task or (
            max(1, _cpus() // len(groups)) if executor != "slurm" else None
        )
        options = replace(options, threads=per_job)
    ex = _submitit_executor(executor, root, f"pathnet-{grid.name or grid.kind}", slurm)
    jobs = ex.map_array(TrialBatch(str(root), grid.compute, options), groups)
    report.jobs = [str(j.job_id) for j in jobs]
    tally.log(
        f"pathnet {grid.kind}: submitted {len(jobs)} job(s) {report.jobs[0]}"
        + (f" .. {report.jobs[-1]}" if len(jobs) > 1 else "")
        + f"; logs in {root / SUBMITIT_DIR}"
    )
    if not wait:
        report.waited = False
        return
    import submitit

    by_job = {id(j): g for j, g in zip(jobs, groups)}
    poll = 15.0 if executor == "slurm" else 0.5
    for job in submitit.helpers.as_completed(jobs, poll_frequency=poll):
        try:
            statuses = job.result()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            error = f"job {job.job_id} failed: {first} (log: {job.paths.stderr})"
            statuses = [_status(t, "failed", error=error) for t in by_job[id(job)]]
        for s in statuses:
            tally(s)
