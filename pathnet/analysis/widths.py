"""Layer widths, effective parameters and bottlenecks of a masked network.

A unit is *active* when it lies on at least one complete input -> output path of
the masked DAG: ``F(u) > 0`` and ``B(u) > 0`` for the forward and backward path
counts (``p=0``). A parameter element of edge ``i -> j`` is *effective* when it
is unmasked and ``F(i) > 0`` and ``B(j) > 0``: it lies on a complete path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pathnet.analysis.paths import MaskLike, ModelOrDAG, prepare
from pathnet.graph import LayeredDAG
from pathnet.graph.propagate import backward, forward
from pathnet.mask import Mask

__all__ = [
    "GroupWidth",
    "active_units",
    "bottleneck",
    "effective_mask",
    "effective_params",
    "layer_widths",
]

Reach = tuple[list[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class GroupWidth:
    """How many units of one group lie on a complete input -> output path.

    Attributes
    ----------
    group : int
        Index of the group in ``dag.groups``.
    name, kind : str
        The group's name and kind (``"input"``, ``"hidden"``, ``"sum"``, ``"output"``).
    units : int
        Units of the group (the width of the dense layer).
    active : int
        Units with a path from an input and a path to an output.
    no_path_in, no_path_out : int
        Units that no input reaches / that reach no output (a unit can be both).
    """

    group: int
    name: str
    kind: str
    units: int
    active: int
    no_path_in: int
    no_path_out: int

    @property
    def dead(self) -> int:
        """Units on no complete path."""
        return self.units - self.active

    @property
    def width(self) -> float:
        """Active units relative to the dense layer, in [0, 1]."""
        return self.active / self.units


def reachability(dag: LayeredDAG) -> Reach:
    """Per group, boolean arrays: reached from an input, and reaching an output.

    Uses the float path counts of :mod:`pathnet.graph.propagate` with ``p=0``:
    every nonzero count is at least 1, so nothing underflows, and a count that
    overflows to ``inf`` is still ``> 0``, which keeps the test exact at any depth.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        f, b = forward(dag, 0), backward(dag, 0)
    return [x > 0 for x in f], [x > 0 for x in b]


def group_widths(dag: LayeredDAG, reach: Reach) -> list[GroupWidth]:
    """:func:`layer_widths` on a prepared DAG and its :func:`reachability`."""
    f, b = reach
    return [
        GroupWidth(
            group=g,
            name=grp.name,
            kind=grp.kind,
            units=grp.size,
            active=int(np.count_nonzero(f[g] & b[g])),
            no_path_in=int(np.count_nonzero(~f[g])),
            no_path_out=int(np.count_nonzero(~b[g])),
        )
        for g, grp in enumerate(dag.groups)
    ]


def block_effective(dag: LayeredDAG, reach: Reach) -> list[int]:
    """Effective parameter elements per block (0 for identity blocks)."""
    f, b = reach
    return [
        round(float(b[blk.target] @ (blk.multiplicity @ f[blk.source].astype(np.float64))))
        if blk.prunable
        else 0
        for blk in dag.blocks
    ]


def narrowest(widths: list[GroupWidth]) -> GroupWidth | None:
    """The hidden or sum group with the smallest ``width`` (first one on ties)."""
    inner = [w for w in widths if w.kind in ("hidden", "sum")]
    return min(inner, key=lambda w: (w.width, w.group)) if inner else None


