"""ResNets: ResNet20/32/56 for CIFAR and ResNet18 for Tiny-ImageNet, as the PHEW authors build them.

Facts from github.com/ShreyasMalakarjunPatil/PHEW, matched here.

ResNet20/32/56 follow ``Models/resnet_cifar2.py`` (the file ``Utils/load.py`` maps
``ResNet20`` and ``ResNet32`` to; ``Models/resnet_cifar.py`` holds the 64-512 wide
ResNet18-152 instead):

- stem: 3x3 conv (stride 1, padding 1, no bias), BatchNorm, ReLU;
- three stages of ``(depth - 2) / 6`` basic blocks with 16, 32, 64 channels; the first
  block of stages 2 and 3 has stride 2;
- basic block: conv3x3 (stride s, no bias) -> BN -> ReLU -> conv3x3 -> BN, plus the
  shortcut, then ReLU; the shortcut is the identity, or a 1x1 conv (stride 2, no bias)
  followed by BN where the block downsamples (option B);
- global average pooling (``avg_pool2d`` over the whole final map), one
  ``Linear(64, num_classes)`` with bias;
- initialisation: every conv and Linear weight ``kaiming_normal_`` with torch's defaults
  (``normal(0, sqrt(2 / fan_in))``), the Linear bias 0, BatchNorm weight 1 and bias 0.

ResNet18 follows ``Models/resnet_tinyimagenet.py``:

- stem: 3x3 conv (stride 1, padding 1, no bias), BN, ReLU, **no** max pool;
- four stages of two basic blocks with 64, 128, 256, 512 channels, the same block and
  shortcut rule as above (projection where the stride or the width changes);
- ``AdaptiveAvgPool2d(1)``, one ``Linear(512, num_classes)`` with bias;
- initialisation: every conv **and** the Linear weight
  ``kaiming_normal_(mode="fan_out", nonlinearity="relu")`` (``normal(0, sqrt(2 /
  fan_out))``, fan_out = out_channels x kernel area, or num_classes for the Linear); the
  Linear bias keeps torch's default law ``uniform(+-1/sqrt(512))`` (the authors never reset
  it; here it is drawn from the model's seed); BatchNorm weight 1, bias 0.

With ``input_size=32``, ``resnet18`` is also the authors' CIFAR ResNet18
(``Models/resnet_cifar.py``: same layers and initialisation, ``avg_pool2d(out, 4)`` on the
4x4 final map).

Remaining differences, none of which changes the function computed on square inputs:

- module names: pathnet uses ``conv1``, ``bn1``, ``layer1``..``layer4`` and ``fc`` for
  every ResNet (the authors' CIFAR file uses ``conv``, ``bn``, ``blocks``; their
  Tiny-ImageNet file ``conv1.0``, ``conv2_x``..``conv5_x`` and ``residual_function``);
  masks keep pathnet's parameter names;
- the authors' ``avg_pool2d(out, out.size()[3])`` has a W x W window, which equals global
  pooling on the square inputs used here; pathnet uses ``AdaptiveAvgPool2d(1)``;
- the authors' CIFAR shortcut conv always has stride 2; pathnet's has the block's stride,
  which is 2 wherever a projection exists in these plans;
- the authors have no ResNet56; pathnet's uses the same plan with 9 blocks per stage;
- ``in_channels`` and ``input_size`` are additions (the authors' stems read 3 channels).

Input sizes: any square side works (global pooling); ``input_size`` sets ``input_shape``
(``(in_channels, input_size, input_size)``), so 28x28 Fashion-MNIST runs as is with
``in_channels=1, input_size=28``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from pathnet.models._common import init_weights, kaiming_init, positive_int, seeded

__all__ = ["BasicBlock", "ResNet", "resnet18", "resnet20", "resnet32", "resnet56"]

# The authors' Tiny-ImageNet (and CIFAR ResNet18) initialisation.
resnet18_init = partial(
    init_weights, kaiming={"mode": "fan_out", "nonlinearity": "relu"}, linear_bias="default"
)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm; identity or 1x1-projection (+BN) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """3x3 stem (conv, BN, ReLU), stages of basic blocks, global average pool, one Linear."""

    def __init__(
        self,
        blocks: Sequence[int],
        widths: Sequence[int],
        num_classes: int,
        input_shape: tuple[int, int, int],
        stem: str = "cifar",
    ) -> None:
        super().__init__()
        c = widths[0]
        self.conv1 = nn.Conv2d(input_shape[0], c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        stages = []
        for k, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            layers = []
            for b in range(n):
                stride = 2 if (k > 0 and b == 0) else 1
                layers.append(BasicBlock(c, w, stride))
                c = w
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages[0], stages[1], stages[2]
        self.layer4 = stages[3] if len(stages) > 3 else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.input_shape = tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def _resnet(
    name: str,
    plan: tuple[list[int], list[int]],
    num_classes: int,
    in_channels: int,
    input_size: int,
    seed: int | None,
) -> nn.Module:
    where = f"pathnet.models.{name}"
    num_classes = positive_int(num_classes, where, "num_classes")
    shape = (
        positive_int(in_channels, where, "in_channels"),
        positive_int(input_size, where, "input_size"),
        positive_int(input_size, where, "input_size"),
    )
    init = resnet18_init if name == "resnet18" else kaiming_init
    return seeded(lambda: ResNet(*plan, num_classes, shape), seed, init)


def _cifar(depth: int) -> tuple[list[int], list[int]]:
    n = (depth - 2) // 6
    return [n, n, n], [16, 32, 64]


_PARAMETERS = """
    Parameters
    ----------
    num_classes : int
        Outputs of the final Linear layer.
    in_channels : int
        Input channels (3 for colour images, 1 for MNIST / Fashion-MNIST).
    input_size : int
        Side of the square inputs, stored in ``input_shape``; any side works (global
        average pooling), the authors use {size}.
    seed : int, optional
        Seed of the initial weights; the global torch generator is used, and advanced,
        when None.

    Returns
    -------
    ResNet
        With ``input_shape == (in_channels, input_size, input_size)``.
