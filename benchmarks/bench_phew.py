"""PHEW selection: pathnet's numba walks against plain-Python walks in the authors' style.

For each model and density, in the same process:

* **pathnet**: ``to_dag`` (torch -> DAG), ``prepare`` (per-row cumulative sums and
  guide tables: the kernel prep), and the walks until exactly ``m`` distinct
  weights (``walk_mask``, including the mask). Best of ``repeat`` warm runs
  (numba compiled by a first, untimed call). ``select_s = prep_s + walk_s`` is
  the selection on a ready DAG.
* **baseline** (:mod:`benchmarks.reference_phew`): the authors' probability lists
  (``prob_s``) and their per-step ``np.random.choice`` walks on the same DAG with
  the same rules, hence the same number of walks. On VGG16 a full baseline run
  takes minutes, so its walk time is extrapolated: the cost per walk measured
  on a fixed number of walks in this run, times the walks pathnet needed
  (``baseline`` column says which). ResNet20 runs the baseline in full.

``peak_MiB`` is the tracemalloc peak of one traced run (Python and NumPy
allocations; numba's own scratch is not seen; traced separately from the timings).
"""

from __future__ import annotations

import time
from typing import Any

import torch

import pathnet
from benchmarks import harness
from benchmarks import reference_phew as ref
from pathnet.select import phew as P

__all__ = ["run"]

MLP_SIZES = (784, 5000, 5000, 5000, 10)  # 54.0 M weights

NOTES = """\
Columns: `to_dag_s` torch -> DAG; `prep_s` kernel prep (biased edge weights, per-row
cumulative sums and guide tables, both directions); `walk_s` walks + dedupe + mask;
`walk_cpu_s` CPU time of that walk run over all threads (about 2 x walk_s when both
cores are free); `total_s` = to_dag + prep + walk; `select_s` = prep + walk (selection
on a ready DAG).
pathnet times are the best of several warm runs. `base_*`: the plain-Python baseline
(authors' style) in the same run; `base_total_s` = to_dag + probability lists + walks;
`speedup` = base_total_s / total_s, `walk_speedup` = base_walk_s / walk_s, and
`walk_speedup_cpu` = base_walk_s / walk_cpu_s: per core of work (the baseline runs on
one thread), which moves less with the load of a shared machine.
The baseline counts distinct weights incrementally, where the authors' code sums
all masks after every walk, so it is faster than theirs: the speedups are conservative.
Timings on a shared machine: see the load average in the header.
"""


def _model(name: str) -> torch.nn.Module:
    if name == "mlp54m":
        return pathnet.models.mlp(MLP_SIZES, seed=0)
    return pathnet.models.build(name, seed=0)


def _pathnet_case(model: torch.nn.Module, density: float, repeat: int) -> dict[str, Any]:
    t_dag = harness.timeit(lambda: pathnet.to_dag(model), repeat=max(1, repeat // 2))
    dag = t_dag.result
    m = int(density * dag.n_params)
    P.phew(dag, density, seed=0)  # warm: numba kernels loaded, pages touched
    t_prep = harness.timeit(lambda: P.prepare(dag), repeat=repeat)
    graph = t_prep.result
    t_walk = harness.timeit(lambda: P.walk_mask(dag, graph, m, seed=0), repeat=repeat)
    mask = t_walk.result
    assert mask.n_kept == m
    walks = mask.meta["walks"]
    prep_s, walk_s, walk_cpu_s = t_prep.best, t_walk.best, t_walk.best_cpu
    _, peak = harness.peak_memory(lambda: P.walk_mask(dag, P.prepare(dag), m, seed=0))
    return {
        "dag": dag,
        "m": m,
        "walks": walks,
        "to_dag_s": t_dag.best,
        "prep_s": prep_s,
        "walk_s": walk_s,
        "walk_cpu_s": walk_cpu_s,
        "peak_MiB": peak,
    }


def _baseline(dag: pathnet.LayeredDAG, m: int, walks_needed: int, n_walks: int | None) -> dict:
    """Probability lists, then the walks: all of them, or ``n_walks`` and extrapolate."""
    t0 = time.perf_counter()
    lists = ref.generate_probability(dag)
    prob_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, walks, count = ref.phew_masks(dag, m, *lists, max_walks=n_walks, seed=0)
    walk_s = time.perf_counter() - t0
    if n_walks is None:
        assert count == m
        note = f"full run ({walks:,} walks)"
    else:
        walk_s = walk_s / walks * walks_needed
        note = f"extrapolated from {walks:,} walks"
    del lists
    _, peak = harness.peak_memory(
        lambda: ref.phew_masks(
            dag, m, *ref.generate_probability(dag), max_walks=min(n_walks or 200, 200), seed=1
        )
    )
    return {"prob_s": prob_s, "walk_s": walk_s, "note": note, "peak_MiB": peak}


def run(quick: bool = False) -> list[dict]:
    """One row per (model, density): pathnet and baseline times, speedups, memory."""
    torch.set_num_threads(2)
    if quick:
        cases = [("resnet20", 0.05, None), ("vgg16", 0.01, 40)]
        repeat = 2
    else:
        cases = [
            ("vgg16", 0.01, 1000),
            ("vgg16", 0.05, 1000),
            ("vgg16", 0.10, 1000),
            ("resnet20", 0.01, None),
            ("resnet20", 0.10, None),
            ("mlp54m", 0.01, 0),  # baseline skipped: its lists would hold 108 M floats
        ]
        repeat = 5
    P.phew(pathnet.to_dag(pathnet.models.mlp([8, 6, 4], seed=0)), 0.5, seed=0)  # compile
    rows = []
    models: dict[str, torch.nn.Module] = {}
    for name, density, n_base in cases:
        harness.eprint(f"[phew] {name} at {density:.0%} ...")
        model = models.setdefault(name, _model(name))
        pn = _pathnet_case(model, density, repeat)
        total = pn["to_dag_s"] + pn["prep_s"] + pn["walk_s"]
        row: dict[str, Any] = {
            "benchmark": "phew",
            "model": name,
            "weights": pn["dag"].n_params,
            "density": density,
            "kept": pn["m"],
            "walks": pn["walks"],
            "to_dag_s": pn["to_dag_s"],
            "prep_s": pn["prep_s"],
            "walk_s": pn["walk_s"],
            "walk_cpu_s": pn["walk_cpu_s"],
            "total_s": total,
            "select_s": pn["prep_s"] + pn["walk_s"],
            "peak_MiB": pn["peak_MiB"],
        }
        if n_base == 0:
            row["baseline"] = "not run"
        else:
            base = _baseline(pn["dag"], pn["m"], pn["walks"], n_base)
            base_total = pn["to_dag_s"] + base["prob_s"] + base["walk_s"]
            row.update(
                {
                    "base_prob_s": base["prob_s"],
                    "base_walk_s": base["walk_s"],
                    "base_total_s": base_total,
                    "base_peak_MiB": base["peak_MiB"],
                    "speedup": base_total / total,
                    "walk_speedup": base["walk_s"] / pn["walk_s"],
                    "walk_speedup_cpu": base["walk_s"] / pn["walk_cpu_s"],
                    "baseline": base["note"],
                }
            )
        rows.append(row)
        del pn
        if name == "mlp54m":
            models.pop(name)
    return rows


if __name__ == "__main__":
    from benchmarks.run import main

    main(["phew"])
