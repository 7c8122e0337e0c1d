"""The small models: a ReLU MLP (default LeNet-300-100) and LeNet-5.

The PHEW authors' public code (github.com/ShreyasMalakarjunPatil/PHEW) defines neither:
``main.py`` lists ``lenet5`` as a choice, but ``Utils/load.py`` maps no model to it, and
there is no MLP. Both follow the pruning literature's usual definitions and are
initialised like the authors' CIFAR ResNets (``Models/resnet_cifar2.py``):
``kaiming_normal_`` with its defaults (``normal(0, sqrt(2 / fan_in))``) for every weight,
biases 0.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from pathnet.models._common import positive_int, seeded

__all__ = ["MLP", "LeNet5", "lenet5", "mlp"]


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
        if math.prod(int(s) for s in input_shape) != sizes[0]:
            raise ValueError(
                f"pathnet.models.mlp: input_shape {tuple(input_shape)} has "
                f"{math.prod(int(s) for s in input_shape)} features, sizes[0] is {sizes[0]}"
            )
        self.input_shape = tuple(int(s) for s in input_shape)


def _image_shape(n_features: int, in_channels: int) -> tuple[int, int, int]:
    """``(in_channels, side, side)`` holding ``n_features`` values, or a ValueError."""
    side = math.isqrt(n_features // in_channels)
    if in_channels * side * side != n_features:
        raise ValueError(
            f"pathnet.models.mlp: sizes[0] = {n_features} is not in_channels ({in_channels}) "
            "times a square; pass input_shape instead"
        )
    return (in_channels, side, side)


def mlp(
    sizes: Sequence[int] = (784, 300, 100, 10),
    *,
    input_shape: tuple[int, ...] | None = None,
    in_channels: int | None = None,
    seed: int | None = None,
) -> nn.Module:
    """A ReLU MLP; the default is the LeNet-300-100 of the pruning literature.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input features first, classes last.
    input_shape : tuple of int, optional
        Per-sample input shape (flattened by the model); its product must be
        ``sizes[0]``. Default ``(1, 28, 28)`` for the default sizes, else a square image
        of ``in_channels`` channels when that is given, else ``(sizes[0],)``.
    in_channels : int, optional
        Read the input as ``in_channels`` square channels: ``mlp(in_channels=1)`` takes
        1x28x28 images, ``mlp([3072, 300, 100, 10], in_channels=3)`` 3x32x32 images.
    seed : int, optional
        Seed of the initial weights (Kaiming normal, fan_in; biases 0); the global torch
        generator is used, and advanced, when None.

    Returns
    -------
    MLP
        An ``nn.Sequential`` (Flatten, Linear, ReLU, ..., Linear) with ``input_shape``.

    Raises
    ------
    ValueError
        For non-positive sizes, or an ``input_shape`` / ``in_channels`` that does not hold
        ``sizes[0]`` features.

    Examples
    --------
    >>> mlp([4, 3, 2]).input_shape
    (4,)
    >>> mlp(in_channels=1).input_shape
    (1, 28, 28)
    >>> mlp([3072, 300, 100, 10], in_channels=3, seed=0).input_shape
    (3, 32, 32)
    """
    n_in = int(sizes[0]) if len(sizes) else 0
    if in_channels is not None:
        in_channels = positive_int(in_channels, "pathnet.models.mlp", "in_channels")
        if input_shape is not None and (len(input_shape) != 3 or input_shape[0] != in_channels):
            raise ValueError(
                f"pathnet.models.mlp: input_shape {tuple(input_shape)} does not have "
                f"in_channels = {in_channels} channels"
            )
    if input_shape is None and tuple(sizes) == (784, 300, 100, 10) and in_channels in (None, 1):
        input_shape = (1, 28, 28)
    elif input_shape is None and in_channels is not None and n_in >= 1:
        input_shape = _image_shape(n_in, in_channels)
    return seeded(lambda: MLP(sizes, input_shape), seed)


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 images: conv5(pad 2)-pool-conv5-pool, then 400 -> 120 -> 84 -> classes."""

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


def lenet5(num_classes: int = 10, *, in_channels: int = 1, seed: int | None = None) -> nn.Module:
    """LeNet-5 for ``in_channels`` x 28 x 28 inputs (padding 2 in the first conv, as for MNIST).

    The feature maps are 28 -> 14 -> 10 -> 5, so the classifier reads 16 x 5 x 5 = 400
    features: only 28x28 (and 29x29) inputs fit. Crop 32x32 images (CIFAR) to 28x28.

    Parameters
    ----------
    num_classes : int
        Outputs of the last Linear layer.
    in_channels : int
        Input channels (1 for MNIST / Fashion-MNIST, 3 for colour images).
    seed : int, optional
        Seed of the initial weights (Kaiming normal, fan_in; biases 0).

    Returns
    -------
    LeNet5
        With ``input_shape == (in_channels, 28, 28)``.

    Examples
    --------
    >>> import torch
    >>> model = lenet5(in_channels=3, seed=0)
    >>> model.input_shape, tuple(model(torch.zeros(2, 3, 28, 28)).shape)
    ((3, 28, 28), (2, 10))
    """
    num_classes = positive_int(num_classes, "pathnet.models.lenet5", "num_classes")
    in_channels = positive_int(in_channels, "pathnet.models.lenet5", "in_channels")
    return seeded(lambda: LeNet5(num_classes, in_channels), seed)
