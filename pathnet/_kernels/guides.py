"""Per-row cumulative sums and guide tables of biased edge weights (numba kernels).

A walk step draws an edge of its current unit with probability proportional to
the edges' biased weights. Each *row* (the edges one unit can take in one
direction) stores the cumulative sums of those weights (float32) and a guide
table of one entry per :data:`GUIDE_STEP` edges (int32 positions within the row,
see :func:`_fill_guide`), so a draw costs one or two memory accesses whatever the
fan-out. The kernels here fill them from a block's ``(n_out, n_in, n_elem)``
parameter values: dense blocks row by row (:func:`dense_guide_forward`,
:func:`dense_guide_backward`), masked ones through CSR rows
(:func:`edge_weights`, then :func:`sparse_guide`). The walks that read them are in
:mod:`pathnet._kernels.walks`.

>>> import numpy as np
>>> cum = np.empty(3, dtype=np.float32); guide = np.empty(guide_size(3), dtype=np.int32)
>>> float(_guide(np.array([1.0, 2.0, 1.0]), cum, guide)), cum.tolist()
(4.0, [1.0, 3.0, 4.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# Helpers called only from compiled code: no Python wrapper to build.
_helper = njit(cache=True, no_cpython_wrapper=True)  # type: ignore[call-overload]  # numba option the stubs lack

__all__ = [
    "BIAS_ABS",
    "BIAS_INVERSE",
    "BIAS_SQUARE",
    "BIAS_UNIFORM",
    "GUIDE_STEP",
    "dense_guide_backward",
    "dense_guide_forward",
    "edge_weights",
    "guide_size",
    "kernel_weights",
    "sparse_guide",
]

BIAS_ABS = 0
BIAS_SQUARE = 1
BIAS_INVERSE = 2
BIAS_UNIFORM = 3

GUIDE_STEP = 16  # one guide entry per 16 edges of a row (64 bytes of cum)


@_helper
def _edge_value(values, j, i, bias, eps):
    """Biased weight of edge i -> j of an unmasked block, and the sum of its ``|w|``."""
    s1 = 0.0
    s2 = 0.0
    for e in range(values.shape[2]):
        x = np.float64(values[j, i, e])
        s1 += abs(x)
        s2 += x * x
    if bias == BIAS_ABS:
        return s1, s1
    if bias == BIAS_SQUARE:
        return s2, s1
    if bias == BIAS_INVERSE:
        return 1.0 / (s1 + eps), s1
    return 1.0, s1


def guide_size(n: Any) -> Any:
    """Guide entries of a row of ``n`` edges (an int, or an array of row lengths)."""
    return (n + GUIDE_STEP - 1) // GUIDE_STEP


@_helper
def _fill_guide(cum, guide):
    """Guide table of a row whose cumulative sums ``cum`` (float32) are filled.

    ``guide[g]`` (``len(guide) = ceil(n / GUIDE_STEP)``) is the first position whose
    cumulative sum exceeds ``g / len(guide)`` of the row total: a draw starts its
    search there and moves a few places (Chen & Asau's indexed search), so it
    costs one or two memory accesses whatever the fan-out.
    """
    n = cum.shape[0]
    total = np.float64(cum[n - 1])
    ng = guide.shape[0]
    k = 0
    for g in range(ng):
        t = total * g / ng
        while k < n - 1 and cum[k] <= t:
            k += 1
        guide[g] = k


@njit(cache=True)
def _guide(w, cum, guide):
    """Cumulative sums of the row ``w`` (float32) and its guide table; returns ``sum(w)``."""
    acc = 0.0
    for k in range(w.shape[0]):
        acc += w[k]
        cum[k] = acc
    _fill_guide(cum, guide)
    return acc


@_helper
def _weight(x, bias, eps):
    """Biased weight of a single-element edge of value ``x``."""
    if bias == BIAS_ABS:
        return abs(x)
    if bias == BIAS_SQUARE:
        return x * x
    if bias == BIAS_INVERSE:
        return 1.0 / (abs(x) + eps)
    return 1.0


@_helper
def _cum_row(values, j, bias, eps, cum):
    """``cum[i] = sum_{i' <= i} A[j, i']``; returns ``(row total, sum of |w|)``.

    Single-element edges (Linear weights, or precomputed kernel sums) take loops
    specialised by bias, which the compiler vectorises.
    """
    n_in, ne = values.shape[1], values.shape[2]
    acc = 0.0
    s = 0.0
    if ne > 1:
        for i in range(n_in):
            a, s1 = _edge_value(values, j, i, bias, eps)
            acc += a
            s += s1
            cum[i] = acc
    elif bias == BIAS_ABS:
        for i in range(n_in):
            acc += abs(np.float64(values[j, i, 0]))
            cum[i] = acc
        s = acc
    elif bias == BIAS_SQUARE:
        for i in range(n_in):
            x = np.float64(values[j, i, 0])
            acc += x * x
            s += abs(x)
            cum[i] = acc
    elif bias == BIAS_INVERSE:
        for i in range(n_in):
            ax = abs(np.float64(values[j, i, 0]))
            acc += 1.0 / (ax + eps)
            s += ax
            cum[i] = acc
    else:
        for i in range(n_in):
            s += abs(np.float64(values[j, i, 0]))
            acc += 1.0
            cum[i] = acc
    return acc, s


@njit(cache=True, nogil=True)
def dense_guide_backward(values, bias, eps, cum, guide, tot, j0, j1):
    """Guide tables of the rows ``A[j, :]`` (over source units), ``j0 <= j < j1``, of an unmasked block.

    ``values`` is ``(n_out, n_in, n_elem)``, float64 (callers cast float32 weights
    once: every sum is taken in float64 anyway, so the result is the same and a
    single specialisation compiles); ``cum`` (float32) is ``(n_out, n_in)`` and
    ``guide`` (int32) ``(n_out, guide_size(n_in))``; ``tot[j]`` receives the row
    totals. Returns the rows' sum of ``|values|``, for the caller's NaN/Inf and
    all-zero checks. The kernel releases the GIL: callers may run disjoint row
    ranges on several threads.
    """
    s = 0.0
    for j in range(j0, j1):
        tot[j], s1 = _cum_row(values, j, bias, eps, cum[j])
        s += s1
        _fill_guide(cum[j], guide[j])
    return s


@_helper
def _forward_tile(values, bias, eps, cum, guide, tot, i0, i1):
    """Source units ``i0 .. i1 - 1`` (at most 32) of :func:`dense_guide_forward`."""
    n_out, _, ne = values.shape
    acc = np.zeros(32)
    if ne == 1 and bias == BIAS_ABS:  # the common case: kernel sums or Linear weights
        for j in range(n_out):
            for i in range(i0, i1):
                acc[i - i0] += abs(np.float64(values[j, i, 0]))
                cum[i, j] = acc[i - i0]
    elif ne == 1:
        for j in range(n_out):
            for i in range(i0, i1):
                acc[i - i0] += _weight(np.float64(values[j, i, 0]), bias, eps)
                cum[i, j] = acc[i - i0]
    else:
        for j in range(n_out):
            for i in range(i0, i1):
                a, _ = _edge_value(values, j, i, bias, eps)
                acc[i - i0] += a
                cum[i, j] = acc[i - i0]
    for i in range(i0, i1):
        tot[i] = acc[i - i0]
        _fill_guide(cum[i], guide[i])


@njit(cache=True, nogil=True)
def dense_guide_forward(values, bias, eps, cum, guide, tot, i0, i1):
    """Guide tables of the columns ``A[:, i]`` (over target units), ``i0 <= i < i1``, of an unmasked block.

    ``values`` is float64 as for :func:`dense_guide_backward`; ``cum`` is ``(n_in,
    n_out)`` and ``guide`` ``(n_in, guide_size(n_out))``. Tiles of 32 source units
    keep the reads of ``values`` contiguous. Returns 0.0 (the values are checked
    going backward). Releases the GIL like :func:`dense_guide_backward`.
    """
    for t in range(i0 // 32, (i1 + 31) // 32):
        _forward_tile(values, bias, eps, cum, guide, tot, max(t * 32, i0), min((t + 1) * 32, i1))
    return 0.0


@_helper
def _kernel_row(values, j, bias, eps, flat, a_out, ew_out):
    """Row ``j`` of :func:`kernel_weights`; returns its sum of ``|w|``."""
    n_in, ne = values.shape[1], values.shape[2]
    st = 0.0
    for i in range(n_in):
        s1 = 0.0
        s2 = 0.0
        for e in range(ne):
            x = np.float64(values[j, i, e])
            s1 += abs(x)
            s2 += x * x
        st += s1
        if bias == BIAS_ABS:
            a_out[j, i] = s1
        elif bias == BIAS_SQUARE:
            a_out[j, i] = s2
        elif bias == BIAS_INVERSE:
            a_out[j, i] = 1.0 / (s1 + eps)
        else:
            a_out[j, i] = 1.0
        if flat:
            for e in range(ne):
                ew_out[j, i, e] = 1.0
        elif bias == BIAS_ABS:
            for e in range(ne):
                ew_out[j, i, e] = abs(values[j, i, e])
        elif bias == BIAS_SQUARE:
            for e in range(ne):
                ew_out[j, i, e] = np.float64(values[j, i, e]) ** 2
        else:
            for e in range(ne):
                ew_out[j, i, e] = 1.0 / (abs(np.float64(values[j, i, e])) + eps)
    return st


@njit(cache=True, nogil=True)
def kernel_weights(values, bias, eps, elem_uniform, a_out, ew_out, j0, j1):
    """Edge and element weights of the rows ``j0 <= j < j1`` of an unmasked block with
    ``n_elem > 1``, in one pass.

    Writes the biased edge weights ``a_out[j, i]`` (float64) and the weights for
    choosing an element of each edge, ``ew_out`` (float32, shaped like ``values``;
    all 1 when ``elem_uniform`` or ``bias`` is uniform). Returns the rows' sum of
    ``|values|``, for the caller's NaN/Inf and all-zero checks. Releases the GIL
    like :func:`dense_guide_backward`.
    """
    flat = True if bias == BIAS_UNIFORM else elem_uniform
    s = 0.0
    for j in range(j0, j1):
        s += _kernel_row(values, j, bias, eps, flat, a_out, ew_out)
    return s


@_helper
def _masked_row(values, mask, j, bias, eps, out, present):
    """Row ``j`` of :func:`edge_weights`; returns its sum of ``|w|``."""
    n_in, ne = values.shape[1], values.shape[2]
    st = 0.0
    for i in range(n_in):
        s1 = 0.0
        s2 = 0.0
        cnt = 0
        for e in range(ne):
            if mask[j, i, e]:
                x = np.float64(values[j, i, e])
                cnt += 1
                s1 += abs(x)
                s2 += x * x
        st += s1
        present[j, i] = 1 if cnt > 0 else 0
        if cnt == 0:
            out[j, i] = 0.0
        elif bias == BIAS_ABS:
            out[j, i] = s1
        elif bias == BIAS_SQUARE:
            out[j, i] = s2
        elif bias == BIAS_INVERSE:
            out[j, i] = 1.0 / (s1 + eps)
        else:
            out[j, i] = 1.0
    return st


@njit(cache=True, nogil=True)
def edge_weights(values, mask, bias, eps, out, present, j0, j1):
    """Biased edge weights of the rows ``j0 <= j < j1`` of a masked block over its present elements.

    ``mask`` is a bool array like ``values``. Writes ``out[j, i]`` (float64) and
    ``present[j, i]`` (uint8, 1 when the edge has a present element); returns the
    sum of ``|values|`` over present elements, for the caller's checks. Releases
    the GIL like :func:`dense_guide_backward`.
    """
    s = 0.0
    for j in range(j0, j1):
        s += _masked_row(values, mask, j, bias, eps, out, present)
    return s


@njit(cache=True, nogil=True)
def sparse_guide(indptr, gptr, weights, cum, guide, tot, r0, r1):
    """Guide tables of the CSR rows ``weights[indptr[r]:indptr[r + 1]]``, ``r0 <= r < r1``.

    Row ``r``'s guide is ``guide[gptr[r]:gptr[r + 1]]``; ``tot[r]`` its total.
    Returns 0.0. Releases the GIL like :func:`dense_guide_backward`.
    """
    for r in range(r0, r1):
        lo = indptr[r]
        hi = indptr[r + 1]
        if hi > lo:
            tot[r] = _guide(weights[lo:hi], cum[lo:hi], guide[gptr[r] : gptr[r + 1]])
        else:
            tot[r] = 0.0
    return 0.0
