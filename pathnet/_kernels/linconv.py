"""Numba kernels: a Conv2d (or Linear, as a 1x1 conv on a 1x1 map) of a linearised
network at batch 1, over a list of alive weight elements.

Each layer keeps its alive elements in torch's weight order, grouped in rows by
output channel ``j`` (``rowptr``), one ``code = (i << kbits) | k`` per element
(``i`` the input channel, ``k = a * kw + b`` the kernel position) and its ``|w|``
(``wabs``; ``-1`` marks a dead element, skipped everywhere). The weight used in
the forward pass is ``|w| ** power`` computed in float64 (exact: ``|w|**2`` of a
float32 fits a float64 mantissa).

Every output position accumulates its terms in element order, so positions that
see equal inputs get bitwise-equal outputs. The backward kernel works on a fixed
number of row chunks (``bounds``) with one input-gradient buffer each, summed in
chunk order afterwards: the result does not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["conv_backward", "conv_forward", "kernel_table", "kill_below", "row_bounds"]


@njit(cache=True)
def _span(o: int, s: int, n_in: int, n_out: int) -> tuple[int, int]:
    """Output positions ``y`` with ``0 <= y * s + o < n_in``, clipped to ``[0, n_out)``."""
    lo = (s - 1 - o) // s if o < 0 else 0  # ceil(-o / s)
    hi = (n_in - 1 - o) // s + 1 if n_in - 1 - o >= 0 else 0
    return max(lo, 0), min(hi, n_out)


@njit(cache=True)
def kernel_table(n_k: int, geom: np.ndarray, h: int, w: int, ho: int, wo: int) -> np.ndarray:
    """Per kernel position ``k``: ``(offset of the first input, y0, y1, x0, x1)``.

    Output positions ``y0 <= y < y1``, ``x0 <= x < x1`` read the flat input index
    ``offset + y * stride_y * w + x * stride_x`` (within its channel); the others
    read padding. ``geom = (kw, stride_y, stride_x, pad_y, pad_x, dil_y, dil_x)``.
    """
    kw, sy, sx, py, px, dy, dx = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5], geom[6]
    out = np.empty((n_k, 5), dtype=np.int64)
    for k in range(n_k):
        ky = k // kw
        oy = ky * dy - py
        ox = (k - ky * kw) * dx - px
        y0, y1 = _span(oy, sy, h, ho)
        x0, x1 = _span(ox, sx, w, wo)
        out[k, 0] = oy * w + ox
        out[k, 1] = y0
        out[k, 2] = max(y0, y1)
        out[k, 3] = x0
        out[k, 4] = max(x0, x1)
    return out


@njit(cache=True, parallel=True)
def conv_forward(
    inp: np.ndarray,
    rowptr: np.ndarray,
    code: np.ndarray,
    wabs: np.ndarray,
    power: int,
    kbits: int,
    table: np.ndarray,
    hw: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[j] = sum over alive elements (j, i, k) of w * shifted inp[i]``.

    ``inp`` is the flat ``(C_in, H, W)`` input, ``out`` the flat ``(C_out, H_out,
    W_out)`` output (float64); ``table`` from :func:`kernel_table`;
    ``hw = (H, W, H_out, W_out, stride_y, stride_x)``.
    """
    h, w_, ho, wo, sy, sx = hw[0], hw[1], hw[2], hw[3], hw[4], hw[5]
    n_out = rowptr.size - 1
    kmask = (1 << kbits) - 1
    plane, oplane = h * w_, ho * wo
    for j in prange(n_out):
        ob = j * oplane
        for q in range(oplane):
            out[ob + q] = 0.0
        for s in range(rowptr[j], rowptr[j + 1]):
            a = wabs[s]
            if a <= 0:
                continue
            wt = np.float64(a)
            if power == 2:
                wt = wt * wt
            c = code[s]
            k = c & kmask
            base = (c >> kbits) * plane + table[k, 0]
            x0, x1 = table[k, 3], table[k, 4]
            for y in range(table[k, 1], table[k, 2]):
                ib = base + y * sy * w_
                orow = ob + y * wo
                if sx == 1:  # contiguous: lets LLVM vectorise across x
                    for x in range(x0, x1):
                        out[orow + x] += wt * inp[ib + x]
                else:
                    for x in range(x0, x1):
                        out[orow + x] += wt * inp[ib + x * sx]


