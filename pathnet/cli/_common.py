"""What every ``pathnet`` subcommand shares: :class:`UserError` and the readers of
the common options (model, density, ``--option``, device, mask file)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any


class UserError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


# ------------------------------------------------------------------ helpers
def _model(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(model, spec)`` from the MODEL options; see :func:`pathnet.specs.model_from_args`."""
    from pathnet.specs import model_from_args

    return model_from_args(args)


def _model_and_mask(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(model, spec, mask)``; see :func:`pathnet.specs.model_and_mask_from_args`."""
    from pathnet.specs import model_and_mask_from_args

    return model_and_mask_from_args(args)


def _record_spec(mask: Any, spec: Any) -> None:
    """Write the model's spec into a mask's meta (``pathnet prune``, ``pathnet imp``)."""
    mask.meta["model"] = spec.entry
    mask.meta["model_spec"] = spec.to_meta()


def _density(args: argparse.Namespace) -> float:
    from pathnet.select import resolve_density

    try:
        return resolve_density(args.density, getattr(args, "compression", None))
    except ValueError as exc:
        raise UserError(str(exc).replace("pathnet.select: ", "")) from None


def _options(pairs: Sequence[str], option: str = "--option") -> dict[str, Any]:
    from pathnet._text import parse_options

    try:
        return parse_options(pairs, option)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return dev


def _load_mask(path: str, model: Any = None) -> Any:
    """Read a mask file; checked against ``model`` when given."""
    from pathnet import Mask

    return Mask.load(path, model=model)


def _data_methods() -> frozenset[str]:
    from pathnet.experiments.config import DATA_METHODS

    return frozenset(DATA_METHODS)
