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
    beyond = abs(diff) > spread
    verdict = (
        "**supported**" if better and beyond
        else "**contradicted**" if beyond
        else "**not resolved** (within the seed spread)"
    )  # fmt: skip
    return (
        f"{claim}: {a} {ma * scale:.1f} ± {sa * scale:.1f} vs {b} {mb * scale:.1f} ± "
        f"{sb * scale:.1f} {what}: {a} {'better' if better else 'worse'} by "
        f"{abs(diff) * scale:.1f}{unit}, {'beyond' if beyond else 'within'} the seed spread "
        f"({spread * scale:.1f}): {verdict}."
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
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["finished"]:
            groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, members in groups.items():
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
    **where: Any,
) -> str:
    """A markdown table: one row per method, one column per density, mean ± std."""
    head = "| method | " + " | ".join(f"{d:g}" for d in densities) + " |"
    lines = [head, "|" + "---|" * (len(densities) + 1)]
    for m in methods:
        cells = []
        for d in densities:
            dd = 1.0 if m == DENSE else d
            cells.append(fmt_ms(_values(rows, metric, method=m, density=dd, **where), scale))
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


# ------------------------------------------------------------------ the experiments
def _train_settings(profile: str, default: Mapping[str, Any], quick: Mapping[str, Any],
                    paper_log_every: int) -> dict[str, Any]:  # fmt: skip
    if profile == "paper":
        return {**PAPER, "log_every": paper_log_every}
    return dict(quick if profile == "quick" else default)


def _learn_fast_trials(profile: str) -> list[Trial]:
    fixed = _train_settings(
        profile,
        default={"epochs": 1, "train_subset": 3000, "test_subset": 1000, "log_every": 2},
        quick={
            "epochs": 1,
            "train_subset": 256,
            "test_subset": 100,
            "log_every": 1,
            "batch_size": 64,
        },
        paper_log_every=20,
    )
    fixed.update(RESNET20_FMNIST, dataset="fashion-mnist")
    if profile == "quick":
        return _cells(("dense", "phew", "random"), (0.1,), (0,), fixed)
    return _cells(METHODS, DENSITIES, SEEDS, fixed)


_LENET_DEFAULT = {"model": "lenet5", "dataset": "fashion-mnist", "epochs": 3, "log_every": 25}
_LENET_QUICK = {"model": "lenet5", "dataset": "fashion-mnist", "epochs": 1, "log_every": 2,
                "train_subset": 500, "test_subset": 200, "batch_size": 64}  # fmt: skip


def _lenet_fixed(profile: str) -> dict[str, Any]:
    fixed = _train_settings(profile, _LENET_DEFAULT, _LENET_QUICK, paper_log_every=100)
    return {**fixed, "model": "lenet5", "dataset": "fashion-mnist"}


def _generalize_trials(profile: str) -> list[Trial]:
    fixed = _lenet_fixed(profile)
    if profile == "quick":
        return _cells(("dense", "phew", "random"), (0.1,), (0, 1), fixed)
    return _cells(METHODS, DENSITIES, SEEDS, fixed)


SANITY_DENSITY = 0.05
SANITY_CHECKS_RUN = ("shuffle", "reinit_kaiming", "invert")


def _sanity_trials(profile: str) -> list[Trial]:
    fixed = _lenet_fixed(profile)
    checks = ("none", *SANITY_CHECKS_RUN)
    if profile == "quick":
        return _cells(("phew", "magnitude"), (0.1,), (0,), fixed, checks)
    return _cells(METHODS[1:], (SANITY_DENSITY,), SEEDS, fixed, checks)


