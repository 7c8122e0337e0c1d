"""The Mask type: parameter name -> boolean tensor, and which parameters a model has."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pathnet._text import format_table

__all__ = [
    "Mask",
    "applied_mask",
    "as_bool_mask",
    "prunable_parameters",
    "stored_tensor",
    "tied_groups",
]

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


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    """Equal for tensors that are the same memory (the same parameter, or a view of all of it)."""
    if t.device.type == "meta" or t.numel() == 0:
        return ("id", id(t))
    return (str(t.device), t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
            tuple(t.stride()))  # fmt: skip


def stored_tensor(module: nn.Module, tensor_name: str) -> torch.Tensor:
    """The tensor that holds ``module.<tensor_name>``'s values, under any mask applied to it."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module, tensor_name):
        return module.parametrizations[tensor_name].original  # type: ignore[union-attr, index]
    orig = getattr(module, f"{tensor_name}_orig", None)
    return orig if isinstance(orig, torch.Tensor) else getattr(module, tensor_name)


def tied_groups(model: nn.Module, tensor_name: str = "weight") -> list[tuple[str, ...]]:
    """Names of prunable modules' ``tensor_name`` tensors that share memory, in groups of 2+.

    Tied weights (``b.weight = a.weight``) are one tensor under several names; a
    mask must treat them as one (see :class:`Mask`).

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    >>> net[2].weight = net[0].weight
    >>> tied_groups(net)
    [('0.weight', '2.weight')]
    """
    groups: dict[tuple[Any, ...], list[str]] = {}
    for path, module in model.named_modules():
        if isinstance(module, PRUNABLE) and getattr(module, tensor_name, None) is not None:
            key = _storage_key(stored_tensor(module, tensor_name))
            groups.setdefault(key, []).append(_join(path, tensor_name))
    return [tuple(names) for names in groups.values() if len(names) > 1]


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _module_path(name: str) -> str:
    """``"features.0.weight"`` -> ``"features.0"``; ``"weight"`` -> ``""``."""
    return name.rsplit(".", 1)[0] if "." in name else ""


def as_bool_mask(name: str, value: Any) -> torch.Tensor:
    """A boolean copy of a mask given as bool, or as integers or floats that are all 0 or 1.

    Anything else (a score, NaN, 0.5) raises ``ValueError`` naming ``name``.

    >>> as_bool_mask("fc.weight", torch.tensor([1.0, 0.0]))
    tensor([ True, False])
    """
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    t = t.detach().to("cpu")
    if t.dtype == torch.bool:
        return t.clone()
    if t.is_complex() or not (t.is_floating_point() or t.dtype in _INTS):
        raise ValueError(f"mask for {name!r} must be boolean or 0/1 numbers, got dtype {t.dtype}")
    bad = (t != 0) & (t != 1)
    if bool(bad.any()):
        example = t[bad].reshape(-1)[0].item()
        raise ValueError(
            f"mask for {name!r} holds values other than 0 and 1 (for example {example!r})"
        )
    return t != 0


_INTS = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
#: Where hard mode keeps (mask, hook handles...) on a module, per tensor name.
HARD_ATTRS = {"weight": "_pathnet_hard_mask", "bias": "_pathnet_hard_bias_mask"}