@njit(cache=True, parallel=True)
def conv_backward(
    inp: np.ndarray,
    gout: np.ndarray,
    rowptr: np.ndarray,
    code: np.ndarray,
    wabs: np.ndarray,
    power: int,
    score_power: int,
    absolute: bool,
    kbits: int,
    table: np.ndarray,
    hw: np.ndarray,
    bounds: np.ndarray,
    need_gin: bool,
    gin_buf: np.ndarray,
    scores: np.ndarray,
) -> None:
    """Weight gradients (as scores) of every slot, and the input gradient.

    Flat arrays as in :func:`conv_forward`; ``gout`` is ``dR/d out``.
    ``scores[s] = g * |w|**score_power`` with ``g = dR/dw`` of slot ``s`` (its
    absolute value if ``absolute``); ``-1`` for a dead slot. With ``need_gin``,
    chunk ``c`` (rows ``bounds[c]:bounds[c+1]``) adds its part of ``dR/d inp``
    into ``gin_buf[c]`` (flat, zeroed here).
    """
    h, w_, ho, wo, sy, sx = hw[0], hw[1], hw[2], hw[3], hw[4], hw[5]
    kmask = (1 << kbits) - 1
    plane, oplane = h * w_, ho * wo
    for c in prange(bounds.size - 1):
        gb = gin_buf[c]
        if need_gin:
            gb[:] = 0.0
        for j in range(bounds[c], bounds[c + 1]):
            ob = j * oplane
            for s in range(rowptr[j], rowptr[j + 1]):
                a = wabs[s]
                if a < 0:
                    scores[s] = -1.0
                    continue
                af = np.float64(a)
                wt = af * af if power == 2 else af
                cd = code[s]
                k = cd & kmask
                base = (cd >> kbits) * plane + table[k, 0]
                x0, x1 = table[k, 3], table[k, 4]
                acc = 0.0
                if need_gin and wt != 0.0:
                    for y in range(table[k, 1], table[k, 2]):
                        ib = base + y * sy * w_
                        orow = ob + y * wo
                        for x in range(x0, x1):
                            g = gout[orow + x]
                            acc += g * inp[ib + x * sx]
                            gb[ib + x * sx] += wt * g
                else:
                    for y in range(table[k, 1], table[k, 2]):
                        ib = base + y * sy * w_
                        orow = ob + y * wo
                        for x in range(x0, x1):
                            acc += gout[orow + x] * inp[ib + x * sx]
                if absolute:
                    acc = abs(acc)
                if score_power == 1:
                    acc *= af
                elif score_power == 2:
                    acc *= af * af
                scores[s] = acc


@njit(cache=True)
def row_bounds(rowptr: np.ndarray, n_chunks: int) -> np.ndarray:
    """Row boundaries of ``n_chunks`` runs of rows with about equal element counts."""
    n_rows = rowptr.size - 1
    total = rowptr[n_rows]
    out = np.empty(n_chunks + 1, dtype=np.int64)
    out[0] = 0
    r = 0
    for c in range(1, n_chunks):
        goal = (total * c) // n_chunks
        while r < n_rows and rowptr[r + 1] <= goal:
            r += 1
        out[c] = max(out[c - 1], r)
    out[n_chunks] = n_rows
    return out


@njit(cache=True)
def kill_below(scores: np.ndarray, v: float, wabs: np.ndarray) -> int:
    """Mark dead (``wabs = -1``) every alive slot scoring below ``v``; return how many."""
    n = 0
    for s in range(scores.size):
        if scores[s] < v and wabs[s] >= 0:
            wabs[s] = -1
            n += 1
    return n
