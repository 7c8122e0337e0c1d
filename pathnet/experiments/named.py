"""Named experiments: ``pathnet experiment NAME`` (``--list``, ``--quick``, ``--recipe paper``).

Each experiment is a list of sweep trials (:class:`~pathnet.experiments.config.Trial`)
per *profile*, run resumably by the grid runner (:func:`~pathnet.experiments.runner.run_grid`:
local pool, submitit or SLURM), then a report: a tidy CSV of every trial, summary tables
(mean ± std over seeds), figures and a markdown report.

Profiles
--------
``default``
    The CPU budget of a 2-core machine (the sizes are in each experiment's ``budget``).
``quick``
    A few small trials of the same code path, under two minutes (run by the tests).
``paper``
    The PHEW authors' recipe: SGD with Nesterov momentum 0.9, lr 0.1 multiplied by 0.1 at
    epochs 80 and 120, 160 epochs, batch 128, weight decay 1e-4, the full training set.

Seeds: trial ``k`` of a cell uses ``seed = init_seed = mask_seed = k``, so the initial
weights, the mask and the data order all vary between seeds.

Layout of ``--out DIR``::

    DIR/trials-<grid>/          the runner's folder (trials/, masks/, sweep.json); experiments
                                that share trials (generalize and sanity) share it
    DIR/<name>/                 the report: results.csv, summary.csv, *.png, report.md
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathnet.experiments.config import DENSE, Trial

__all__ = [
    "DATA_FREE",
    "EXPERIMENTS",
    "METHODS",
    "PROFILES",
    "Experiment",
    "claim_line",
    "experiments",
    "mean_std",
    "run_experiment",
]

_PREFIX = "pathnet.experiments"

#: What a report reads: every trial with its ``result.json`` document (None: unfinished).
Results = Sequence[tuple[Trial, Mapping[str, Any] | None]]

#: Profiles every experiment has.
PROFILES = ("default", "quick", "paper")

#: The methods of the evidence grids, in the order of the tables.
METHODS = (
    "dense", "phew", "random_paths", "synflow_l2", "synflow", "snip", "grasp", "magnitude",
    "random", "erk",
)  # fmt: skip

#: Methods that select without data (PHEW's competitors in the paper's claims).
DATA_FREE = ("random_paths", "synflow_l2", "synflow", "magnitude", "random", "erk")

DENSITIES = (0.1, 0.05, 0.02)
SEEDS = (0, 1, 2)

#: The authors' recipe (the TrainConfig defaults: 160 epochs, milestones 80 and 120).
PAPER = {"epochs": 160, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "nesterov": True,
         "weight_decay": 1e-4, "milestones": [80, 120], "gamma": 0.1}  # fmt: skip

RESNET20_FMNIST: dict[str, Any] = {"model": "resnet20", "model_options": {"in_channels": 1, "input_size": 32},
                   "pad": 2}  # fmt: skip


@dataclass(frozen=True)
class Experiment:
    """A named experiment: its trials per profile and how its report is made.

    Attributes
    ----------
    name : str
    summary : str
        One line for ``pathnet experiment --list``.
    grid : str
        The runner folder's name (``trials-<grid>``); experiments sharing trials share it.
    trials : callable
        ``trials(profile) -> list[Trial]``.
    report : callable
        ``report(results, folder, profile) -> list[Path]``: ``results`` pairs each trial
        with its ``result.json`` document (None when unfinished).
    budget : dict of str to str
        What each profile runs, in words (for ``--list`` and the report).
    run : callable, optional
        Replaces the grid for experiments that are not trials (throughput):
        ``run(folder, profile, log) -> list[Path]``.
    """

    name: str
    summary: str
    grid: str
    trials: Callable[[str], list[Trial]]
    report: Callable[[Results, Path, str], list[Path]]
    budget: Mapping[str, str] = field(default_factory=dict)
    run: Callable[[Path, str, Callable[[str], None]], list[Path]] | None = None


def _cells(
    methods: Sequence[str],
    densities: Sequence[float],
    seeds: Sequence[int],
    fixed: Mapping[str, Any],
    sanity: Sequence[str] = ("none",),
) -> list[Trial]:
    """Trials of ``methods x densities x seeds (x sanity)`` with ``fixed`` settings.

    The dense baseline comes once per seed; a sanity check a method cannot take
    (``invert`` without a ranking) is left out.
    """
    from pathnet.sanity import inverted_method

    out: list[Trial] = []
    seen: set[str] = set()
    for seed in seeds:
        for check in sanity:
            for method in methods:
                if check != "none" and (method == DENSE or (
                        check == "invert" and inverted_method(method) is None)):  # fmt: skip
                    continue
                for density in densities:
                    t = Trial.from_settings(
                        {"method": method, "density": density, "seed": seed,
                         "init_seed": seed, "mask_seed": seed, "sanity": check, **fixed}
                    )  # fmt: skip
                    if t.hash not in seen:
                        seen.add(t.hash)
                        out.append(t)
    return out


# ----------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of ``values``.

    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0, 3)
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return statistics.fmean(vals), sd, len(vals)


def fmt_ms(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """``"mean ± std"`` of ``values`` times ``scale`` (percent by default), or ``"-"``.

    >>> fmt_ms([0.5, 0.7])
    '60.0 ± 14.1'
    """
    m, s, n = mean_std(values)
    if n == 0:
        return "-"
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def claim_line(
    claim: str,
    a: str,
    a_values: Sequence[float],
    b: str,
    b_values: Sequence[float],
    *,
    higher_is_better: bool = True,
    what: str = "test accuracy",
    scale: float = 100.0,
    unit: str = " points",
    digits: int = 1,
) -> str:
    """One sentence: does ``a`` beat ``b`` by more than the seed spread?

    The spread is the standard deviation of the difference of the two means' seeds,
    ``sqrt(std_a**2 + std_b**2)``; the difference "exceeds the spread" when
    ``|mean_a - mean_b|`` is larger.

    >>> claim_line("PHEW generalizes better", "phew", [0.9, 0.92], "random", [0.8, 0.81])
    'PHEW generalizes better: phew 91.0 ± 1.4 vs random 80.5 ± 0.7 test accuracy: phew better by 10.5 points, beyond the seed spread (1.6): **supported**.'
    """
    ma, sa, na = mean_std(a_values)
    mb, sb, nb = mean_std(b_values)
    if na == 0 or nb == 0:
        return f"{claim}: not measured (no finished runs of {a if na == 0 else b})."
    spread = math.sqrt(sa * sa + sb * sb)
    diff = ma - mb
    better = diff > 0 if higher_is_better else diff < 0
    beyond = abs(diff) > spread and min(na, nb) > 1
    if min(na, nb) < 2:
        verdict = "**not resolved** (fewer than 2 seeds: no spread)"
    elif better and beyond:
        verdict = "**supported**"
    elif beyond:
        verdict = "**contradicted**"
    else:
        verdict = "**not resolved** (within the seed spread)"
    k = digits
    return (
        f"{claim}: {a} {ma * scale:.{k}f} ± {sa * scale:.{k}f} vs {b} {mb * scale:.{k}f} ± "
        f"{sb * scale:.{k}f} {what}: {a} {'better' if better else 'worse'} by "
        f"{abs(diff) * scale:.{k}f}{unit}, {'beyond' if beyond else 'within'} the seed spread "
        f"({spread * scale:.{k}f}): {verdict}."
    )


# --------------------------------------------------------------------------- reports
def _row(trial: Trial, doc: Mapping[str, Any] | None) -> dict[str, Any]:
    final = (doc or {}).get("final") or {}
    history = (doc or {}).get("history") or []
    steps = (doc or {}).get("steps") or []
    return {
        "trial": trial.name,
        "model": trial.model,
        "method": trial.method,
        "density": trial.density,
        "seed": trial.seed,
        "sanity": trial.sanity,
        "epochs": trial.train.epochs,
        "n_train": (doc or {}).get("n_train"),
        "n_test": (doc or {}).get("n_test"),
        "finished": doc is not None,
        "test_acc": final.get("test_acc"),
        "test_loss": final.get("test_loss"),
        "train_acc": final.get("train_acc"),
        "train_loss": final.get("train_loss"),
        "first_epoch_loss": (
            statistics.fmean(float(s["train_loss"]) for s in steps if s["epoch"] == 1)
            if steps
            else None
        ),
        "train_seconds": round(sum(float(h.get("time_s") or 0) for h in history), 2),
    }


def _write_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    from pathnet._io import write_csv

    return write_csv([dict(r) for r in rows], path)


def _summary(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """mean/std/n of ``metrics`` per group of ``keys`` (finished trials only)."""
    out = []
    for key, members in _group([r for r in rows if r["finished"]], keys).items():
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for m in metrics:
            mean, sd, n = mean_std([r[m] for r in members if r[m] is not None])
            row.update({f"{m}_mean": mean, f"{m}_std": sd, "n": n})
        out.append(row)
    return out


def _values(rows: Sequence[Mapping[str, Any]], metric: str, **where: Any) -> list[float]:
    return [
        float(r[metric])
        for r in rows
        if r["finished"] and r[metric] is not None and all(r[k] == v for k, v in where.items())
    ]


def _pivot(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    densities: Sequence[float],
    methods: Sequence[str],
    *,
    scale: float = 100.0,
    digits: int = 1,
    **where: Any,
) -> str:
    """A markdown table: one row per method, one column per density, mean ± std."""
    head = "| method | " + " | ".join(f"{d:g}" for d in densities) + " |"
    lines = [head, "|" + "---|" * (len(densities) + 1)]
    for m in methods:
        cells = []
        for d in densities:
            dd = 1.0 if m == DENSE else d
            cells.append(
                fmt_ms(_values(rows, metric, method=m, density=dd, **where), scale, digits)
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _seeds_note(rows: Sequence[Mapping[str, Any]]) -> str:
    done = sum(1 for r in rows if r["finished"])
    return f"{done} of {len(rows)} trials finished"


def _machine() -> str:
    import platform

    import torch

    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )


# ------------------------------------------------------------------------ helpers
def _train_settings(profile: str, default: Mapping[str, Any], quick: Mapping[str, Any],
                    paper_log_every: int) -> dict[str, Any]:  # fmt: skip
    if profile == "paper":
        return {**PAPER, "log_every": paper_log_every}
    return dict(quick if profile == "quick" else default)


def _write_text(path: Path, text: str) -> Path:
    from pathnet._io import atomic_write_bytes

    return atomic_write_bytes(path, text.encode())


def _group(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> dict[tuple[Any, ...], list[Mapping[str, Any]]]:
    out: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def _no_trials(profile: str) -> list[Trial]:
    return []


def _no_report(results: Results, folder: Path, profile: str) -> list[Path]:
    return []


#: The experiments ``pathnet experiment`` runs, by name (``all`` runs them in this order).
#: Filled on first use by importing :data:`BUILTIN_MODULES` (see :func:`experiments`).
EXPERIMENTS: dict[str, Experiment] = {}

#: Modules that register the built-in experiments when imported.
BUILTIN_MODULES = ("pathnet.experiments.evidence", "pathnet.experiments.dst_study")


def experiments() -> dict[str, Experiment]:
    """:data:`EXPERIMENTS`, with the built-in ones registered (imported on first use)."""
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return EXPERIMENTS


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to :data:`EXPERIMENTS` (replacing one of the same name)."""
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def run_experiment(
    name: str,
    out: str | os.PathLike[str],
    *,
    profile: str = "default",
    executor: str = "local",
    workers: int = 1,
    options: Any = None,
    report_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    run: bool = True,
) -> list[Path]:
    """Run the experiment ``name`` (resuming finished trials) and write its report.

    Parameters
    ----------
    name : str
        A key of :data:`EXPERIMENTS`.
    out : path-like
        Where the trials go (``out/trials-<grid>``) and, by default, the report
        (``out/<name>``).
    profile : {"default", "quick", "paper"}
    executor, workers, options
        As for :func:`pathnet.experiments.runner.run_grid`.
    report_dir : path-like, optional
        Write the report into ``report_dir/<name>`` instead.
    run : bool, default True
        False only writes the report from the trials finished so far.

    Returns
    -------
    list of pathlib.Path
        The report's files.
    """
    from pathnet.experiments.grid import Grid, GridTrial, read_result, trial_dir
    from pathnet.experiments.runner import failure_message, run_grid
    from pathnet.experiments.sweep import _rows, compute_trial

    if name not in experiments():
        raise ValueError(
            f"{_PREFIX}: unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)}"
        )
    if profile not in PROFILES:
        raise ValueError(
            f"{_PREFIX}: profile must be one of {', '.join(PROFILES)}, got {profile!r}"
        )
    exp = EXPERIMENTS[name]
    folder = Path(report_dir if report_dir is not None else out) / name
    folder.mkdir(parents=True, exist_ok=True)
    if exp.run is not None:
        return exp.run(folder, profile, log) if run else []
    trials = exp.trials(profile)
    root = Path(out) / f"trials-{exp.grid}{'' if profile == 'default' else '-' + profile}"
    if run:
        grid = Grid(
            kind=f"experiment {name}",
            trials=tuple(
                GridTrial(t.name, t.hash, t.to_dict(), {"mask": t.mask_hash}) for t in trials
            ),
            compute=compute_trial,
            rows=_rows,
            name=name,
            plan={"experiment": name, "profile": profile},
        )
        report = run_grid(grid, root, executor=executor, workers=workers, options=options, log=log)
        if not report.ok and report.failures():
            log(failure_message(f"experiment {name}", report))
    results = [(t, read_result(trial_dir(root, t))) for t in trials]
    return exp.report(results, folder, profile)