def _report_learn_fast(results: Results, folder: Path, profile: str) -> list[Path]:
    from pathnet import figures

    rows = [_row(t, d) for t, d in results]
    steps = [
        {"trial": t.name, "method": t.method, "density": t.density, "seed": t.seed, **s}
        for t, d in results
        if d
        for s in d.get("steps") or []
    ]
    densities = sorted({t.density for t, _ in results if t.method != DENSE}, reverse=True)
    methods = [m for m in METHODS if any(t.method == m for t, _ in results)]
    written = [
        _write_rows(rows, folder / "results.csv"),
        _write_rows(steps, folder / "steps.csv"),
        _write_rows(
            _summary(rows, ("method", "density"), ("test_acc", "first_epoch_loss")),
            folder / "summary.csv",
        ),
    ]
    t0 = results[0][0]
    model = t0.model
    first = [s for s in steps if s["epoch"] == 1]
    if first:
        fig = figures.loss_curves(
            first, title=f"{model}, first epoch",
            caption=f"{model} on {t0.dataset}; training loss per window of "
                    f"{t0.log_every} steps of batch {t0.train.batch_size}.",
        )  # fmt: skip
        written.append(figures.save_figure(fig, folder / "loss_first_epoch.png"))
    done = [r for r in rows if r["finished"] and r["method"] != DENSE]
    if done:
        fig = figures.accuracy_vs_density(
            [{**r, "model": model} for r in done], title="test accuracy",
            caption=f"{model} on {t0.dataset} after {t0.train.epochs} epoch(s) "
                    f"of {rows[0]['n_train']} images; dense: "
                    f"{fmt_ms(_values(rows, 'test_acc', method=DENSE))}%.",
        )  # fmt: skip
        written.append(figures.save_figure(fig, folder / "accuracy_vs_density.png"))
    lines = [
        f"# learn-fast: {model} on {t0.dataset} ({profile} profile)",
        "",
        f"{_seeds_note(rows)}; {t0.train.epochs} epoch(s) on {rows[0]['n_train']} training "
        f"images, batch {t0.train.batch_size}, lr {t0.train.lr:g}; test on {rows[0]['n_test']} "
        f"images. Machine: {_machine()}.",
        "",
        "## Mean training loss over the first epoch (mean ± std over seeds)",
        "",
        _pivot(rows, "first_epoch_loss", densities, methods, scale=1.0),
        "",
        "## Test accuracy (%) at the end of the budget",
        "",
        _pivot(rows, "test_acc", densities, methods),
        "",
        "## The paper's claims",
        "",
    ]
    for d in densities:
        for other in [m for m in DATA_FREE if m in methods]:
            lines.append("- " + claim_line(
                f"learns fast at {100 * d:g}%", "phew",
                _values(rows, "first_epoch_loss", method="phew", density=d), other,
                _values(rows, "first_epoch_loss", method=other, density=d),
                higher_is_better=False, what="first-epoch loss", scale=1.0, unit="",
            ))  # fmt: skip
    lines += _accuracy_claims(rows, densities, methods)
    written.append(_write_text(folder / "report.md", "\n".join(lines) + "\n"))
    return written


def _accuracy_claims(
    rows: Sequence[Mapping[str, Any]], densities: Sequence[float], methods: Sequence[str]
) -> list[str]:
    lines = []
    for d in densities:
        for other in [m for m in DATA_FREE if m in methods]:
            lines.append("- " + claim_line(
                f"generalizes well at {100 * d:g}%", "phew",
                _values(rows, "test_acc", method="phew", density=d), other,
                _values(rows, "test_acc", method=other, density=d),
            ))  # fmt: skip
        if "synflow_l2" in methods and "synflow" in methods:
            lines.append("- " + claim_line(
                f"SynFlow-L2's bottlenecks hurt at {100 * d:g}% (vs SynFlow)", "synflow",
                _values(rows, "test_acc", method="synflow", density=d), "synflow_l2",
                _values(rows, "test_acc", method="synflow_l2", density=d),
            ))  # fmt: skip
    return lines


def _write_text(path: Path, text: str) -> Path:
    from pathnet._io import atomic_write_bytes

    return atomic_write_bytes(path, text.encode())


