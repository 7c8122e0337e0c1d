"""Determinism: the same seed gives the same output, in one process and on any thread count.

Every public stochastic function is run twice with the same seed: selection with each
registered data-free method, :func:`pathnet.models.build`, the batch loader's order and
augmentation, and training. The selection methods with numba kernels are also run in
fresh processes with one and with two threads (``NUMBA_NUM_THREADS``,
``OMP_NUM_THREADS``, torch's threads) and must give bit-identical masks.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pathnet
from pathnet import models
from pathnet.data import Dataset, loader, random_crop_flip, subset_per_class
from pathnet.select import select
from pathnet.select.registry import METHODS, _load_builtin_methods
from pathnet.train.fit import fit

ROOT = Path(__file__).resolve().parents[1]
_load_builtin_methods()
DATA_FREE = sorted(m for m in METHODS if m not in ("snip", "grasp", "imp"))
#: Randomised methods: another seed must give another mask.
RANDOM = {"phew", "random_paths", "random", "random_global", "erk"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks: one torch thread is fastest and immune to busy cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small_vgg(seed: int = 0) -> nn.Module:
    """A VGG-like conv net, ~100k weights: one block large enough (73,728 weights) for
    PHEW's parallel preparation, and targets of thousands of weights (many walk chunks)."""
    cfg = [16, "M", 32, "M", 64, 128]
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
            c = int(v)
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    model.input_shape = (3, 16, 16)
    return models.kaiming_init(model, generator=torch.Generator().manual_seed(seed))


def options(method: str) -> dict:
    return {"iterations": 3} if method.startswith("synflow") else {}


def mask_digest(mask: pathnet.Mask) -> str:
    """SHA-256 of a mask's names and bits."""
    h = hashlib.sha256()
    for name in sorted(mask):
        h.update(name.encode() + b"\0" + np.packbits(mask[name].numpy().ravel()).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ selection
@pytest.mark.parametrize("method", DATA_FREE)
def test_select_same_seed_same_mask(method):
    model = small_vgg()
    dag = pathnet.to_dag(model)
    a = select(method, model, 0.05, seed=3, **options(method))
    # SynFlow scores the network itself: it needs the model, not only its DAG
    on = model if method.startswith("synflow") else dag
    b = select(method, on, 0.05, seed=3, **options(method))
    assert a == b and a.n_kept == int(0.05 * dag.n_params)
    # a numpy Generator seeded alike is the same seed
    c = select(method, on, 0.05, seed=np.random.default_rng(3), **options(method))
    d = select(method, on, 0.05, seed=np.random.default_rng(3), **options(method))
    assert c == d
    other = select(method, on, 0.05, seed=4, **options(method))
    if method in RANDOM:
        assert other != a
    else:  # deterministic scores: the seed plays no part
        assert other == a
    # the model is left as it was (same weights, no masks attached)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), small_vgg().parameters()))


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_methods_same_data_same_mask(method):
    model = small_vgg()
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(20, 3, 16, 16, generator=g), torch.arange(20) % 10)
    a = select(method, model, 0.05, data=data)
    b = select(method, model, 0.05, data=(data[0].clone(), data[1].clone()))
    assert a == b


# ------------------------------------------------------------------ models
@pytest.mark.parametrize("name", ["mlp", "lenet5", "vgg11", "resnet20"])
def test_models_build_same_seed_same_weights(name):
    a, b, c = (models.build(name, seed=s) for s in (7, 7, 8))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    # the global torch generator is neither used nor disturbed
    torch.manual_seed(0)
    before = torch.get_rng_state()
    models.build(name, seed=7)
    assert torch.equal(torch.get_rng_state(), before)


# ------------------------------------------------------------------ data
def toy_dataset(n: int = 50) -> Dataset:
    g = torch.Generator().manual_seed(0)
    return Dataset(
        images=torch.randn(n, 3, 8, 8, generator=g),
        labels=torch.arange(n) % 5,
        num_classes=5,
        name="toy",
        split="train",
        input_shape=(3, 8, 8),
    )


def batches(it) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in it]


def same_batches(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b)
    )


