"""Image-classification data sets as preloaded torch tensors, without torchvision.

Five data sets are supported, each read from the files its authors distribute:

=================  =====================================================  =========
name               files                                                  shape
=================  =====================================================  =========
``mnist``          ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``  1x28x28
``fashion-mnist``  same names as MNIST                                    1x28x28
``cifar10``        ``cifar-10-batches-py/{data_batch_1..5,test_batch}``   3x32x32
``cifar100``       ``cifar-100-python/{train,test}`` (fine labels)        3x32x32
``tiny-imagenet``  ``tiny-imagenet-200/{wnids.txt,train/,val/}``          3x64x64
=================  =====================================================  =========

:func:`load_dataset` returns a :class:`Dataset`: all images of one split as a float32
tensor ``[N, C, H, W]``, already scaled to ``[0, 1]`` and normalised with the usual
per-data-set channel mean and standard deviation (:data:`MEAN_STD`), plus int64 labels.
:func:`loader` iterates over it in mini-batches, deterministically for a given seed, with
the standard CIFAR augmentation (random crop from a zero-padded image, random horizontal
flip) written in torch and applied per batch. :func:`subset_per_class` draws a balanced
subset, as used by the SNIP and GraSP pruning criteria.

Where the files are looked for
------------------------------
In this order, the first folder holding every file the split needs wins:

1. the ``root`` argument, itself or its sub-folders named after the data set
   (``mnist/``, ``fashion-mnist/``, ``cifar-10-batches-py/``, ...);
2. the folder named by the environment variable ``PATHNET_DATA``;
3. the user cache, ``$XDG_CACHE_HOME/pathnet`` or ``~/.cache/pathnet``;
4. the system folders of :data:`SYSTEM_DATA_DIRS` (``/usr/share/datasets``, where
   Debian's package ``dataset-fashion-mnist`` installs ``fashion-mnist/``).

A data set found nowhere raises :class:`DatasetNotFoundError`, whose message lists every
folder looked in. With ``download=True`` it is fetched instead from the address in
:data:`MIRRORS` (overridden by the ``mirror`` argument or the environment variable
``PATHNET_DATA_MIRROR``) into the first of ``root``, ``PATHNET_DATA`` and the user cache.
Every file is checked against the MD5 sums of :data:`CHECKSUMS` before it is moved into
place; archives are unpacked into a temporary folder that is renamed into place, so that an
interrupted or corrupted download leaves nothing behind.

Tiny-ImageNet ships as 110,000 JPEG files: they are decoded once, with Pillow, and the
decoded arrays are cached in ``tiny-imagenet-200/pathnet-{train,test}.npz`` (or under the
user cache where the data folder is read-only), written atomically and rebuilt when the
image files change.

Notes
-----
The ``.npz`` and pickle files are read without ever executing code from them: the CIFAR
pickles are loaded with :func:`load_pickle`, which only lets the numpy array
reconstruction functions through, and ``np.load`` runs with ``allow_pickle=False``.

Examples
--------
>>> from pathnet.data import load_dataset, loader
>>> train = load_dataset("fashion-mnist", "train")  # doctest: +SKIP
>>> for x, y in loader(train, batch_size=128, seed=0):  # doctest: +SKIP
...     pass
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import importlib
import logging
import math
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CHECKSUMS",
    "DATASETS",
    "MEAN_STD",
    "MIRRORS",
    "SYSTEM_DATA_DIRS",
    "BatchLoader",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "download",
    "find_dataset",
    "load_dataset",
    "load_pickle",
    "loader",
    "normalize",
    "random_crop_flip",
    "read_idx",
    "search_dirs",
    "subset_per_class",
]

_log = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]

_PREFIX = "pathnet.data"


class DatasetError(ValueError):
    """A data-set file is missing, malformed, refused or failed its checksum."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """No folder searched holds the requested data set.

    Attributes
    ----------
    searched : tuple of pathlib.Path
        Every folder looked in, in search order.
    """

    def __init__(self, message: str, searched: Sequence[Path] = ()) -> None:
        super().__init__(message)
        self.searched = tuple(searched)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------
# Tables: names, statistics, addresses, checksums, folders.
# --------------------------------------------------------------------------------------

#: Canonical data-set names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet")

_ALIASES: dict[str, str] = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar100": "cifar100",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "tiny-imagenet": "tiny-imagenet",
    "tiny_imagenet": "tiny-imagenet",
    "tinyimagenet": "tiny-imagenet",
    "tiny-imagenet-200": "tiny-imagenet",
}

#: Per-channel mean and standard deviation of the training images, in ``[0, 1]`` units.
MEAN_STD: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tiny-imagenet": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
}

#: Base address each data set's files are downloaded from (``<base>/<file name>``).
MIRRORS: dict[str, str] = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
    "cifar100": "https://www.cs.toronto.edu/~kriz/",
    "tiny-imagenet": "http://cs231n.stanford.edu/",
}

#: File names to download for each data set, with their MD5 sums.
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    "cifar100": {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"},
    "tiny-imagenet": {"tiny-imagenet-200.zip": "90528d7ca1a48142e341f4ef8d21d0de"},
}

#: System-wide folders searched last (each data set in its own sub-folder).
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets"), Path("/usr/local/share/datasets")]

# Sub-folders of a base folder that may hold each data set; the first is where a download
# goes (for the archives: the top folder of the archive).
_FOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST/raw", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
    "cifar10": ("cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
    "cifar100": ("cifar-100-python", "cifar100/cifar-100-python"),
    "tiny-imagenet": ("tiny-imagenet-200", "tiny-imagenet/tiny-imagenet-200"),
}

_NUM_CLASSES = {
    "mnist": 10,
    "fashion-mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "tiny-imagenet": 200,
}

_INPUT_SHAPE: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "tiny-imagenet": (3, 64, 64),
}

#: Data sets whose training split is augmented by default in :func:`loader`.
_AUGMENTED = frozenset({"cifar10", "cifar100", "tiny-imagenet"})

_FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_SPLITS = {"train": "train", "test": "test", "val": "test", "validation": "test"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{_PREFIX}: name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ValueError(
            f"{_PREFIX}: unknown data set name {name!r}; expected one of "
            f"{', '.join(DATASETS)} (aliases: {', '.join(sorted(set(_ALIASES) - set(DATASETS)))})"
        )
    return _ALIASES[key]


def _canonical_split(split: str) -> str:
    key = str(split).strip().lower()
    if key not in _SPLITS:
        raise ValueError(f"{_PREFIX}: split must be 'train' or 'test', got {split!r}")
    return _SPLITS[key]


# --------------------------------------------------------------------------------------
# The Dataset record, normalisation, augmentation, batching.
# --------------------------------------------------------------------------------------


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
                f"{_PREFIX}: Dataset.images must be a 4-D tensor [N, C, H, W], got "
                f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}"
            )
        if images.dtype != torch.float32:
            raise ValueError(f"{_PREFIX}: Dataset.images must be float32, got {images.dtype}")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.dtype != torch.int64:
            raise ValueError(f"{_PREFIX}: Dataset.labels must be a 1-D int64 tensor")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{_PREFIX}: Dataset has {images.shape[0]} images but {labels.shape[0]} labels"
            )
        if int(self.num_classes) < 1:
            raise ValueError(f"{_PREFIX}: Dataset.num_classes must be >= 1, got {self.num_classes}")
        object.__setattr__(self, "num_classes", int(self.num_classes))
        shape = tuple(int(s) for s in self.input_shape)
        if shape != tuple(images.shape[1:]):
            raise ValueError(
                f"{_PREFIX}: Dataset.input_shape {shape} does not match the images' "
                f"per-sample shape {tuple(images.shape[1:])}"
            )
        object.__setattr__(self, "input_shape", shape)
        for field in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, field))
            if value and len(value) != images.shape[1]:
                raise ValueError(
                    f"{_PREFIX}: Dataset.{field} has {len(value)} entries, the images have "
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
        return self.name in _AUGMENTED and self.split == "train"

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
        """Return a copy whose tensors live on ``device`` (e.g. to batch on the GPU)."""
        return dataclasses.replace(
            self, images=self.images.to(device), labels=self.labels.to(device)
        )

    def select(self, index: Tensor | Sequence[int]) -> Dataset:
        """Return the samples at ``index`` (a 1-D integer tensor or sequence) as a Dataset."""
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
    """
    if isinstance(images, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(images))
    elif isinstance(images, Tensor):
        tensor = images
    else:
        raise TypeError(
            f"{_PREFIX}.normalize: images must be a numpy array or tensor, got "
            f"{type(images).__name__}"
        )
    if tensor.dtype != torch.uint8 or tensor.dim() != 4:
        raise ValueError(
            f"{_PREFIX}.normalize: images must be uint8 [N, C, H, W], got {tensor.dtype} "
            f"{tuple(tensor.shape)}"
        )
    c = tensor.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(
            f"{_PREFIX}.normalize: mean and std need one value per channel ({c}), got "
            f"{len(mean)} and {len(std)}"
        )
    if any(float(s) <= 0 for s in std):
        raise ValueError(f"{_PREFIX}.normalize: std must be positive, got {tuple(std)}")
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
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError(f"{_PREFIX}.random_crop_flip: images must be a 4-D tensor [N, C, H, W]")
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{_PREFIX}.random_crop_flip: generator must be a torch.Generator, got "
            f"{type(generator).__name__}"
        )
    p = int(padding)
    if p < 0:
        raise ValueError(f"{_PREFIX}.random_crop_flip: padding must be >= 0, got {padding}")
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
            f"{_PREFIX}.random_crop_flip: fill must be a scalar or hold one value per channel "
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


