"""Readers of the files each data set ships as, and the loaders built on them.

- :mod:`~pathnet.data.formats.idx`: the IDX format (MNIST, Fashion-MNIST);
- :mod:`~pathnet.data.formats.unpickle`: reading data pickles without running them;
- :mod:`~pathnet.data.formats.cifar`: CIFAR-10/100;
- :mod:`~pathnet.data.formats.tiny_imagenet`: JPEG folders and the decoded-array cache.
"""

from pathnet.data.formats.cifar import load_cifar
from pathnet.data.formats.idx import load_mnist, read_idx
from pathnet.data.formats.tiny_imagenet import load_tiny_imagenet
from pathnet.data.formats.unpickle import load_pickle

__all__ = ["load_cifar", "load_mnist", "load_pickle", "load_tiny_imagenet", "read_idx"]
