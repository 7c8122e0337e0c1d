"""The evidence experiments: do PHEW subnetworks learn fast and generalize well?

``learn-fast`` (ResNet20, Fashion-MNIST padded to 32x32: first-epoch loss curves),
``generalize`` (LeNet5 on the full training set), ``sanity`` (layer-wise shuffle,
re-initialisation and inverted ranking of every method, Frankle et al. 2021) and
``throughput`` (masked against dense training speed). Registered in
:data:`pathnet.experiments.named.EXPERIMENTS`; run with ``pathnet experiment NAME``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pathnet.experiments.config import DENSE, Trial
from pathnet.experiments.named import (
    DATA_FREE,
    DENSITIES,
    METHODS,
    RESNET20_FMNIST,
    SEEDS,
    Experiment,
    Results,
    _cells,
    _group,
    _machine,
    _no_report,
    _no_trials,
    _pivot,
    _row,
    _seeds_note,
    _summary,
    _train_settings,
    _values,
    _write_rows,
    _write_text,
    claim_line,
    fmt_ms,
    mean_std,
    register,
)

__all__ = ["SANITY_CHECKS_RUN", "SANITY_DENSITY"]


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


def _figures(results: Results, rows: Sequence[Mapping[str, Any]], folder: Path) -> list[Path]:
    """First-epoch loss curves and test accuracy against density (dense in the caption)."""
    from pathnet import figures

    t0 = results[0][0]
    what = f"{t0.model} on {t0.dataset}, {t0.train.epochs} epoch(s) on {rows[0]['n_train']} images"
    written = []
    steps = [
        {"method": t.method, "density": t.density, "seed": t.seed, **s}
        for t, d in results if d for s in d.get("steps") or [] if s["epoch"] == 1
    ]  # fmt: skip
    if steps:
        fig = figures.loss_curves(
            steps, title=f"{t0.model}, first epoch",
            caption=f"{what}; training loss per window of {t0.log_every} steps of batch "
                    f"{t0.train.batch_size}.",
        )  # fmt: skip
        written.append(figures.save_figure(fig, folder / "loss_first_epoch.png"))
    done = [r for r in rows if r["finished"] and r["method"] != DENSE]
    if done:
        fig = figures.accuracy_vs_density(
            done, title="test accuracy",
            caption=f"{what}; dense: {fmt_ms(_values(rows, 'test_acc', method=DENSE))}%.",
        )  # fmt: skip
        written.append(figures.save_figure(fig, folder / "accuracy_vs_density.png"))
    return written


def _report_learn_fast(results: Results, folder: Path, profile: str) -> list[Path]:

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
    written += _figures(results, rows, folder)
    lines = [
        f"# learn-fast: {model} on {t0.dataset} ({profile} profile)",
        "",
        f"{_seeds_note(rows)}; {t0.train.epochs} epoch(s) on {rows[0]['n_train']} training "
        f"images, batch {t0.train.batch_size}, lr {t0.train.lr:g}; test on {rows[0]['n_test']} "
        f"images. Machine: {_machine()}.",
        "",
        "## Mean training loss over the first epoch (mean ± std over seeds)",
        "",
        _pivot(rows, "first_epoch_loss", densities, methods, scale=1.0, digits=3),
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
                higher_is_better=False, what="first-epoch loss", scale=1.0, unit="", digits=3,
            ))  # fmt: skip
    lines += _accuracy_claims(rows, densities, methods)
    written.append(_write_text(folder / "report.md", "\n".join(lines) + "\n"))
    return written


def _accuracy_claims(
    rows: Sequence[Mapping[str, Any]], densities: Sequence[float], methods: Sequence[str]
) -> list[str]:
    """The paper's "generalizes well" (PHEW against each data-free method) and
    "SynFlow-L2's bottlenecks hurt" (PHEW, which keeps layers wide, against SynFlow-L2)."""
    lines = []
    for d in densities:
        for other in [m for m in DATA_FREE if m in methods and m != "synflow_l2"]:
            lines.append("- " + claim_line(
                f"generalizes well at {100 * d:g}%", "phew",
                _values(rows, "test_acc", method="phew", density=d), other,
                _values(rows, "test_acc", method=other, density=d),
            ))  # fmt: skip
        if "synflow_l2" in methods:
            lines.append("- " + claim_line(
                f"SynFlow-L2's bottlenecks hurt at {100 * d:g}% (PHEW vs SynFlow-L2)", "phew",
                _values(rows, "test_acc", method="phew", density=d), "synflow_l2",
                _values(rows, "test_acc", method="synflow_l2", density=d),
            ))  # fmt: skip
    return lines


def _report_generalize(results: Results, folder: Path, profile: str) -> list[Path]:

    rows = [_row(t, d) for t, d in results]
    densities = sorted({t.density for t, _ in results if t.method != DENSE}, reverse=True)
    methods = [m for m in METHODS if any(t.method == m for t, _ in results)]
    t0 = results[0][0]
    written = [
        _write_rows(rows, folder / "results.csv"),
        _write_rows(_summary(rows, ("method", "density"), ("test_acc",)), folder / "summary.csv"),
    ]
    written += _figures(results, rows, folder)
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
        _pivot(rows, "first_epoch_loss", densities, methods, scale=1.0, digits=3),
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
        ("lenet5", {}, 0, 256 if quick else 30_000)
    ]
    if not quick:
        cases.append(("resnet20", RESNET20_FMNIST["model_options"], 2, 1024))
    repeats = 1 if quick else 5
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
    budget={"default": "5 alternated repeats of one epoch: LeNet5 on 30,000 images, ResNet20 "
                       "on 1,024", "quick": "LeNet5 on 256 images, once",
            "paper": "as default"},
))  # fmt: skip