def test_loader_order_and_augmentation_replay():
    ds = toy_dataset()
    one, two = loader(ds, 16, seed=5, augment=True), loader(ds, 16, seed=5, augment=True)
    first = [batches(one) for _ in range(3)]
    second = [batches(two) for _ in range(3)]
    for a, b in zip(first, second):
        assert same_batches(a, b)
    assert not same_batches(first[0], first[1])  # every pass draws anew
    # set_epoch replays a pass, e.g. after a resume
    replay = loader(ds, 16, seed=5, augment=True)
    replay.set_epoch(2)
    assert same_batches(batches(replay), first[2])
    assert not same_batches(batches(loader(ds, 16, seed=6, augment=True)), first[0])
    plain = batches(loader(ds, 16, seed=5, augment=False))  # same order, no augmentation
    assert all(torch.equal(y, v) for (_, y), (_, v) in zip(plain, first[0]))
    # augmentation alone, from an explicit generator
    x = ds.images[:8]
    a = random_crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    b = random_crop_flip(x, torch.Generator().manual_seed(1), padding=2)
    assert torch.equal(a, b) and not torch.equal(a, x)
    s1, s2 = subset_per_class(ds, 3, seed=2), subset_per_class(ds, 3, seed=2)
    assert torch.equal(s1.images, s2.images) and torch.equal(s1.labels, s2.labels)


# ------------------------------------------------------------------ training
def strip_time(history):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


@pytest.mark.parametrize("data", ["tensors", "dataset"])
def test_fit_same_seed_same_weights(data):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 8, 8, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    train = (x, y) if data == "tensors" else toy_dataset(96)

    def run(seed: int):
        model = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(), nn.Linear(144, 5)
        )
        models.kaiming_init(model, generator=torch.Generator().manual_seed(0))
        keep = select("random", model, 0.5, seed=0, input_shape=(3, 8, 8))
        res = fit(model, keep, train, epochs=3, batch_size=16, seed=seed, progress=False,
                  device="cpu", augment=data == "dataset" or None)  # fmt: skip
        return res, model.state_dict()

    (ra, sa), (rb, sb), (_, sc) = run(1), run(1), run(2)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert strip_time(ra.history) == strip_time(rb.history)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


# ------------------------------------------------------------------ thread counts
_CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    import numba, torch
    from tests.test_determinism import THREAD_METHODS, mask_digest, small_vgg, thread_options
    from pathnet.select import select
    from pathnet.select.registry import METHODS, _load_builtin_methods

    _load_builtin_methods()
    model = small_vgg()
    out = {{"numba_threads": numba.get_num_threads(), "torch_threads": torch.get_num_threads()}}
    for method in THREAD_METHODS:
        if method not in METHODS:
            continue
        for density in (0.1, 0.01):
            mask = select(method, model, density, seed=11, **thread_options(method))
            out[f"{{method}}@{{density}}"] = [mask_digest(mask), mask.n_kept]
    print(json.dumps(out))
    """
)
THREAD_METHODS = ["phew", "random_paths", "synflow_l2", "synflow"]


def thread_options(method: str) -> dict:
    return {"iterations": 5} if method.startswith("synflow") else {}


def start_child(threads: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        NUMBA_NUM_THREADS=str(threads),
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONHASHSEED="0",
    )
    code = _CHILD.format(root=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def child_result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_masks_do_not_depend_on_the_thread_count():
    procs = [start_child(1), start_child(2)]  # side by side: each has a core
    one, two = (child_result(p) for p in procs)
    assert one.pop("numba_threads") == 1 and two.pop("numba_threads") == 2
    assert one.pop("torch_threads") == 1
    two.pop("torch_threads")
    missing = [m for m in THREAD_METHODS if not any(k.startswith(f"{m}@") for k in one)]
    if len(missing) == len(THREAD_METHODS):
        pytest.skip("none of the threaded methods is registered")
    assert one == two, {k: (one[k], two.get(k)) for k in one if one[k] != two.get(k)}
    # and the same as in this process (NUMBA_NUM_THREADS from conftest)
    model = small_vgg()
    for key, (digest, n_kept) in one.items():
        method, density = key.split("@")
        mask = select(method, model, float(density), seed=11, **thread_options(method))
        assert (mask_digest(mask), mask.n_kept) == (digest, n_kept), key
