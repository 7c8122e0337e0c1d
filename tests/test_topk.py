"""The exact k-th largest score of :mod:`pathnet._kernels.topk` against a full sort."""

from __future__ import annotations

import numpy as np
import pytest

from pathnet._kernels.topk import kth_largest


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, 200_000])
@pytest.mark.parametrize("kind", ["normal", "few values", "sorted", "reversed", "-inf"])
def test_kth_largest_is_the_value_of_a_full_sort(n, kind):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n)
    if kind == "few values":
        x = rng.integers(0, 5, n).astype(np.float64)
    elif kind == "sorted":
        x = np.sort(x)
    elif kind == "reversed":
        x = np.sort(x)[::-1].copy()
    elif kind == "-inf":
        x = np.full(n, 1.5)
        x[rng.integers(0, n, max(1, n // 10))] = -np.inf
    ordered = np.sort(x)[::-1]
    before = x.copy()
    for k in sorted({1, n, max(1, n // 2), max(1, n // 20), int(rng.integers(1, n + 1))}):
        assert kth_largest(x, k) == ordered[k - 1]
        assert kth_largest(x.astype(np.float32), k) == np.sort(x.astype(np.float32))[::-1][k - 1]
    np.testing.assert_array_equal(x, before)  # the input is not reordered


@pytest.mark.parametrize("m", [1, 2, 5, 64, 5000])
def test_tie_cut_is_the_rth_entry_of_the_stable_order(m):
    from pathnet._kernels.topk import tie_cut

    rng = np.random.default_rng(m)
    scores = rng.integers(0, 3, 3 * m).astype(np.float64)
    scores[0] = 1.0
    secondary = rng.integers(0, 4, scores.size).astype(np.float64)  # many equal keys
    index = rng.permutation(scores.size).astype(np.int64)
    tied = np.flatnonzero(scores == 1.0)
    order = tied[np.lexsort((index[tied], -secondary[tied]))]  # secondary desc, index asc
    for r in sorted({1, tied.size, max(1, tied.size // 3), int(rng.integers(1, tied.size + 1))}):
        w_cut, g_cut = tie_cut(scores, secondary, index, 1.0, r)
        assert (w_cut, g_cut) == (secondary[order[r - 1]], index[order[r - 1]])
