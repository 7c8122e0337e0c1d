"""Model zoo: the architectures of the PHEW paper and its baselines, in plain torch.

Every constructor returns an ``nn.Module`` with Kaiming-normal initialisation and an
``input_shape`` attribute (per-sample shape, no batch dimension), so that
``pathnet.to_dag(model)`` needs no further argument.

>>> from pathnet import models
>>> models.vgg16().input_shape
(3, 32, 32)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "MODELS",
    "BasicBlock",
    "build",
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


def kaiming_init(model: nn.Module, *, generator: torch.Generator | None = None) -> nn.Module:
    """Kaiming-normal weights (fan_in, ReLU gain), zero biases, unit BatchNorm."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            std = (2.0 / fan_in) ** 0.5
            with torch.no_grad():
                module.weight.normal_(0.0, std, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def _seeded(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator().manual_seed(int(seed))


def _init(make: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    """``make()`` with Kaiming-normal weights drawn from ``seed``.

    With a seed, the global torch generator is left as it was (the modules' own default
    initialisation, overwritten here, would otherwise draw from it).
    """
    if seed is None:
        return kaiming_init(make())
    generator = _seeded(seed)
    with torch.random.fork_rng(devices=[]):
        model = make()
    return kaiming_init(model, generator=generator)


class MLP(nn.Sequential):
    """Fully connected ReLU network ``sizes[0] -> ... -> sizes[-1]`` on flattened inputs."""

    def __init__(self, sizes: Sequence[int], input_shape: tuple[int, ...] | None = None) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(
                f"pathnet.models.mlp: sizes must hold at least two positive integers, got {sizes}"
            )
        layers: list[nn.Module] = [nn.Flatten()]
        for k, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if k < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)
        if input_shape is None:
            input_shape = (sizes[0],)
        if int(torch.tensor(input_shape).prod()) != sizes[0]:
            raise ValueError(
                f"pathnet.models.mlp: input_shape {tuple(input_shape)} has "
                f"{int(torch.tensor(input_shape).prod())} features, sizes[0] is {sizes[0]}"
            )
        self.input_shape = tuple(int(s) for s in input_shape)


def mlp(
    sizes: Sequence[int] = (784, 300, 100, 10),
    *,
    input_shape: tuple[int, ...] | None = None,
    seed: int | None = None,
) -> nn.Module:
    """A ReLU MLP; the default is the LeNet-300-100 of the pruning literature.

    >>> mlp([4, 3, 2]).input_shape
    (4,)
    """
    if input_shape is None and tuple(sizes) == (784, 300, 100, 10):
        input_shape = (1, 28, 28)
    return _init(lambda: MLP(sizes, input_shape), seed)


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )
        self.input_shape = (in_channels, 28, 28)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet5(num_classes: int = 10, *, seed: int | None = None) -> nn.Module:
    """LeNet-5 for 1x28x28 inputs (padding 2 in the first conv, as for MNIST)."""
    return _init(lambda: LeNet5(num_classes), seed)


_VGG_CFG: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512, "M"),
    ],
    "vgg19": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    ],
}


class VGG(nn.Module):
    """CIFAR VGG: 3x3 convs with bias, max pooling to 1x1, one Linear 512 -> classes."""

    def __init__(self, cfg: Sequence[int | str], num_classes: int, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
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
        self.classifier = nn.Linear(c_in, num_classes)
        self.input_shape = (3, 32, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


def _vgg(name: str, num_classes: int, batch_norm: bool, seed: int | None) -> nn.Module:
    return _init(lambda: VGG(_VGG_CFG[name], num_classes, batch_norm), seed)


def vgg11(num_classes: int = 10, batch_norm: bool = False, *, seed: int | None = None) -> nn.Module:
    """VGG11, CIFAR form (32x32 inputs)."""
    return _vgg("vgg11", num_classes, batch_norm, seed)


def vgg13(num_classes: int = 10, batch_norm: bool = False, *, seed: int | None = None) -> nn.Module:
    """VGG13, CIFAR form (32x32 inputs)."""
    return _vgg("vgg13", num_classes, batch_norm, seed)


def vgg16(num_classes: int = 10, batch_norm: bool = False, *, seed: int | None = None) -> nn.Module:
    """VGG16, CIFAR form: 13 convs with bias and one Linear 512 -> classes (14.7 M weights)."""
    return _vgg("vgg16", num_classes, batch_norm, seed)


def vgg19(num_classes: int = 10, batch_norm: bool = False, *, seed: int | None = None) -> nn.Module:
    """VGG19, CIFAR form (32x32 inputs)."""
    return _vgg("vgg19", num_classes, batch_norm, seed)


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm; identity or 1x1-projection shortcut."""

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
        for k, (n, w) in enumerate(zip(blocks, widths)):
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


def _cifar_resnet(depth: int, num_classes: int, seed: int | None) -> nn.Module:
    n = (depth - 2) // 6
    return _init(lambda: ResNet([n, n, n], [16, 32, 64], num_classes, (3, 32, 32)), seed)


def resnet20(num_classes: int = 10, *, seed: int | None = None) -> nn.Module:
    """ResNet20 for CIFAR: 16/32/64 channels, 1x1 stride-2 projection shortcuts."""
    return _cifar_resnet(20, num_classes, seed)


def resnet32(num_classes: int = 10, *, seed: int | None = None) -> nn.Module:
    """ResNet32 for CIFAR."""
    return _cifar_resnet(32, num_classes, seed)


def resnet56(num_classes: int = 10, *, seed: int | None = None) -> nn.Module:
    """ResNet56 for CIFAR."""
    return _cifar_resnet(56, num_classes, seed)


def resnet18(num_classes: int = 200, *, seed: int | None = None) -> nn.Module:
    """ResNet18 for 64x64 Tiny-ImageNet inputs (3x3 stem, no initial max pooling)."""
    return _init(lambda: ResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes, (3, 64, 64)), seed)


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
    """Build a zoo model by name (``"vgg16"``, ``"resnet20"``, ...)."""
    try:
        factory = MODELS[name.lower()]
    except KeyError:
        raise ValueError(
            f"pathnet.models.build: unknown model {name!r}; expected one of {sorted(MODELS)}"
        ) from None
    return factory(**kwargs)
