"""The Mask type: parameter name -> boolean tensor, and which parameters a model has."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pathnet._text import format_table

__all__ = ["Mask", "prunable_parameters"]

#: The module types whose weights a mask covers.
PRUNABLE = (nn.Linear, nn.Conv2d)


def prunable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of every Linear and Conv2d module, by their logical names.

    A weight already masked with :func:`apply_mask` (parametrization or
    ``torch.nn.utils.prune``) is still named ``"<module>.weight"``.

    Examples
    --------
    >>> from torch import nn
    >>> list(prunable_parameters(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))))
    ['0.weight', '2.weight']
    """
    out: dict[str, torch.Tensor] = {}
    for path, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            out[_join(path, "weight")] = module.weight
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _module_path(name: str) -> str:
    """``"features.0.weight"`` -> ``"features.0"``; ``"weight"`` -> ``""``."""
    return name.rsplit(".", 1)[0] if "." in name else ""


class Mask(Mapping[str, torch.Tensor]):
    """Which prunable parameter elements a sparse network keeps.

    A read-only mapping from parameter name to a ``torch.bool`` tensor of the
    parameter's shape: the form users save with ``torch.save`` and apply with
    ``torch.nn.utils.prune.custom_from_mask``.

    Parameters
    ----------
    masks : mapping of str to array-like of bool
        Tensors or numpy arrays; they must be boolean (0/1 integers are refused
        so that a float score tensor is never taken for a mask by mistake).
    meta : dict, optional
        JSON-serialisable provenance (method, density, seed, ...), kept in files.

    Examples
    --------
    >>> import torch
    >>> m = Mask({"fc.weight": torch.tensor([[True, False], [False, False]])})
    >>> m.density, m.n_kept, m.n_total
    (0.25, 1, 4)
    """

    def __init__(self, masks: Mapping[str, Any], meta: Mapping[str, Any] | None = None) -> None:
        data: dict[str, torch.Tensor] = {}
        for name, value in masks.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"pathnet.Mask: parameter names must be strings, got {name!r}")
            t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))
            if t.dtype != torch.bool:
                raise ValueError(
                    f"pathnet.Mask: mask for {name!r} must have dtype bool, got {t.dtype}"
                )
            data[name] = t.detach().to("cpu").contiguous()
        self._data = data
        self.meta: dict[str, Any] = dict(meta or {})

    # Mapping protocol
    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._data[name]
        except KeyError:
            raise KeyError(
                f"pathnet.Mask: no parameter {name!r}; the mask has {list(self._data)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Mask({len(self)} parameters, density={self.density:.4g}, kept={self.n_kept:,})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping) or set(other) != set(self):
            return False
        return all(torch.equal(self[k], torch.as_tensor(other[k])) for k in self)

    __hash__ = None  # type: ignore[assignment]

    # Quantities
    @property
    def n_kept(self) -> int:
        return int(sum(int(t.sum()) for t in self._data.values()))

    @property
    def n_total(self) -> int:
        return int(sum(t.numel() for t in self._data.values()))

    @property
    def density(self) -> float:
        """Fraction of kept elements over all masked parameters."""
        return self.n_kept / self.n_total if self.n_total else 0.0

    @property
    def compression(self) -> float:
        """``-log10(density)``: 1 for 10%, 2 for 1%."""
        d = self.density
        return float(-np.log10(d)) if d > 0 else float("inf")

    def table_rows(self) -> list[dict[str, Any]]:
        rows = [
            {
                "parameter": name,
                "shape": "x".join(map(str, t.shape)),
                "kept": int(t.sum()),
                "total": t.numel(),
                "density": int(t.sum()) / t.numel(),
            }
            for name, t in self._data.items()
        ]
        rows.append(
            {
                "parameter": "(all)",
                "shape": "",
                "kept": self.n_kept,
                "total": self.n_total,
                "density": self.density,
            }
        )
        return rows

    def table(self) -> str:
        """Per-layer kept/total/density as a printable table."""
        return format_table(self.table_rows(), ["parameter", "shape", "kept", "total", "density"])

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._data.items()}

    # Files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the mask as a ``.npz`` file (bit-packed, no pickles), atomically.

        Returns the path written.
        """
        from pathnet.mask.files import write_mask

        return write_mask(path, self._data, self.meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None) -> Mask:
        """Read a mask written by :meth:`save`, never executing pickled code.

        Hostile files are refused within bounded time and memory: a file may
        hold at most :func:`pathnet.mask.files.element_limit` elements (64 Mi,
        64 per byte of file, or as many as ``model`` has, whichever is most),
        checked before anything is expanded.

        Parameters
        ----------
        path : path-like
        model : torch.nn.Module, optional
            If given, the mask's names and shapes are checked against the
            model's prunable parameters (see :meth:`check`).

        Raises
        ------
        MaskFileError
            If the file is missing, truncated, not a pathnet mask, damaged,
            or declares more elements than allowed. It is the only error a
            file's content can cause.
        ValueError
            If it does not fit ``model``.
        """
        from pathnet.mask.files import read_mask

        params = prunable_parameters(model) if model is not None else {}
        mask = read_mask(path, cls, sum(p.numel() for p in params.values()))
        if model is not None:
            mask.check(model)
        return mask

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` unless names and shapes equal the model's prunable weights."""
        params = prunable_parameters(model)
        missing = [p for p in params if p not in self._data]
        extra = [p for p in self._data if p not in params]
        problems = []
        if missing:
            problems.append(f"missing {missing}")
        if extra:
            problems.append(f"not in the model {extra}")
        for name, t in self._data.items():
            if name in params and tuple(t.shape) != tuple(params[name].shape):
                problems.append(
                    f"{name!r} has shape {tuple(t.shape)}, the parameter {tuple(params[name].shape)}"
                )
        if problems:
            raise ValueError(
                f"pathnet.Mask: does not fit {type(model).__name__}: " + "; ".join(problems)
            )
