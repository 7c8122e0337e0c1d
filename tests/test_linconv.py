"""The exact engine's repeated-column machinery against plain unfold and fold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pathnet.select.linearised as lin
from pathnet._kernels.linconv import fold_columns, fold_table, patch_groups

# (h, w, kernel, stride, padding, dilation)
GEOMETRIES = [
    (8, 8, (3, 3), (1, 1), (1, 1), (1, 1)),
    (7, 5, (3, 3), (2, 2), (1, 1), (1, 1)),
    (9, 6, (2, 3), (1, 2), (0, 1), (1, 1)),
    (10, 10, (3, 3), (1, 1), (2, 2), (2, 2)),
    (6, 6, (1, 1), (1, 1), (0, 0), (1, 1)),
    (32, 32, (3, 3), (1, 1), (1, 1), (1, 1)),
]


def out_size(h, w, kernel, stride, padding, dilation):
    return tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip((h, w), kernel, stride, padding, dilation)
    )


def geom_array(h, w, kernel, stride, padding, dilation):
    oh, ow = out_size(h, w, kernel, stride, padding, dilation)
    return np.array([h, w, oh, ow, *kernel, *stride, *padding, *dilation], dtype=np.int64)


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("n_ids", [1, 3, 1000])
def test_patch_groups_equals_grouping_by_the_tuple_of_taps(geometry, n_ids, rng):
    h, w, kernel, stride, padding, dilation = geometry
    oh, ow = out_size(*geometry)
    pid = rng.integers(0, min(n_ids, h * w), size=h * w).astype(np.int64)
    inv, first, idx, ok = patch_groups(pid, int(pid.max()) + 1, geom_array(*geometry))
    assert ok
    # the obvious grouping: the tuple of column ids each output position reads
    keys = []
    for oy, ox in itertools.product(range(oh), range(ow)):
        key = []
        for ky, kx in itertools.product(range(kernel[0]), range(kernel[1])):
            y = oy * stride[0] - padding[0] + ky * dilation[0]
            x = ox * stride[1] - padding[1] + kx * dilation[1]
            key.append(int(pid[y * w + x]) if 0 <= y < h and 0 <= x < w else -1)
        keys.append(tuple(key))
    for p, q in itertools.combinations(range(oh * ow), 2):
        assert (inv[p] == inv[q]) == (keys[p] == keys[q])
    assert sorted(first) == sorted({min(p for p in range(oh * ow) if inv[p] == g) for g in inv})
    assert all(inv[first[g]] == g for g in range(first.size))
    # idx: the flat zero-padded input position each group's taps read
    wp = w + 2 * padding[1]
    for g, p in enumerate(first):
        oy, ox = divmod(int(p), ow)
        for t, (ky, kx) in enumerate(itertools.product(range(kernel[0]), range(kernel[1]))):
            y = oy * stride[0] + ky * dilation[0]
            x = ox * stride[1] + kx * dilation[1]
            assert idx[t, g] == y * wp + x


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("distinct", [False, True])
def test_fold_columns_equals_torch_fold(geometry, distinct, rng):
    h, w, kernel, stride, padding, dilation = geometry
    oh, ow = out_size(*geometry)
    n_k, c = kernel[0] * kernel[1], 3
    if distinct:  # gradient columns stored once per group, ``inv`` the group of each position
        inv = rng.integers(0, 4, size=oh * ow).astype(np.int64)
        gu = rng.random((c * n_k, 4))
        full = gu[:, inv]
    else:
        inv = np.arange(oh * ow, dtype=np.int64)
        gu = full = rng.random((c * n_k, oh * ow))
    table = fold_table(geom_array(*geometry), inv)
    gx = np.empty((c, h * w))
    fold_columns(np.ascontiguousarray(gu), table, gx)
    ref = F.fold(torch.from_numpy(full)[None], (h, w), kernel, dilation, padding, stride)
    np.testing.assert_allclose(gx.reshape(c, h, w), ref[0].numpy(), rtol=1e-13, atol=0)


def test_layer_columns_are_the_distinct_columns_of_unfold():
    # an all-ones input through a zero-padded conv: the interior repeats, the border not
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    with torch.no_grad():
        conv.weight.abs_()
        x = F.relu(conv(torch.ones((1, 2, 16, 16), dtype=torch.float64)))
    layer = lin._Layer(
        nn.Conv2d(3, 4, 3, padding=1), np.ones((4, 3, 3, 3)), np.ones((4, 3, 3, 3), bool), 0, 2, 1
    )
    layer.n_p = 256
    u, inv = layer.columns(x)
    full = F.unfold(x, 3, padding=1)[0]
    assert inv is not None and u.shape[1] == 25  # margins of 2 on each side: 5 x 5 classes
    assert torch.equal(u[:, inv], full)
    # distinct inputs everywhere: nothing to group, the whole unfold
    y = torch.rand((1, 3, 16, 16), dtype=torch.float64)
    u, inv = layer.columns(y)
    assert inv is None and torch.equal(u, F.unfold(y, 3, padding=1)[0])


def test_a_hash_collision_only_costs_the_saving(monkeypatch):
    # every column hashing alike: the comparison finds the difference and gives up
    a = np.arange(12.0).reshape(3, 4)

    def collide(a, p0, p1, hashes):
        hashes[p0:p1] = 7

    monkeypatch.setattr(lin, "column_hashes", collide)
    assert lin._column_ids(a) is None
    b = np.ones((3, 4))
    first, inv = lin._column_ids(b)
    assert first.tolist() == [0] and inv.tolist() == [0, 0, 0, 0]
