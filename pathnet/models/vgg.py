"""VGG11/13/16/19 in the PHEW authors' CIFAR form.

Facts taken from ``Models/vgg_cifar.py`` of github.com/ShreyasMalakarjunPatil/PHEW and
matched here:

- configurations A/B/D/E (VGG11/13/16/19) of 3x3 convolutions with bias and padding 1,
  each followed by ReLU (BatchNorm2d in between when ``batch_norm``), with **four**
  2x2 max-pools: there is no pool after the last convolution block;
- ``forward`` applies ``AvgPool2d(2)`` to the 512 x 2 x 2 feature map, flattens it and
  ends in one ``Linear(512, num_classes)`` with bias;
- initialisation: conv weights ``kaiming_normal_`` with torch's defaults (``mode="fan_in"``,
  ``nonlinearity="leaky_relu"``, ``a=0``: ``normal(0, sqrt(2 / (9 * c_in)))``), conv biases
  0, BatchNorm weight 1 and bias 0, the Linear weight ``normal(0, 0.01)`` and its bias 0.

Remaining differences, none of which changes the function computed:

- module names: the authors call the stack ``layers`` and the classifier ``fc``; pathnet
  keeps ``features`` and ``classifier`` so that saved masks keep their parameter names;
- the average pool is a module (``pool``) here, a functional call in the authors'
  ``forward``;
- ``in_channels`` (default 3) is an addition: the authors' VGG always reads 3 channels;
- the authors' Tiny-ImageNet VGG (``Models/vgg_tinyimagenet.py``: five pools and a
  2048-1024-1024-classes classifier with dropout) is not in the zoo.

Input sizes: the classifier reads a 1x1 map, so an input side ``s`` must satisfy
``(s // 16) // 2 == 1``, i.e. 32 <= s <= 63; ``input_shape`` is ``(in_channels, 32, 32)``.
Pad 28x28 images (MNIST, Fashion-MNIST) by 2 on each side, e.g.
``torch.nn.functional.pad(x, (2, 2, 2, 2))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from pathnet.models._common import init_weights, positive_int, seeded

__all__ = ["VGG", "vgg11", "vgg13", "vgg16", "vgg19"]

_CFG: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512),
    ],
    "vgg19": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512),
    ],
}

# The authors' VGG initialisation: kaiming_normal_ defaults for convs, normal(0, 0.01) Linear.
vgg_init = partial(init_weights, kaiming={}, kaiming_linear=False, linear_std=0.01)


class VGG(nn.Module):
    """CIFAR VGG: 3x3 convs with bias, four max-pools, AvgPool2d(2), one Linear 512 -> classes."""

    def __init__(
        self,
        cfg: Sequence[int | str],
        num_classes: int,
        batch_norm: bool,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            assert isinstance(v, int)
            layers.append(nn.Conv2d(c_in, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            c_in = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2)
        self.classifier = nn.Linear(c_in, num_classes)
        self.input_shape = (in_channels, 32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _vgg(
    name: str, num_classes: int, batch_norm: bool, in_channels: int, seed: int | None
) -> nn.Module:
    where = f"pathnet.models.{name}"
    num_classes = positive_int(num_classes, where, "num_classes")
    in_channels = positive_int(in_channels, where, "in_channels")
    cfg = _CFG[name]
    return seeded(lambda: VGG(cfg, num_classes, bool(batch_norm), in_channels), seed, vgg_init)


_PARAMETERS = """
    Parameters
    ----------
    num_classes : int
        Outputs of the classifier ``Linear(512, num_classes)``.
    batch_norm : bool
        BatchNorm2d after every convolution (the authors' ``vggNN_bn``).
    in_channels : int
        Input channels; inputs are ``in_channels`` x 32 x 32 (pad 28x28 images by 2).
    seed : int, optional
        Seed of the initial weights; the global torch generator is used, and advanced,
        when None.

    Returns
    -------
    VGG
        With ``input_shape == (in_channels, 32, 32)``.
"""


def vgg11(
    num_classes: int = 10,
    batch_norm: bool = False,
    *,
    in_channels: int = 3,
    seed: int | None = None,
) -> nn.Module:
    """VGG11 (configuration A), the authors' CIFAR form: 8 convs, 4 max-pools.
    {parameters}
    Examples
    --------
    >>> vgg11(in_channels=1, seed=0).input_shape
    (1, 32, 32)
    """
    return _vgg("vgg11", num_classes, batch_norm, in_channels, seed)


def vgg13(
    num_classes: int = 10,
    batch_norm: bool = False,
    *,
    in_channels: int = 3,
    seed: int | None = None,
) -> nn.Module:
    """VGG13 (configuration B), the authors' CIFAR form: 10 convs, 4 max-pools.
    {parameters}
    Examples
    --------
    >>> sum(isinstance(m, nn.MaxPool2d) for m in vgg13(seed=0).modules())
    4
    """
    return _vgg("vgg13", num_classes, batch_norm, in_channels, seed)


def vgg16(
    num_classes: int = 10,
    batch_norm: bool = False,
    *,
    in_channels: int = 3,
    seed: int | None = None,
) -> nn.Module:
    """VGG16 (configuration D), the authors' CIFAR form: 13 convs, 4 max-pools (14.7 M weights).
    {parameters}
    Examples
    --------
    >>> import torch
    >>> model = vgg16(seed=0)
    >>> tuple(model(torch.zeros(2, 3, 32, 32)).shape)
    (2, 10)
    >>> round(model.classifier.weight.detach().std().item(), 3)
    0.01
    """
    return _vgg("vgg16", num_classes, batch_norm, in_channels, seed)


def vgg19(
    num_classes: int = 10,
    batch_norm: bool = False,
    *,
    in_channels: int = 3,
    seed: int | None = None,
) -> nn.Module:
    """VGG19 (configuration E), the authors' CIFAR form: 16 convs, 4 max-pools.
    {parameters}
    Examples
    --------
    >>> vgg19(num_classes=100, seed=0).classifier
    Linear(in_features=512, out_features=100, bias=True)
    """
    return _vgg("vgg19", num_classes, batch_norm, in_channels, seed)


for _f in (vgg11, vgg13, vgg16, vgg19):
    _f.__doc__ = (_f.__doc__ or "").replace("    {parameters}\n", _PARAMETERS)
