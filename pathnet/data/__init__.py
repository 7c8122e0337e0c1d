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
Crafted files are refused with a :class:`DatasetError` naming the file, at bounded cost
(no file under 1 MB costs more than about a second or 100 MB before it is refused):

- CIFAR pickles are read by :func:`load_pickle`, a pickle interpreter of its own that
  builds only plain data and numpy arrays, runs no code from the file, charges every step
  against a memory budget (3 x the file size + 16 MiB) and never walks shared references;
- IDX files are decompressed while they are read, never beyond the size their header
  declares, and a header declaring more than 32 times the compressed size is refused;
- Tiny-ImageNet: names read from ``wnids.txt`` and ``val_annotations.txt`` must be plain
  file names (no ``..``, no absolute paths), and the decoded-image cache is checked from
  its headers (shapes, dtype) and against the folder's labels before it is trusted;
- ``np.load`` runs with ``allow_pickle=False``; archives refuse absolute paths, ``..``
  and links.

Layout
------
:mod:`~pathnet.data.errors` (the exceptions), :mod:`~pathnet.data.registry` (names,
statistics, addresses, checksums, folders), :mod:`~pathnet.data.dataset` (the
:class:`Dataset` record, normalisation, augmentation), :mod:`~pathnet.data.loader`
(batches, balanced subsets), :mod:`~pathnet.data.formats` (IDX, restricted unpickling,
Tiny-ImageNet), :mod:`~pathnet.data.find` (search, :func:`load_dataset`) and
:mod:`~pathnet.data.download`.

Examples
--------
>>> from pathnet.data import load_dataset, loader
>>> train = load_dataset("fashion-mnist", "train")  # doctest: +SKIP
>>> for x, y in loader(train, batch_size=128, seed=0):  # doctest: +SKIP
...     pass
"""

from __future__ import annotations

from pathnet.data.dataset import Dataset, normalize, pad_images, random_crop_flip
from pathnet.data.download import download
from pathnet.data.errors import DatasetError, DatasetNotFoundError
from pathnet.data.find import find_dataset, load_dataset, search_dirs
from pathnet.data.formats import load_pickle, read_idx
from pathnet.data.loader import BatchLoader, loader, mix_seed, subset_per_class
from pathnet.data.registry import (
    CHECKSUMS,
    DATASETS,
    MEAN_STD,
    MIRRORS,
    SYSTEM_DATA_DIRS,
    canonical_name,
    canonical_split,
)

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
    "canonical_name",
    "canonical_split",
    "download",
    "find_dataset",
    "load_dataset",
    "load_pickle",
    "loader",
    "mix_seed",
    "normalize",
    "pad_images",
    "random_crop_flip",
    "read_idx",
    "search_dirs",
    "subset_per_class",
]