def _mix_seed(seed: int, epoch: int) -> int:
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


class BatchLoader:
    """Deterministic mini-batch iterator over a preloaded :class:`Dataset`.

    Built by :func:`loader`; see there for the parameters. Iterating yields
    ``(x, y)`` pairs; pass ``k`` (counting from 0) over the loader draws its order and
    augmentation from a generator seeded with ``(seed, k)``, so every epoch differs and
    the whole run replays exactly for the same seed. :meth:`set_epoch` jumps to a pass.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        augment: bool | None = None,
        device: torch.device | str | None = None,
        drop_last: bool = False,
        padding: int | None = None,
    ) -> None:
        if not isinstance(dataset, Dataset):
            raise TypeError(
                f"{_PREFIX}.loader: dataset must be a pathnet Dataset, got {type(dataset).__name__}"
            )
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(
                f"{_PREFIX}.loader: batch_size must be a positive integer, got {batch_size!r}"
            )
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"{_PREFIX}.loader: seed must be a non-negative integer, got {seed!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.augment = dataset.default_augment if augment is None else bool(augment)
        self.device = torch.device(device) if device is not None else None
        self.drop_last = bool(drop_last)
        if padding is None:
            padding = max(1, dataset.input_shape[-1] // 8)
        if int(padding) < 0:
            raise ValueError(f"{_PREFIX}.loader: padding must be >= 0, got {padding}")
        self.padding = int(padding)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the one numbered ``epoch`` (0 is the first)."""
        if int(epoch) < 0:
            raise ValueError(f"{_PREFIX}.loader: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        ds = self.dataset
        n = len(ds)
        gen = torch.Generator().manual_seed(_mix_seed(self.seed, epoch))
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        order = order.to(ds.images.device)
        fill = ds.pad_value
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = ds.images[idx]
            y = ds.labels[idx]
            if self.device is not None:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
            if self.augment:
                x = random_crop_flip(x, gen, padding=self.padding, fill=fill)
            yield x, y


def loader(
    dataset: Dataset,
    batch_size: int = 128,
    shuffle: bool = True,
    seed: int = 0,
    augment: bool | None = None,
    device: torch.device | str | None = None,
    *,
    drop_last: bool = False,
    padding: int | None = None,
) -> BatchLoader:
    """Mini-batches ``(x, y)`` of a :class:`Dataset`, deterministic for a given seed.

    Batches are cut from the preloaded tensors by indexing (no worker processes). The
    same ``seed`` gives the same batch order and the same augmentation, pass by pass.

    Parameters
    ----------
    dataset : Dataset
        The samples; move it with :meth:`Dataset.to` first to batch on the GPU.
    batch_size : int, default 128
        Samples per batch; the last batch may be smaller unless ``drop_last``.
    shuffle : bool, default True
        Draw a new random order every pass.
    seed : int, default 0
        Non-negative seed of the order and augmentation.
    augment : bool or None, default None
        Apply :func:`random_crop_flip` to every batch; None means
        :attr:`Dataset.default_augment` (the CIFAR and Tiny-ImageNet training splits).
    device : torch.device or str, optional
        Move every batch there.
    drop_last : bool, default False
        Leave out the last, incomplete batch.
    padding : int, optional
        Crop padding; default ``W // 8`` (4 for 32x32, 8 for 64x64 images).

    Returns
    -------
    BatchLoader
        An iterable with ``len()``; every ``iter()`` is a new pass.
    """
    return BatchLoader(
        dataset,
        batch_size,
        shuffle=shuffle,
        seed=seed,
        augment=augment,
        device=device,
        drop_last=drop_last,
        padding=padding,
    )


def subset_per_class(dataset: Dataset, n_per_class: int, seed: int = 0) -> Dataset:
    """Draw ``n_per_class`` random samples of every class (e.g. 10 for SNIP/GraSP).

    Parameters
    ----------
    dataset : Dataset
        Source samples.
    n_per_class : int
        Samples to keep per class; every class ``0 .. num_classes - 1`` must have as many.
    seed : int, default 0
        Seed of the draw.

    Returns
    -------
    Dataset
        ``n_per_class * num_classes`` samples, grouped by class in label order.
    """
    if isinstance(n_per_class, bool) or int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(
            f"{_PREFIX}.subset_per_class: n_per_class must be a positive integer, got "
            f"{n_per_class!r}"
        )
    n_per_class = int(n_per_class)
    gen = torch.Generator().manual_seed(int(seed))
    labels = dataset.labels.cpu()
    perm = torch.randperm(len(labels), generator=gen)
    shuffled = labels[perm]
    picks = []
    for k in range(dataset.num_classes):
        members = perm[shuffled == k]
        if members.numel() < n_per_class:
            raise ValueError(
                f"{_PREFIX}.subset_per_class: class {k} of {dataset.name!r} has "
                f"{members.numel()} samples, n_per_class asks for {n_per_class}"
            )
        picks.append(members[:n_per_class])
    return dataset.select(torch.cat(picks))


# --------------------------------------------------------------------------------------
# File formats: IDX and restricted pickles.
# --------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: StrPath) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not.

    The header is ``0x00 0x00 <type code> <number of dimensions>`` followed by one
    big-endian uint32 per dimension; the data follow, big-endian, with no trailing bytes.

    Parameters
    ----------
    path : str or os.PathLike
        The file; gzip compression is recognised by its magic bytes, not its name.

    Returns
    -------
    numpy.ndarray
        A writable array of the stored shape, native byte order.

    Raises
    ------
    DatasetError
        Naming the file, for a bad magic number, a truncated or oversized file, or a
        corrupt gzip stream.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{_PREFIX}: cannot read IDX file {path}: {exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(
                f"{_PREFIX}: {path}: corrupt or truncated gzip stream ({exc})"
            ) from exc
    if len(raw) < 4:
        raise DatasetError(
            f"{_PREFIX}: {path}: truncated IDX file, {len(raw)} bytes where the header "
            f"alone needs at least 4"
        )
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise DatasetError(
            f"{_PREFIX}: {path}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000TTDD "
            f"with type code TT one of 08, 09, 0b, 0c, 0d, 0e and DD >= 1 dimensions "
            f"(e.g. 0x00000803 for images, 0x00000801 for labels)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(
            f"{_PREFIX}: {path}: truncated IDX header, {len(raw)} bytes where {ndim} "
            f"dimensions need {header}"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)
    expected = count * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        what = "truncated" if actual < expected else "oversized"
        raise DatasetError(
            f"{_PREFIX}: {path}: {what} IDX file: the header declares shape {dims} of "
            f"{dtype.name}, i.e. {expected} data bytes, but the file holds {actual}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _numpy_attr(modules: Sequence[str], name: str) -> Any:
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"{_PREFIX}: numpy provides none of {[m + '.' + name for m in modules]}")


class _Refused(pickle.UnpicklingError):
    """A pickle asked for something the restricted unpickler does not allow."""


def _check_dtype(dtype: Any, what: str) -> np.dtype[Any]:
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise _Refused(f"{what}: object arrays are not allowed")
    return dt


class _SafeCallable:
    """An allowed pickle global; refuses BUILD so its state cannot be tampered with."""

    __slots__ = ("_fn", "_qualname")

    def __init__(self, qualname: str, fn: Callable[..., Any]) -> None:
        self._qualname = qualname
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"refusing to set the state of {self._qualname}")

    def __reduce__(self) -> Any:
        raise TypeError(f"{self._qualname} cannot be pickled")


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    if subtype is not np.ndarray:
        raise _Refused("numpy _reconstruct: only plain numpy.ndarray is allowed")
    fn = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    return fn(np.ndarray, shape, dtype)


def _safe_dtype(*args: Any, **kwargs: Any) -> np.dtype[Any]:
    return _check_dtype(np.dtype(*args, **kwargs), "numpy.dtype")


def _safe_scalar(dtype: Any, *args: Any) -> Any:
    fn = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "scalar")
    return fn(_check_dtype(dtype, "numpy scalar"), *args)


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
    fn = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    return fn(buf, _check_dtype(dtype, "numpy _frombuffer"), shape, order)


