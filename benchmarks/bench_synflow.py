"""SynFlow-L2 (PHEW authors' variant), 100 iterations on VGG16 down to 1%, three ways.

* ``network``: ``pathnet.select.select("synflow_l2", model, 0.01)``, the default
  backend: the published algorithm, exactly, on the network as torch runs it
  (float64; each layer dense, as channel-compacted products by numpy's BLAS over
  the distinct columns of its unfolded input, or sparse, as numba kernels over its
  alive elements, whichever is estimated cheaper; products and kernels cut into two
  fixed parts, scores and compaction in the background, on the caller and one
  helper thread; radix top-k);
* ``graph``: the same call with ``backend="graph"``: sweeps on the DAG in float64
  log space, a fast approximation (zero padding ignored);
* ``official-style``: the loop of the SynFlow/PHEW authors' code: a float32 deep
  copy with every state-dict entry squared each iteration, all-ones input,
  ``R = sum(output)``, scores ``|grad * theta|``, a global ``torch.kthvalue``
  threshold, masks applied by multiplication.

All in one process on ``THREADS`` threads (torch and numba; 2 unless the
environment sets ``PATHNET_BENCH_THREADS``); the network and graph times are the
median of ``REPEATS`` runs after an untimed warm-up on ResNet20 (1%, 10
iterations) that loads the compiled kernels; the official-style loop runs once
(about 25 s). ``mask_diff`` is the fraction of all 14.7 M mask entries that differ
from the network backend's mask, ``kept_diff`` the fraction of the network
backend's kept weights that the other mask does not keep.
``run(quick=True)``: ResNet20, 10 iterations.
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn

import pathnet
from pathnet.select import select, target_count

THREADS = int(os.environ.get("PATHNET_BENCH_THREADS", "2"))  # torch and numba threads
GOAL_SPEEDUP = 5.0
REPEATS = 3  # timed runs of the network and graph backends (the median is reported)


def _threads() -> int:
    import numba

    n = min(THREADS, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    torch.set_num_threads(n)
    return n


def official_style(model: nn.Module, density: float, iterations: int) -> dict[str, torch.Tensor]:
    """The authors' SynFlow-L2 pruning loop (float32, kthvalue, multiplicative masks)."""
    net = copy.deepcopy(model).eval()
    masked = [
        (name, m.weight)
        for name, m in ((n + ".weight", m) for n, m in net.named_modules())
        if isinstance(m, (nn.Linear, nn.Conv2d))
    ]
    masks = {name: torch.ones_like(p) for name, p in masked}
    x = torch.ones((1, *model.input_shape))
    for epoch in range(iterations):
        with torch.no_grad():
            for name, p in masked:
                p.mul_(masks[name])
        lin = copy.deepcopy(net).eval()
        with torch.no_grad():
            for t in lin.state_dict().values():
                t.pow_(2)
        lin_params = dict(lin.named_parameters())
        lin(x).sum().backward()
        scores = {name: (lin_params[name].grad * p).detach().abs() for name, p in masked}
        sparse = density ** ((epoch + 1) / iterations)
        flat = torch.cat([s.flatten() for s in scores.values()])
        k = int((1.0 - sparse) * flat.numel())
        if k >= 1:
            threshold, _ = torch.kthvalue(flat, k)
            for name, s in scores.items():
                masks[name] = (s > threshold).float()
    return {name: m.bool() for name, m in masks.items()}


def _diff(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float]:
    """(fraction of all entries that differ, fraction of a's kept entries not in b)."""
    differ = total = kept = lost = 0
    for name in a:
        x, y = np.asarray(a[name], dtype=bool), np.asarray(b[name], dtype=bool)
        differ += int((x != y).sum())
        total += x.size
        kept += int(x.sum())
        lost += int((x & ~y).sum())
    return differ / total, lost / kept


