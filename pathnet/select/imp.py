"""``"imp"``: iterative magnitude pruning with rewinding, as a selection method.

Unlike the methods that select at initialisation, IMP trains: pass the training data as
an option.

>>> import pathnet, torch  # doctest: +SKIP
>>> mask = pathnet.select("imp", model, 0.1, seed=0, train_data=train,  # doctest: +SKIP
...                       epochs_per_round=10, out_dir="runs/imp")
"""

from __future__ import annotations

from typing import Any

from torch import nn

from pathnet._random import SeedLike
from pathnet.graph import LayeredDAG
from pathnet.mask import Mask
from pathnet.select.registry import register, target_count

__all__ = ["imp_select"]


@register("imp", needs_data=True, options=None)
def imp_select(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike,
    model: nn.Module | None,
    train_data: Any = None,
    test_data: Any = None,
    **options: Any,
) -> Mask:
    """The final mask of :func:`pathnet.train.imp.imp` at ``density``.

    Parameters
    ----------
    dag : LayeredDAG
        Used to check the density only.
    density : float
        Target density; the mask keeps exactly ``int(density * n_params)`` weights.
    seed : int, numpy Generator or None
        Seed of every round's training.
    model : torch.nn.Module
        The network at initialisation (required; it is not modified).
    train_data : Dataset or tuple (x, y) of tensors
        Training data (required).
    test_data : Dataset or tuple (x, y) of tensors, optional
    **options
        Passed to :func:`pathnet.train.imp.imp` (``rewind``, ``scope``, ``fraction``,
        ``rounds``, ``epochs_per_round``, ``out_dir``, ``progress``, and options of
        :func:`pathnet.train.fit.fit`).

    Returns
    -------
    Mask
        The last round's mask (``meta["round"]``, ``meta["rounds"]``).
    """
    if model is None:
        raise ValueError(
            "pathnet.select('imp'): IMP trains the network, so it needs the torch model, "
            "not a LayeredDAG"
        )
    if train_data is None:
        raise ValueError("pathnet.select('imp'): pass the training data as train_data=...")
    if density >= 1.0:
        raise ValueError("pathnet.select('imp'): density must be below 1 for IMP to prune")
    expected = target_count(dag, density)
    from pathnet.train.imp import imp

    result = imp(model, train_data, test_data, density=density, seed=seed, **options)
    mask = result.final_mask
    if mask.n_kept != expected:  # the DAG and the model count the same weights
        raise RuntimeError(
            f"pathnet.select('imp'): kept {mask.n_kept} weights, expected {expected}"
        )
    return mask