def _report_generalize(results: Results, folder: Path, profile: str) -> list[Path]:
    from pathnet import figures

    rows = [_row(t, d) for t, d in results]
    densities = sorted({t.density for t, _ in results if t.method != DENSE}, reverse=True)
    methods = [m for m in METHODS if any(t.method == m for t, _ in results)]
    t0 = results[0][0]
    written = [
        _write_rows(rows, folder / "results.csv"),
        _write_rows(_summary(rows, ("method", "density"), ("test_acc",)), folder / "summary.csv"),
    ]
    done = [r for r in rows if r["finished"] and r["method"] != DENSE]
    if done:
        fig = figures.accuracy_vs_density(
            done, title="test accuracy",
            caption=f"{t0.model} on {t0.dataset}, {t0.train.epochs} epoch(s) on "
                    f"{rows[0]['n_train']} images; dense: "
                    f"{fmt_ms(_values(rows, 'test_acc', method=DENSE))}%.",
        )  # fmt: skip
        written.append(figures.save_figure(fig, folder / "accuracy_vs_density.png"))
    steps = [
        {"method": t.method, "density": t.density, "seed": t.seed, **s}
        for t, d in results if d for s in d.get("steps") or [] if s["epoch"] == 1
    ]  # fmt: skip
    if steps:
        fig = figures.loss_curves(steps, title=f"{t0.model}, first epoch",
                                  caption=f"{t0.model} on {t0.dataset}.")  # fmt: skip
        written.append(figures.save_figure(fig, folder / "loss_first_epoch.png"))
    lines = [
        f"# generalize: {t0.model} on {t0.dataset} ({profile} profile)",
        "",
        f"{_seeds_note(rows)}; {t0.train.epochs} epoch(s) on {rows[0]['n_train']} training "
        f"images (lr {t0.train.lr:g}, x{t0.train.gamma:g} at epochs "
        f"{list(t0.train.resolved_milestones())}), test on {rows[0]['n_test']} images. "
        f"Machine: {_machine()}.",
        "",
        "## Test accuracy (%)",
        "",
        _pivot(rows, "test_acc", densities, methods),
        "",
        "## Mean training loss over the first epoch",
        "",
        _pivot(rows, "first_epoch_loss", densities, methods, scale=1.0),
        "",
        "## The paper's claims",
        "",
        *_accuracy_claims(rows, densities, methods),
    ]
    written.append(_write_text(folder / "report.md", "\n".join(lines) + "\n"))
    return written


def _report_sanity(results: Results, folder: Path, profile: str) -> list[Path]:
    from pathnet import figures

    rows = [_row(t, d) for t, d in results]
    t0 = results[0][0]
    base = {(r["method"], r["density"], r["seed"]): r["test_acc"] for r in rows
            if r["sanity"] == "none" and r["finished"]}  # fmt: skip
    deltas = []
    for r in rows:
        key = (r["method"], r["density"], r["seed"])
        if r["sanity"] != "none" and r["finished"] and base.get(key) is not None:
            deltas.append({**r, "delta": float(r["test_acc"]) - float(base[key])})
    summary = []
    for (m, check), members in _group(deltas, ("method", "sanity")).items():
        dm, ds, n = mean_std([x["delta"] for x in members])
        am, asd, _ = mean_std([x["test_acc"] for x in members])
        summary.append({"method": m, "sanity": check, "n": n, "acc_mean": am, "acc_std": asd,
                        "delta_mean": 100 * dm, "delta_std": 100 * ds})  # fmt: skip
    written = [
        _write_rows(rows, folder / "results.csv"),
        _write_rows(deltas, folder / "deltas.csv"),
        _write_rows(summary, folder / "summary.csv"),
    ]
    if summary:
        fig = figures.sanity_deltas(
            summary, title=f"{t0.model}, density {100 * t0.density:g}%: sanity checks",
            checks=SANITY_CHECKS_RUN,
            caption="Change of test accuracy against the method's own mask and weights "
                    "(same seed); error bars: one std over seeds.",
        )  # fmt: skip
        written.append(figures.save_figure(fig, folder / "sanity_deltas.png"))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    head = "| method | own mask (%) | " + " | ".join(f"{c} (Δ points)" for c in SANITY_CHECKS_RUN)
    lines = [
        f"# sanity: {t0.model} on {t0.dataset} at density {100 * t0.density:g}% ({profile})",
        "",
        f"{_seeds_note(rows)}; the same training as the generalize experiment. Δ is the "
        "test accuracy with the check minus without, per seed (mean ± std). Machine: "
        f"{_machine()}.",
        "",
        head + " |",
        "|" + "---|" * (len(SANITY_CHECKS_RUN) + 2),
    ]
    by = {(s["method"], s["sanity"]): s for s in summary}
    for m in methods:
        cells = [fmt_ms(_values(rows, "test_acc", method=m, sanity="none"))]
        for c in SANITY_CHECKS_RUN:
            s = by.get((m, c))
            cells.append("-" if s is None else f"{s['delta_mean']:+.1f} ± {s['delta_std']:.1f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "A check whose |Δ| is within its std did not change the result beyond the "
              "seed spread (the mask then carries no information the check destroys).", ""]  # fmt: skip
    written.append(_write_text(folder / "report.md", "\n".join(lines) + "\n"))
    return written