def layer_widths(
    model_or_dag: ModelOrDAG,
    mask: MaskLike | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> list[GroupWidth]:
    """Per unit group: total units, units on a complete path, dead units.

    Parameters
    ----------
    model_or_dag : torch.nn.Module or LayeredDAG
    mask : Mask or mapping of str to bool array, optional
    input_shape : tuple of int, optional

    Returns
    -------
    list of GroupWidth
        One per group of the DAG, in order (input and output included).

    Examples
    --------
    >>> import torch, pathnet
    >>> model = pathnet.models.mlp([3, 4, 2], seed=0)
    >>> keep = {"1.weight": torch.ones(4, 3, dtype=torch.bool),
    ...         "3.weight": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)}
    >>> [(w.name, w.active, w.units) for w in layer_widths(model, keep)]
    [('input', 3, 3), ('1', 2, 4), ('3', 2, 2)]
    """
    dag = prepare(model_or_dag, mask, input_shape=input_shape, weights=(0,))
    return group_widths(dag, reachability(dag))


def active_units(
    model_or_dag: ModelOrDAG,
    mask: MaskLike | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> list[np.ndarray]:
    """Per unit group, a boolean array: is the unit on a complete input -> output path."""
    dag = prepare(model_or_dag, mask, input_shape=input_shape, weights=(0,))
    f, b = reachability(dag)
    return [x & y for x, y in zip(f, b)]


def effective_params(
    model_or_dag: ModelOrDAG,
    mask: MaskLike | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    per_param: bool = False,
) -> int | dict[str, int]:
    """Unmasked weights that lie on at least one complete input -> output path.

    Parameters
    ----------
    model_or_dag : torch.nn.Module or LayeredDAG
    mask : Mask or mapping of str to bool array, optional
    input_shape : tuple of int, optional
    per_param : bool, default False
        Return a dict parameter name -> count instead of the total.

    Returns
    -------
    int or dict of str to int

    Examples
    --------
    >>> import torch, pathnet
    >>> model = pathnet.models.mlp([3, 4, 2], seed=0)
    >>> keep = {"1.weight": torch.ones(4, 3, dtype=torch.bool),
    ...         "3.weight": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)}
    >>> effective_params(model, keep), effective_params(model, keep, per_param=True)
    (9, {'1.weight': 6, '3.weight': 3})
    """
    dag = prepare(model_or_dag, mask, input_shape=input_shape, weights=(0,))
    counts = block_effective(dag, reachability(dag))
    by_param: dict[str, int] = {}
    for blk, n in zip(dag.blocks, counts):
        if blk.param is not None:  # a layer reading a concatenation has one block per input
            by_param[blk.param] = by_param.get(blk.param, 0) + n
    return by_param if per_param else sum(by_param.values())


def effective_mask(
    model_or_dag: ModelOrDAG,
    mask: MaskLike | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> Mask:
    """The mask of effective weights: ``mask`` without the elements on no complete path.

    Examples
    --------
    >>> import torch, pathnet
    >>> model = pathnet.models.mlp([3, 4, 2], seed=0)
    >>> keep = {"1.weight": torch.ones(4, 3, dtype=torch.bool),
    ...         "3.weight": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)}
    >>> effective_mask(model, keep).n_kept
    9
    """
    dag = prepare(model_or_dag, mask, input_shape=input_shape, weights=(0,))
    f, b = reachability(dag)
    out = {}
    for blk in dag.blocks:
        if blk.param is None:
            continue
        on_path = b[blk.target][:, None, None] & f[blk.source][None, :, None]
        out[blk.param] = (blk.present_mask() & on_path).reshape(blk.param_shape)
    return Mask(out)


def bottleneck(
    model_or_dag: ModelOrDAG,
    mask: MaskLike | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> GroupWidth | None:
    """The narrowest hidden or residual-sum group, relative to its dense width.

    The input and output groups are left out. "Narrowest" means the smallest
    ``active / units`` (the first such group on ties), so a small dense layer is
    not taken for a bottleneck.

    Returns
    -------
    GroupWidth or None
        Its ``name``, ``active``, ``units`` and ``width``; None when the network has
        no hidden or sum group (a single Linear layer).

    Examples
    --------
    >>> import torch, pathnet
    >>> model = pathnet.models.mlp([3, 4, 2], seed=0)
    >>> keep = {"1.weight": torch.ones(4, 3, dtype=torch.bool),
    ...         "3.weight": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)}
    >>> b = bottleneck(model, keep)
    >>> b.name, b.width
    ('1', 0.5)
    """
    dag = prepare(model_or_dag, mask, input_shape=input_shape, weights=(0,))
    return narrowest(group_widths(dag, reachability(dag)))
