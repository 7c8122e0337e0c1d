"""Dynamic sparse training: the cost of one mask update against one training epoch.

For each model (LeNet-300-100 MLP and LeNet5 on a Fashion-MNIST subset, 5% random
start mask) the same process times

* ``epoch``: one epoch of :func:`pathnet.train.fit` (hard mask, batch 128, no test
  set), the best of ``REPEAT``;
* per rule, one update as :class:`pathnet.train.dst.DSTRun` runs it after an optimizer
  step: ``select`` (:func:`pathnet.train.dst.update_mask`: drop + regrow), ``update``
  (selection, zeroing weights and momentum, re-applying the mask with bias masks, and
  the cheap log: widths and effective parameters) and ``update + paths`` (the same with
  ``log_paths=True``: path count and path-kernel trace), each the best of ``REPEAT``
  (after one untimed call) at the first update step (the largest drop fraction).

``ratio`` columns are the update's seconds over the epoch's: an update every ``E``
steps costs ``ratio * steps_per_epoch / E`` of the training time. Run
``python -m benchmarks.bench_dst`` (``--quick``: 1,000 samples, one repeat) or
``python -m benchmarks.run dst``. Without Fashion-MNIST installed, random data of
the same shape is used (the timings do not depend on the pixel values).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch

import pathnet
from pathnet.mask import prunable_parameters
from pathnet.train import DST, fit
from pathnet.train.dst import DSTRun, update_mask
from pathnet.train.loop import make_optimizer

DENSITY = 0.05
BATCH = 128
REPEAT = 3
FRACTION = 0.3


def _data(n: int) -> tuple[Any, str]:
    try:
        ds = pathnet.data.load_dataset("fashion-mnist", "train")
        return pathnet.data.subset_per_class(ds, n // 10, seed=0), "fashion-mnist"
    except (pathnet.data.DatasetError, OSError):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 1, 28, 28, generator=g)
        return (x, torch.randint(0, 10, (n,), generator=g)), "random (no fashion-mnist)"


def _best(fn: Any, repeat: int) -> float:
    """The best of ``repeat`` timed calls, after one untimed call (numba compilation, caches)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _run_for(name: str, rule: str, regrow: str, log_paths: bool, data: Any, steps: int) -> DSTRun:
    """A DSTRun attached to a freshly masked model, one backward done (RigL's gradient)."""
    model = pathnet.models.build(name, seed=0)
    mask = pathnet.select.select("random", model, DENSITY, seed=0)
    cfg = pathnet.train.TrainConfig(batch_size=BATCH)
    dst = DST(rule, every=100, fraction=FRACTION, regrow=regrow, log_paths=log_paths)
    dyn = DSTRun(dst, model, mask)
    pathnet.apply_mask(model, mask, mode="hard")
    opt, _, _ = make_optimizer(model.parameters(), cfg, amp=False)
    dyn.attach(model, opt, total_steps=1000, steps_per_epoch=steps, step=99)
    x = data.images[:BATCH] if hasattr(data, "images") else data[0][:BATCH]
    y = data.labels[:BATCH] if hasattr(data, "labels") else data[1][:BATCH]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return dyn


def run(quick: bool = False) -> list[dict]:
    """One row per model and rule: seconds of an update, and its ratio to an epoch."""
    torch.set_num_threads(2)
    n = 1000 if quick else 6000
    repeat = 1 if quick else REPEAT
    data, source = _data(n)
    rows = []
    for name in ("mlp", "lenet5"):
        model = pathnet.models.build(name, seed=0)
        mask = pathnet.select.select("random", model, DENSITY, seed=0)
        epoch = _best(
            lambda model=model, mask=mask: fit(
                model, mask, data, epochs=1, batch_size=BATCH, seed=0, progress=False,
                device="cpu", augment=False,
            ),
            repeat,
        )  # fmt: skip
        steps = -(-n // BATCH)
        for rule, regrow in (("set", "any"), ("rigl", "any"), ("phew", "any"),
                             ("phew", "dead_units")):  # fmt: skip
            dyn = _run_for(name, rule, regrow, False, data, steps)
            params = prunable_parameters(dyn.model)  # type: ignore[arg-type]
            grads = {k: p.grad for k, p in params.items()}

            def select(dyn: DSTRun = dyn, params: Any = params, grads: Any = grads) -> None:
                update_mask(dyn.dst, dyn.mask, params, 100, dyn.total_steps, grads=grads,
                            init_weights=dyn.init, dag=dyn.dag)  # fmt: skip

            t_select = _best(select, repeat)
            t_update = _best(lambda dyn=dyn: dyn.update(100), repeat)
            dyn_p = _run_for(name, rule, regrow, True, data, steps)
            t_paths = _best(lambda dyn=dyn_p: dyn.update(100), repeat)
            rows.append(
                {
                    "bench": "dst",
                    "case": f"{name} {DENSITY:.0%}, {n} {source} samples, batch {BATCH}",
                    "model": name,
                    "rule": rule if regrow == "any" else f"{rule} ({regrow})",
                    "epoch_s": epoch,
                    "steps_per_epoch": steps,
                    "select_s": t_select,
                    "update_s": t_update,
                    "update_paths_s": t_paths,
                    "select_ratio": t_select / epoch,
                    "update_ratio": t_update / epoch,
                    "update_paths_ratio": t_paths / epoch,
                }
            )
    return rows


def main() -> None:
    from pathnet._text import format_table

    rows = run(quick="--quick" in sys.argv)
    print(f"{rows[0]['case']}; {torch.get_num_threads()} torch threads")
    cols = [
        "model",
        "rule",
        "epoch_s",
        "select_s",
        "update_s",
        "update_paths_s",
        "select_ratio",
        "update_ratio",
        "update_paths_ratio",
    ]
    print(format_table(rows, cols))


if __name__ == "__main__":
    main()
