"""Model specs: which model, built how, with which weights.

A :class:`ModelSpec` names a model the way the command line does and records enough to
build the same weights again:

* ``entry``: a zoo name (``"resnet20"``), a file and function (``"mymodels.py:net"``) or a
  module and function (``"mypackage.models:net"``);
* ``args``: keyword arguments of that function (``{"in_channels": 1}``);
* ``seed``: the seed of the initial weights (None: not fixed, or replaced by weights);
* ``weights_sha256``: :func:`pathnet._io.hash_tensors` of a loaded state dict;
* ``input_shape``: for models without an ``input_shape`` attribute.

Masks written by ``pathnet prune`` keep ``spec.to_meta()`` in ``mask.meta["model_spec"]``;
:func:`resolve_model_for_mask` fills what a later command did not give (the seed, the
arguments) from that record and refuses a contradiction with one line naming both values.

>>> spec = ModelSpec("mlp", {"sizes": [16, 8, 4]}, seed=3)
>>> model = spec.build()
>>> model.input_shape
(16,)
>>> ModelSpec.from_meta({"model_spec": spec.to_meta()}) == spec
True
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

__all__ = [
    "ModelSpec",
    "ModelSpecError",
    "load_entry",
    "load_state_dict",
    "model_and_mask_from_args",
    "model_from_args",
    "parse_input_shape",
    "parse_model_args",
    "resolve_model_for_mask",
    "spec_from_args",
]

_CHECKPOINT_FORMAT = "pathnet-checkpoint"  # pathnet.train.fit writes it; read here, not imported


class ModelSpecError(ValueError):
    """A model that cannot be built as asked: one line; ``option`` names the CLI option."""

    def __init__(self, message: str, option: str = "MODEL") -> None:
        super().__init__(f"pathnet.specs: {message}")
        self.message = message
        self.option = option

    def cli_message(self) -> str:
        """The message as the command line prints it, led by the option's name."""
        return f"{self.option}: {self.message}"


# ------------------------------------------------------------------ entries
def _split_entry(entry: str) -> tuple[str, str, str]:
    """``("zoo", name, "")``, ``("file", path, function)`` or ``("module", module, function)``."""
    if not isinstance(entry, str) or not entry.strip():
        raise ModelSpecError(f"expected a model name or entry point, got {entry!r}")
    if ":" not in entry or (len(entry) > 2 and entry[1] == ":" and entry.count(":") == 1):
        if entry.endswith(".py"):
            raise ModelSpecError(f"{entry!r} names a file but no function; write {entry}:FUNCTION")
        return "zoo", entry, ""
    where, func = entry.rsplit(":", 1)
    if not func.isidentifier():
        raise ModelSpecError(f"{entry!r}: {func!r} is not a function name")
    if where.endswith(".py") or "/" in where or os.sep in where:
        return "file", where, func
    if not all(part.isidentifier() for part in where.split(".")):
        raise ModelSpecError(
            f"{entry!r}: expected path/to/file.py:FUNCTION or package.module:FUNCTION"
        )
    return "module", where, func


def load_entry(entry: str) -> Callable[..., Any]:
    """The function a model entry names.

    Parameters
    ----------
    entry : str
        A zoo name, ``"path/to/file.py:function"`` or ``"package.module:function"``.

    Raises
    ------
    ModelSpecError
        Unknown zoo name, missing file or module, missing or non-callable function.

    Examples
    --------
    >>> load_entry("pathnet.models:mlp") is load_entry("mlp")
    True
    """
    kind, where, func = _split_entry(entry)
    if kind == "zoo":
        from pathnet import models

        try:
            return models.MODELS[where.lower()]
        except KeyError:
            raise ModelSpecError(
                f"unknown model {where!r}; expected a zoo name ({', '.join(sorted(models.MODELS))}),"
                " path/to/file.py:FUNCTION or package.module:FUNCTION"
            ) from None
    if kind == "file":
        path = Path(where)
        if not path.is_file():
            raise ModelSpecError(f"no model file {where!r} (from {entry!r})")
        name = f"_pathnet_model_{abs(hash(str(path.resolve())))}"
        loader = importlib.util.spec_from_file_location(name, path)
        if loader is None or loader.loader is None:
            raise ModelSpecError(f"cannot import {where!r} as Python (from {entry!r})")
        module = importlib.util.module_from_spec(loader)
        sys.modules[name] = module  # dataclasses and pickling look modules up here
        try:
            loader.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise  # an error inside the user's file keeps its traceback
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name is not None and where.startswith(exc.name):
                raise ModelSpecError(f"no module {where!r} (from {entry!r})") from None
            raise
    fn = getattr(module, func, None)
    if fn is None:
        raise ModelSpecError(f"{where!r} has no function {func!r}")
    if not callable(fn):
        raise ModelSpecError(f"{entry!r} is a {type(fn).__name__}, not a function")
    return fn  # type: ignore[no-any-return]


