"""Grid definitions and one trial's run: the data the runner works on, and its files.

A *grid definition* (:class:`Grid`) is data: the trials (each a name, a hash and
JSON-ready parameters), the module-level function that computes one trial, and how a
finished trial's result becomes table rows. :func:`run_one` runs one trial into its
folder (skipping it when finished, leaving it when another process holds its lock);
:mod:`pathnet.experiments.runner` runs a whole grid on an executor.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pathnet._io import atomic_write_bytes

try:  # POSIX; elsewhere trials run unlocked (atomic writes still keep files whole)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RESULT_FILE",
    "Grid",
    "GridReport",
    "GridTrial",
    "RunOptions",
    "collect_rows",
    "demo_compute",
    "jsonable",
    "read_result",
    "run_one",
    "trial_dir",
    "trial_state",
    "write_json",
]

_PREFIX = "pathnet.experiments"

SWEEP_FILE = "sweep.json"
RESULT_FILE = "result.json"
RUNS_FILE = "runs.jsonl"
ERROR_FILE = "error.txt"
TRIALS_DIR = "trials"
_RESULT_FORMAT = "pathnet-sweep-trial"
_PLAN_FORMAT = "pathnet-sweep"
_VERSION = 1


# ------------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class RunOptions:
    """Where and how trials run; none of it enters a trial's identity."""

    data_root: str | None = None
    download: bool = False
    device: str = "auto"
    threads: int | None = None
    progress: bool = False


@dataclass(frozen=True)
class GridTrial:
    """One trial of a grid: its folder name, its identity and what its compute function reads.

    ``hash`` (12 hex digits, chosen by the grid definition) names what the result depends
    on; ``params`` is JSON-ready data handed to the compute function (and written to the
    trial's ``config.json``); ``meta`` goes into the plan file beside name and hash.
    """

    name: str
    hash: str
    params: Mapping[str, Any]
    meta: Mapping[str, Any] = field(default_factory=dict)


#: ``compute(trial, trial_folder, grid_folder, options) -> result``: a module-level function
#: (workers and jobs receive it by reference); the result is JSON-ready data.
Compute = Callable[[GridTrial, Path, Path, RunOptions], Mapping[str, Any]]
#: ``rows(result) -> {table name: rows}``: the rows a finished trial contributes.
Rows = Callable[[Mapping[str, Any]], Mapping[str, Sequence[Mapping[str, Any]]]]


def tables_of(result: Mapping[str, Any]) -> Mapping[str, Sequence[Mapping[str, Any]]]:
    """The default :data:`Rows`: the result's ``"tables"`` entry."""
    return result.get("tables") or {}


def demo_compute(trial: GridTrial, folder: Path, root: Path, options: RunOptions) -> dict[str, Any]:
    """An example compute function: one row ``k, k**2`` from the parameter ``k``."""
    k = int(trial.params["k"])
    return {"tables": {"rows": [{"k": k, "k2": k * k}]}}


