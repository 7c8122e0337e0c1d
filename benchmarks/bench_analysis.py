"""Path analyses on a 5% VGG16 mask: seconds per analysis against a baseline.

Each analysis is timed from a ready DAG and the mask, so every timing includes
``dag.with_mask(mask)`` and the per-edge weight sums, but not ``to_dag`` (timed
separately in the ``to_dag`` row). The baselines run in the same process:

* ``naive edge sums``: the same analysis on ``dag.with_mask(mask)`` whose
  per-edge sums ``EdgeBlock`` computes itself from the dense
  ``(n_out, n_in, n_elem)`` arrays (what the analysis did before its fast path);
* ``autograd``: the path-kernel trace by autograd on the torch model (float64);
  its row also reports the zero-padding gap ``1 - autograd / graph``.

The mask is a random 5% mask from a seeded numpy Generator (PHEW is not needed).
Run ``python -m benchmarks.bench_analysis`` for a table; ``run(quick=True)``
times ResNet20 once instead of VGG16 five times.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import pathnet
from pathnet import analysis

TARGET_S = 0.2
DENSITY = 0.05


Times = tuple[float, float]  # median, minimum


def _time(fn: Callable[[], Any], repeats: int) -> tuple[Times, Any]:
    """Median and minimum wall time of ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return (statistics.median(times), min(times)), out


def random_mask(model: torch.nn.Module, density: float, seed: int = 0) -> pathnet.Mask:
    rng = np.random.default_rng(seed)
    return pathnet.Mask(
        {
            n: torch.from_numpy(rng.random(tuple(p.shape)) < density)
            for n, p in pathnet.prunable_parameters(model).items()
        }
    )


# Each analysis as f(dag, mask); the baseline runs f(dag.with_mask(mask), None).
ANALYSES: dict[str, Callable[[pathnet.LayeredDAG, Any], Any]] = {
    "path_count (log10)": lambda d, m: analysis.path_count(d, m),
    "path_count (exact int)": lambda d, m: analysis.path_count(d, m, exact=True),
    "edge_weight_sum p=1 (graph)": lambda d, m: analysis.edge_weight_sum(d, m, p=1, method="graph"),
    "edge_weight_sum p=2 (graph)": lambda d, m: analysis.edge_weight_sum(d, m, p=2, method="graph"),
    "path_kernel_trace (graph)": lambda d, m: analysis.path_kernel_trace(d, m, method="graph"),
    "layer_widths": lambda d, m: analysis.layer_widths(d, m),
    "effective_params": lambda d, m: analysis.effective_params(d, m),
    "bottleneck": lambda d, m: analysis.bottleneck(d, m),
    "summary": lambda d, m: analysis.summary(d, m),
}


def _row(case: str, label: str, t: Times, base: str = "", tb: Times | None = None) -> dict:
    return {
        "bench": "analysis",
        "case": case,
        "analysis": label,
        "seconds": t[0],
        "min_seconds": t[1],
        "baseline": base,
        "baseline_seconds": None if tb is None else tb[0],
        "ratio": None if tb is None else tb[0] / t[0],
        "target_s": TARGET_S,
        "meets_target": t[0] <= TARGET_S,
        "note": "",
    }


def run(quick: bool = False) -> list[dict]:
    """One row per analysis: seconds, baseline seconds and their ratio."""
    torch.set_num_threads(2)
    name, repeats = ("resnet20", 1) if quick else ("vgg16", 5)
    model = pathnet.models.build(name, seed=0)
    mask = random_mask(model, DENSITY)
    case = f"{name} {DENSITY:.0%} random mask"

    t_dag, dag = _time(lambda: pathnet.to_dag(model), 1 if quick else 3)
    rows = [_row(case, "to_dag (setup, not in the other rows)", t_dag)]
    rows[0].update(target_s=None, meets_target=None)
    for label, fn in ANALYSES.items():
        t, _ = _time(lambda fn=fn: fn(dag, mask), repeats)
        tb, _ = _time(lambda fn=fn: fn(dag.with_mask(mask), None), repeats)
        rows.append(_row(case, label, t, "naive edge sums", tb))

    t, _ = _time(lambda: analysis.mask_similarity(mask, mask, dag), repeats)
    tb, _ = _time(
        lambda: (
            analysis.mask_similarity(mask, mask),
            [analysis.active_units(dag.with_mask(mask)) for _ in range(2)],
        ),
        repeats,
    )
    rows.append(_row(case, "mask_similarity (with DAG)", t, "naive edge sums", tb))

    t, graph = _time(lambda: analysis.path_kernel_trace(dag, mask, method="graph"), repeats)
    tb, auto = _time(lambda: analysis.path_kernel_trace(model, mask, method="autograd"), 1)
    rows.append(_row(case, "path_kernel_trace (graph)", t, "autograd (float64, incl. to_dag)", tb))
    rows[-1]["note"] = f"zero-padding gap 1 - autograd/graph = {1 - auto / graph:.4f}"
    if not quick:
        dense_graph = analysis.path_kernel_trace(dag, method="graph")
        dense_auto = analysis.path_kernel_trace(model, method="autograd")
        rows[-1]["note"] += f"; dense: {1 - dense_auto / dense_graph:.4f}"
    t, net = _time(lambda: analysis.path_kernel_trace(model, mask), repeats)
    rows.append(_row(case, "path_kernel_trace (network, the exact default)", t,
                     "autograd (float64, incl. to_dag)", tb))  # fmt: skip
    rows[-1]["note"] = f"1 - network/autograd = {1 - net / auto:.2e}"
    return rows


def main() -> None:
    from pathnet._text import format_table

    rows = run(quick="--quick" in sys.argv)
    cols = [
        "analysis",
        "seconds",
        "min_seconds",
        "baseline",
        "baseline_seconds",
        "ratio",
        "meets_target",
        "note",
    ]
    print(f"{rows[0]['case']}, {torch.get_num_threads()} torch threads")
    print(format_table(rows, cols))


if __name__ == "__main__":
    main()
