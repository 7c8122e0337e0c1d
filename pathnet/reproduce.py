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
  ``reproduce_accuracy.csv`` for the MLP 784-300-100-10.
"""

from __future__ import annotations

import csv
import io
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "DEFAULT_DENSITIES",
    "DEFAULT_METHODS",
    "ReproduceConfig",
    "analyze_masked",
    "reproduce",
    "write_csv",
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


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Rows (dicts with the same keys) to CSV, atomically."""
    from pathnet.mask import atomic_write_bytes

    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_bytes(path, buf.getvalue().encode())


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


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


def select_all(
    method: str,
    dag: Any,
    model: Any,
    densities: Sequence[float],
    seed: int,
    options: dict[str, Any],
) -> tuple[list[Any], float]:
    """Masks of ``method`` at every density, and the seconds spent selecting.

    PHEW and its random-paths ablation walk once (:func:`pathnet.select.phew.phew_nested`:
    each mask equals a separate call); SynFlow and SynFlow-L2 prune along one
    schedule through every density (:func:`pathnet.select.synflow.synflow_nested`);
    random, ERK and magnitude draw or sort once
    (:func:`pathnet.select.baselines.baseline_nested`, equal to separate calls);
    other methods are called once per density.
    """
    from pathnet.select import select

    t = time.perf_counter()
    if method in ("phew", "random_paths"):
        from pathnet.select.phew import phew_nested

        opts = dict(options)
        if method == "random_paths":
            opts["bias"] = "uniform"
        masks = phew_nested(dag, densities, seed=seed, **opts)
    elif method in ("synflow", "synflow_l2"):
        from pathnet.select.synflow import synflow_nested

        masks = synflow_nested(dag, densities, method=method, model=model, **options)
    elif method in ("random", "random_global", "erk", "magnitude") and not options:
        from pathnet.select.baselines import baseline_nested

        masks = baseline_nested(method, dag, list(densities), seed=seed)
    else:
        masks = [select(method, dag, d, seed=seed, **options) for d in densities]
    return masks, time.perf_counter() - t


def _task(model_name: str, seed: int, method: str, config: ReproduceConfig) -> dict[str, Any]:
    """One (model, seed, method): every density. Runs in a worker process."""
    import pathnet
    from pathnet import analysis

    t0 = time.perf_counter()
    model = pathnet.models.build(model_name, seed=seed)
    dag = pathnet.to_dag(model)
    masks, select_s = select_all(
        method, dag, model, config.densities, seed, config.method_options(method)
    )
    results, widths = [], []
    for density, mask in zip(config.densities, masks):
        scalar, per_group = analyze_masked(analysis.prepare(dag, mask), model, mask)
        key = {"model": model_name, "method": method, "density": density, "seed": seed}
        results.append({**key, **scalar, "select_s": round(select_s / len(masks), 4)})
        widths.extend({**key, **w} for w in per_group)
    return {"results": results, "widths": widths, "seconds": time.perf_counter() - t0}


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
    if widths and width_d:
        written.append(figures.width_profile(widths, out / "widths.png", densities=width_d))
    for metric, name, ylabel, title, log_y in (
        ("log10_trace", "trace_vs_density", "path-kernel trace Tr(Π) (log scale)",
         "path-kernel trace", False),
        ("effective_params", "effective_params_vs_density",
         "effective parameters (on a complete path)", "effective parameters", True),
        ("log10_paths", "path_count_vs_density", "input→output paths (log scale)",
         "number of paths", False),
    ):  # fmt: skip
        written.append(
            figures.metric_vs_density(
                results,
                metric,
                out / f"{name}.png",
                ylabel=ylabel,
                title=title,
                log_y=log_y,
                metric_is_log10=metric.startswith("log10"),
            )
        )
    if accuracy:
        written.append(
            figures.accuracy_vs_density(
                [{**r, "model": "mlp-fashion-mnist"} for r in accuracy],
                out / "accuracy_vs_density.png",
                title=accuracy_title,
            )
        )
    return written


