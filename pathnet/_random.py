"""One place that turns a user's ``seed`` into random state."""

from __future__ import annotations

import numpy as np

__all__ = ["SeedLike", "child_seeds", "make_rng"]

SeedLike = int | np.random.Generator | np.random.SeedSequence | None


def make_rng(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from an int, a Generator (used as is), a SeedSequence or None.

    >>> bool(make_rng(3).integers(100) == make_rng(3).integers(100))
    True
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, (bool, float)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"pathnet: seed must be an int, a numpy Generator, a SeedSequence or None, got {seed!r}"
        )
    if seed < 0:
        raise ValueError(f"pathnet: seed must be non-negative, got {seed}")
    return np.random.default_rng(int(seed))


def child_seeds(seed: SeedLike, n: int) -> np.ndarray:
    """``n`` independent 64-bit seeds derived from ``seed`` (for numba kernels)."""
    rng = make_rng(seed)
    return rng.integers(0, 2**63 - 1, size=n, dtype=np.int64)
