"""Masks: parameter name -> boolean tensor, saved safely, applied to torch models.

- :mod:`pathnet.mask.core`: the :class:`Mask` type and :func:`prunable_parameters`;
- :mod:`pathnet.mask.files`: reading and writing mask files (:class:`MaskFileError`);
- :mod:`pathnet.mask.apply`: :func:`apply_mask`, :func:`remove_mask`, :func:`bias_masks`.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 3))
>>> mask = Mask({"0.weight": torch.rand(3, 4, generator=torch.Generator().manual_seed(0)) < 0.5})
>>> net = apply_mask(net, mask)
>>> bool((net[0].weight[~mask["0.weight"]] == 0).all())
True
"""

from pathnet.mask.apply import MaskMode, apply_mask, bias_masks, remove_mask
from pathnet.mask.apply import _MaskParametrization as _MaskParametrization  # pickled models
from pathnet.mask.core import Mask, applied_mask, prunable_parameters, tied_groups
from pathnet.mask.files import MaskFileError

__all__ = [
    "Mask",
    "MaskFileError",
    "MaskMode",
    "applied_mask",
    "apply_mask",
    "bias_masks",
    "prunable_parameters",
    "remove_mask",
    "tied_groups",
]
