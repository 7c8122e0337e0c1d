"""Running a sweep: each trial a resumable function of its configuration, on an executor.

Layout of a sweep folder::

    sweep.json                      the plan: configuration and trial names (rewritten per run)
    masks/<mask-hash>.npz           one mask per mask key, shared by the trials that need it
    trials/<name>/config.json       the trial's resolved configuration
    trials/<name>/checkpoint.pt     fit's checkpoint, every epoch (an interrupted trial resumes)
    trials/<name>/metrics.csv|json  fit's per-epoch metrics
    trials/<name>/runs.jsonl        one line per start, end and failure of the trial
    trials/<name>/result.json       written atomically last: the trial is finished
    trials/<name>/error.txt         traceback of the last failure
    submitit/<job-id>/              submitit's pickles and logs (submitit executors)

A trial whose ``result.json`` exists is skipped; one without is (re)started and resumes
from its last epoch checkpoint. A lock on ``trials/<name>/.lock`` (``fcntl.flock``,
released when its holder dies) keeps two runners off the same trial, one on
``masks/<hash>.lock`` lets the first trial that needs a mask build it while the others wait.

Executors
---------
``local``
    A pool of ``workers`` processes on this machine (``workers=1``: in this process).
    With CUDA and several GPUs each worker gets one (``CUDA_VISIBLE_DEVICES``).
``submitit-local``
    submitit's local executor: the pending trials are dealt round robin into ``workers``
    jobs, each a process that runs its trials in turn.
``slurm``
    A SLURM job array through submitit, one trial per array task (``trials_per_job``
    groups short ones), at most ``array_parallelism`` running at once. A task that times
    out or is preempted is requeued and resumes its trial from the checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pathnet._io import atomic_write_bytes
from pathnet.experiments.config import DATA_METHODS, SweepConfig, Trial

try:  # POSIX; elsewhere trials run unlocked (atomic writes still keep files whole)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "EXECUTORS",
    "RESULT_FILE",
    "RunOptions",
    "SweepReport",
    "TrialBatch",
    "build_mask",
    "read_result",
    "run_sweep",
    "run_trial",
    "trial_states",
]

_PREFIX = "pathnet.experiments"

EXECUTORS = ("local", "submitit-local", "slurm")
SWEEP_FILE = "sweep.json"
RESULT_FILE = "result.json"
RUNS_FILE = "runs.jsonl"
ERROR_FILE = "error.txt"
TRIALS_DIR = "trials"
MASKS_DIR = "masks"
SUBMITIT_DIR = "submitit"
_RESULT_FORMAT = "pathnet-sweep-trial"
_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jsonable(obj: Any) -> Any:
    """Non-finite floats to None (JSON has no NaN), tuples to lists, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _write_json(path: Path, doc: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(_jsonable(doc), indent=1) + "\n").encode())


