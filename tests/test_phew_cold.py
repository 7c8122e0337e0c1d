"""PHEW's cold start: the same masks as before, one compiled specialisation per kernel.

The kernels were restructured to compile faster (no numba parallel regions,
one argument-type specialisation each); these tests pin the masks to digests
recorded with the earlier kernels and check that what compiles stays small.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import pathnet
from pathnet.select import phew as P
from pathnet.select import select
from pathnet.select import walkgraph as W

ROOT = Path(__file__).resolve().parents[1]


def _digest(mask: pathnet.Mask) -> str:
    h = hashlib.sha256()
    for name in sorted(mask):
        h.update(name.encode())
        h.update(np.packbits(mask[name].numpy().ravel()).tobytes())
    return h.hexdigest()[:16]


def _model(name: str):
    if name == "mlp":
        return pathnet.models.mlp([64, 32, 16, 10], seed=1)
    return pathnet.models.build(name, seed=1)


# Recorded on main before the cold-start changes (torch 2.13.0 initialisation).
_GOLDEN = [
    ("mlp", 0.1, {"bias": "inverse"}, 0, "fb7c0debc941c8c1"),
    ("lenet5", 0.05, {}, 0, "23aa2e6b60c2a6af"),
    ("lenet5", 0.05, {"flatten": "channel"}, 7, "98f05985aa7a30d2"),
    ("resnet20", 0.05, {}, 0, "b265a7484dc48874"),
    ("resnet20", 0.05, {"kernel_conserved": True}, 7, "f7316f24dea421b3"),
]


@pytest.mark.parametrize(("model", "density", "options", "seed", "digest"), _GOLDEN)
def test_masks_equal_those_of_the_earlier_kernels(model, density, options, seed, digest):
    dag = pathnet.to_dag(_model(model))
    assert _digest(select("phew", dag, density, seed=seed, **options)) == digest


def test_masked_and_nested_masks_equal_those_of_the_earlier_kernels():
    dag = pathnet.to_dag(_model("lenet5"))
    masked = dag.with_mask(select("random", dag, 0.5, seed=3))
    mask = select("phew", masked, 0.025, seed=5, kernel_conserved=True)
    assert _digest(mask) == "b62868efb82454ab"
    dag = pathnet.to_dag(_model("resnet20"))
    masked = dag.with_mask(select("random", dag, 0.5, seed=3))
    assert _digest(select("phew", masked, 0.025, seed=5)) == "57f4bfff94464284"
    low, high = P.phew_nested(dag, [0.025, 0.05], seed=2)
    assert _digest(low) + _digest(high) == "9f45a7c5255e373a63ac2be2d47bfefd"


def test_threaded_preparation_and_walks_give_the_serial_result(monkeypatch):
    dag = pathnet.to_dag(_model("lenet5"))
    masked = dag.with_mask(select("random", dag, 0.5, seed=3))
    cases = [(dag, {}), (dag, {"bias": "square", "skip": "weighted"}), (masked, {})]
    serial = [select("phew", d, 0.05, seed=4, **kw) for d, kw in cases]
    serial_walks = P.sample_walks(W.prepare(dag), 1, 3000, 9, record_nodes=True)
    # every block and every batch on the thread pool, in small pieces
    monkeypatch.setattr(W, "_PARALLEL_MIN", 0)
    monkeypatch.setattr(P, "_PARALLEL_MIN_STEPS", 0)
    monkeypatch.setattr(P, "_CHUNK", 16)
    monkeypatch.setattr(W.numba, "get_num_threads", lambda: 3)
    for (d, kw), want in zip(cases, serial):
        assert select("phew", d, 0.05, seed=4, **kw) == want
    elems, lens, nodes = P.sample_walks(W.prepare(dag), 1, 3000, 9, record_nodes=True)
    np.testing.assert_array_equal(lens, serial_walks[1])
    np.testing.assert_array_equal(nodes, serial_walks[2])
    for k in range(lens.size):
        np.testing.assert_array_equal(elems[k, : lens[k]], serial_walks[0][k, : lens[k]])


def test_run_ranges_covers_every_item_once():
    seen = np.zeros(1000, dtype=np.int64)

    def kernel(out, lo, hi):
        out[lo:hi] += 1
        return float(hi - lo)

    for parallel in (False, True):
        seen[:] = 0
        assert W.run_ranges(kernel, (seen,), 1000, parallel=parallel, piece=7) == 1000.0
        assert (seen == 1).all()


_SPECIALISATIONS = textwrap.dedent(
    """
    import pathnet
    from pathnet._kernels import guides, walks
    from pathnet._kernels.warmup import warm_up
    from pathnet.select import phew as P, select, walkgraph as W
    warm_up(methods=("phew",))
    dag = pathnet.to_dag(pathnet.models.mlp([20, 12, 6], seed=0))
    for kw in ({"bias": "square"}, {"bias": "uniform", "skip": "weighted"},
               {"kernel_conserved": True}, {"flatten": "channel", "bias": "inverse"}):
        select("phew", dag, 0.2, seed=1, **kw)
    P.sample_walks(W.prepare(dag), 0, 10, 1, record_nodes=True)
    for mod in (walks, guides):
        for name, fn in sorted(vars(mod).items()):
            if hasattr(fn, "signatures"):
                print(name, len(fn.signatures), fn.targetoptions.get("parallel", False))
    """
)


def test_each_phew_kernel_compiles_once_and_without_a_parallel_region():
    # a fresh process: other tests may call the kernels with other argument types
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _SPECIALISATIONS],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    rows = [line.split() for line in out.stdout.splitlines()]
    assert {name for name, _, _ in rows} >= {"sample_walks", "dense_guide_forward", "_lane_group"}
    for name, n_sigs, parallel in rows:
        assert int(n_sigs) <= 1, f"{name} compiled {n_sigs} specialisations"
        assert parallel == "False", f"{name} is a numba parallel region"