@dataclass(frozen=True)
class Grid:
    """A grid definition: which trials, what each computes, how rows are collected.

    Attributes
    ----------
    kind : str
        Names the runner's log lines (``pathnet <kind>: ...``).
    trials : tuple of GridTrial
        In the order they are handed out; names unique.
    compute : callable
        See :data:`Compute`.
    rows : callable, default :func:`tables_of`
        See :data:`Rows`.
    name : str or None
        Job name suffix (``pathnet-<name>``); default ``kind``.
    plan : mapping
        Written into the plan file (``sweep.json``) before the trial list.
    """

    kind: str
    trials: tuple[GridTrial, ...]
    compute: Compute
    rows: Rows = tables_of
    name: str | None = None
    plan: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [t.name for t in self.trials]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise ValueError(f"{_PREFIX}: grid {self.kind!r} names two trials {dup!r}")

    def collect(
        self, root: str | os.PathLike[str]
    ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
        """Rows of the finished trials (in trial order) per table, and the unfinished names."""
        return collect_rows(root, [t.name for t in self.trials], self.rows)


# ---------------------------------------------------------------------- files
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def jsonable(obj: Any) -> Any:
    """Non-finite floats to None (JSON has no NaN), tuples to lists, recursively.

    >>> jsonable({"a": (1.0, float("nan"))})
    {'a': [1.0, None]}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def write_json(path: Path, doc: Any) -> Path:
    """``doc`` as indented strict JSON (see :func:`jsonable`), written atomically."""
    return atomic_write_bytes(path, (json.dumps(jsonable(doc), indent=1) + "\n").encode())


def _scalar(obj: Any) -> Any:
    """numpy scalars as Python numbers (for ``json.dumps(default=...)``)."""
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():
        return obj.item()
    raise TypeError(f"{_PREFIX}: {type(obj).__name__} is not JSON data")


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


def trial_dir(root: str | os.PathLike[str], trial: GridTrial | Any) -> Path:
    """``<root>/trials/<trial.name>``."""
    return Path(root) / TRIALS_DIR / trial.name


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


def trial_state(folder: str | os.PathLike[str]) -> str:
    """``"finished"`` (a result), ``"failed"`` (an error recorded) or ``"pending"``."""
    if read_result(folder) is not None:
        return "finished"
    return "failed" if (Path(folder) / ERROR_FILE).exists() else "pending"


def _append_run(folder: Path, event: str, **fields: Any) -> None:
    line = {"event": event, "time": _now(), "host": socket.gethostname(), "pid": os.getpid()}
    line.update(fields)
    with open(folder / RUNS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(jsonable(line)) + "\n")


def collect_rows(
    root: str | os.PathLike[str], names: Sequence[str], rows: Rows = tables_of
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Rows of the finished trials ``names`` of the grid folder ``root``, per table.

    Returns the tables (rows concatenated in the order of ``names``) and the names of
    the trials without a result.
    """
    tables: dict[str, list[dict[str, Any]]] = {}
    missing = []
    for name in names:
        doc = read_result(Path(root) / TRIALS_DIR / name)
        if doc is None:
            missing.append(name)
            continue
        for table, part in rows(doc).items():
            tables.setdefault(table, []).extend(dict(r) for r in part)
    return tables, missing


# ------------------------------------------------------------------- one trial
def _status(
    trial: GridTrial, status: str, result: Mapping[str, Any] | None = None, error: str | None = None
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


def run_one(
    trial: GridTrial, compute: Compute, root: str | os.PathLike[str], options: RunOptions
) -> dict[str, Any]:
    """Run one trial to completion, or skip it if finished (or busy in another process).

    Returns a status dict: ``name``, ``hash``, ``status`` (``"done"``: ran now;
    ``"skipped"``: was finished; ``"busy"``: another process holds it), ``test_acc``,
    ``seconds``, ``resumed_from`` (None where the result has none). Errors propagate.
    """
    root = Path(root)
    folder = trial_dir(root, trial)
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
        write_json(folder / "config.json", {"name": trial.name, "hash": trial.hash, **trial.params})
        _append_run(folder, "start", device=options.device)
        result = compute(trial, folder, root, options)
        seconds = time.perf_counter() - t0
        doc = {"format": _RESULT_FORMAT, "version": _VERSION, "name": trial.name}
        doc["hash"] = trial.hash
        doc.update(result)  # the runner's own keys below win over the compute's
        doc.update(seconds=seconds, host=socket.gethostname(), finished=_now())
        text = json.dumps(doc, indent=1, default=_scalar) + "\n"  # NaN kept: Python reads it
        atomic_write_bytes(folder / RESULT_FILE, text.encode())
        _append_run(folder, "done", seconds=round(seconds, 3))
        with contextlib.suppress(FileNotFoundError):
            (folder / ERROR_FILE).unlink()
    return _status(trial, "done", doc)


def _run_safely(
    trial: GridTrial, compute: Compute, root: str, options: RunOptions
) -> dict[str, Any]:
    """:func:`run_one`, with any error recorded in the trial's folder and returned."""
    try:
        return run_one(trial, compute, root, options)
    except Exception as exc:
        folder = trial_dir(root, trial)
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / ERROR_FILE, traceback.format_exc().encode())
            _append_run(folder, "failed", error=message)
        return _status(trial, "failed", error=message)


@dataclass
class GridReport:
    """What :func:`run_grid` did.

    ``statuses`` holds one status dict per trial handled (see :func:`run_one`;
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

    def failures(self) -> list[dict[str, Any]]:
        """The statuses of the trials that failed."""
        return [s for s in self.statuses if s["status"] == "failed"]
