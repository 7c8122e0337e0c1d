"""``pathnet reproduce``: the PHEW paper's data-free width and path-kernel figures.

For VGG16 and ResNet20 (CIFAR shapes), each selection method, each density of
the paper's grid ``0.8**k`` (k = 3..18, plus the headline 10%, 5%, 2%) and each
seed (a seed fixes the Kaiming initialisation and the method's own randomness),
it computes layer widths, effective parameters, path counts and the
path-kernel trace, and writes to the output folder:

* ``reproduce_results.csv``: one row per (model, method, density, seed);
* ``reproduce_widths.csv``: one row per (model, method, density, seed, unit group);
* ``reproduce_report.md``: a short markdown report;
* ``widths.png``, ``trace_vs_density.png``, ``effective_params_vs_density.png``,
  ``path_count_vs_density.png``;
* where Fashion-MNIST is found, ``accuracy_vs_density.png`` and
  ``reproduce_accuracy.csv`` for the MLP 784-300-100-10;
* ``reproduce_runs/``: the grid runner's folder (one finished trial per
  ``(model, seed, method)`` and per accuracy run; rerunning reuses them).

The reproduction is a grid definition (:func:`reproduce_grid`) run by
:func:`pathnet.experiments.runner.run_grid`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pathnet._io import atomic_write_bytes, write_csv
from pathnet.experiments.config import config_hash
from pathnet.experiments.lookups import splits
from pathnet.experiments.runner import (
    Grid,
    GridReport,
    GridTrial,
    RunOptions,
    failure_message,
    run_grid,
)

__all__ = [
    "DEFAULT_DENSITIES",
    "DEFAULT_METHODS",
    "RUNS_DIR",
    "ReproduceConfig",
    "analyze_masked",
    "compute_task",
    "draw_figures",
    "nested_form",
    "reproduce",
    "reproduce_grid",
    "select_all",
]

DEFAULT_DENSITIES: tuple[float, ...] = tuple(
    sorted({round(0.8**k, 10) for k in range(3, 19)} | {0.1, 0.05, 0.02}, reverse=True)
)
DEFAULT_METHODS: tuple[str, ...] = (
    "phew",
    "random_paths",
    "synflow_l2",
    "synflow",
    "magnitude",
    "random",
)
WIDTH_DENSITIES: tuple[float, float] = (0.05, 0.02)
#: Sub-folder of the output folder where the grid runner keeps the trials.
RUNS_DIR = "reproduce_runs"


@dataclass(frozen=True)
class ReproduceConfig:
    """What to compute; the defaults are the paper's grid."""

    models: tuple[str, ...] = ("vgg16", "resnet20")
    methods: tuple[str, ...] = DEFAULT_METHODS
    densities: tuple[float, ...] = DEFAULT_DENSITIES
    seeds: tuple[int, ...] = (0, 1, 2)
    synflow_iterations: int = 100
    workers: int = 2
    accuracy: bool = True  # the Fashion-MNIST MLP figure, when the data is found
    accuracy_methods: tuple[str, ...] = ("phew", "synflow_l2", "random")
    accuracy_densities: tuple[float, ...] = (0.1, 0.05, 0.02)
    accuracy_epochs: int = 1
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def method_options(self, method: str) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if method.startswith("synflow"):
            opts["iterations"] = self.synflow_iterations
        opts.update(self.options.get(method, {}))
        return opts