def reproduce(
    out_dir: str | os.PathLike[str] = "figures",
    config: ReproduceConfig | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the reproduction and write tables, report and figures to ``out_dir``.

    Returns a dict with the result rows, the width rows and the paths written.
    """
    from tqdm.auto import tqdm

    config = config or ReproduceConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tasks = [(m, s, meth) for m in config.models for s in config.seeds for meth in config.methods]
    # biggest first, so the pool ends together
    tasks.sort(key=lambda t: (t[0] != "vgg16", t[2] not in ("synflow", "synflow_l2")))
    accuracy_note = _accuracy_available() if config.accuracy else ""
    acc_tasks = []
    if config.accuracy and not accuracy_note:
        acc_tasks = [
            (meth, d, s)
            for meth in config.accuracy_methods
            for d in config.accuracy_densities
            for s in config.seeds
        ]
    results: list[dict[str, Any]] = []
    widths: list[dict[str, Any]] = []
    accuracy_rows: list[dict[str, Any]] = []
    bar = tqdm(
        total=len(tasks) + len(acc_tasks), desc="reproduce", unit="task", disable=not progress
    )

    def take(part: dict[str, Any], label: str) -> None:
        if "test_acc" in part:
            accuracy_rows.append(part)
        else:
            results.extend(part["results"])
            widths.extend(part["widths"])
        bar.set_postfix_str(label)
        bar.update()

    if config.workers > 1:
        # spawn, not fork: a forked child of a process with OpenMP threads can hang
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.workers, mp_context=ctx) as pool:
            futures = {pool.submit(_task, *t, config): "/".join(map(str, t)) for t in tasks}
            futures.update(
                {
                    pool.submit(_accuracy_task, *t, config): "fmnist/" + "/".join(map(str, t))
                    for t in acc_tasks
                }
            )
            for fut in as_completed(futures):
                take(fut.result(), futures[fut])
    else:
        for t in tasks:
            take(_task(*t, config), "/".join(map(str, t)))
        for t in acc_tasks:
            take(_accuracy_task(*t, config), "fmnist/" + "/".join(map(str, t)))
    bar.close()
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
    report = _report(results, accuracy_rows, accuracy_note, config, elapsed)
    from pathnet.mask import atomic_write_bytes

    written.append(atomic_write_bytes(out / "reproduce_report.md", report.encode()))
    log(f"pathnet reproduce: {len(results)} masks analysed in {elapsed:.0f} s; wrote:")
    for p in written:
        log(f"  {p}")
    return {"results": results, "widths": widths, "accuracy": accuracy_rows, "paths": written}


def _accuracy_task(
    method: str, density: float, seed: int, config: ReproduceConfig
) -> dict[str, Any]:
    """Train the Fashion-MNIST MLP under one mask. Runs in a worker process."""
    import torch

    import pathnet
    from pathnet.select import select
    from pathnet.train import fit

    torch.set_num_threads(1 if config.workers > 1 else torch.get_num_threads())
    train, test = _fashion_mnist()
    model = pathnet.models.mlp(seed=seed)
    mask = select(method, model, density, seed=seed, **config.method_options(method))
    result = fit(model, mask, train, test, epochs=config.accuracy_epochs, seed=seed, progress=False)
    return {
        "model": "mlp",
        "method": method,
        "density": density,
        "seed": seed,
        "test_acc": result.final["test_acc"],
    }


_DATA_CACHE: dict[str, Any] = {}


def _fashion_mnist() -> tuple[Any, Any]:
    from pathnet.train import data as data_mod

    if "fmnist" not in _DATA_CACHE:
        _DATA_CACHE["fmnist"] = (
            data_mod.load_dataset("fashion-mnist", "train"),
            data_mod.load_dataset("fashion-mnist", "test"),
        )
    return _DATA_CACHE["fmnist"]


def _accuracy_available() -> str:
    """An empty string when Fashion-MNIST is found, else the one-line reason."""
    from pathnet.train import data as data_mod

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
    from pathnet.graph import format_table

    lines = [
        "# pathnet reproduce",
        "",
        f"Models {', '.join(config.models)}; methods {', '.join(config.methods)}; "
        f"{len(config.densities)} densities from {100 * max(config.densities):.3g}% to "
        f"{100 * min(config.densities):.3g}%; seeds {list(config.seeds)}; "
        f"SynFlow iterations {config.synflow_iterations}. Computed in {elapsed:.0f} s.",
        "",
        "Selection shortcuts (each documented in pathnet.reproduce.select_all): PHEW, random",
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
        lines += ["## Fashion-MNIST MLP 784-300-100-10: test accuracy (%)", "", "```"]
        acc_table = []
        for method in config.accuracy_methods:
            for d in config.accuracy_densities:
                sel = [
                    r["test_acc"] for r in accuracy if r["method"] == method and r["density"] == d
                ]
                if sel:
                    acc_table.append(
                        {
                            "method": method,
                            "density %": 100 * d,
                            "mean": 100 * float(np.mean(sel)),
                            "min": 100 * float(np.min(sel)),
                            "max": 100 * float(np.max(sel)),
                        }
                    )
        lines += [format_table(acc_table, ["method", "density %", "mean", "min", "max"]), "```", ""]
    elif accuracy_note:
        lines += [f"_{accuracy_note}_", ""]
    lines += [
        "Figures: widths.png, trace_vs_density.png, effective_params_vs_density.png, "
        "path_count_vs_density.png" + (", accuracy_vs_density.png" if accuracy else "") + ".",
        "",
    ]
    return "\n".join(lines)
