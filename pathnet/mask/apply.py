"""Holding a mask on a torch model: pruned weights (and the biases of dead units) stay zero."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from pathnet.mask.core import HARD_ATTRS as _HARD
from pathnet.mask.core import PRUNABLE, Mask, _join, _module_path, tied_groups

__all__ = ["MaskMode", "apply_mask", "bias_masks", "remove_mask"]

MaskMode = Literal["parametrize", "prune", "hard"]


class _MaskParametrization(nn.Module):
    """``weight = original * mask`` (see ``torch.nn.utils.parametrize``)."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask.to(w.dtype)


def _as_mask(mask: Mapping[str, Any]) -> Mask:
    return mask if isinstance(mask, Mask) else Mask(mask)


def _unit_keep(keep: torch.Tensor) -> torch.Tensor:
    """True for every output unit (dim 0) that keeps at least one weight."""
    return keep.reshape(keep.shape[0], -1).any(dim=1) if keep.dim() else keep.reshape(1)


def bias_masks(model: nn.Module, mask: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Which bias entries a mask keeps: those of units that keep at least one weight.

    The PHEW authors train every sparse network with such bias masks: a unit
    whose incoming weights in a layer are all pruned (a Linear row, a Conv2d
    filter ``W[j]``) has its bias multiplied by zero in every forward pass.

    Parameters
    ----------
    model : torch.nn.Module
    mask : Mask or mapping of str to bool tensor
        Must fit ``model`` (see :meth:`Mask.check`).

    Returns
    -------
    dict of str to torch.BoolTensor
        ``"<module>.bias"`` -> 1-D keep mask, for every masked module that has a bias.
        A bias shared by several modules is kept where any of them keeps the unit.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 2))
    >>> bias_masks(net, {"0.weight": torch.tensor([[True, False, False], [False] * 3])})
    {'0.bias': tensor([ True, False])}
    """
    m = _as_mask(mask)
    m.check(model)
    modules = dict(model.named_modules())
    out: dict[str, torch.Tensor] = {}
    for name, keep in m.items():
        path = _module_path(name)
        if getattr(modules[path], "bias", None) is not None:
            out[_join(path, "bias")] = _unit_keep(keep)
    for group in tied_groups(model, "bias"):  # a shared bias is kept where any unit is alive
        alive = torch.stack([out[name] for name in group]).any(dim=0)
        out.update(dict.fromkeys(group, alive))
    return out


def apply_mask(
    model: nn.Module,
    mask: Mapping[str, Any],
    mode: MaskMode = "parametrize",
    *,
    mask_biases: bool = True,
) -> nn.Module:
    """Apply ``mask`` to ``model`` in place so that pruned weights are, and stay, zero.

    Parameters
    ----------
    model : torch.nn.Module
    mask : Mask or mapping of str to bool tensor
        Must name exactly the model's prunable weights (see :func:`prunable_parameters`).
        Names that share one tensor (tied weights, ``b.weight = a.weight``) must
        have equal masks; unequal ones are refused, naming both.
    mode : {"parametrize", "prune", "hard"}
        ``"parametrize"``: ``torch.nn.utils.parametrize`` computes ``weight = orig * mask``.
        ``"prune"``: ``torch.nn.utils.prune.custom_from_mask`` (``weight_orig``, ``weight_mask``).
        ``"hard"``: zeros are written into the weight and a gradient hook zeroes
        their gradients, so plain optimisers (SGD with momentum and weight decay,
        Adam) leave them at zero, and ``load_state_dict`` zeroes them again after
        loading; the model keeps plain ``weight`` parameters.
        In every mode the stored weights are zeroed too, so weight decay and
        momentum cannot move them. The model holds copies of the mask's
        tensors, never the tensors themselves: nothing done to the model (a
        ``load_state_dict``, say) changes ``mask`` or another model masked with it.
    mask_biases : bool, default True
        Also mask the bias of every output unit whose weights in that module are
        all pruned (see :func:`bias_masks`), held in the same way as the
        weights, as the PHEW authors train (modules without such a unit keep a
        plain bias). False leaves biases free.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 2))
    >>> keep = torch.tensor([[True, False, True], [False, False, False]])
    >>> net = apply_mask(net, {"0.weight": keep}, mode="hard")
    >>> int((net[0].weight != 0).sum()), net[0].bias[1].item() == 0
    (2, True)
    """
    if mode not in ("parametrize", "prune", "hard"):
        raise ValueError(
            f"pathnet.apply_mask: mode must be 'parametrize', 'prune' or 'hard', got {mode!r}"
        )
    if not isinstance(mask_biases, bool):
        raise ValueError(
            f"pathnet.apply_mask: mask_biases must be True or False, got {mask_biases!r}"
        )
    m = _as_mask(mask)
    m.check(model)
    biases = bias_masks(model, m) if mask_biases else {}
    modules = dict(model.named_modules())
    for name, keep in m.items():
        path = _module_path(name)
        module = modules[path]
        _strip_mask(module)
        _hold(module, "weight", keep, mode)
        bias_keep = biases.get(_join(path, "bias"))
        if bias_keep is not None and not bool(bias_keep.all()):
            _hold(module, "bias", bias_keep, mode)
    return model


def _hold(module: nn.Module, tensor_name: str, keep: torch.Tensor, mode: MaskMode) -> None:
    """Zero ``module.<tensor_name>`` where ``keep`` is False and keep it zero in ``mode``."""
    param = getattr(module, tensor_name)
    # a copy: the model must never write into the caller's Mask (load_state_dict, in-place ops)
    keep_t = keep.to(param.device, copy=True)
    with torch.no_grad():  # masked_fill, not a product: a NaN or inf pruned entry becomes 0 too
        param.masked_fill_(~keep_t, 0)
    if mode == "parametrize":
        from torch.nn.utils import parametrize

        parametrize.register_parametrization(module, tensor_name, _MaskParametrization(keep_t))
    elif mode == "prune":
        from torch.nn.utils import prune

        prune.custom_from_mask(module, tensor_name, keep_t)
    else:
        drop_t = ~keep_t  # computed once; masked_fill keeps NaN/inf gradients off pruned entries
        grad_hook = param.register_hook(lambda g, d=drop_t: g.masked_fill(d, 0))
        load_hook = module.register_load_state_dict_post_hook(
            lambda mod, _: _rezero(mod, tensor_name)
        )
        setattr(module, _HARD[tensor_name], (keep_t, grad_hook, load_hook))


def _rezero(module: nn.Module, tensor_name: str) -> None:
    """Hard mode: zero the pruned entries again after ``load_state_dict`` wrote them."""
    keep = getattr(module, _HARD[tensor_name])[0]
    param = getattr(module, tensor_name)
    with torch.no_grad():
        param.masked_fill_(~keep, 0)


def _strip_mask(module: nn.Module) -> None:
    """Remove a mask applied earlier (weights and biases), baking the masked values in."""
    from torch.nn.utils import parametrize, prune

    for tensor_name, attr in _HARD.items():
        if parametrize.is_parametrized(module, tensor_name):
            parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
        if hasattr(module, f"{tensor_name}_orig") and hasattr(module, f"{tensor_name}_mask"):
            prune.remove(module, tensor_name)
        hard = getattr(module, attr, None)
        if hard is not None:
            for handle in hard[1:]:
                handle.remove()
            delattr(module, attr)


def remove_mask(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_mask`, leaving plain weights and biases that hold the zeros.

    Use it before exporting; further training may then revive pruned weights.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = apply_mask(nn.Linear(2, 1), {"weight": torch.tensor([[True, False]])})
    >>> sorted(n for n, _ in remove_mask(net).named_parameters())
    ['bias', 'weight']
    """
    for module in model.modules():
        if isinstance(module, PRUNABLE):
            _strip_mask(module)
    return model
