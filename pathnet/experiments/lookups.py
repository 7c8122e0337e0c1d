"""Lookups of the experiments: pathnet's registries (data sets, selection methods, model
builders) and the data sets themselves, loaded once per process.

Each is one small function, so that a change in a registry's shape is a one-line change
here. :mod:`pathnet.experiments.config` checks a sweep with them when it is loaded; the
compute functions of the grid definitions load their data with :func:`splits`.

>>> dataset_facts("fmnist")
('fashion-mnist', 10)
>>> from pathnet import models
>>> {"batch_norm", "num_classes"} <= known_options(models.MODELS["vgg11"], ("seed",))
True
>>> model_outputs(models.MODELS["vgg11"], {"num_classes": 100})
100
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["dataset_facts", "known_options", "method_function", "model_outputs", "splits"]

_SPLITS: dict[tuple[str, str | None, bool], tuple[Any, Any]] = {}


def splits(name: str, root: str | None = None, download: bool = False) -> tuple[Any, Any]:
    """The train and test splits of a data set, loaded once per process (one set at a time)."""
    from pathnet.data import load_dataset

    key = (name, root, download)
    if key not in _SPLITS:
        _SPLITS.clear()  # one data set in memory at a time
        _SPLITS[key] = (
            load_dataset(name, "train", root=root, download=download),
            load_dataset(name, "test", root=root, download=download),
        )
    return _SPLITS[key]


def dataset_facts(name: str) -> tuple[str, int]:
    """A data set's canonical name and number of classes (``"fmnist"`` -> fashion-mnist, 10)."""
    from pathnet.data import canonical_name
    from pathnet.data.registry import NUM_CLASSES

    canonical = canonical_name(name)
    return canonical, int(NUM_CLASSES[canonical])


def method_function(name: str) -> Callable[..., Any] | None:
    """The registered selection function of ``name``, or None where there is none."""
    from pathnet.select.registry import get_method

    try:
        return get_method(name).selector()
    except ValueError:  # not a registered method
        return None


def known_options(fn: Callable[..., Any], fixed: Sequence[str]) -> set[str] | None:
    """Keyword options ``fn`` names, less ``fixed``; None where it forwards the rest unseen.

    A ``**unknown`` catch-all is where a method refuses what it does not take; any other
    ``**name`` forwards options elsewhere, so they are not checked here.
    """
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD and p.name != "unknown" for p in params):
        return None
    return {
        p.name
        for p in params
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in fixed
    }


def model_outputs(builder: Callable[..., Any], options: Mapping[str, Any]) -> int | None:
    """The class count a zoo model is built with (its ``num_classes``), where it has one."""
    param = inspect.signature(builder).parameters.get("num_classes")
    if param is None:
        return None
    n = options.get("num_classes", param.default)
    return n if isinstance(n, int) and not isinstance(n, bool) else None
