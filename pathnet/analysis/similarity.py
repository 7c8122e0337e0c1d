"""How alike two masks are: densities, Jaccard of kept weights and of active units."""

from __future__ import annotations

from typing import Any

import numpy as np

from pathnet.analysis.paths import MaskLike, ModelOrDAG, as_dag
from pathnet.analysis.summary import Table
from pathnet.analysis.widths import active_units
from pathnet.mask import Mask

__all__ = ["jaccard", "mask_similarity"]

WEIGHT_COLUMNS = ("param", "params", "density_a", "density_b", "kept_both", "jaccard")
UNIT_COLUMNS = (
    "target",
    "units",
    "active_a",
    "active_b",
    "jaccard_units",
    "width_a",
    "width_b",
    "width_diff",
)


def jaccard(both: int, either: int) -> float:
    """``|A & B| / |A | B|``; 1.0 for two empty sets (they are equal)."""
    return both / either if either else 1.0


def _as_numpy(mask: MaskLike) -> dict[str, np.ndarray]:
    m = mask if isinstance(mask, Mask) else Mask(mask)  # checks dtypes
    return {k: v.numpy() for k, v in m.items()}


def mask_similarity(
    a: MaskLike,
    b: MaskLike,
    model_or_dag: ModelOrDAG | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> Table:
    """Compare two masks per parameter and overall.

    Parameters
    ----------
    a, b : Mask or mapping of str to bool array
        Masks over the same parameters with the same shapes.
    model_or_dag : torch.nn.Module or LayeredDAG, optional
        The network; needed for active units (units on a complete input -> output
        path under each mask) and widths. Without it those columns are left out.
    input_shape : tuple of int, optional

    Returns
    -------
    Table
        One row per parameter (DAG order when a network is given): ``params``,
        ``density_a``, ``density_b``, ``kept_both`` (weights both keep) and
        ``jaccard`` of the kept weights. With a network, also the parameter's
        target group: ``units``, ``active_a``, ``active_b``, ``jaccard_units`` of
        the active units, ``width_a``, ``width_b`` (active / units) and
        ``width_diff = width_a - width_b``. ``overall`` holds the same over all
        weights and, for units, over all hidden and residual-sum groups (input
        and output groups left out). The Jaccard of two empty sets is 1.

    Raises
    ------
    ValueError
        If the masks name different parameters or shapes differ, or they do not
        fit the network.

    Examples
    --------
    >>> import torch
    >>> a = {"w": torch.tensor([True, True, False, False])}
    >>> b = {"w": torch.tensor([True, False, True, False])}
    >>> mask_similarity(a, b).to_dicts()[0]["jaccard"]
    0.3333333333333333
    """
    ma, mb = _as_numpy(a), _as_numpy(b)
    if set(ma) != set(mb):
        raise ValueError(
            "pathnet.analysis.mask_similarity: the masks name different parameters: "
            f"only in a {sorted(set(ma) - set(mb))}, only in b {sorted(set(mb) - set(ma))}"
        )
    for name in ma:
        if ma[name].shape != mb[name].shape:
            raise ValueError(
                f"pathnet.analysis.mask_similarity: {name!r} has shape {ma[name].shape} in a "
                f"and {mb[name].shape} in b"
            )

    names, dag = list(ma), None
    if model_or_dag is not None:
        dag = as_dag(model_or_dag, input_shape)
        act_a, act_b = active_units(dag, a), active_units(dag, b)  # checks the names too
        names = list(dag.params)

    if not names:
        raise ValueError("pathnet.analysis.mask_similarity: the masks hold no parameters")
    counts: dict[str, tuple[int, int, int, int]] = {}
    for name in names:
        x, y = ma[name], mb[name]
        both = int(np.count_nonzero(x & y))
        counts[name] = (x.size, int(np.count_nonzero(x)), int(np.count_nonzero(y)), both)
    rows = [{"param": name, **_weight_stats(*c)} for name, c in counts.items()]
    n, kept_a, kept_b, both = (sum(col) for col in zip(*counts.values()))
    overall = _weight_stats(n, kept_a, kept_b, both)
    columns: tuple[str, ...] = WEIGHT_COLUMNS
    if dag is not None:
        for row in rows:
            g = dag.block_of(row["param"]).target
            row["target"] = dag.groups[g].name
            row.update(_unit_stats([act_a[g]], [act_b[g]]))
        inner = [g for g, grp in enumerate(dag.groups) if grp.kind in ("hidden", "sum")]
        if inner:
            overall.update(_unit_stats([act_a[g] for g in inner], [act_b[g] for g in inner]))
        columns = WEIGHT_COLUMNS + UNIT_COLUMNS
    return Table(columns, tuple(rows), "pathnet.analysis.mask_similarity", overall)


def _weight_stats(n: int, kept_a: int, kept_b: int, both: int) -> dict[str, Any]:
    return {
        "params": n,
        "density_a": kept_a / n,
        "density_b": kept_b / n,
        "kept_both": both,
        "jaccard": jaccard(both, kept_a + kept_b - both),
    }


def _unit_stats(xs: list[np.ndarray], ys: list[np.ndarray]) -> dict[str, Any]:
    x, y = np.concatenate(xs), np.concatenate(ys)
    na, nb, both = np.count_nonzero(x), np.count_nonzero(y), np.count_nonzero(x & y)
    return {
        "units": int(x.size),
        "active_a": int(na),
        "active_b": int(nb),
        "jaccard_units": jaccard(int(both), int(na + nb - both)),
        "width_a": na / x.size,
        "width_b": nb / x.size,
        "width_diff": (na - nb) / x.size,
    }