def analyze_masked(
    dag: Any, model: Any = None, mask: Any = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Scalar metrics and per-group widths of an already-masked DAG; the trace and
    the L1 sum on the network itself when its ``model`` and ``mask`` are given
    (else on the DAG, ``method="graph"``)."""
    from pathnet import analysis

    widths = analysis.layer_widths(dag)
    narrow = analysis.bottleneck(dag)
    hidden = [w for w in widths if w.kind in ("hidden", "sum")]
    on: tuple[Any, ...] = (model, mask) if model is not None else (dag,)
    how: Literal["network", "graph"] = "network" if model is not None else "graph"
    scalar = {
        "kept": dag.n_present,
        "effective_params": analysis.effective_params(dag),
        "log10_paths": analysis.path_count(dag),
        "log10_trace": analysis.path_kernel_trace(*on, log10=True, method=how),
        "log10_l1_sum": analysis.edge_weight_sum(*on, p=1, method=how),
        "min_width_frac": narrow.width if narrow else math.nan,
        "narrowest_group": narrow.name if narrow else "",
        "dead_groups": sum(1 for w in hidden if w.active == 0),
    }
    rows = [
        {"group": w.group, "name": w.name, "kind": w.kind, "units": w.units, "active": w.active}
        for w in widths
    ]
    return scalar, rows


def nested_form(method: str) -> Callable[..., list[Any]] | None:
    """The registered method's nested form (all densities from one run), or None."""
    from pathnet.select.registry import get_method

    return get_method(method).nested_form()


def select_all(
    method: str,
    dag: Any,
    model: Any,
    densities: Sequence[float],
    seed: int,
    options: dict[str, Any],
) -> tuple[list[Any], float]:
    """Masks of ``method`` at every density, and the seconds spent selecting.

    Each method's nested form serves every density at about the cost of one call
    (:func:`pathnet.select.registry.select_nested`): PHEW and random paths walk once
    and random, ERK and magnitude draw or sort once (each mask equals a separate
    call); SynFlow and SynFlow-L2 prune along one schedule through every density.
    Methods without a nested form are called once per density.
    """
    from pathnet.select import select_nested

    t = time.perf_counter()
    masks = select_nested(method, model, densities, seed=seed, dag=dag, **options)
    return masks, time.perf_counter() - t


def _paths_task(params: Mapping[str, Any]) -> dict[str, Any]:
    """One (model, seed, method): every density's widths and path metrics."""
    import pathnet
    from pathnet import analysis

    model_name, seed, method = params["model"], params["seed"], params["method"]
    model = pathnet.models.build(model_name, seed=seed)
    dag = pathnet.to_dag(model)
    densities = params["densities"]
    masks, select_s = select_all(method, dag, model, densities, seed, dict(params["options"]))
    results: list[dict[str, Any]] = []
    widths: list[dict[str, Any]] = []
    for density, mask in zip(densities, masks):
        scalar, per_group = analyze_masked(analysis.prepare(dag, mask), model, mask)
        key = {"model": model_name, "method": method, "density": density, "seed": seed}
        results.append({**key, **scalar, "select_s": round(select_s / len(masks), 4)})
        widths.extend({**key, **w} for w in per_group)
    return {"results": results, "widths": widths}


def _accuracy_task(params: Mapping[str, Any], data_root: str | None) -> dict[str, Any]:
    """Train the Fashion-MNIST MLP under one mask."""
    import pathnet
    from pathnet.select import select
    from pathnet.train import fit

    method, density, seed = params["method"], params["density"], params["seed"]
    train, test = splits("fashion-mnist", data_root)
    model = pathnet.models.mlp(seed=seed)
    mask = select(method, model, density, seed=seed, **params["options"])
    result = fit(model, mask, train, test, epochs=params["epochs"], seed=seed, progress=False)
    row = {"model": "mlp", "method": method, "density": density, "seed": seed}
    return {"accuracy": [{**row, "test_acc": result.final["test_acc"]}]}


def compute_task(trial: GridTrial, folder: Path, root: Path, options: RunOptions) -> dict[str, Any]:
    """The reproduction's compute function: a ``paths`` or an ``accuracy`` trial."""
    if trial.params["task"] == "paths":
        return {"tables": _paths_task(trial.params)}
    return {"tables": _accuracy_task(trial.params, options.data_root)}


def _trial(prefix: str, params: dict[str, Any]) -> GridTrial:
    h = config_hash(params)
    return GridTrial(f"{prefix}-{h}", h, params)


def reproduce_grid(config: ReproduceConfig, *, accuracy: bool) -> Grid:
    """The reproduction as a grid definition: one ``paths`` trial per (model, seed, method)
    (every density), biggest first, then (with ``accuracy``) one ``accuracy`` trial per
    (method, density, seed) of the Fashion-MNIST MLP.
    """
    tasks = [(m, s, meth) for m in config.models for s in config.seeds for meth in config.methods]
    # biggest first, so the pool ends together
    tasks.sort(key=lambda t: (t[0] != "vgg16", t[2] not in ("synflow", "synflow_l2")))
    trials = [
        _trial(
            f"{model}-{method}-s{seed}",
            {
                "task": "paths",
                "model": model,
                "method": method,
                "seed": seed,
                "densities": list(config.densities),
                "options": config.method_options(method),
            },
        )
        for model, seed, method in tasks
    ]
    if accuracy:
        trials += [
            _trial(
                f"mlp-fmnist-{method}-d{d:g}-s{seed}",
                {
                    "task": "accuracy",
                    "method": method,
                    "density": d,
                    "seed": seed,
                    "epochs": config.accuracy_epochs,
                    "options": config.method_options(method),
                },
            )
            for method in config.accuracy_methods
            for d in config.accuracy_densities
            for seed in config.seeds
        ]
    return Grid(kind="reproduce", trials=tuple(trials), compute=compute_task)


def draw_figures(
    out: Path,
    results: Sequence[dict[str, Any]],
    widths: Sequence[dict[str, Any]],
    accuracy: Sequence[dict[str, Any]] = (),
    *,
    accuracy_title: str = "Fashion-MNIST",
) -> list[Path]:
    """Draw the reproduction figures from its rows (as computed, or read back from CSV)."""
    from pathnet import figures

    written = []
    present = {float(r["density"]) for r in results}
    width_d = [d for d in WIDTH_DENSITIES if any(math.isclose(d, x) for x in present)]
    # effective parameters as a share of the kept weights: absolute counts on a log axis
    # overlap for every method; the share shows which methods waste weights off-path.
    rows = [
        {**r, "effective_pct": 100 * float(r["effective_params"]) / max(float(r["kept"]), 1.0)}
        for r in results
    ]
    if widths and width_d:
        fig = figures.width_profile(widths, densities=width_d)
        written.append(figures.save_figure(fig, out / "widths.png"))
    for metric, name, ylabel, title, log_y in (
        ("log10_trace", "trace_vs_density", "path-kernel trace Tr(Π) (log scale)",
         "path-kernel trace", False),
        ("effective_pct", "effective_params_vs_density",
         "effective parameters (% of kept weights)", "kept weights on a complete path", False),
        ("log10_paths", "path_count_vs_density", "input→output paths (log scale)",
         "number of paths", False),
    ):  # fmt: skip
        fig = figures.metric_vs_density(
            rows,
            metric,
            ylabel=ylabel,
            title=title,
            log_y=log_y,
            metric_is_log10=metric.startswith("log10"),
        )
        written.append(figures.save_figure(fig, out / f"{name}.png"))
    if accuracy:
        fig = figures.accuracy_vs_density(
            [{**r, "model": "mlp-fashion-mnist"} for r in accuracy], title=accuracy_title
        )
        written.append(figures.save_figure(fig, out / "accuracy_vs_density.png"))
    return written


def _run(
    grid: Grid, root: Path, workers: int, progress: bool, log: Callable[[str], None]
) -> GridReport:
    """Run the grid with a progress bar; one line if earlier runs finished some trials."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(grid.trials), desc="reproduce", unit="task", disable=not progress)

    def advance(status: dict[str, Any]) -> None:
        bar.set_postfix_str(status["name"][:-13])
        bar.update()

    report = run_grid(grid, root, workers=workers, log=lambda line: None, on_status=advance)
    bar.close()
    reused = report.count("skipped")
    if reused:
        log(f"pathnet reproduce: {reused} of {report.total} trials were finished before in {root}")
    if not report.ok:
        raise RuntimeError(failure_message("reproduce", report))
    return report


def reproduce(
    out_dir: str | os.PathLike[str] = "figures",
    config: ReproduceConfig | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the reproduction and write tables, report and figures to ``out_dir``.

    The trials (:func:`reproduce_grid`) run on the grid runner in ``out_dir/reproduce_runs``
    (``config.workers`` local processes); a finished trial is not computed again.
    Returns a dict with the result rows, the width rows and the paths written.

    Raises
    ------
    RuntimeError
        A trial failed (the message names it and its traceback file).
    """
    config = config or ReproduceConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    accuracy_note = _accuracy_available() if config.accuracy else ""
    grid = reproduce_grid(config, accuracy=config.accuracy and not accuracy_note)
    report = _run(grid, out / RUNS_DIR, config.workers, progress, log)
    tables, _ = grid.collect(report.sweep_dir)
    results = tables.get("results", [])
    widths = tables.get("widths", [])
    accuracy_rows = tables.get("accuracy", [])
    order = {m: k for k, m in enumerate(config.methods)}
    results.sort(key=lambda r: (r["model"], order[r["method"]], -r["density"], r["seed"]))
    widths.sort(
        key=lambda r: (r["model"], order[r["method"]], -r["density"], r["seed"], r["group"])
    )

    written = [
        write_csv(results, out / "reproduce_results.csv"),
        write_csv(widths, out / "reproduce_widths.csv"),
    ]
    if accuracy_rows:
        accuracy_rows.sort(key=lambda r: (r["method"], -r["density"], r["seed"]))
        written.append(write_csv(accuracy_rows, out / "reproduce_accuracy.csv"))
    written += draw_figures(
        out,
        results,
        widths,
        accuracy_rows,
        accuracy_title=f"Fashion-MNIST, {config.accuracy_epochs} epoch(s)",
    )
    if not accuracy_rows and accuracy_note:
        log(accuracy_note)
    elapsed = time.perf_counter() - t0
    report_text = _report(results, accuracy_rows, accuracy_note, config, elapsed)
    written.append(atomic_write_bytes(out / "reproduce_report.md", report_text.encode()))
    log(f"pathnet reproduce: {len(results)} masks analysed in {elapsed:.0f} s; wrote:")
    for p in written:
        log(f"  {p}")
    return {"results": results, "widths": widths, "accuracy": accuracy_rows, "paths": written}


def _accuracy_available() -> str:
    """An empty string when Fashion-MNIST is found, else the one-line reason."""
    from pathnet import data as data_mod

    try:  # look for the files only: the parent process must not start torch's threads
        data_mod.find_dataset("fashion-mnist", "train")
        data_mod.find_dataset("fashion-mnist", "test")
    except data_mod.DatasetError as exc:
        first = str(exc).splitlines()[0]
        return (
            "accuracy figure skipped: Fashion-MNIST not found "
            f"({first}); install it with `apt-get install dataset-fashion-mnist` "
            "or set PATHNET_DATA"
        )
    return ""


def _report(
    results: list[dict[str, Any]],
    accuracy: list[dict[str, Any]],
    accuracy_note: str,
    config: ReproduceConfig,
    elapsed: float,
) -> str:
    from pathnet._text import format_table

    lines = [
        "# pathnet reproduce",
        "",
        f"Models {', '.join(config.models)}; methods {', '.join(config.methods)}; "
        f"{len(config.densities)} densities from {100 * max(config.densities):.3g}% to "
        f"{100 * min(config.densities):.3g}%; seeds {list(config.seeds)}; "
        f"SynFlow iterations {config.synflow_iterations}. Computed in {elapsed:.0f} s.",
        "",
        "Selection shortcuts (each documented in pathnet.experiments.reproduce.select_all): PHEW, random",
        "paths, random and magnitude masks at every density come from one walk sequence,",
        "permutation or sort per seed and equal separate calls exactly; SynFlow and SynFlow-L2",
        "prune along one exponential schedule from dense to the lowest density in",
        f"{config.synflow_iterations} steps and record the mask at each density (so a mask at",
        "density d had about n*log(d)/log(d_min) iterations at the same per-step rate).",
        "",
        "Widths count units on at least one complete input->output path; the trace is",
        "Tr(Π) = Σ_k dR₂/d(θ_k²) with R₂ the sum over paths of squared path products.",
        "",
    ]
    for d in sorted({0.1, *WIDTH_DENSITIES}, reverse=True):
        rows = [r for r in results if math.isclose(r["density"], d)]
        if not rows:
            continue
        table = []
        for model in config.models:
            for method in config.methods:
                sel = [r for r in rows if r["model"] == model and r["method"] == method]
                if not sel:
                    continue
                table.append(
                    {
                        "model": model,
                        "method": method,
                        "log10 trace": float(np.mean([r["log10_trace"] for r in sel])),
                        "log10 paths": float(np.mean([r["log10_paths"] for r in sel])),
                        "effective %": 100
                        * float(np.mean([r["effective_params"] / r["kept"] for r in sel])),
                        "min width %": 100 * float(np.mean([r["min_width_frac"] for r in sel])),
                        "narrowest": sel[0]["narrowest_group"],
                        "dead layers": float(np.mean([r["dead_groups"] for r in sel])),
                    }
                )
        cols = list(table[0]) if table else []
        lines += [
            f"## Density {100 * d:g}% (mean over seeds)",
            "",
            "```",
            format_table(table, cols),
            "```",
            "",
        ]
    if accuracy:
        lines += _accuracy_lines(accuracy, config)
    elif accuracy_note:
        lines += [f"_{accuracy_note}_", ""]
    lines += [
        "Figures: widths.png, trace_vs_density.png, effective_params_vs_density.png, "
        "path_count_vs_density.png" + (", accuracy_vs_density.png" if accuracy else "") + ".",
        "",
    ]
    return "\n".join(lines)


def _accuracy_lines(accuracy: list[dict[str, Any]], config: ReproduceConfig) -> list[str]:
    """The report's Fashion-MNIST accuracy table (mean, min, max over seeds)."""
    from pathnet._text import format_table

    lines: list[str] = []
    lines += ["## Fashion-MNIST MLP 784-300-100-10: test accuracy (%)", "", "```"]
    acc_table = []
    for method in config.accuracy_methods:
        for d in config.accuracy_densities:
            accs = [r["test_acc"] for r in accuracy if r["method"] == method and r["density"] == d]
            if accs:
                acc_table.append(
                    {
                        "method": method,
                        "density %": 100 * d,
                        "mean": 100 * float(np.mean(accs)),
                        "min": 100 * float(np.min(accs)),
                        "max": 100 * float(np.max(accs)),
                    }
                )
    lines += [format_table(acc_table, ["method", "density %", "mean", "min", "max"]), "```", ""]
    return lines
