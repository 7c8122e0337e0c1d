"""Helpers shared by the zoo: seeded construction, initialisation, argument checks."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_NORM = (nn.BatchNorm1d, nn.BatchNorm2d)


def kaiming_init(model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """Kaiming-normal weights (fan_in, ReLU gain), zero biases, unit BatchNorm.

    Every ``Conv2d`` and ``Linear`` weight is drawn from ``normal(0, sqrt(2 / fan_in))``,
    which is ``torch.nn.init.kaiming_normal_`` with its defaults (``a=0``, ``mode="fan_in"``,
    ``nonlinearity="leaky_relu"``, whose gain at ``a=0`` is ``sqrt(2)``); biases are 0 and
    BatchNorm layers start at weight 1, bias 0. The model is changed in place and returned.

    Parameters
    ----------
    model : torch.nn.Module
        The model to initialise.
    generator : torch.Generator, optional
        Source of the random draws (modules in ``model.modules()`` order); the global torch
        generator when None.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Examples
    --------
    >>> import torch
    >>> layer = kaiming_init(torch.nn.Linear(200, 100), generator=torch.Generator().manual_seed(0))
    >>> round(layer.weight.detach().std().item(), 2), layer.bias.detach().abs().max().item()
    (0.1, 0.0)
    """
    return init_weights(model, generator=generator)


def init_weights(
    model: nn.Module,
    *,
    generator: torch.Generator | None = None,
    kaiming: dict[str, Any] | None = None,
    kaiming_linear: bool = True,
    linear_std: float = 0.01,
    linear_bias: str = "zeros",
) -> nn.Module:
    """Initialise ``model`` in place as the PHEW authors' model files do.

    ``Conv2d`` weights: ``torch.nn.init.kaiming_normal_(w, **kaiming)``. ``Linear`` weights:
    the same when ``kaiming_linear``, else ``normal(0, linear_std)``. Conv biases are 0;
    Linear biases are 0 (``linear_bias="zeros"``) or keep torch's default law
    ``uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``"default"``), redrawn from
    ``generator``. BatchNorm: weight 1, bias 0. Draws follow ``model.modules()`` order.
    """
    kaiming = dict(kaiming or {})
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                is_linear = isinstance(module, nn.Linear)
                if is_linear and not kaiming_linear:
                    nn.init.normal_(module.weight, 0.0, linear_std, generator=generator)
                else:
                    nn.init.kaiming_normal_(module.weight, **kaiming, generator=generator)
                if module.bias is None:
                    continue
                if is_linear and linear_bias == "default":
                    bound = 1.0 / math.sqrt(module.weight.shape[1])
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
                else:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, _NORM):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model


def seeded(
    make: Callable[[], nn.Module],
    seed: int | None,
    init: Callable[..., nn.Module] = kaiming_init,
) -> nn.Module:
    """``init(make(), generator=...)`` with the draws taken from ``seed``.

    With a seed, the global torch generator is left as it was (the modules' own default
    initialisation, overwritten by ``init``, would otherwise draw from it). Without one,
    everything draws from the global generator.
    """
    if seed is None:
        return init(make())
    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        model = make()
    return init(model, generator=generator)


def positive_int(value: object, where: str, name: str) -> int:
    """``value`` as an int, or a ValueError naming ``where`` and ``name``."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ValueError(f"{where}: {name} must be a positive integer, got {value!r}")
    return number
