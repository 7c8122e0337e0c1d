"""What pathnet knows about each data set: names, statistics, addresses, checksums, folders.

Every table is keyed by the canonical name (one of :data:`DATASETS`);
:func:`canonical_name` maps the accepted spellings to it.

>>> canonical_name("Fashion_MNIST"), canonical_split("val")
('fashion-mnist', 'test')
>>> NUM_CLASSES["cifar100"], INPUT_SHAPE["tiny-imagenet"]
(100, (3, 64, 64))
"""

from __future__ import annotations

import os
from pathlib import Path

from pathnet.data.errors import PREFIX

__all__ = [
    "AUGMENTED",
    "CHECKSUMS",
    "CIFAR10_CLASSES",
    "DATASETS",
    "FASHION_CLASSES",
    "FOLDERS",
    "IDX_PREFIX",
    "INPUT_SHAPE",
    "MEAN_STD",
    "MIRRORS",
    "NUM_CLASSES",
    "SYSTEM_DATA_DIRS",
    "canonical_name",
    "canonical_split",
    "required_files",
    "user_cache_dir",
]

#: Canonical data-set names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet")

#: Accepted spellings of each data-set name (lower case).
ALIASES: dict[str, str] = {
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

#: Sub-folders of a base folder that may hold each data set; the first is where a download
#: goes (for the archives: the top folder of the archive).
FOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist", "MNIST/raw", "MNIST"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
    "cifar10": ("cifar-10-batches-py", "cifar10/cifar-10-batches-py"),
    "cifar100": ("cifar-100-python", "cifar100/cifar-100-python"),
    "tiny-imagenet": ("tiny-imagenet-200", "tiny-imagenet/tiny-imagenet-200"),
}

#: Number of classes of each data set.
NUM_CLASSES: dict[str, int] = {
    "mnist": 10,
    "fashion-mnist": 10,
    "cifar10": 10,
    "cifar100": 100,
    "tiny-imagenet": 200,
}

#: Per-sample shape ``(C, H, W)``.
INPUT_SHAPE: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "tiny-imagenet": (3, 64, 64),
}

#: Data sets whose training split is augmented by default in :func:`loader`.
AUGMENTED = frozenset({"cifar10", "cifar100", "tiny-imagenet"})

#: Class names of Fashion-MNIST, indexed by label.
FASHION_CLASSES: tuple[str, ...] = (
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
#: Class names of CIFAR-10, indexed by label.
CIFAR10_CLASSES: tuple[str, ...] = (
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

#: Accepted split names and the split each one means.
SPLITS: dict[str, str] = {"train": "train", "test": "test", "val": "test", "validation": "test"}
#: File-name prefix of each split of the IDX data sets.
IDX_PREFIX: dict[str, str] = {"train": "train", "test": "t10k"}


def canonical_name(name: str) -> str:
    """The canonical data-set name of ``name`` (case, ``-`` and ``_`` variants accepted).

    Raises
    ------
    TypeError
        ``name`` is not a string.
    ValueError
        ``name`` names no known data set; the message lists the accepted names.

    Examples
    --------
    >>> canonical_name("CIFAR-10"), canonical_name("fmnist")
    ('cifar10', 'fashion-mnist')
    """
    if not isinstance(name, str):
        raise TypeError(f"{PREFIX}: name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in ALIASES:
        raise ValueError(
            f"{PREFIX}: unknown data set name {name!r}; expected one of "
            f"{', '.join(DATASETS)} (aliases: {', '.join(sorted(set(ALIASES) - set(DATASETS)))})"
        )
    return ALIASES[key]


def canonical_split(split: str) -> str:
    """``"train"`` or ``"test"`` for a split name (``"val"`` and ``"validation"`` mean test).

    Examples
    --------
    >>> canonical_split(" Train "), canonical_split("validation")
    ('train', 'test')
    """
    key = str(split).strip().lower()
    if key not in SPLITS:
        raise ValueError(f"{PREFIX}: split must be 'train' or 'test', got {split!r}")
    return SPLITS[key]


def user_cache_dir() -> Path:
    """The user cache folder, ``$XDG_CACHE_HOME/pathnet`` or ``~/.cache/pathnet``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG specification asks.

    Examples
    --------
    >>> user_cache_dir().name
    'pathnet'
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "pathnet"


def required_files(name: str, split: str) -> list[str]:
    """Relative paths the split ``split`` of data set ``name`` needs (``'a|b'``: either).

    A trailing ``/`` marks a folder.

    Examples
    --------
    >>> required_files("cifar100", "test")
    ['test']
    >>> required_files("mnist", "test")[1]
    't10k-labels-idx1-ubyte|t10k-labels-idx1-ubyte.gz'
    """
    if name in ("mnist", "fashion-mnist"):
        prefix = IDX_PREFIX[split]
        return [
            f"{prefix}-images-idx3-ubyte|{prefix}-images-idx3-ubyte.gz",
            f"{prefix}-labels-idx1-ubyte|{prefix}-labels-idx1-ubyte.gz",
        ]
    if name == "cifar10":
        return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if name == "cifar100":
        return [split]
    return ["wnids.txt", "train/"] if split == "train" else ["wnids.txt", "val/", "val/images/"]