def _safe_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") in pickle protocols < 3.
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in (
        "latin1",
        "latin-1",
        "iso-8859-1",
    ):
        raise _Refused("_codecs.encode: only str -> latin1 is allowed")
    return obj.encode("latin-1", errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        table[mod, "_reconstruct"] = _SafeCallable(f"{mod}._reconstruct", _safe_reconstruct)
        table[mod, "scalar"] = _SafeCallable(f"{mod}.scalar", _safe_scalar)
    for mod in ("numpy._core.numeric", "numpy.core.numeric"):
        table[mod, "_frombuffer"] = _SafeCallable(f"{mod}._frombuffer", _safe_frombuffer)
    table["numpy", "ndarray"] = np.ndarray
    table["numpy", "dtype"] = _SafeCallable("numpy.dtype", _safe_dtype)
    table["_codecs", "encode"] = _SafeCallable("_codecs.encode", _safe_codecs_encode)
    for mod in ("builtins", "__builtin__"):
        for name, fn in (("bytearray", bytearray), ("set", set), ("frozenset", frozenset)):
            table[mod, name] = _SafeCallable(f"builtins.{name}", fn)
    return table


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy-array reconstruction globals."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[module, name]
        except KeyError:
            raise _Refused(f"global {module}.{name} is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("persistent ids are not allowed")


_PLAIN_TYPES = (bytes, str, int, float, bool, complex, type(None), np.generic, np.dtype)


def _check_plain(obj: Any, depth: int = 0) -> None:
    if depth > 32:
        raise _Refused("nesting deeper than 32 levels")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise _Refused("object arrays are not allowed")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, depth + 1)
            _check_plain(value, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            _check_plain(value, depth + 1)
    elif not isinstance(obj, (*_PLAIN_TYPES, bytearray)):
        raise _Refused(f"unexpected object of type {type(obj).__name__}")


def load_pickle(path: StrPath) -> Any:
    """Load a data pickle without executing code from it.

    Only plain containers, numbers, strings, bytes and numpy arrays of non-object dtype
    can come out: the unpickler resolves no global but the numpy array-reconstruction
    functions (``numpy[._]core.multiarray._reconstruct``, ``numpy.ndarray``,
    ``numpy.dtype``, ...), so a crafted pickle cannot call ``os.system``, ``eval`` or any
    other function. Strings written by Python 2 come back as ``bytes``
    (``encoding="bytes"``), as in the official CIFAR instructions.

    Parameters
    ----------
    path : str or os.PathLike
        The pickle file.

    Returns
    -------
    object
        The unpickled object.

    Raises
    ------
    DatasetError
        Naming the file and the refused global, or what else was wrong.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="bytes").load()
        _check_plain(obj)
    except OSError as exc:
        raise DatasetError(f"{_PREFIX}: cannot read pickle file {path}: {exc}") from exc
    except _Refused as exc:
        raise DatasetError(
            f"{_PREFIX}: {path}: refused to unpickle, {exc}; a data pickle holds only dicts, "
            f"lists and numpy arrays, so this file is corrupt or was crafted"
        ) from exc
    except Exception as exc:  # anything else the unpickler or numpy raise on bad input
        raise DatasetError(
            f"{_PREFIX}: {path}: not a valid data pickle ({type(exc).__name__}: {exc})"
        ) from exc
    return obj


def _get(d: Mapping[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DatasetError(
        f"{_PREFIX}: {path}: missing key {key!r}; found keys "
        f"{sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d)}"
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------
# Per-format loaders.
# --------------------------------------------------------------------------------------


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _required(name: str, split: str) -> list[str]:
    """Relative paths the split needs ('a|b' means either)."""
    if name in ("mnist", "fashion-mnist"):
        prefix = _IDX_PREFIX[split]
        return [
            f"{prefix}-images-idx3-ubyte|{prefix}-images-idx3-ubyte.gz",
            f"{prefix}-labels-idx1-ubyte|{prefix}-labels-idx1-ubyte.gz",
        ]
    if name == "cifar10":
        return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if name == "cifar100":
        return [split]
    return ["wnids.txt", "train/"] if split == "train" else ["wnids.txt", "val/", "val/images/"]


def _missing(name: str, split: str, folder: Path) -> list[str]:
    missing = []
    for entry in _required(name, split):
        options = entry.split("|")
        if not any(
            (folder / o).is_dir() if o.endswith("/") else (folder / o).is_file() for o in options
        ):
            missing.append(options[0] + ("[.gz]" if len(options) > 1 else ""))
    return missing


def _load_idx(name: str, split: str, folder: Path) -> Dataset:
    prefix = _IDX_PREFIX[split]
    img_path = _idx_file(folder, f"{prefix}-images-idx3-ubyte")
    lab_path = _idx_file(folder, f"{prefix}-labels-idx1-ubyte")
    assert img_path is not None and lab_path is not None
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{_PREFIX}: {img_path}: expected uint8 images of shape (N, 28, 28), got "
            f"{images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(
            f"{_PREFIX}: {lab_path}: expected a 1-D uint8 label vector, got "
            f"{labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{_PREFIX}: label/image count mismatch: {lab_path} holds {labels.shape[0]} labels, "
            f"{img_path} holds {images.shape[0]} images"
        )
    k = _NUM_CLASSES[name]
    if labels.size and int(labels.max()) >= k:
        raise DatasetError(
            f"{_PREFIX}: {lab_path}: label {int(labels.max())} out of range, expected 0..{k - 1}"
        )
    mean, std = MEAN_STD[name]
    classes = _FASHION_CLASSES if name == "fashion-mnist" else tuple(str(i) for i in range(10))
    return Dataset(
        images=normalize(images[:, None], mean, std),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=k,
        name=name,
        split=split,
        input_shape=_INPUT_SHAPE[name],
        mean=mean,
        std=std,
        classes=classes,
    )


def _load_cifar(name: str, split: str, folder: Path) -> Dataset:
    k = _NUM_CLASSES[name]
    label_key = "labels" if name == "cifar10" else "fine_labels"
    images, labels = [], []
    for rel in _required(name, split):
        path = folder / rel
        batch = load_pickle(path)
        if not isinstance(batch, dict):
            raise DatasetError(
                f"{_PREFIX}: {path}: expected a dict, the pickle holds a {type(batch).__name__}"
            )
        data = np.asarray(_get(batch, "data", path))
        lab = np.asarray(_get(batch, label_key, path))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(
                f"{_PREFIX}: {path}: expected 'data' as uint8 of shape (N, 3072), got "
                f"{data.dtype} {data.shape}"
            )
        if (
            lab.ndim != 1
            or lab.shape[0] != data.shape[0]
            or not np.issubdtype(lab.dtype, np.integer)
        ):
            raise DatasetError(
                f"{_PREFIX}: {path}: label/image count mismatch or bad labels: "
                f"{label_key!r} has shape {lab.shape} ({lab.dtype}), 'data' has "
                f"{data.shape[0]} rows"
            )
        if lab.size and (int(lab.min()) < 0 or int(lab.max()) >= k):
            raise DatasetError(
                f"{_PREFIX}: {path}: labels out of range {int(lab.min())}..{int(lab.max())}, "
                f"expected 0..{k - 1}"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab.astype(np.int64))
    classes: tuple[str, ...] = _CIFAR10_CLASSES if name == "cifar10" else ()
    meta_path = folder / ("batches.meta" if name == "cifar10" else "meta")
    if meta_path.is_file():
        meta = load_pickle(meta_path)
        key = "label_names" if name == "cifar10" else "fine_label_names"
        if isinstance(meta, dict):
            names = _get(meta, key, meta_path)
            if len(names) != k:
                raise DatasetError(
                    f"{_PREFIX}: {meta_path}: {key!r} holds {len(names)} names, expected {k}"
                )
            classes = tuple(_text(v) for v in names)
    mean, std = MEAN_STD[name]
    return Dataset(
        images=normalize(np.concatenate(images), mean, std),
        labels=torch.from_numpy(np.concatenate(labels)),
        num_classes=k,
        name=name,
        split=split,
        input_shape=_INPUT_SHAPE[name],
        mean=mean,
        std=std,
        classes=classes,
    )


_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def _tiny_listing(folder: Path, split: str) -> tuple[list[str], list[Path], np.ndarray]:
    """Class ids (sorted), image files and labels of a Tiny-ImageNet split."""
    wnids_path = folder / "wnids.txt"
    wnids = sorted({line.strip() for line in wnids_path.read_text().splitlines() if line.strip()})
    if not wnids:
        raise DatasetError(f"{_PREFIX}: {wnids_path}: no class ids")
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for wnid in wnids:
            img_dir = folder / "train" / wnid / "images"
            if not img_dir.is_dir():
                raise DatasetError(
                    f"{_PREFIX}: {img_dir}: missing; every class of {wnids_path} needs "
                    f"train/<wnid>/images/"
                )
            names = sorted(p.name for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            files.extend(img_dir / n for n in names)
            labels.extend([index[wnid]] * len(names))
    else:
        ann = folder / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise DatasetError(f"{_PREFIX}: {ann}: missing (needed for the labels of val/images)")
        for lineno, line in enumerate(ann.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1].strip() not in index:
                raise DatasetError(
                    f"{_PREFIX}: {ann}, line {lineno}: expected '<file>\\t<wnid>...' with a wnid "
                    f"of wnids.txt, got {line!r}"
                )
            files.append(folder / "val" / "images" / parts[0].strip())
            labels.append(index[parts[1].strip()])
    if not files:
        raise DatasetError(f"{_PREFIX}: {folder}: no images for the {split} split")
    return wnids, files, np.asarray(labels, dtype=np.int64)


def _fingerprint(wnids: Sequence[str], files: Sequence[Path], labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update("\n".join(wnids).encode())
    h.update(labels.tobytes())
    for path in files:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DatasetError(f"{_PREFIX}: cannot read image {path}: {exc}") from exc
        h.update(f"\n{path.name}:{size}".encode())
    return h.hexdigest()


def _decode_images(files: Sequence[Path], size: int = 64) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow comes with matplotlib
        raise ImportError(
            f"{_PREFIX}: decoding Tiny-ImageNet needs Pillow (pip install pillow)"
        ) from exc
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)

    def decode(i: int) -> None:
        path = files[i]
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"{_PREFIX}: cannot decode image {path}: {exc}") from exc
        if arr.shape != (size, size, 3):
            raise DatasetError(
                f"{_PREFIX}: {path}: expected a {size}x{size} image, got "
                f"{arr.shape[1]}x{arr.shape[0]}"
            )
        out[i] = arr

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(decode, range(len(files)), chunksize=256):
            pass
    return out


def _cache_paths(folder: Path, split: str) -> list[Path]:
    name = f"pathnet-{split}.npz"
    return [folder / name, _user_cache_dir() / "tiny-imagenet-200" / name]


def _read_cache(path: Path, fingerprint: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["fingerprint"]) != fingerprint:
                _log.info("%s: stale cache %s, rebuilding", _PREFIX, path)
                return None
            return npz["images"], npz["labels"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        _log.warning("%s: ignoring unreadable cache %s (%s)", _PREFIX, path, exc)
        return None


def _write_cache_atomic(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".pathnet-cache-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load_tiny(folder: Path, split: str, cache: bool) -> Dataset:
    wnids, files, labels = _tiny_listing(folder, split)
    fingerprint = _fingerprint(wnids, files, labels)
    pixels = None
    if cache:
        for path in _cache_paths(folder, split):
            hit = _read_cache(path, fingerprint)
            if hit is not None:
                pixels, labels = hit
                break
    if pixels is None:
        pixels = _decode_images(files)
        if cache:
            for path in _cache_paths(folder, split):
                try:
                    _write_cache_atomic(
                        path, images=pixels, labels=labels, fingerprint=np.array(fingerprint)
                    )
                    break
                except OSError as exc:
                    _log.info("%s: cannot write cache %s (%s)", _PREFIX, path, exc)
    mean, std = MEAN_STD["tiny-imagenet"]
    return Dataset(
        images=normalize(pixels.transpose(0, 3, 1, 2), mean, std),
        labels=torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
        num_classes=len(wnids),
        name="tiny-imagenet",
        split=split,
        input_shape=(3, int(pixels.shape[1]), int(pixels.shape[2])),
        mean=mean,
        std=std,
        classes=tuple(wnids),
    )


# --------------------------------------------------------------------------------------
# Searching.
# --------------------------------------------------------------------------------------


def _user_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "pathnet"


def _bases(root: StrPath | None) -> list[tuple[Path, str]]:
    bases: list[tuple[Path, str]] = []
    if root is not None:
        bases.append((Path(root).expanduser(), "root argument"))
    env = os.environ.get("PATHNET_DATA", "")
    if env:
        bases.append((Path(env).expanduser(), "PATHNET_DATA"))
    bases.append((_user_cache_dir(), "user cache"))
    bases.extend((Path(d), "system") for d in SYSTEM_DATA_DIRS)
    return bases


def _candidates(name: str, root: StrPath | None) -> list[tuple[Path, str]]:
    seen: set[Path] = set()
    out: list[tuple[Path, str]] = []
    for base, origin in _bases(root):
        paths = [base] if origin == "root argument" else []
        paths.extend(base / sub for sub in _FOLDERS[name])
        for path in paths:
            if path not in seen:
                seen.add(path)
                out.append((path, origin))
    return out


def search_dirs(name: str, root: StrPath | None = None) -> list[Path]:
    """Folders :func:`load_dataset` looks in for data set ``name``, in order.

    Parameters
    ----------
    name : str
        Data-set name or alias.
    root : str or os.PathLike, optional
        As for :func:`load_dataset`.

    Returns
    -------
    list of pathlib.Path
    """
    return [path for path, _ in _candidates(_canonical(name), root)]


def find_dataset(name: str, split: str = "train", root: StrPath | None = None) -> Path:
    """The first folder that holds every file of ``name``/``split``.

    Raises
    ------
    DatasetNotFoundError
        Listing every folder looked in and how to get the data.
    """
    name = _canonical(name)
    split = _canonical_split(split)
    report = []
    searched = []
    for path, origin in _candidates(name, root):
        searched.append(path)
        if not path.is_dir():
            report.append(f"  {path} ({origin}): no such folder")
            continue
        missing = _missing(name, split, path)
        if not missing:
            return path
        report.append(f"  {path} ({origin}): lacks {', '.join(missing)}")
    hint = (
        f"To get it: call load_dataset({name!r}, download=True) to fetch it into "
        f"{_download_base(root)}, or put the files in one of the folders above, or set "
        f"PATHNET_DATA to a folder holding {_FOLDERS[name][0]}/"
    )
    if name == "fashion-mnist":
        hint += "; on Debian/Ubuntu: apt-get install dataset-fashion-mnist"
    raise DatasetNotFoundError(
        f"{_PREFIX}: data set {name!r} (split {split!r}) not found. Looked in:\n"
        + "\n".join(report)
        + "\n"
        + hint,
        searched,
    )


def load_dataset(
    name: str,
    split: str = "train",
    root: StrPath | None = None,
    download: bool = False,
    *,
    mirror: str | None = None,
    checksums: Mapping[str, str] | None = None,
    cache: bool = True,
) -> Dataset:
    """Load one split of a data set as normalised tensors.

    Parameters
    ----------
    name : str
        ``"mnist"``, ``"fashion-mnist"`` (or ``"fashion_mnist"``, ``"fmnist"``),
        ``"cifar10"``, ``"cifar100"`` or ``"tiny-imagenet"``.
    split : {"train", "test"}, default "train"
        For Tiny-ImageNet ``"test"`` is the labelled ``val/`` folder (its own test images
        carry no labels); ``"val"`` is accepted as an alias of ``"test"``.
    root : str or os.PathLike, optional
        Folder holding the data set's files, or its folder (``mnist/``,
        ``cifar-10-batches-py/``, ...); searched first. See the module docstring for the
        other folders searched.
    download : bool, default False
        Fetch the data set when it is found nowhere (into ``root``, else ``PATHNET_DATA``,
        else the user cache).
    mirror : str, optional
        Base address to download from instead of :data:`MIRRORS` and
        ``PATHNET_DATA_MIRROR``; files are fetched from ``<mirror>/<file name>``, and a
        ``{name}`` in it is replaced by the canonical data-set name.
    checksums : mapping of str to str, optional
        MD5 sums by file name, overriding :data:`CHECKSUMS`.
    cache : bool, default True
        Tiny-ImageNet only: read and write the decoded-image ``.npz`` cache.

    Returns
    -------
    Dataset
        float32 images ``[N, C, H, W]`` normalised with :data:`MEAN_STD`, int64 labels.
        Memory: about 190 MB for MNIST train, 610 MB for CIFAR train, 4.9 GB for
        Tiny-ImageNet train.

    Raises
    ------
    DatasetNotFoundError
        The data set is found nowhere and ``download`` is False.
    DatasetError
        A file is malformed or a download fails its checksum.
    """
    name = _canonical(name)
    split = _canonical_split(split)
    try:
        folder = find_dataset(name, split, root)
    except DatasetNotFoundError:
        if not download:
            raise
        _download(name, root, mirror, checksums)
        folder = find_dataset(name, split, root)
    if name in ("mnist", "fashion-mnist"):
        return _load_idx(name, split, folder)
    if name in ("cifar10", "cifar100"):
        return _load_cifar(name, split, folder)
    return _load_tiny(folder, split, cache)


# --------------------------------------------------------------------------------------
# Downloading.
# --------------------------------------------------------------------------------------


def _download_base(root: StrPath | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PATHNET_DATA", "")
    return Path(env).expanduser() if env else _user_cache_dir()


def _url(name: str, filename: str, mirror: str | None) -> str:
    base = mirror or os.environ.get("PATHNET_DATA_MIRROR") or MIRRORS[name]
    base = base.replace("{name}", name)
    url = base.rstrip("/") + "/" + urllib.parse.quote(filename)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"{_PREFIX}: mirror must be an http, https or file address, got {base!r}")
    return url


def _fetch(url: str, dest: Path, md5: str, timeout: float = 60.0) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in ("localhost", "127.0.0.1", "::1"):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    else:
        opener = urllib.request.build_opener()
    request = urllib.request.Request(url, headers={"User-Agent": "pathnet"})
    digest = hashlib.md5(usedforsecurity=False)
    _log.info("%s: downloading %s", _PREFIX, url)
    try:
        with opener.open(request, timeout=timeout) as response, dest.open("wb") as fh:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                fh.write(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DatasetError(f"{_PREFIX}: download of {url} failed: {exc}") from exc
    except Exception as exc:  # http.client.HTTPException and the like
        raise DatasetError(f"{_PREFIX}: download of {url} failed: {exc!r}") from exc
    got = digest.hexdigest()
    if got != md5.lower():
        raise DatasetError(
            f"{_PREFIX}: checksum mismatch for {url}: expected md5 {md5.lower()}, got {got}; "
            f"the download was discarded"
        )


def _check_member(name: str, archive: Path) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if (
        not name
        or pure.is_absolute()
        or ".." in pure.parts
        or (pure.parts and ":" in pure.parts[0])
    ):
        raise DatasetError(f"{_PREFIX}: {archive}: refusing unsafe archive member {name!r}")


def _extract(archive: Path, dest: Path) -> None:
    if archive.name.endswith(".zip"):
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_member(info.filename, archive)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DatasetError(
                            f"{_PREFIX}: {archive}: refusing symbolic link {info.filename!r}"
                        )
                zf.extractall(dest, members=infos)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DatasetError(f"{_PREFIX}: {archive}: cannot extract: {exc}") from exc
        return
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            for member in members:
                _check_member(member.name, archive)
                if not (member.isfile() or member.isdir()):
                    raise DatasetError(
                        f"{_PREFIX}: {archive}: refusing archive member {member.name!r} that "
                        f"is not a regular file or folder"
                    )
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.10.12
                tf.extractall(dest, members=members)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{_PREFIX}: {archive}: cannot extract: {exc}") from exc


def _makedirs(path: Path) -> list[Path]:
    """``mkdir -p`` returning the folders created, deepest last."""
    created = []
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir()
            created.append(p)
        except FileExistsError:
            pass
    return created


def download(
    name: str,
    root: StrPath | None = None,
    *,
    mirror: str | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Download a data set and install it under the download folder.

    Every file is streamed into a temporary folder inside the destination, checked
    against its MD5 sum, and only then moved into place with :func:`os.replace`;
    archives are unpacked (refusing absolute paths, ``..`` and links) into the temporary
    folder and renamed into place. On any failure the temporary folder, and any folder
    this call created, are removed.

    Parameters
    ----------
    name : str
        Data-set name or alias.
    root : str or os.PathLike, optional
        Destination base; default ``PATHNET_DATA``, else the user cache.
    mirror, checksums
        As for :func:`load_dataset`.

    Returns
    -------
    pathlib.Path
        The installed data-set folder, ``<base>/<folder>`` (e.g. ``<base>/mnist``).

    Raises
    ------
    DatasetError
        A download failed, or a file failed its checksum.
    """
    return _download(_canonical(name), root, mirror, checksums)


def _download(
    name: str, root: StrPath | None, mirror: str | None, checksums: Mapping[str, str] | None
) -> Path:
    base = _download_base(root)
    target = base / _FOLDERS[name][0]
    table = dict(CHECKSUMS[name])
    if checksums:
        unknown = set(checksums) - set(table)
        if unknown:
            raise ValueError(
                f"{_PREFIX}: checksums names files {sorted(unknown)} that {name!r} does not "
                f"download; expected keys among {sorted(table)}"
            )
        table.update({k: str(v) for k, v in checksums.items()})
    created = _makedirs(base)
    tmp: Path | None = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".pathnet-download-", dir=base))
        fetched = tmp / "fetched"
        fetched.mkdir()
        for filename, md5 in table.items():
            _fetch(_url(name, filename, mirror), fetched / filename, md5)
        if name in ("mnist", "fashion-mnist"):
            if target.is_dir():
                for filename in table:
                    os.replace(fetched / filename, target / filename)
            else:
                os.replace(fetched, target)
        else:
            (archive,) = table
            unpacked = tmp / "unpacked"
            _extract(fetched / archive, unpacked)
            new = unpacked / _FOLDERS[name][0]
            if not new.is_dir():
                raise DatasetError(
                    f"{_PREFIX}: {archive} from {_url(name, archive, mirror)} holds no folder "
                    f"{_FOLDERS[name][0]}/"
                )
            previous = tmp / "previous"
            if target.exists():
                os.replace(target, previous)
            try:
                os.replace(new, target)
            except OSError:
                if previous.exists():
                    os.replace(previous, target)
                raise
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp = None
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
