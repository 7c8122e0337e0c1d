"""Where data sets are looked for, and :func:`load_dataset`, which finds and reads one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pathnet.data import registry
from pathnet.data.dataset import Dataset
from pathnet.data.download import download_base, fetch_dataset
from pathnet.data.errors import PREFIX, DatasetNotFoundError
from pathnet.data.formats import load_cifar, load_mnist, load_tiny_imagenet
from pathnet.data.registry import (
    FOLDERS,
    canonical_name,
    canonical_split,
    required_files,
    user_cache_dir,
)

__all__ = ["find_dataset", "load_dataset", "search_dirs"]


def _missing(name: str, split: str, folder: Path) -> list[str]:
    missing = []
    for entry in required_files(name, split):
        options = entry.split("|")
        if not any(
            (folder / o).is_dir() if o.endswith("/") else (folder / o).is_file() for o in options
        ):
            missing.append(options[0] + ("[.gz]" if len(options) > 1 else ""))
    return missing


def _bases(root: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    bases: list[tuple[Path, str]] = []
    if root is not None:
        bases.append((Path(root).expanduser(), "root argument"))
    env = os.environ.get("PATHNET_DATA", "")
    if env:
        bases.append((Path(env).expanduser(), "PATHNET_DATA"))
    bases.append((user_cache_dir(), "user cache"))
    bases.extend((Path(d), "system") for d in registry.SYSTEM_DATA_DIRS)
    return bases


def _candidates(name: str, root: str | os.PathLike[str] | None) -> list[tuple[Path, str]]:
    seen: set[Path] = set()
    out: list[tuple[Path, str]] = []
    for base, origin in _bases(root):
        paths = [base] if origin == "root argument" else []
        paths.extend(base / sub for sub in FOLDERS[name])
        for path in paths:
            if path not in seen:
                seen.add(path)
                out.append((path, origin))
    return out


def search_dirs(name: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
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

    Examples
    --------
    >>> [str(p) for p in search_dirs("fashion_mnist", root="/data")[:3]]
    ['/data', '/data/fashion-mnist', '/data/fashion_mnist']
    """
    return [path for path, _ in _candidates(canonical_name(name), root)]


def find_dataset(
    name: str, split: str = "train", root: str | os.PathLike[str] | None = None
) -> Path:
    """The first folder that holds every file of ``name``/``split``.

    Raises
    ------
    DatasetNotFoundError
        Listing every folder looked in and how to get the data.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "cifar-10-batches-py").mkdir()
    >>> _ = (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"")
    >>> find_dataset("cifar10", "test", root=root) == root / "cifar-10-batches-py"
    True
    """
    name = canonical_name(name)
    split = canonical_split(split)
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
        f"{download_base(root)}, or put the files in one of the folders above, or set "
        f"PATHNET_DATA to a folder holding {FOLDERS[name][0]}/"
    )
    if name == "fashion-mnist":
        hint += "; on Debian/Ubuntu: apt-get install dataset-fashion-mnist"
    raise DatasetNotFoundError(
        f"{PREFIX}: data set {name!r} (split {split!r}) not found. Looked in:\n"
        + "\n".join(report)
        + "\n"
        + hint,
        searched,
    )


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
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

    Examples
    --------
    A two-image MNIST written by hand in the IDX format:

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> def idx(shape, values):
    ...     dims = b"".join(n.to_bytes(4, "big") for n in shape)
    ...     return bytes([0, 0, 8, len(shape)]) + dims + bytes(values)
    >>> for prefix in ("train", "t10k"):
    ...     _ = (root / f"{prefix}-images-idx3-ubyte").write_bytes(idx((2, 28, 28), [0] * 1568))
    ...     _ = (root / f"{prefix}-labels-idx1-ubyte").write_bytes(idx((2,), [3, 7]))
    >>> ds = load_dataset("mnist", "test", root=root)
    >>> ds
    Dataset(name='mnist', split='test', n=2, input_shape=(1, 28, 28), num_classes=10, device=cpu)
    >>> ds.labels.tolist(), round(ds.images.min().item(), 4)  # black is -mean / std
    ([3, 7], -0.4242)
    """
    name = canonical_name(name)
    split = canonical_split(split)
    try:
        folder = find_dataset(name, split, root)
    except DatasetNotFoundError:
        if not download:
            raise
        fetch_dataset(name, root, mirror, checksums)
        folder = find_dataset(name, split, root)
    if name in ("mnist", "fashion-mnist"):
        return load_mnist(name, split, folder)
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, split, folder)
    return load_tiny_imagenet(folder, split, cache)