def applied_mask(module: nn.Module, tensor_name: str = "weight") -> torch.Tensor | None:
    """The mask already held on ``module.<tensor_name>``, as a new bool tensor, or None.

    Reads :func:`apply_mask`'s three modes and ``torch.nn.utils.prune``'s
    ``<name>_mask`` buffers (any pruning method, containers included).

    >>> from torch import nn
    >>> from torch.nn.utils import prune
    >>> layer = prune.custom_from_mask(nn.Linear(2, 1), "weight", torch.tensor([[1.0, 0.0]]))
    >>> applied_mask(layer)
    tensor([[ True, False]])
    """
    from torch.nn.utils import parametrize

    hard = getattr(module, HARD_ATTRS[tensor_name], None)
    if hard is not None:
        return as_bool_mask(tensor_name, hard[0])
    buffer = getattr(module, f"{tensor_name}_mask", None)
    if isinstance(buffer, torch.Tensor) and hasattr(module, f"{tensor_name}_orig"):
        return as_bool_mask(f"{tensor_name}_mask", buffer)
    if parametrize.is_parametrized(module, tensor_name):
        for p in module.parametrizations[tensor_name]:  # type: ignore[union-attr, index]
            if isinstance(getattr(p, "mask", None), torch.Tensor):
                return as_bool_mask(f"{tensor_name} parametrization", p.mask)
    return None


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
    tied : sequence of sequences of str, optional
        Groups of names that are one tensor in the model (tied weights, see
        :func:`tied_groups`). Their masks must be equal (``ValueError`` naming
        both names otherwise), and :attr:`n_kept`, :attr:`n_total` and
        :attr:`density` count each group once. :meth:`load` with a model and
        :meth:`from_model` fill it in from the model.

    Examples
    --------
    >>> import torch
    >>> m = Mask({"fc.weight": torch.tensor([[True, False], [False, False]])})
    >>> m.density, m.n_kept, m.n_total
    (0.25, 1, 4)
    >>> w = torch.tensor([True, False])
    >>> Mask({"a.weight": w, "b.weight": w}, tied=[("a.weight", "b.weight")]).n_total
    2
    """

    def __init__(
        self,
        masks: Mapping[str, Any],
        meta: Mapping[str, Any] | None = None,
        *,
        tied: Sequence[Sequence[str]] = (),
    ) -> None:
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
        self.tied: tuple[tuple[str, ...], ...] = self._check_ties(tied)

    def _check_ties(self, tied: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
        groups: list[tuple[str, ...]] = []
        seen: set[str] = set()
        for group in tied:
            names = tuple(group)
            if len(names) < 2 or not all(isinstance(n, str) and n in self._data for n in names):
                raise ValueError(
                    f"pathnet.Mask: tied must list groups of 2 or more of the mask's names, "
                    f"got {names!r}"
                )
            if seen & set(names):
                raise ValueError(f"pathnet.Mask: {names!r} overlaps another tied group")
            seen |= set(names)
            _check_equal(names, self._data)
            groups.append(names)
        return tuple(groups)

    def _counted(self) -> list[torch.Tensor]:
        """One tensor per distinct parameter: the first name of each tied group."""
        later = {n for group in self.tied for n in group[1:]}
        return [t for n, t in self._data.items() if n not in later]

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
        return int(sum(int(t.sum()) for t in self._counted()))

    @property
    def n_total(self) -> int:
        return int(sum(t.numel() for t in self._counted()))

    @property
    def density(self) -> float:
        """Fraction of kept elements over all masked parameters (tied ones counted once)."""
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

    @classmethod
    def from_model(cls, model: nn.Module) -> Mask:
        """The mask a model already holds: ``torch.nn.utils.prune`` masks or :func:`apply_mask`'s.

        Reads every prunable weight's ``weight_mask`` buffer (torch's pruning
        methods, ``prune.global_unstructured`` included), parametrization or
        hard-mode mask; a weight that holds no mask counts as fully kept. The
        result holds copies: later changes to the model do not reach it.

        Examples
        --------
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 2))
        >>> _ = prune.l1_unstructured(net[0], "weight", amount=0.7)
        >>> m = Mask.from_model(net)
        >>> m["0.weight"].sum().item(), m["2.weight"].sum().item()
        (30, 20)
        """
        out = {}
        for name, weight in prunable_parameters(model).items():
            module = model.get_submodule(_module_path(name))
            held = applied_mask(module)
            out[name] = held if held is not None else torch.ones(weight.shape, dtype=torch.bool)
        return cls(out, tied=tied_groups(model))

    # Files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the mask atomically; the suffix picks the form.

        ``.pt`` or ``.pth``: a plain ``dict[str, torch.BoolTensor]`` saved with
        ``torch.save``, which ``torch.load(path, weights_only=True)`` reads
        anywhere; ``meta`` is not kept in this form. Any other suffix
        (``.npz``): pathnet's bit-packed ``.npz`` with a JSON header, which
        keeps ``meta``. :meth:`load` reads both. Returns the path written.

        Examples
        --------
        >>> import tempfile, pathlib, torch
        >>> m = Mask({"fc.weight": torch.tensor([[True, False]])}, meta={"method": "demo"})
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> torch.load(m.save(folder / "m.pt"), weights_only=True)
        {'fc.weight': tensor([[ True, False]])}
        >>> Mask.load(m.save(folder / "m.npz")).meta, Mask.load(folder / "m.pt").meta
        ({'method': 'demo'}, {})
        """
        from pathnet.mask.files import write_mask

        return write_mask(path, self._data, self.meta, self.tied)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None) -> Mask:
        """Read a mask file in either form :meth:`save` writes, never executing pickled code.

        A ``.pt`` file may hold any ``dict`` of parameter name -> tensor saved with
        ``torch.save``: boolean, or integers or floats that are all 0 or 1 (a
        ``torch.nn.utils.prune`` ``weight_mask``); it is read with
        ``weights_only=True``. The form is told from the content, not the suffix.

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
            mask = cls(mask, mask.meta, tied=tied_groups(model))
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
        for group in tied_groups(model):
            _check_equal(group, self._data)


def _check_equal(names: Sequence[str], masks: Mapping[str, torch.Tensor]) -> None:
    """Masks of names that share one tensor must be equal."""
    first = masks[names[0]]
    for other in names[1:]:
        t = masks[other]
        if t.shape != first.shape or not torch.equal(t, first):
            raise ValueError(
                f"pathnet.Mask: {names[0]!r} and {other!r} share one tensor (tied weights) but "
                f"their masks differ ({int(first.sum())} vs {int(t.sum())} kept); give both "
                "the same mask"
            )
