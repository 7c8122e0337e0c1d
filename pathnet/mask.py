"""Masks: parameter name -> boolean tensor, saved safely, applied to torch models."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from pathnet._io import atomic_write_bytes
from pathnet._text import format_table

__all__ = [
    "Mask",
    "MaskFileError",
    "apply_mask",
    "prunable_parameters",
    "remove_mask",
]

_FORMAT = "pathnet-mask"
_VERSION = 1


class MaskFileError(ValueError):
    """A mask file that cannot be read: truncated, foreign, or not a pathnet mask."""


def prunable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of every Linear and Conv2d module, by their logical names.

    A weight already masked with :func:`apply_mask` (parametrization or
    ``torch.nn.utils.prune``) is still named ``"<module>.weight"``.
    """
    out: dict[str, torch.Tensor] = {}
    for path, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            name = f"{path}.weight" if path else "weight"
            out[name] = module.weight
    return out


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
        buf = io.BytesIO()
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "params": {k: list(v.shape) for k, v in self._data.items()},
            "meta": self.meta,
        }
        arrays = {
            f"param{k}": np.packbits(v.numpy().ravel()) for k, v in enumerate(self._data.values())
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None) -> Mask:
        """Read a mask written by :meth:`save`, never executing pickled code.

        Parameters
        ----------
        path : path-like
        model : torch.nn.Module, optional
            If given, the mask's names and shapes are checked against the
            model's prunable parameters (see :meth:`check`).

        Raises
        ------
        MaskFileError
            If the file is missing, truncated, not a pathnet mask, or inconsistent.
        ValueError
            If it does not fit ``model``.
        """
        path = Path(path)
        if not path.is_file():
            raise MaskFileError(f"pathnet.Mask.load: no such file {str(path)!r}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                header = json.loads(bytes(npz["header"]).decode())
                if not isinstance(header, dict) or header.get("format") != _FORMAT:
                    raise MaskFileError(
                        f"pathnet.Mask.load: {str(path)!r} is not a pathnet mask file"
                    )
                if int(header.get("version", -1)) > _VERSION:
                    raise MaskFileError(
                        f"pathnet.Mask.load: {str(path)!r} has format version "
                        f"{header['version']}; this pathnet reads up to {_VERSION}"
                    )
                params, meta = header.get("params"), header.get("meta") or {}
                if not isinstance(params, dict) or not isinstance(meta, dict):
                    raise MaskFileError(
                        f"pathnet.Mask.load: {str(path)!r} has a damaged header: expected "
                        "'params' and 'meta' to be JSON objects"
                    )
                masks = {}
                for k, (name, shape) in enumerate(params.items()):
                    if not isinstance(shape, list) or not all(
                        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
                    ):
                        raise MaskFileError(
                            f"pathnet.Mask.load: entry for {name!r} in {str(path)!r} has shape "
                            f"{shape!r}; expected a list of non-negative integers"
                        )
                    packed = npz[f"param{k}"]
                    if packed.dtype != np.uint8:
                        raise MaskFileError(
                            f"pathnet.Mask.load: entry for {name!r} in {str(path)!r} has "
                            f"dtype {packed.dtype}, expected packed uint8 bits"
                        )
                    n = int(np.prod(shape, dtype=np.int64))
                    if packed.size != (n + 7) // 8:
                        raise MaskFileError(
                            f"pathnet.Mask.load: entry for {name!r} in {str(path)!r} holds "
                            f"{packed.size} bytes, expected {(n + 7) // 8} for shape {shape}"
                        )
                    bits = np.unpackbits(packed.ravel(), count=n).astype(bool)
                    masks[name] = torch.from_numpy(bits.reshape(shape))
                mask = cls(masks, meta=meta)
        except MaskFileError:
            raise
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            EOFError,
            zipfile.BadZipFile,
            json.JSONDecodeError,
            UnicodeDecodeError,
        ) as exc:
            raise MaskFileError(
                f"pathnet.Mask.load: cannot read {str(path)!r} as a pathnet mask "
                f"({type(exc).__name__}: {exc})"
            ) from exc
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


class _MaskParametrization(nn.Module):
    """``weight = original * mask`` (see ``torch.nn.utils.parametrize``)."""

    mask: torch.Tensor

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask.to(w.dtype)


MaskMode = Literal["parametrize", "prune", "hard"]


def apply_mask(
    model: nn.Module, mask: Mapping[str, Any], mode: MaskMode = "parametrize"
) -> nn.Module:
    """Apply ``mask`` to ``model`` in place so that pruned weights are, and stay, zero.

    Parameters
    ----------
    model : torch.nn.Module
    mask : Mask or mapping of str to bool tensor
        Must name exactly the model's prunable weights (see :func:`prunable_parameters`).
    mode : {"parametrize", "prune", "hard"}
        ``"parametrize"``: ``torch.nn.utils.parametrize`` computes ``weight = orig * mask``.
        ``"prune"``: ``torch.nn.utils.prune.custom_from_mask`` (``weight_orig``, ``weight_mask``).
        ``"hard"``: zeros are written into the weight and a gradient hook zeroes
        their gradients, so plain optimisers (SGD with momentum and weight decay,
        Adam) leave them at zero; the model keeps plain ``weight`` parameters.
        In every mode the stored weights are zeroed too, so weight decay and
        momentum cannot move them.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.
    """
    if mode not in ("parametrize", "prune", "hard"):
        raise ValueError(
            f"pathnet.apply_mask: mode must be 'parametrize', 'prune' or 'hard', got {mode!r}"
        )
    m = mask if isinstance(mask, Mask) else Mask(mask)
    m.check(model)
    modules = dict(model.named_modules())
    for name, keep in m.items():
        path = name.rsplit(".", 1)[0] if "." in name else ""
        module = modules[path]
        _strip_mask(module)
        weight = module.weight
        keep_t = keep.to(weight.device)
        with torch.no_grad():
            weight.mul_(keep_t.to(weight.dtype))
        if mode == "parametrize":
            from torch.nn.utils import parametrize

            parametrize.register_parametrization(module, "weight", _MaskParametrization(keep_t))
        elif mode == "prune":
            from torch.nn.utils import prune

            prune.custom_from_mask(module, "weight", keep_t)
        else:
            handle = weight.register_hook(lambda g, k=keep_t: g * k.to(g.dtype))
            module._pathnet_hard_mask = (keep_t, handle)  # type: ignore[assignment]
    return model


def _strip_mask(module: nn.Module) -> None:
    """Remove a mask applied earlier, baking the masked weights in."""
    from torch.nn.utils import parametrize, prune

    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    if hasattr(module, "weight_orig") and hasattr(module, "weight_mask"):
        prune.remove(module, "weight")
    hard = getattr(module, "_pathnet_hard_mask", None)
    if hard is not None:
        hard[1].remove()
        del module._pathnet_hard_mask


def remove_mask(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_mask`, leaving plain weights that hold the zeros.

    Use it before exporting; further training may then revive pruned weights.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            _strip_mask(module)
    return model