def _same_entry(a: str, b: str) -> bool:
    """Zoo names ignore case; files compare by file name and function (folders may move)."""
    ka, wa, fa = _split_entry(a)
    kb, wb, fb = _split_entry(b)
    if ka == "zoo" and kb == "zoo":
        return wa.lower() == wb.lower()
    if ka == "file" and kb == "file":
        return (Path(wa).name, fa) == (Path(wb).name, fb)
    try:
        return load_entry(a) is load_entry(b)  # "pathnet.models:mlp" is "mlp"
    except ModelSpecError:
        return a == b


# ------------------------------------------------------------------ option values
def parse_model_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings to keyword arguments; values are JSON where they parse.

    >>> parse_model_args(["in_channels=1", "sizes=[784, 10]", "name=x"])
    {'in_channels': 1, 'sizes': [784, 10], 'name': 'x'}
    """
    from pathnet._text import parse_options

    try:
        out = parse_options(pairs, "--model-arg")
    except ValueError as exc:
        raise ModelSpecError(
            f"expected key=value, got {str(exc).split(', got ')[-1]}", "--model-arg"
        ) from None
    for key, value in out.items():
        if isinstance(value, str) and value[:1] in "[{":
            raise ModelSpecError(f"{key}={value} is not valid JSON", "--model-arg")
        if not key.isidentifier():
            raise ModelSpecError(f"{key!r} is not an argument name", "--model-arg")
        if key == "seed":
            raise ModelSpecError(
                "give the seed with --seed, not --model-arg seed=...", "--model-arg"
            )
    return out


def parse_input_shape(text: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"3,32,32"`` (or a sequence) to a tuple of positive ints; None stays None.

    >>> parse_input_shape("1, 28, 28")
    (1, 28, 28)
    """
    if text is None:
        return None
    try:
        parts = (
            [int(p) for p in text.split(",")] if isinstance(text, str) else [int(p) for p in text]
        )
    except (TypeError, ValueError):
        parts = []
    if not parts or any(p < 1 for p in parts):
        raise ModelSpecError(
            f"expected positive integers C,H,W (per sample, no batch), got {text!r}",
            "--input-shape",
        )
    return tuple(parts)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state dict from a ``torch.save`` file or a ``pathnet train`` checkpoint.

    Read with ``torch.load(..., weights_only=True)``: no pickled code runs.

    Raises
    ------
    ModelSpecError
        Missing, unreadable, or not a mapping of names to tensors.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelSpecError(f"no weights file {str(path)!r}", "--weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on foreign or damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSpecError(
            f"cannot read {str(path)!r} as torch weights ({type(exc).__name__}: {first[:200]})",
            "--weights",
        ) from None
    if isinstance(state, dict) and state.get("format") == _CHECKPOINT_FORMAT:
        state = state.get("model")
    if not isinstance(state, Mapping) or not state:
        raise ModelSpecError(
            f"{str(path)!r} holds {type(state).__name__}, expected a state dict "
            "(model.state_dict()) or a `pathnet train` checkpoint",
            "--weights",
        )
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelSpecError(
            f"{str(path)!r} is not a state dict: {bad[0]!r} holds "
            f"{type(state[bad[0]]).__name__}, not a tensor",
            "--weights",
        )
    return dict(state)