def _group(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> dict[tuple[Any, ...], list[Mapping[str, Any]]]:
    out: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


# ---------------------------------------------------------------------- throughput
def _run_throughput(folder: Path, profile: str, log: Callable[[str], None]) -> list[Path]:
    """Images/s of masked (PHEW, 5%) against dense training, alternated, same run."""
    import time

    import torch

    from pathnet import models
    from pathnet.data import pad_images, subset_per_class
    from pathnet.experiments.lookups import splits
    from pathnet.select.registry import select
    from pathnet.train import fit

    quick = profile == "quick"
    cases: list[tuple[str, Mapping[str, Any], int, int]] = [
        ("lenet5", {}, 0, 256 if quick else 10_000)
    ]
    if not quick:
        cases.append(("resnet20", RESNET20_FMNIST["model_options"], 2, 1024))
    repeats = 1 if quick else 3
    train, _ = splits("fashion-mnist", None, False)
    rows: list[dict[str, Any]] = []
    for name, options, pad, n in cases:
        data = pad_images(subset_per_class(train, n // 10, seed=0), pad)
        mask = select("phew", models.build(name, seed=0, **options), SANITY_DENSITY, seed=0)
        for rep in range(repeats):
            for kind in ("dense", "masked"):
                model = models.build(name, seed=0, **options)
                t = time.perf_counter()
                res = fit(model, mask if kind == "masked" else None, data, epochs=1, seed=rep,
                          progress=False, device="cpu")  # fmt: skip
                wall = time.perf_counter() - t
                seconds = float(res.history[0]["time_s"])
                rows.append({"model": name, "kind": kind, "repeat": rep, "images": len(data),
                             "epoch_seconds": seconds, "images_per_s": len(data) / seconds,
                             "fit_seconds": wall, "threads": torch.get_num_threads()})  # fmt: skip
                log(f"throughput {name} {kind} #{rep}: {len(data) / seconds:.0f} images/s")
    summary = []
    for name, *_ in cases:
        dense = statistics.median(r["images_per_s"] for r in rows
                                  if r["model"] == name and r["kind"] == "dense")  # fmt: skip
        masked = statistics.median(r["images_per_s"] for r in rows
                                   if r["model"] == name and r["kind"] == "masked")  # fmt: skip
        summary.append({"model": name, "dense_images_per_s": round(dense, 1),
                        "masked_images_per_s": round(masked, 1),
                        "masked_over_dense": round(masked / dense, 3),
                        "masking_cost_pct": round(100 * (dense / masked - 1), 1)})  # fmt: skip
    lines = [
        f"# throughput: masked vs dense training ({profile} profile)",
        "",
        f"PHEW masks at {100 * SANITY_DENSITY:g}% held with `mask_mode='hard'`; one epoch "
        f"per measurement, dense and masked alternated, {repeats} repeat(s), median. "
        f"Machine: {_machine()}, torch threads {torch.get_num_threads()}.",
        "",
        "| model | dense (images/s) | masked (images/s) | masked / dense | masking cost |",
        "|---|---|---|---|---|",
        *[f"| {s['model']} | {s['dense_images_per_s']:.0f} | {s['masked_images_per_s']:.0f} | "
          f"{s['masked_over_dense']:.3f} | {s['masking_cost_pct']:+.1f}% |" for s in summary],
        "",
    ]  # fmt: skip
    return [
        _write_rows(rows, folder / "results.csv"),
        _write_rows(summary, folder / "summary.csv"),
        _write_text(folder / "report.md", "\n".join(lines) + "\n"),
    ]


def _no_trials(profile: str) -> list[Trial]:
    return []


def _no_report(results: Results, folder: Path, profile: str) -> list[Path]:
    return []


#: The experiments ``pathnet experiment`` runs, by name (``all`` runs them in this order).
EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add ``experiment`` to :data:`EXPERIMENTS` (replacing one of the same name)."""
    EXPERIMENTS[experiment.name] = experiment
    return experiment


register(Experiment(
    "learn-fast",
    "ResNet20 on Fashion-MNIST (padded to 32x32): first-epoch loss curves and test accuracy "
    "of 9 selection methods and dense at 10/5/2%, 3 seeds",
    grid="fmnist-resnet20",
    trials=_learn_fast_trials,
    report=_report_learn_fast,
    budget={
        "default": "1 epoch on 3,000 training images (24 steps of 128, loss every 2 steps), "
                   "test on 1,000; 84 trials",
        "quick": "dense, phew, random at 10%, 1 seed, 256 images",
        "paper": "the authors' recipe, full training set, 160 epochs (a GPU's job)",
    },
))  # fmt: skip
register(Experiment(
    "generalize",
    "LeNet5 on the full Fashion-MNIST: test accuracy of 9 methods and dense at 10/5/2%, "
    "3 seeds",
    grid="fmnist-lenet5",
    trials=_generalize_trials,
    report=_report_generalize,
    budget={
        "default": "3 epochs on all 60,000 training images (lr 0.1, x0.1 after epochs 1 and 2),"
                   " test on all 10,000; 84 trials",
        "quick": "dense, phew, random at 10%, 2 seeds, 500 images, 1 epoch",
        "paper": "the authors' recipe, 160 epochs",
    },
))  # fmt: skip
register(Experiment(
    "sanity",
    "LeNet5 at 5%: layer-wise shuffle, kaiming re-init and inverted ranking for every "
    "method (Frankle et al. 2021; the authors' LWRS/ReInit ablations), 3 seeds",
    grid="fmnist-lenet5",
    trials=_sanity_trials,
    report=_report_sanity,
    budget={
        "default": "generalize's training; 66 trials beside the 27 it shares with generalize",
        "quick": "phew and magnitude at 10%, 1 seed, 500 images",
        "paper": "the authors' recipe, 160 epochs",
    },
))  # fmt: skip
register(Experiment(
    "throughput",
    "images/s of masked (PHEW 5%) against dense training of LeNet5 and ResNet20, same run",
    grid="",
    trials=_no_trials,
    report=_no_report,
    run=_run_throughput,
    budget={"default": "3 alternated repeats of one epoch: LeNet5 on 10,000 images, ResNet20 "
                       "on 1,024", "quick": "LeNet5 on 256 images, once",
            "paper": "as default"},
))  # fmt: skip


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

    if name not in EXPERIMENTS:
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
