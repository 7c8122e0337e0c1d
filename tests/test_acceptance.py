"""Acceptance: a 5% PHEW subnetwork of LeNet-300-100 learns Fashion-MNIST in 3 CPU epochs.

Needs the real data (Debian's ``dataset-fashion-mnist`` installs it in
``/usr/share/datasets/fashion-mnist``; CI does) and the PHEW method; skipped otherwise.
The paper's recipe is used unchanged (SGD with Nesterov momentum 0.9, batch 128, weight
decay 1e-4, lr 0.1 divided by 10 at 50% and 75% of the run, i.e. 0.1, 0.01, 0.001 over
the three epochs).
"""

from __future__ import annotations

import pytest
import torch

import pathnet
from pathnet import Mask, models
from pathnet.train.fit import fit

DENSITY = 0.05


@pytest.fixture
def torch_threads():
    """Restore torch's thread count after the test.

    The test trains with one thread: the suite runs two xdist workers, and on
    oversubscribed cores small CPU matrix products get many times slower. It sets the
    count after the PHEW selection, whose numba kernels (OpenMP threading layer, the
    same libgomp as torch) reset it to ``NUMBA_NUM_THREADS``.
    """
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def fashion_mnist():
    from pathnet.data import DatasetNotFoundError, load_dataset

    try:
        return load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {str(exc).splitlines()[0]}")


def phew_mask(model: torch.nn.Module) -> Mask:
    try:
        import pathnet.select.phew  # noqa: F401  (registers "phew")
    except ImportError as exc:
        pytest.skip(f"PHEW is not available: {exc}")
    from pathnet.select.registry import METHODS, select

    if "phew" not in METHODS:
        pytest.skip("PHEW is not registered")
    return select("phew", model, DENSITY, seed=0)


def uniform_random_mask(model: torch.nn.Module, n_keep: int, seed: int = 0) -> Mask:
    """``n_keep`` weights drawn uniformly over all layers together."""
    params = pathnet.prunable_parameters(model)
    n = sum(p.numel() for p in params.values())
    flat = torch.zeros(n, dtype=torch.bool)
    flat[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_keep]] = True
    out, start = {}, 0
    for name, p in params.items():
        out[name] = flat[start : start + p.numel()].reshape(p.shape)
        start += p.numel()
    return Mask(out)


def test_phew_5_percent_mlp_reaches_80_percent_on_fashion_mnist(torch_threads, record_property):
    train, test = fashion_mnist()
    model = models.mlp(seed=0)  # 784-300-100-10
    mask = phew_mask(model)
    assert mask.n_kept == int(DENSITY * 266_200)
    torch.set_num_threads(1)
    phew = fit(model, mask, train, test, epochs=3, seed=0, device="cpu", progress=False)

    baseline = models.mlp(seed=0)
    rand = fit(
        baseline,
        uniform_random_mask(baseline, mask.n_kept),
        train,
        test,
        epochs=3,
        seed=0,
        device="cpu",
        progress=False,
    )
    accs = {
        "phew": [round(r["test_acc"], 4) for r in phew.history],
        "random": [round(r["test_acc"], 4) for r in rand.history],
    }
    print(f"Fashion-MNIST, MLP 784-300-100-10 at density {DENSITY}, test accuracy by epoch:")
    for name, a in accs.items():
        print(f"  {name:<7} {a}")
    record_property("phew_test_acc", phew.final["test_acc"])
    record_property("random_test_acc", rand.final["test_acc"])
    for name, w in pathnet.prunable_parameters(model).items():
        assert bool((w[~mask[name]] == 0).all()), name
    assert phew.final["test_acc"] >= 0.80, accs
