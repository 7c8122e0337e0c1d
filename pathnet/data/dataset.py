"""The :class:`Dataset` record, normalisation and the standard crop-and-flip augmentation.

>>> import torch
>>> ds = Dataset(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]), 2, "toy", "train", (1, 2, 2))
>>> ds
Dataset(name='toy', split='train', n=4, input_shape=(1, 2, 2), num_classes=2, device=cpu)
>>> len(ds.select([0, 2])), ds.default_augment
(2, False)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pathnet.data.errors import PREFIX
from pathnet.data.registry import AUGMENTED

__all__ = ["Dataset", "normalize", "random_crop_flip"]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """One split of a data set, preloaded as tensors.

    Parameters
    ----------
    images : torch.Tensor
        ``[N, C, H, W]`` float32, normalised with ``mean`` and ``std``.
    labels : torch.Tensor
        ``[N]`` int64 class indices in ``[0, num_classes)``.
    num_classes : int
        Number of classes of the data set (not only of those present).
    name : str
        Canonical data-set name, one of :data:`DATASETS` (free text for custom data).
    split : str
        ``"train"`` or ``"test"``.
    input_shape : tuple of int
        Per-sample shape ``(C, H, W)``, i.e. ``images.shape[1:]``.
    mean, std : tuple of float, optional
        Per-channel statistics the images were normalised with; empty when unknown.
    classes : tuple of str, optional
        Class names, indexed by label; empty when unknown.
    """

    images: Tensor
    labels: Tensor
    num_classes: int
    name: str
    split: str
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, Tensor) or images.dim() != 4:
            raise ValueError(
                f"{PREFIX}: Dataset.images must be a 4-D tensor [N, C, H, W], got "
                f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}"
            )
        if images.dtype != torch.float32:
            raise ValueError(f"{PREFIX}: Dataset.images must be float32, got {images.dtype}")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype != torch.int64:
            raise ValueError(f"{PREFIX}: Dataset.labels must be a 1-D int64 tensor")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{PREFIX}: Dataset has {images.shape[0]} images but {labels.shape[0]} labels"
            )
        if int(self.num_classes) < 1:
            raise ValueError(f"{PREFIX}: Dataset.num_classes must be >= 1, got {self.num_classes}")
        object.__setattr__(self, "num_classes", int(self.num_classes))
        shape = tuple(int(s) for s in self.input_shape)
        if shape != tuple(images.shape[1:]):
            raise ValueError(
                f"{PREFIX}: Dataset.input_shape {shape} does not match the images' "
                f"per-sample shape {tuple(images.shape[1:])}"
            )
        object.__setattr__(self, "input_shape", shape)
        for field in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, field))
            if value and len(value) != images.shape[1]:
                raise ValueError(
                    f"{PREFIX}: Dataset.{field} has {len(value)} entries, the images have "
                    f"{images.shape[1]} channels"
                )
            object.__setattr__(self, field, value)
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"device={self.images.device})"
        )

    @property
    def default_augment(self) -> bool:
        """Whether :func:`loader` augments this split by default (CIFAR/Tiny-ImageNet train)."""
        return self.name in AUGMENTED and self.split == "train"

    @property
    def pad_value(self) -> Tensor:
        """Per-channel value of a black pixel after normalisation, ``-mean / std``.

        It is what the zero padding of :func:`random_crop_flip` fills in, so that padding
        the normalised tensor equals padding the raw image with black, as
        ``torchvision.transforms.RandomCrop(padding=4)`` before ``Normalize`` does.
        """
        c = self.images.shape[1]
        if not self.mean:
            return torch.zeros(c)
        return -torch.tensor(self.mean) / torch.tensor(self.std)

    def to(self, device: torch.device | str) -> Dataset:
        """Return a copy whose tensors live on ``device`` (e.g. to batch on the GPU).

        Examples
        --------
        >>> ds = Dataset(torch.zeros(2, 1, 1, 1), torch.tensor([0, 1]), 2, "toy", "test", (1, 1, 1))
        >>> ds.to("cpu").images.device
        device(type='cpu')
        """
        return dataclasses.replace(
            self, images=self.images.to(device), labels=self.labels.to(device)
        )

    def select(self, index: Tensor | Sequence[int]) -> Dataset:
        """Return the samples at ``index`` (a 1-D integer tensor or sequence) as a Dataset.

        Examples
        --------
        >>> ds = Dataset(torch.zeros(3, 1, 1, 1), torch.tensor([0, 1, 1]), 2, "toy", "test", (1, 1, 1))
        >>> ds.select([2, 0]).labels.tolist()
        [1, 0]
        """
        idx = torch.as_tensor(index, dtype=torch.int64, device=self.images.device)
        return dataclasses.replace(self, images=self.images[idx], labels=self.labels[idx])


def normalize(images: np.ndarray | Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Scale uint8 images ``[N, C, H, W]`` to ``[0, 1]`` and normalise every channel.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor
        uint8 pixels, channels first.
    mean, std : sequence of float
        One value per channel, in ``[0, 1]`` units.

    Returns
    -------
    torch.Tensor
        float32 ``(images / 255 - mean) / std``, a new contiguous tensor.

    Examples
    --------
    >>> normalize(np.array([[[[0, 255]]]], dtype=np.uint8), mean=[0.5], std=[0.5])
    tensor([[[[-1.,  1.]]]])
    """
    if isinstance(images, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, Tensor):
        tensor = images
    else:
        raise TypeError(
            f"{PREFIX}.normalize: images must be a numpy array or tensor, got "
            f"{type(images).__name__}"
        )
    if tensor.dtype != torch.uint8 or tensor.dim() != 4:
        raise ValueError(
            f"{PREFIX}.normalize: images must be uint8 [N, C, H, W], got {tensor.dtype} "
            f"{tuple(tensor.shape)}"
        )
    c = tensor.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(
            f"{PREFIX}.normalize: mean and std need one value per channel ({c}), got "
            f"{len(mean)} and {len(std)}"
        )
    if any(float(s) <= 0 for s in std):
        raise ValueError(f"{PREFIX}.normalize: std must be positive, got {tuple(std)}")
    out = tensor.to(torch.float32).div_(255.0)
    m = torch.tensor([float(v) for v in mean], dtype=torch.float32, device=out.device)
    s = torch.tensor([float(v) for v in std], dtype=torch.float32, device=out.device)
    return out.sub_(m.view(1, c, 1, 1)).div_(s.view(1, c, 1, 1))


