"""Deterministic mini-batches of a preloaded :class:`~pathnet.data.dataset.Dataset`.

>>> import torch
>>> from pathnet.data.dataset import Dataset
>>> ds = Dataset(torch.zeros(5, 1, 2, 2), torch.tensor([0, 1, 0, 1, 1]), 2, "toy", "train", (1, 2, 2))
>>> [tuple(x.shape) for x, _ in loader(ds, batch_size=2, seed=0)]
[(2, 1, 2, 2), (2, 1, 2, 2), (1, 1, 2, 2)]
>>> subset_per_class(ds, 2, seed=0).labels.tolist()
[0, 0, 1, 1]
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from pathnet.data.dataset import Dataset, random_crop_flip
from pathnet.data.errors import PREFIX

__all__ = ["BatchLoader", "loader", "mix_seed", "subset_per_class"]


def mix_seed(seed: int, epoch: int) -> int:
    """The torch seed of pass ``epoch`` of a loader seeded with ``seed`` (a 63-bit integer).

    Distinct ``(seed, epoch)`` pairs give unrelated seeds (NumPy's ``SeedSequence``), so
    every pass draws its own order and augmentation; distributed training draws the same
    permutation from it.

    Examples
    --------
    >>> mix_seed(0, 0) == mix_seed(0, 0), mix_seed(0, 0) == mix_seed(0, 1)
    (True, False)
    >>> 0 <= mix_seed(7, 3) < 2**63
    True
    """
    state = np.random.SeedSequence([seed, epoch]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


class BatchLoader:
    """Deterministic mini-batch iterator over a preloaded :class:`Dataset`.

    Built by :func:`loader`; see there for the parameters. Iterating yields
    ``(x, y)`` pairs; pass ``k`` (counting from 0) over the loader draws its order and
    augmentation from a generator seeded with ``(seed, k)``, so every epoch differs and
    the whole run replays exactly for the same seed. :meth:`set_epoch` jumps to a pass.

    Examples
    --------
    >>> ds = Dataset(torch.arange(4.0).view(4, 1, 1, 1), torch.tensor([0, 1, 0, 1]), 2, "toy",
    ...              "train", (1, 1, 1))
    >>> batches = loader(ds, batch_size=4, seed=3)
    >>> first = next(iter(batches))[1].tolist()
    >>> batches.set_epoch(0)
    >>> next(iter(batches))[1].tolist() == first  # pass 0 again, same order
    True
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
                f"{PREFIX}.loader: dataset must be a pathnet Dataset, got {type(dataset).__name__}"
            )
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(
                f"{PREFIX}.loader: batch_size must be a positive integer, got {batch_size!r}"
            )
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"{PREFIX}.loader: seed must be a non-negative integer, got {seed!r}")
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
            raise ValueError(f"{PREFIX}.loader: padding must be >= 0, got {padding}")
        self.padding = int(padding)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the one numbered ``epoch`` (0 is the first)."""
        if int(epoch) < 0:
            raise ValueError(f"{PREFIX}.loader: epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        ds = self.dataset
        n = len(ds)
        gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
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

    Examples
    --------
    >>> ds = Dataset(torch.zeros(5, 1, 2, 2), torch.zeros(5, dtype=torch.int64), 1, "toy",
    ...              "test", (1, 2, 2))
    >>> len(loader(ds, batch_size=2)), len(loader(ds, batch_size=2, drop_last=True))
    (3, 2)
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

    Examples
    --------
    >>> ds = Dataset(torch.zeros(6, 1, 1, 1), torch.tensor([0, 1, 2, 0, 1, 2]), 3, "toy",
    ...              "train", (1, 1, 1))
    >>> subset_per_class(ds, 2, seed=0).labels.tolist()
    [0, 0, 1, 1, 2, 2]
    """
    if isinstance(n_per_class, bool) or int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(
            f"{PREFIX}.subset_per_class: n_per_class must be a positive integer, got "
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
                f"{PREFIX}.subset_per_class: class {k} of {dataset.name!r} has "
                f"{members.numel()} samples, n_per_class asks for {n_per_class}"
            )
        picks.append(members[:n_per_class])
    return dataset.select(torch.cat(picks))
