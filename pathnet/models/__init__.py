"""Model zoo: the architectures of the PHEW paper and its baselines, in plain torch.

VGG11/13/16/19 and the ResNets follow the PHEW authors' model files
(github.com/ShreyasMalakarjunPatil/PHEW, ``Models/``): layers, pooling and
initialisation; the modules :mod:`pathnet.models.vgg` and :mod:`pathnet.models.resnet`
list what they match and the differences that remain (parameter names, mainly). The MLP
and LeNet-5 (:mod:`pathnet.models.small`) are not in the authors' code. The weights follow
the authors' laws, but with a ``seed`` they are drawn from a private generator, so
``seed=s`` does not give the numbers of the authors' ``torch.manual_seed(s)`` runs.

Every constructor takes ``num_classes`` (except ``mlp``, whose ``sizes`` say it), an
``in_channels`` argument so that every model runs on 1-channel data, and a ``seed`` (same
seed, same weights; the global torch generator is not touched). Every model has an
``input_shape`` attribute (per-sample shape, no batch dimension), so that
``pathnet.to_dag(model)`` needs no further argument:

========  ===========================  ==========================================
model     ``input_shape``              inputs that fit
========  ===========================  ==========================================
mlp       ``(1, 28, 28)`` by default   any shape with ``sizes[0]`` values
lenet5    ``(in_channels, 28, 28)``    28x28 only (crop 32x32 images)
vggNN     ``(in_channels, 32, 32)``    32x32 (sides 32-63); pad 28x28 images by 2
resnetNN  ``(in_channels, s, s)``      any square side ``s = input_size`` (32)
resnet18  ``(in_channels, s, s)``      any square side ``s = input_size`` (64)
========  ===========================  ==========================================

>>> from pathnet import models
>>> models.vgg16().input_shape
(3, 32, 32)
>>> models.build("resnet20", in_channels=1, input_size=28).input_shape
(1, 28, 28)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from pathnet.models._common import kaiming_init
from pathnet.models.resnet import (
    BasicBlock,
    ResNet,
    resnet18,
    resnet20,
    resnet32,
    resnet56,
)
from pathnet.models.small import MLP, LeNet5, lenet5, mlp
from pathnet.models.vgg import VGG, vgg11, vgg13, vgg16, vgg19

__all__ = [
    "MLP",
    "MODELS",
    "VGG",
    "BasicBlock",
    "LeNet5",
    "ResNet",
    "build",
    "kaiming_init",
    "lenet5",
    "mlp",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet56",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "lenet5": lenet5,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "resnet18": resnet18,
}


def build(name: str, **kwargs: object) -> nn.Module:
    """Build a zoo model by name (``"vgg16"``, ``"resnet20"``, ...).

    Parameters
    ----------
    name : str
        A key of ``MODELS`` (case-insensitive).
    **kwargs
        Keyword arguments of the model's constructor (``num_classes``, ``in_channels``,
        ``seed``, ...).

    Returns
    -------
    torch.nn.Module
        The model, with an ``input_shape`` attribute.

    Raises
    ------
    ValueError
        For an unknown name or a bad argument value.

    Examples
    --------
    >>> build("vgg11", in_channels=1, seed=0).input_shape
    (1, 32, 32)
    """
    try:
        factory = MODELS[name.lower()]
    except KeyError:
        raise ValueError(
            f"pathnet.models.build: unknown model {name!r}; expected one of {sorted(MODELS)}"
        ) from None
    return factory(**kwargs)