"""


def resnet20(
    num_classes: int = 10, *, in_channels: int = 3, input_size: int = 32, seed: int | None = None
) -> nn.Module:
    """ResNet20 for CIFAR: 16/32/64 channels, 3 blocks per stage, 1x1 projection shortcuts.
    {parameters}
    Examples
    --------
    >>> import torch
    >>> model = resnet20(in_channels=1, input_size=28, seed=0)
    >>> model.input_shape, tuple(model(torch.zeros(2, 1, 28, 28)).shape)
    ((1, 28, 28), (2, 10))
    """
    return _resnet("resnet20", _cifar(20), num_classes, in_channels, input_size, seed)


def resnet32(
    num_classes: int = 10, *, in_channels: int = 3, input_size: int = 32, seed: int | None = None
) -> nn.Module:
    """ResNet32 for CIFAR: 16/32/64 channels, 5 blocks per stage.
    {parameters}
    Examples
    --------
    >>> sum(isinstance(m, BasicBlock) for m in resnet32(seed=0).modules())
    15
    """
    return _resnet("resnet32", _cifar(32), num_classes, in_channels, input_size, seed)


def resnet56(
    num_classes: int = 10, *, in_channels: int = 3, input_size: int = 32, seed: int | None = None
) -> nn.Module:
    """ResNet56 for CIFAR: 16/32/64 channels, 9 blocks per stage (not in the authors' code).
    {parameters}
    Examples
    --------
    >>> sum(isinstance(m, BasicBlock) for m in resnet56(seed=0).modules())
    27
    """
    return _resnet("resnet56", _cifar(56), num_classes, in_channels, input_size, seed)


def resnet18(
    num_classes: int = 200, *, in_channels: int = 3, input_size: int = 64, seed: int | None = None
) -> nn.Module:
    """ResNet18 for Tiny-ImageNet (3x3 stem, no max pool, fan_out initialisation).
    {parameters}
    Examples
    --------
    >>> model = resnet18(seed=0)
    >>> model.input_shape, model.fc
    ((3, 64, 64), Linear(in_features=512, out_features=200, bias=True))
    >>> round(model.fc.weight.detach().std().item(), 2)  # sqrt(2 / fan_out) = sqrt(2 / 200)
    0.1
    """
    plan = ([2, 2, 2, 2], [64, 128, 256, 512])
    return _resnet("resnet18", plan, num_classes, in_channels, input_size, seed)


for _f, _size in ((resnet20, 32), (resnet32, 32), (resnet56, 32), (resnet18, 64)):
    _f.__doc__ = (_f.__doc__ or "").replace(
        "    {parameters}\n", _PARAMETERS.replace("{size}", str(_size))
    )