@contextlib.contextmanager
def _flock(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created); yields False if busy and not blocking.

    The kernel drops the lock when its holder exits, killed or not: no stale locks.
    """
    if fcntl is None:  # pragma: no cover
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            got = True
        except BlockingIOError:
            got = False
        except OSError as exc:  # a file system without locks: go on unlocked
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            got = True
        yield got
    finally:
        os.close(fd)


def trial_dir(sweep_dir: str | os.PathLike[str], trial: Trial) -> Path:
    """``<sweep_dir>/trials/<trial.name>``."""
    return Path(sweep_dir) / TRIALS_DIR / trial.name


def read_result(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A trial's ``result.json`` (the file or its folder), or None where there is none."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULT_FILE
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == _RESULT_FORMAT else None


def _append_run(folder: Path, event: str, **fields: Any) -> None:
    line = {"event": event, "time": _now(), "host": socket.gethostname(), "pid": os.getpid()}
    line.update(fields)
    with open(folder / RUNS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_jsonable(line)) + "\n")


# --------------------------------------------------------------------------- one trial
_DATA_CACHE: dict[tuple[str, str | None, bool], tuple[Any, Any]] = {}


def _datasets(trial: Trial, data_root: str | None, download: bool) -> tuple[Any, Any]:
    """Train and test splits of the trial's dataset, loaded once per process, subset."""
    from pathnet.data import load_dataset

    key = (trial.dataset, data_root, download)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # one data set in memory at a time
        _DATA_CACHE[key] = (
            load_dataset(trial.dataset, "train", root=data_root, download=download),
            load_dataset(trial.dataset, "test", root=data_root, download=download),
        )
    train, test = _DATA_CACHE[key]
    return _subset(train, trial.train_subset, "train_subset"), _subset(
        test, trial.test_subset, "test_subset"
    )


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
    from pathnet.mask import Mask, MaskFileError
    from pathnet.select.registry import select

    key = trial.mask_key()
    if key is None:
        return None, None
    path = Path(sweep_dir) / MASKS_DIR / f"{trial.mask_hash}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
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
        mask = select(trial.method, model, trial.density, seed=trial.mask_seed, **options)
        mask.meta.update(mask_key=key, init_seed=trial.init_seed)
        mask.save(path)
    return mask, path


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
    import torch

    from pathnet import models
    from pathnet.train import fit

    folder = trial_dir(sweep_dir, trial)
    done = read_result(folder)
    if done is not None:
        return _status(trial, "skipped", done)
    folder.mkdir(parents=True, exist_ok=True)
    with _flock(folder / ".lock", blocking=False) as got:
        if not got:
            return _status(trial, "busy")
        done = read_result(folder)  # finished by the holder we just missed
        if done is not None:
            return _status(trial, "skipped", done)
        t0 = time.perf_counter()
        _write_json(
            folder / "config.json", {"name": trial.name, "hash": trial.hash, **trial.to_dict()}
        )
        _append_run(folder, "start", device=device)
        train, test = _datasets(trial, data_root, download)
        model = models.build(trial.model, seed=trial.init_seed, **trial.model_options)
        shape = tuple(getattr(model, "input_shape", ()))
        if shape and tuple(train.input_shape) != shape:
            raise ValueError(
                f"{_PREFIX}: model {trial.model} takes inputs {shape} but {trial.dataset} has "
                f"{tuple(train.input_shape)}"
            )
        threads = torch.get_num_threads()
        mask, mask_path = build_mask(trial, model, sweep_dir, train=train)
        torch.set_num_threads(threads)  # whatever selection did to the thread pools
        result = fit(
            model,
            mask,
            train,
            test,
            epochs=trial.epochs,
            batch_size=trial.batch_size,
            lr=trial.lr,
            momentum=trial.momentum,
            nesterov=trial.nesterov,
            weight_decay=trial.weight_decay,
            milestones=None if trial.milestones is None else list(trial.milestones),
            gamma=trial.gamma,
            mask_mode=trial.mask_mode,
            seed=trial.seed,
            device=device,
            amp=trial.amp,
            augment=trial.augment,
            out_dir=folder,
            resume=True,
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        doc = {
            "format": _RESULT_FORMAT,
            "version": _VERSION,
            "name": trial.name,
            "hash": trial.hash,
            "config": trial.to_dict(),
            "mask": None
            if mask is None
            else {
                "file": os.path.relpath(mask_path, folder) if mask_path else None,
                "hash": trial.mask_hash,
                "density": mask.density,
                "n_kept": mask.n_kept,
                "n_total": mask.n_total,
            },
            "final": result.final,
            "history": result.history,
            "epochs_completed": result.epochs_completed,
            "resumed_from": result.resumed_from,
            "n_train": len(train),
            "n_test": len(test),
            "seconds": seconds,
            "device": result.device,
            "threads": torch.get_num_threads(),
            "host": socket.gethostname(),
            "finished": _now(),
        }
        _write_json(folder / RESULT_FILE, doc)
        _append_run(folder, "done", seconds=round(seconds, 3))
        with contextlib.suppress(FileNotFoundError):
            (folder / ERROR_FILE).unlink()
    return _status(trial, "done", doc)


def _status(
    trial: Trial, status: str, result: Mapping[str, Any] | None = None, error: str | None = None
) -> dict[str, Any]:
    """What the executors report for one trial (``result``: its result.json)."""
    final = (result or {}).get("final") or {}
    return {
        "name": trial.name,
        "hash": trial.hash,
        "status": status,
        "error": error,
        "test_acc": final.get("test_acc"),
        "seconds": (result or {}).get("seconds"),
        "resumed_from": (result or {}).get("resumed_from"),
    }


@dataclass(frozen=True)
class RunOptions:
    """Where and how trials run; none of it enters a trial's identity."""

    data_root: str | None = None
    download: bool = False
    device: str = "auto"
    threads: int | None = None
    progress: bool = False


def _run_safely(
    trial_doc: Mapping[str, Any], sweep_dir: str, options: RunOptions
) -> dict[str, Any]:
    """:func:`run_trial`, with any error recorded in the trial's folder and returned."""
    trial = Trial.from_dict(trial_doc)
    try:
        return run_trial(
            trial,
            sweep_dir,
            data_root=options.data_root,
            download=options.download,
            device=options.device,
            progress=options.progress,
        )
    except Exception as exc:
        folder = trial_dir(sweep_dir, trial)
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / ERROR_FILE, traceback.format_exc().encode())
            _append_run(folder, "failed", error=message)
        return _status(trial, "failed", error=message)


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
    """What one submitit job runs: a list of trials (as dicts), one after the other.

    It is checkpointable: on a timeout or preemption submitit requeues it with the same
    arguments; the finished trials are then skipped and the interrupted one resumes.
    """

    sweep_dir: str
    options: RunOptions

    def __call__(self, trials: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        _set_threads(self.options.threads)
        return [_run_safely(t, self.sweep_dir, self.options) for t in trials]

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepReport:
    """What :func:`run_sweep` did.

    ``statuses`` holds one status dict per trial handled (see :func:`run_trial`;
    ``"failed"`` ones carry ``error``); ``jobs`` the submitit job ids.
    """

    sweep_dir: Path
    total: int
    statuses: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    waited: bool = True

    def count(self, status: str) -> int:
        return sum(1 for s in self.statuses if s["status"] == status)

    @property
    def ok(self) -> bool:
        """Every trial finished (now or before)."""
        return self.waited and self.count("done") + self.count("skipped") == self.total


def trial_states(config: SweepConfig, sweep_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per trial of ``config``: name, hash, mask hash and state in ``sweep_dir``.

    The state is ``"finished"``, ``"partial"`` (``epochs_completed`` of ``epochs``, from
    its metrics), ``"failed"`` (an error recorded, no checkpoint yet) or ``"pending"``.
    """
    rows = []
    for t in config.trials():
        folder = trial_dir(sweep_dir, t)
        state, epochs_done = "pending", 0
        if read_result(folder) is not None:
            state, epochs_done = "finished", t.epochs
        else:
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads((folder / "metrics.json").read_text())
                epochs_done = int(doc.get("epochs_completed", 0))
            if epochs_done:
                state = "partial"
            elif (folder / ERROR_FILE).exists():
                state = "failed"
        rows.append(
            {
                "name": t.name,
                "hash": t.hash,
                "mask": t.mask_hash or "",
                "state": state,
                "epochs": f"{epochs_done}/{t.epochs}",
            }
        )
    return rows


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


def _run_local(
    pending: list[dict[str, Any]],
    sweep_dir: str,
    options: RunOptions,
    workers: int,
    report: SweepReport,
    log: Callable[[str], None],
) -> None:
    n = len(pending)
    if workers <= 1:
        _set_threads(options.threads)
        for k, doc in enumerate(pending, 1):
            s = _run_safely(doc, sweep_dir, options)
            report.statuses.append(s)
            log(_line(k, n, s))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")  # no fork after torch has started threads
    threads = options.threads or max(1, _cpus() // workers)
    counter = ctx.Value("i", 0)
    gpus = _visible_gpus(options.device)
    with ProcessPoolExecutor(
        max_workers=min(workers, n),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(counter, threads, gpus),
    ) as pool:
        futures = {pool.submit(_run_safely, doc, sweep_dir, options): doc for doc in pending}
        try:
            for k, fut in enumerate(as_completed(futures), 1):
                try:
                    s = fut.result()
                except Exception as exc:  # the worker died (out of memory, killed)
                    error = f"worker process died: {type(exc).__name__}: {exc}"
                    s = _status(Trial.from_dict(futures[fut]), "failed", error=error)
                report.statuses.append(s)
                log(_line(k, n, s))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _submitit_executor(
    kind: str,
    sweep_dir: Path,
    *,
    name: str,
    timeout_min: int,
    array_parallelism: int,
    slurm_partition: str | None,
    gpus_per_node: int | None,
    cpus_per_task: int | None,
    mem_gb: float | None,
    slurm_options: Mapping[str, Any],
) -> Any:
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
    executor = submitit.AutoExecutor(folder=sweep_dir / SUBMITIT_DIR / "%j", cluster=cluster)
    params: dict[str, Any] = {"name": name, "timeout_min": int(timeout_min)}
    for key, value in (
        ("gpus_per_node", gpus_per_node),
        ("cpus_per_task", cpus_per_task),
        ("mem_gb", mem_gb),
    ):
        if value is not None:
            params[key] = value
    if cluster == "slurm":
        params["slurm_array_parallelism"] = int(array_parallelism)
        if slurm_partition:
            params["slurm_partition"] = slurm_partition
        params.update({f"slurm_{k}": v for k, v in slurm_options.items()})
    try:
        executor.update_parameters(**params)
    except (NameError, AssertionError, ValueError) as exc:
        raise ValueError(f"{_PREFIX}: submitit refused the job parameters: {exc}") from None
    return executor


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
    if executor not in EXECUTORS:
        raise ValueError(
            f"{_PREFIX}: executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"
        )
    for key, value in (
        ("workers", workers),
        ("trials_per_job", trials_per_job),
        ("array_parallelism", array_parallelism),
        ("timeout_min", timeout_min),
    ):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{_PREFIX}: {key} must be a positive integer, got {value!r}")
    options = options or RunOptions(data_root=config.data_root)
    if options.data_root:  # the jobs may start elsewhere
        options = replace(options, data_root=str(Path(options.data_root).resolve()))
    root = Path(sweep_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    trials = config.trials()
    _write_json(
        root / SWEEP_FILE,
        {
            "format": "pathnet-sweep",
            "version": _VERSION,
            "source": str(config.source) if config.source else None,
            "config": config.to_dict(),
            "trials": [{"name": t.name, "hash": t.hash, "mask": t.mask_hash} for t in trials],
            "written": _now(),
        },
    )
    report = SweepReport(sweep_dir=root, total=len(trials))
    pending = []
    for t in trials:
        done = read_result(trial_dir(root, t))
        if done is None:
            pending.append(t.to_dict())
        else:
            report.statuses.append(_status(t, "skipped", done))
    log(
        f"pathnet sweep: {len(trials)} trials, {len(trials) - len(pending)} finished before, "
        f"{len(pending)} to run ({executor}) in {root}"
    )
    if not pending:
        return report
    if executor == "local":
        _run_local(pending, str(root), options, workers, report, log)
        return report

    n_jobs = workers if executor == "submitit-local" else math.ceil(len(pending) / trials_per_job)
    groups = _chunks(pending, n_jobs)
    if options.threads is None:
        per_job = cpus_per_task or (max(1, _cpus() // len(groups)) if executor != "slurm" else None)
        options = replace(options, threads=per_job)
    ex = _submitit_executor(
        executor,
        root,
        name=f"pathnet-{config.name or 'sweep'}",
        timeout_min=timeout_min,
        array_parallelism=array_parallelism,
        slurm_partition=slurm_partition,
        gpus_per_node=gpus_per_node,
        cpus_per_task=cpus_per_task,
        mem_gb=mem_gb,
        slurm_options=slurm_options or {},
    )
    jobs = ex.map_array(TrialBatch(str(root), options), groups)
    report.jobs = [str(j.job_id) for j in jobs]
    log(
        f"pathnet sweep: submitted {len(jobs)} job(s) {report.jobs[0]}"
        + (f" .. {report.jobs[-1]}" if len(jobs) > 1 else "")
        + f"; logs in {root / SUBMITIT_DIR}"
    )
    if not wait:
        report.waited = False
        return report
    import submitit

    by_job = {id(j): g for j, g in zip(jobs, groups)}
    k = 0
    poll = 15.0 if executor == "slurm" else 0.5
    for job in submitit.helpers.as_completed(jobs, poll_frequency=poll):
        try:
            statuses = job.result()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            error = f"job {job.job_id} failed: {first} (log: {job.paths.stderr})"
            statuses = [
                _status(Trial.from_dict(doc), "failed", error=error) for doc in by_job[id(job)]
            ]
        for s in statuses:
            k += 1
            report.statuses.append(s)
            log(_line(k, len(pending), s))
    return report
