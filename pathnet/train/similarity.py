"""How close are data-free masks to iterative-magnitude-pruning (IMP) masks?

:func:`imp_similarity` builds IMP masks (train, prune 20% of the remaining
weights by magnitude, rewind, repeat) and compares PHEW, SynFlow-L2, SynFlow and
random masks to them *at the density of each IMP round*, with
:func:`pathnet.analysis.mask_similarity`: per-layer density, kept-weight
Jaccard, active-unit Jaccard and widths. It writes a tidy CSV and a figure.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["imp_similarity"]


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
) -> list[dict[str, Any]]:
    """Compare data-free masks with IMP masks at matched densities.

    For each seed, the model is built with that seed and pruned by IMP down to
    ``min(densities)`` (rounds cached and resumable in ``out_dir/imp-<model>-s<seed>``).
    For each requested density, the IMP round whose density is closest is taken,
    and every method selects a mask of exactly that round's density from the same
    initial weights.

    Returns
    -------
    list of dict
        One row per (seed, density, method, layer) plus an ``(all)`` layer row:
        ``imp_density``, ``jaccard`` (kept weights), ``jaccard_units`` (active
        units), ``width_imp``, ``width_method``, ``density_imp``, ``density_method``.
        Written to ``out_dir/imp_similarity.csv``; the figure (overall Jaccard of
        weights and of units against density) to ``out_dir/imp_similarity.png``.
    """
    import pathnet
    from pathnet import analysis, figures
    from pathnet.reproduce import write_csv
    from pathnet.select import select
    from pathnet.train import imp, load_dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = load_dataset(dataset, "train", root=data_root)
    test = load_dataset(dataset, "test", root=data_root)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        model = pathnet.models.build(model_name, seed=seed)
        init = copy.deepcopy(model)  # SynFlow scores the network itself, at initialisation
        dag = pathnet.to_dag(init)
        rounds = imp(
            model,
            train,
            test,
            density=min(densities),
            epochs_per_round=epochs_per_round,
            seed=seed,
            device=device,
            out_dir=out / f"imp-{model_name}-s{seed}",
            progress=progress,
        )
        for target in densities:
            imp_mask = min(rounds, key=lambda m: abs(math.log(m.density / target)))
            d = imp_mask.n_kept / imp_mask.n_total
            for method in methods:
                opts = {"iterations": 100} if method.startswith("synflow") else {}
                other = select(method, init, d, seed=seed, **opts)
                table = analysis.mask_similarity(imp_mask, other, dag)
                base = {
                    "model": model_name,
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


def _float(v: Any) -> float | None:
    return None if v is None else float(v)