def random_crop_flip(
    images: Tensor,
    generator: torch.Generator,
    *,
    padding: int = 4,
    fill: float | Sequence[float] | Tensor = 0.0,
    crop: bool = True,
    flip: bool = True,
) -> Tensor:
    """Random crop from a padded image and random horizontal flip, per sample.

    Every image of the batch is padded by ``padding`` pixels on each side with ``fill``,
    then an ``H x W`` window is cut at an offset drawn uniformly from
    ``[0, 2 * padding]`` in each direction, and the result is mirrored left-right with
    probability 1/2. All random numbers come from ``generator``, in a fixed order
    (vertical offsets, horizontal offsets, flips; ``N`` of each), so the same generator
    state gives the same output on any device.

    Parameters
    ----------
    images : torch.Tensor
        ``[N, C, H, W]`` batch (any float dtype, any device).
    generator : torch.Generator
        Source of randomness; it is advanced.
    padding : int, default 4
        Pixels of padding per side; 4 is the CIFAR convention, 8 suits 64x64 images.
    fill : float, sequence of float or torch.Tensor, default 0.0
        Padding value, a scalar or one value per channel. For normalised images pass
        :attr:`Dataset.pad_value` to pad with black, as the usual pipelines do.
    crop, flip : bool, default True
        Switch either part off (the random numbers are drawn all the same).

    Returns
    -------
    torch.Tensor
        New tensor of the same shape, dtype and device as ``images``.

    Examples
    --------
    >>> x = torch.arange(3.0).view(1, 1, 1, 3)
    >>> random_crop_flip(x, torch.Generator().manual_seed(1), padding=0)  # flipped
    tensor([[[[2., 1., 0.]]]])
    >>> random_crop_flip(x, torch.Generator().manual_seed(0), padding=1, flip=False).shape
    torch.Size([1, 1, 1, 3])
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"{PREFIX}.random_crop_flip: images must be a 4-D tensor [N, C, H, W]")
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{PREFIX}.random_crop_flip: generator must be a torch.Generator, got "
            f"{type(generator).__name__}"
        )
    p = int(padding)
    if p < 0:
        raise ValueError(f"{PREFIX}.random_crop_flip: padding must be >= 0, got {padding}")
    n, c, h, w = images.shape
    dev = images.device
    gdev = generator.device
    oy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=gdev).to(dev)
    ox = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=gdev).to(dev)
    flips = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(dev)
    if not crop:
        oy = torch.full_like(oy, p)
        ox = torch.full_like(ox, p)
    if not flip:
        flips = torch.zeros_like(flips)
    if n == 0:
        return images.clone()
    fill_t = torch.as_tensor(fill, dtype=images.dtype, device=dev).reshape(-1)
    if fill_t.numel() not in (1, c):
        raise ValueError(
            f"{PREFIX}.random_crop_flip: fill must be a scalar or hold one value per channel "
            f"({c}), got {fill_t.numel()} values"
        )
    padded = images.new_empty((n, c, h + 2 * p, w + 2 * p))
    padded.copy_(fill_t.view(1, -1, 1, 1).expand_as(padded))
    padded[:, :, p : p + h, p : p + w] = images
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = oy[:, None] + ar_h[None, :]
    cols = ox[:, None] + torch.where(flips[:, None], (w - 1) - ar_w[None, :], ar_w[None, :])
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * p))
    return out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def pad_images(dataset: Dataset, pixels: int) -> Dataset:
    """A copy of ``dataset`` with every image padded by ``pixels`` black pixels per side.

    Black is :attr:`Dataset.pad_value` (the normalised value of a zero pixel), so padding
    the normalised tensor equals padding the raw image, as
    ``torchvision.transforms.Pad`` before ``Normalize`` does. The PHEW paper runs its
    32x32 models on 28x28 MNIST-like images padded by 2.

    Parameters
    ----------
    dataset : Dataset
    pixels : int
        Pixels added on each side (0 returns ``dataset`` itself).

    Returns
    -------
    Dataset
        ``input_shape`` ``(C, H + 2 * pixels, W + 2 * pixels)``.

    Examples
    --------
    >>> ds = Dataset(torch.ones(2, 1, 2, 2), torch.tensor([0, 1]), 2, "toy", "test", (1, 2, 2),
    ...              mean=(0.5,), std=(0.5,))
    >>> out = pad_images(ds, 1)
    >>> out.input_shape, out.images[0, 0, 0].tolist(), out.images[0, 0, 1].tolist()
    ((1, 4, 4), [-1.0, -1.0, -1.0, -1.0], [-1.0, 1.0, 1.0, -1.0])
    """
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
        raise ValueError(f"{PREFIX}.pad_images: pixels must be an integer >= 0, got {pixels!r}")
    if pixels == 0:
        return dataset
    n, c, h, w = dataset.images.shape
    p = pixels
    images = dataset.images.new_empty((n, c, h + 2 * p, w + 2 * p))
    images.copy_(dataset.pad_value.to(images).view(1, -1, 1, 1).expand_as(images))
    images[:, :, p : p + h, p : p + w] = dataset.images
    return dataclasses.replace(dataset, images=images, input_shape=tuple(images.shape[1:]))