def _check_weights(model: nn.Module, state: Mapping[str, Any], entry: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(
            f"missing {missing[:3]}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        )
    if extra:
        problems.append(
            f"unexpected {extra[:3]}" + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        )
    if shapes:
        problems.append(f"shape of {shapes[0]} (file vs model)")
    if problems:
        raise ModelSpecError(f"the weights do not fit {entry}: {'; '.join(problems)}", "--weights")


# ------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class ModelSpec:
    """Which model, built how: entry point, arguments, seed, weights hash, input shape.

    Parameters
    ----------
    entry : str
        Zoo name, ``"path/to/file.py:function"`` or ``"package.module:function"``.
    args : dict
        Keyword arguments of the function (JSON values).
    seed : int or None
        Seed of the initial weights. A function with a ``seed`` parameter receives it;
        any other is called with torch's global generator seeded (and restored after).
        None builds with seed 0.
    weights_sha256 : str or None
        :func:`pathnet._io.hash_tensors` of the state dict the model was loaded with.
    input_shape : tuple of int or None
        Set on the model as ``input_shape`` (needed when the function does not set it).
    """

    entry: str
    args: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    weights_sha256: str | None = None
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        _split_entry(self.entry)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0
        ):
            raise ModelSpecError(
                f"seed must be non-negative (an int, or None), got {self.seed!r}", "--seed"
            )
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", parse_input_shape(self.input_shape))

    def build(self, weights: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> nn.Module:
        """Call the entry point and load ``weights`` (a file or a state dict) if given.

        Raises
        ------
        ModelSpecError
            Anything the spec gets wrong: entry, arguments, non-module result, missing
            ``input_shape``, weights that do not fit or whose hash differs from
            ``weights_sha256``.
        """
        from pathnet._io import hash_tensors

        fn = load_entry(self.entry)
        model = self._call(fn)
        if self.input_shape is not None:
            setattr(model, "input_shape", self.input_shape)  # noqa: B010 (nn.Module typing)
        shape = getattr(model, "input_shape", None)
        if shape is None:
            raise ModelSpecError(
                f"{self.entry} built a {type(model).__name__} without an input_shape attribute; "
                "pass --input-shape C,H,W (per sample)",
                "--input-shape",
            )
        if weights is not None:
            state = (
                load_state_dict(weights)
                if isinstance(weights, (str, os.PathLike))
                else dict(weights)
            )
            _check_weights(model, state, self.entry)
            digest = hash_tensors(state)
            if self.weights_sha256 is not None and digest != self.weights_sha256:
                raise ModelSpecError(
                    f"weights have sha256 {digest[:12]}, the spec records {self.weights_sha256[:12]}",
                    "--weights",
                )
            model.load_state_dict(state)
        return model

    def _call(self, fn: Callable[..., Any]) -> nn.Module:
        import torch

        seed = 0 if self.seed is None else self.seed
        kwargs = dict(self.args)
        try:
            sig: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None  # a builtin or C function: call it and see
        takes_seed = sig is not None and "seed" in sig.parameters
        if takes_seed:
            kwargs["seed"] = seed
        if sig is not None:
            try:
                sig.bind(**kwargs)
            except TypeError as exc:
                raise ModelSpecError(
                    f"{self.entry} cannot be called with {self.args}: {exc}; it takes "
                    f"{[p for p in sig.parameters if p != 'seed']}",
                    "--model-arg",
                ) from None
        try:
            if takes_seed:
                model = fn(**kwargs)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = fn(**kwargs)
        except ValueError as exc:  # constructors refuse bad argument values this way
            raise ModelSpecError(
                f"{self.entry}({', '.join(f'{k}={v!r}' for k, v in self.args.items())}): {exc}",
                "--model-arg" if self.args else "MODEL",
            ) from None
        if not isinstance(model, nn.Module):
            raise ModelSpecError(
                f"{self.entry} returned {type(model).__name__!r}, expected a torch.nn.Module"
            )
        return model

    def to_meta(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``Mask.meta["model_spec"]``)."""
        return {
            "entry": self.entry,
            "args": dict(self.args),
            "seed": self.seed,
            "weights_sha256": self.weights_sha256,
            "input_shape": list(self.input_shape) if self.input_shape else None,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> ModelSpec | None:
        """The spec a mask's meta records, or None; reads ``to_meta()`` output or a mask meta.

        A mask written before specs existed has only ``model_seed`` (and a class name under
        ``model``, not an entry): its spec has an empty entry check, see
        :func:`resolve_model_for_mask`.
        """
        rec = meta.get("model_spec", meta if "entry" in meta else None)
        if isinstance(rec, Mapping) and isinstance(rec.get("entry"), str):
            shape = rec.get("input_shape")
            return cls(
                rec["entry"],
                dict(rec.get("args") or {}),
                rec.get("seed"),
                rec.get("weights_sha256"),
                tuple(shape) if shape else None,
            )
        return None


def _short(spec: ModelSpec) -> str:
    if spec.weights_sha256:
        return f"weights sha256 {spec.weights_sha256[:12]}"
    return "no --weights"


def resolve_model_for_mask(spec: ModelSpec, mask_meta: Mapping[str, Any] | None) -> ModelSpec:
    """The spec to build for a mask: fill what was not given from the mask's record.

    ``spec`` is what the user asked for (``seed=None``: not given; empty ``args``: none
    given). The mask's recorded seed, arguments and input shape fill the gaps (seed 0
    when nothing is recorded); a contradiction is refused.

    Raises
    ------
    ModelSpecError
        Another entry, seed, arguments or weights than the mask records; the message
        names both values and the option.

    Examples
    --------
    >>> meta = {"model_spec": ModelSpec("mlp", seed=3).to_meta()}
    >>> resolve_model_for_mask(ModelSpec("mlp"), meta).seed
    3
    >>> resolve_model_for_mask(ModelSpec("mlp"), None).seed
    0
    """
    meta = mask_meta or {}
    rec = ModelSpec.from_meta(meta)
    legacy_seed = meta.get("model_seed")
    if rec is None:
        seed = spec.seed if spec.seed is not None else legacy_seed
        if spec.seed is not None and legacy_seed is not None and spec.seed != legacy_seed:
            raise ModelSpecError(
                f"the mask was selected on seed-{legacy_seed} weights, got --seed {spec.seed}",
                "--seed",
            )
        return replace(spec, seed=0 if seed is None else int(seed))
    if not _same_entry(spec.entry, rec.entry):
        raise ModelSpecError(
            f"the mask was selected on model {rec.entry}, got {spec.entry}", "MODEL"
        )
    args = spec.args or rec.args
    if args != rec.args:
        raise ModelSpecError(
            f"the mask was selected with model arguments {rec.args}, got {spec.args}", "--model-arg"
        )
    if rec.weights_sha256 is not None and spec.weights_sha256 != rec.weights_sha256:
        raise ModelSpecError(
            f"the mask was selected on weights sha256 {rec.weights_sha256[:12]}, got {_short(spec)}",
            "--weights",
        )
    seed = spec.seed
    if spec.weights_sha256 is None:  # initial weights: the seed decides them
        if seed is not None and rec.seed is not None and seed != rec.seed:
            raise ModelSpecError(
                f"the mask was selected on seed-{rec.seed} weights, got --seed {seed}", "--seed"
            )
        seed = rec.seed if seed is None else seed
    shape = spec.input_shape or rec.input_shape
    return replace(spec, args=dict(args), seed=0 if seed is None else seed, input_shape=shape)


# ------------------------------------------------------------------ command-line options
def spec_from_args(args: Any) -> tuple[ModelSpec, dict[str, Any] | None]:
    """The spec the command-line options ask for, and the ``--weights`` state dict.

    ``args`` is an ``argparse.Namespace`` (or any object) with ``model`` and optionally
    ``model_arg`` (list of ``key=value``), ``num_classes``, ``seed`` (None: not given),
    ``weights`` and ``input_shape`` (``"C,H,W"``) attributes.
    """
    from pathnet._io import hash_tensors

    model_args = parse_model_args(getattr(args, "model_arg", None) or [])
    num_classes = getattr(args, "num_classes", None)
    if num_classes is not None:
        if num_classes < 1:
            raise ModelSpecError(f"must be a positive integer, got {num_classes}", "--num-classes")
        if model_args.get("num_classes", num_classes) != num_classes:
            raise ModelSpecError(
                f"{num_classes} contradicts --model-arg num_classes={model_args['num_classes']}",
                "--num-classes",
            )
        fn = load_entry(args.model)
        try:
            takes = "num_classes" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes = True
        if not takes:
            raise ModelSpecError(
                f"{args.model} takes no num_classes argument"
                + (" (set the last of --model-arg sizes=[...])" if args.model == "mlp" else ""),
                "--num-classes",
            )
        model_args["num_classes"] = num_classes
    weights = getattr(args, "weights", None)
    state = load_state_dict(weights) if weights else None
    spec = ModelSpec(
        args.model,
        model_args,
        seed=getattr(args, "seed", None),
        weights_sha256=hash_tensors(state) if state is not None else None,
        input_shape=parse_input_shape(getattr(args, "input_shape", None)),
    )
    return spec, state


def model_from_args(args: Any) -> tuple[nn.Module, ModelSpec]:
    """``(model, spec)`` from the command-line options (see :func:`spec_from_args`).

    An omitted seed builds with seed 0; ``spec.seed`` is the seed used.
    """
    spec, state = spec_from_args(args)
    if spec.seed is None:
        spec = replace(spec, seed=0)
    return spec.build(state), spec


def model_and_mask_from_args(
    args: Any, mask_option: str = "mask"
) -> tuple[nn.Module, ModelSpec, Any]:
    """``(model, spec, mask)`` from the command-line options and a mask file (mask None
    when ``args.<mask_option>`` is empty).

    The model is built as the mask records (:func:`resolve_model_for_mask`: its seed when
    none is given, its model arguments when none are given); ``spec.seed`` is the seed
    used. A contradiction raises :class:`ModelSpecError`; a mask that does not fit the
    model, ``ValueError``; an unreadable mask file, ``pathnet.MaskFileError``.
    """
    from pathnet.mask import Mask

    path = getattr(args, mask_option, None)
    if not path:
        model, spec = model_from_args(args)
        return model, spec, None
    mask = Mask.load(path)
    request, state = spec_from_args(args)
    try:
        spec = resolve_model_for_mask(request, mask.meta)
    except ModelSpecError as exc:
        if exc.option == "MODEL":  # another model: say how it differs if the shapes do
            rec = ModelSpec.from_meta(mask.meta)
            args = request.args or (rec.args if rec is not None else {})
            try:
                other = replace(request, args=args, seed=request.seed or 0).build(state)
            except ModelSpecError:
                raise exc from None
            mask.check(other)
        raise
    model = spec.build(state)
    mask.check(model)
    return model, spec, mask
