"""How close are data-free masks to iterative-magnitude-pruning (IMP) masks?

:func:`imp_similarity` builds IMP masks (train, prune 20% of the remaining
weights by magnitude, rewind, repeat) and compares PHEW, SynFlow-L2, SynFlow and
random masks to them *at the density of each IMP round*, with
:func:`pathnet.analysis.mask_similarity`: per-layer density, kept-weight
Jaccard, active-unit Jaccard and widths. It writes a tidy CSV and a figure.

The comparison is a grid definition (:func:`similarity_grid`: one trial per seed) run by
:func:`pathnet.experiments.runner.run_grid` in ``out_dir/imp_similarity_runs``.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pathnet.experiments.config import config_hash
from pathnet.experiments.lookups import splits
from pathnet.experiments.runner import Grid, GridTrial, RunOptions, failure_message, run_grid

__all__ = ["RUNS_DIR", "compute_seed", "imp_similarity", "similarity_grid"]

#: Sub-folder of the output folder where the grid runner keeps the trials.
RUNS_DIR = "imp_similarity_runs"


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _compare(
    imp_mask: Any, init: Any, dag: Any, target: float, seed: int, p: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Rows of every method against one IMP round (matched density)."""
    from pathnet import analysis
    from pathnet.select import select

    rows = []
    d = imp_mask.n_kept / imp_mask.n_total
    for method in p["methods"]:
        opts: dict[str, Any] = {"iterations": 100} if method.startswith("synflow") else {}
        other = select(method, init, d, seed=seed, **opts)
        table = analysis.mask_similarity(imp_mask, other, dag)
        base = {
            "model": p["model"],
            "seed": seed,
            "target_density": target,
            "imp_density": d,
            "method": method,
        }
        for r in [*table.to_dicts(), {"param": "(all)", **table.overall}]:
            rows.append(
                {
                    **base,
                    "layer": r["param"],
                    "density_imp": r.get("density_a"),
                    "density_method": r.get("density_b"),
                    "jaccard": r.get("jaccard"),
                    "jaccard_units": r.get("jaccard_units"),
                    "width_imp": _float(r.get("width_a")),
                    "width_method": _float(r.get("width_b")),
                }
            )
    return rows


def compute_seed(trial: GridTrial, folder: Path, root: Path, options: RunOptions) -> dict[str, Any]:
    """One seed: IMP down to the lowest density (rounds cached beside the runs folder),
    then every method at every requested density's nearest round."""
    import pathnet
    from pathnet.train import imp

    p = trial.params
    seed = p["seed"]
    train, test = splits(p["dataset"], options.data_root)
    model = pathnet.models.build(p["model"], seed=seed)
    init = copy.deepcopy(model)  # SynFlow scores the network itself, at initialisation
    dag = pathnet.to_dag(init)
    rounds = imp(
        model,
        train,
        test,
        density=min(p["densities"]),
        epochs_per_round=p["epochs_per_round"],
        seed=seed,
        device=options.device,
        out_dir=root.parent / f"imp-{p['model']}-s{seed}",
        progress=options.progress,
    )
    rows = []
    for target in p["densities"]:
        imp_mask = min(rounds, key=lambda m: abs(math.log(m.density / target)))
        rows += _compare(imp_mask, init, dag, target, seed, p)
    return {"tables": {"imp_similarity": rows}}


def similarity_grid(
    model_name: str,
    dataset: str,
    densities: Sequence[float],
    methods: Sequence[str],
    seeds: Sequence[int],
    epochs_per_round: int,
) -> Grid:
    """The comparison as a grid definition: one trial per seed, in the order given."""
    trials = []
    for seed in seeds:
        params = {
            "model": model_name,
            "dataset": dataset,
            "densities": list(densities),
            "methods": list(methods),
            "seed": seed,
            "epochs_per_round": epochs_per_round,
        }
        h = config_hash(params)
        trials.append(GridTrial(f"{model_name}-s{seed}-{h}", h, params))
    return Grid(kind="imp-similarity", trials=tuple(trials), compute=compute_seed)


def imp_similarity(
    model_name: str = "mlp",
    dataset: str = "fashion-mnist",
    *,
    densities: Sequence[float] = (0.1, 0.05, 0.02),
    methods: Sequence[str] = ("phew", "synflow_l2", "synflow", "random"),
    seeds: Sequence[int] = (0,),
    epochs_per_round: int = 1,
    out_dir: str | os.PathLike[str] = "figures/imp_similarity",
    data_root: str | None = None,
    device: Any = "auto",
    progress: bool = True,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Compare data-free masks with IMP masks at matched densities.

    For each seed, the model is built with that seed and pruned by IMP down to
    ``min(densities)`` (rounds cached and resumable in ``out_dir/imp-<model>-s<seed>``).
    For each requested density, the IMP round whose density is closest is taken,
    and every method selects a mask of exactly that round's density from the same
    initial weights. Seeds are trials of the grid runner (``workers`` local processes;
    a finished seed is not computed again).

    Returns
    -------
    list of dict
        One row per (seed, density, method, layer) plus an ``(all)`` layer row:
        ``imp_density``, ``jaccard`` (kept weights), ``jaccard_units`` (active
        units), ``width_imp``, ``width_method``, ``density_imp``, ``density_method``.
        Written to ``out_dir/imp_similarity.csv``; the figure (overall Jaccard of
        weights and of units against density) to ``out_dir/imp_similarity.png``.

    Raises
    ------
    RuntimeError
        A seed failed (the message names it and its traceback file).
    """
    from pathnet import figures
    from pathnet._io import write_csv

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = similarity_grid(model_name, dataset, densities, methods, seeds, epochs_per_round)
    options = RunOptions(data_root=data_root, device=str(device), progress=progress)
    report = run_grid(grid, out / RUNS_DIR, workers=workers, options=options, log=lambda _: None)
    if not report.ok:
        raise RuntimeError(failure_message("imp-similarity", report))
    rows = grid.collect(report.sweep_dir)[0].get("imp_similarity", [])
    write_csv(rows, out / "imp_similarity.csv")
    overall = [r for r in rows if r["layer"] == "(all)"]
    for metric, label in (("jaccard", "kept weights"), ("jaccard_units", "active units")):
        figures.metric_vs_density(
            [{**r, "density": r["imp_density"]} for r in overall],
            metric,
            out / f"imp_similarity_{metric}.png",
            ylabel=f"Jaccard with the IMP mask ({label})",
            title=f"similarity to IMP, {label}",
        )
    return rows
