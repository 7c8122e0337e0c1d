# ruff: noqa: NPY002  (the authors' code draws from NumPy's global RNG, as this copy does)
"""PHEW walks in plain Python, in the style of the authors' code: the benchmark's baseline.

It follows the structure of the authors' ``generate_probability`` / ``phew_masks``
(Patil & Dovrolis, ICML 2021): probability *lists* per layer and unit, then one
``np.random.choice(list(range(n)), 1, p=probs)`` per step, masks as dense arrays.
It walks the same :class:`pathnet.LayeredDAG` with the same rules as
:func:`pathnet.select.phew.phew` (``bias="abs"``, ``skip="reference"``: identity
shortcuts ignored, 50/50 between a projection and the conv path, no off-by-one;
one kernel element by ``|w|``; a flatten edge's position uniformly; exactly ``m``
distinct weights), so its walks follow the same distribution and need as many
walks.

Two deliberate differences from the authors' code make this baseline *faster*
than theirs, so ratios against it are conservative:

* the distinct-weight count is updated incrementally, where the authors sum
  every mask after every walk (``sum_masks``: a pass over all weights per walk);
* the row probabilities are computed with vectorised NumPy and ``tolist()``
  (their later version), not the earlier per-element list comprehensions that
  re-summed the row for every element.
"""

from __future__ import annotations

import random

import numpy as np

from pathnet.graph import LayeredDAG

__all__ = ["generate_probability", "phew_masks"]


def generate_probability(dag: LayeredDAG) -> tuple[list, list, list]:
    """Per block: forward lists ``prob[b][i]`` (over targets), backward ``reverse_prob[b][j]``
    (over sources) and per-edge kernel-element probabilities ``kernel_prob[b]``."""
    prob: list = []
    reverse_prob: list = []
    kernel_prob: list = []
    for block in dag.blocks:
        if block.values is None:  # identity shortcut: never walked by the reference policy
            prob.append(None)
            reverse_prob.append(None)
            kernel_prob.append(None)
            continue
        p2 = np.abs(block.values.astype(np.float64))
        p1 = p2.sum(axis=-1)  # get_norm: L1 norm of every kernel
        rev = []
        for row in p1:
            spar = sum(row)
            rev.append((row / spar).tolist() if spar != 0 else [1.0 / row.shape[0]] * row.shape[0])
        fwd = []
        for col in p1.T:
            spar = sum(col)
            fwd.append((col / spar).tolist() if spar != 0 else [1.0 / col.shape[0]] * col.shape[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            kp = p2 / p2.sum(axis=-1, keepdims=True)
        kp[~np.isfinite(kp)] = 1.0 / p2.shape[-1]
        prob.append(fwd)
        reverse_prob.append(rev)
        kernel_prob.append(kp)
    return prob, reverse_prob, kernel_prob


def _pick_block(dag: LayeredDAG, blocks: list[int]) -> int:
    weighted = [b for b in blocks if dag.blocks[b].kind != "identity"]
    return random.choice(weighted or blocks)


def phew_masks(
    dag: LayeredDAG,
    m: int,
    prob: list,
    reverse_prob: list,
    kernel_prob: list,
    *,
    max_walks: int | None = None,
    seed: int | None = None,
) -> tuple[list[np.ndarray | None], int, int]:
    """Walk until ``m`` distinct weights are selected (or ``max_walks`` walks ran).

    Returns ``(masks, walks, count)``: one float array of shape ``(n_out, n_in,
    n_elem)`` per parameter block (None for identity), the walks run and the
    distinct weights selected.
    """
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
    masks = [None if b.values is None else np.zeros(b.values.shape) for b in dag.blocks]
    last = len(dag.groups) - 1
    n_inputs, n_outputs = dag.groups[0].size, dag.groups[-1].size
    out_blocks = [dag.out_blocks(g) for g in range(len(dag.groups))]
    in_blocks = [dag.in_blocks(g) for g in range(len(dag.groups))]
    input_robin_unit = -1
    output_robin_unit = -1
    count = 0
    i = 0
    while count < m and (max_walks is None or i < max_walks):
        if i % 2 == 0:
            prev_unit = input_robin_unit + 1 if input_robin_unit < n_inputs - 1 else 0
            input_robin_unit = prev_unit
            g = 0
            while g != last and count < m:
                b = _pick_block(dag, out_blocks[g])
                block = dag.blocks[b]
                g = block.target
                if block.values is None:
                    continue
                n_out = block.shape[0]
                idx1 = int(np.random.choice(list(range(n_out)), 1, p=prob[b][prev_unit])[0])
                idx2 = prev_unit
                idx3 = _element(block, kernel_prob[b][idx1][idx2])
                if masks[b][idx1, idx2, idx3] == 0:
                    masks[b][idx1, idx2, idx3] = 1
                    count += 1
                prev_unit = idx1
        else:
            prev_unit = output_robin_unit + 1 if output_robin_unit < n_outputs - 1 else 0
            output_robin_unit = prev_unit
            g = last
            while g != 0 and count < m:
                b = _pick_block(dag, in_blocks[g])
                block = dag.blocks[b]
                g = block.source
                if block.values is None:
                    continue
                n_in = block.shape[1]
                idx1 = prev_unit
                idx2 = int(np.random.choice(list(range(n_in)), 1, p=reverse_prob[b][prev_unit])[0])
                idx3 = _element(block, kernel_prob[b][idx1][idx2])
                if masks[b][idx1, idx2, idx3] == 0:
                    masks[b][idx1, idx2, idx3] = 1
                    count += 1
                prev_unit = idx2
        i += 1
    return masks, i, count


def _element(block, kernel_prob: np.ndarray) -> int:
    n = kernel_prob.shape[0]
    if n == 1:
        return 0
    if block.kind != "conv":  # a flatten edge: the spatial position uniformly
        return random.choice(list(range(n)))
    return int(np.random.choice(list(range(n)), 1, p=kernel_prob.reshape(-1))[0])