def run(quick: bool = False) -> list[dict]:
    threads = _threads()
    name, iterations, density = ("resnet20", 10, 0.01) if quick else ("vgg16", 100, 0.01)
    model = pathnet.models.build(name, seed=0)
    dag = pathnet.to_dag(model)
    m = target_count(dag, density)
    rows: list[dict] = []

    def timed(fn: Any) -> tuple[Any, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - t0, time.process_time() - c0

    def warm(fn: Any) -> tuple[Any, float, float]:
        runs = [timed(fn) for _ in range(REPEATS)]
        assert all(r[0] == runs[0][0] for r in runs)
        return (
            runs[0][0],
            statistics.median(r[1] for r in runs),
            statistics.median(r[2] for r in runs),
        )

    small = pathnet.models.build("resnet20", seed=0)  # loads the compiled kernels
    _, cold_net, _ = timed(lambda: select("synflow_l2", small, 0.01, iterations=10))
    select("synflow_l2", small, 0.01, iterations=10, backend="graph")
    exact, t_net, c_net = warm(lambda: select("synflow_l2", model, density, iterations=iterations))
    graph, t_graph, c_graph = warm(
        lambda: select("synflow_l2", dag, density, iterations=iterations, backend="graph")
    )
    official, t_off, c_off = timed(lambda: official_style(model, density, iterations))
    e_np = exact.to_numpy()

    common = {"model": name, "iterations": iterations, "density": density, "threads": threads}
    for impl, seconds, cpu, kept, diff, note in [
        (
            "network (default, exact, float64)",
            t_net,
            c_net,
            exact.n_kept,
            (0.0, 0.0),
            f"kernels loaded in {cold_net:.2f} s (ResNet20 warm-up, untimed)",
        ),
        (
            "graph (approximation, float64 log space)",
            t_graph,
            c_graph,
            graph.n_kept,
            _diff(e_np, graph.to_numpy()),
            "",
        ),
        (
            "official-style (float32, kthvalue)",
            t_off,
            c_off,
            int(sum(int(v.sum()) for v in official.values())),
            _diff(e_np, {k: v.numpy() for k, v in official.items()}),
            "",
        ),
    ]:
        rows.append(
            {
                "implementation": impl,
                **common,
                "seconds": round(seconds, 3),
                "cpu_seconds": round(cpu, 3),
                "speedup_vs_official": round(t_off / seconds, 1),
                "cpu_speedup_vs_official": round(c_off / cpu, 1),
                "kept": kept,
                "target": m,
                "mask_diff": diff[0],
                "kept_diff": diff[1],
                "note": note,
            }
        )
    return rows


def notes(rows: list[dict]) -> str:
    g = rows[0]
    if g["model"] != "vgg16" or g["iterations"] != 100:
        return (
            "Quick run (ResNet20, 10 iterations): a smoke test; the goal (VGG16, 100 "
            f"iterations: the exact default >= {GOAL_SPEEDUP:g}x faster than the official-style "
            "loop) applies to the full run."
        )
    ok_speed = g["speedup_vs_official"] >= GOAL_SPEEDUP
    return (
        f"Goal: the exact default (network backend) >= {GOAL_SPEEDUP:g}x faster than the "
        f"official-style loop in the same run ({'met' if ok_speed else 'NOT met'}: "
        f"{g['seconds']:.2f} s against {rows[2]['seconds']:.2f} s, "
        f"{g['speedup_vs_official']:.1f}x). Network and graph times are medians of "
        f"{REPEATS} warm runs (cpu_seconds: CPU time of all threads); an untimed ResNet20 "
        "call loads the numba kernels first; the official-style loop runs once. It does "
        "not hit the target count exactly (ties at the kthvalue threshold and its own "
        "rounding of the count) and works in float32. Both use THREADS threads (the "
        "network backend cuts each layer's work into two fixed parts, so its masks do "
        "not depend on the thread count). Timings on a shared machine vary by about "
        "10% between runs (the official-style loop alone took 18-27 s in separate runs on "
        "the project's 2-core machine), so the ratio moves with them: see "
        "load_average_1m in the header."
    )


if __name__ == "__main__":
    from benchmarks.harness import text_table

    result = run(quick="--quick" in sys.argv)
    print(text_table(result))
    print(notes(result))
