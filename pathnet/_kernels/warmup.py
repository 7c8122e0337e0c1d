"""Fill numba's on-disk cache with the kernels the selection methods compile.

``python -m pathnet._kernels.warmup`` (run by ``make venv`` after installing)
calls PHEW (every code path: dense, masked and identity blocks, a flatten walked
per weight, nested densities), SynFlow, SynFlow-L2 and magnitude pruning once
on small models, so that a user's first call in a fresh process loads compiled
code from the cache (about a second) instead of compiling it (several seconds
for each method). The kernels are compiled for the argument types every call
uses (C-contiguous float32 weights, int64 indices), so one warm-up covers any
model. It changes no result: the cache only stores machine code.

The cache lives beside the sources (``__pycache__``) or in ``NUMBA_CACHE_DIR``;
numba recompiles when a source file changes or on another CPU.

Examples
--------
>>> from pathnet._kernels.warmup import warm_up
>>> sorted(warm_up(methods=("phew",)))
['phew']
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

__all__ = ["METHODS", "warm_up"]

#: Methods :func:`warm_up` knows how to exercise.
METHODS = ("phew", "synflow", "synflow_l2", "magnitude")


def _phew() -> None:
    import pathnet
    from pathnet.select import select
    from pathnet.select.phew import phew_nested

    # LeNet-5: convs and a flatten walked per weight; ResNet20: identity shortcuts
    for model in (pathnet.models.lenet5(seed=0), pathnet.models.resnet20(seed=0)):
        dag = pathnet.to_dag(model)
        select("phew", dag, 0.05, seed=0)
        phew_nested(dag, [0.02, 0.05], seed=0)
        masked = dag.with_mask(select("random", dag, 0.5, seed=0))
        select("phew", masked, 0.02, seed=0)


def _synflow(method: str) -> None:
    import pathnet
    from pathnet.select import select

    model = pathnet.models.lenet5(seed=0)
    select(method, model, 0.1, seed=0, iterations=2)
    if method == "synflow":  # the radix refinement, which models this small never reach
        import numpy as np

        from pathnet._kernels.linconv import refine_hist

        refine_hist(np.zeros(4), 32, 0, np.zeros(1 << 16, dtype=np.int64))


def _magnitude() -> None:
    import pathnet
    from pathnet.select import select

    select("magnitude", pathnet.models.lenet5(seed=0), 0.1, seed=0)


def warm_up(methods: Sequence[str] = METHODS) -> dict[str, float]:
    """Run each method once on small models; returns the seconds each took.

    Raises
    ------
    ValueError
        For a method not in :data:`METHODS`.
    """
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(
            f"pathnet._kernels.warmup: unknown method(s) {bad}; expected some of {list(METHODS)}"
        )
    out = {}
    for method in methods:
        t0 = time.perf_counter()
        if method == "phew":
            _phew()
        elif method == "magnitude":
            _magnitude()
        else:
            _synflow(method)
        out[method] = time.perf_counter() - t0
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pathnet._kernels.warmup",
        description="Compile pathnet's numba kernels into numba's on-disk cache.",
    )
    parser.add_argument(
        "methods", nargs="*", metavar="METHOD", help=f"some of {', '.join(METHODS)} (default: all)"
    )
    args = parser.parse_args(argv)
    try:
        timings = warm_up(args.methods or METHODS)
    except ValueError as err:
        parser.error(str(err))
    for method, seconds in timings.items():
        print(f"pathnet warm-up: {method} {seconds:.1f} s")


if __name__ == "__main__":
    main()
