"""Training hyper-parameters, declared once.

:class:`TrainConfig` is the single declaration of every training hyper-parameter: its
fields drive :func:`pathnet.train.fit`, data-parallel training, the sweep/experiment
trials, checkpoints (the config is stored with them) and the command line
(:func:`add_arguments` generates the ``pathnet train`` options from the fields, as
open_lth's hparams do). Nothing else restates them.

>>> cfg = TrainConfig(epochs=8)
>>> cfg.resolved_milestones()
(4, 6)
>>> TrainConfig.from_dict(cfg.to_dict()) == cfg
True
>>> TrainConfig(lr=-1.0)
Traceback (most recent call last):
...
ValueError: pathnet.train.TrainConfig: lr must be positive (a finite number > 0), got -1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MASK_MODES", "TrainConfig", "add_arguments", "from_namespace"]

_PREFIX = "pathnet.train.TrainConfig"

MaskMode = Literal["hard", "parametrize", "prune"]
#: The ways a mask can be held on a model (see :func:`pathnet.apply_mask`).
MASK_MODES: tuple[str, ...] = ("hard", "parametrize", "prune")


def _help(text: str) -> dict[str, Any]:
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """The PHEW paper's training recipe by default (SGD, Nesterov momentum 0.9, lr 0.1
    divided by 10 at 50% and 75% of the epochs, batch 128, weight decay 1e-4, 160 epochs).

    Every field is validated on construction; a wrong value raises ``ValueError`` naming
    the field and what was expected.
    """

    epochs: int = field(default=160, metadata=_help("training epochs (the paper: 160)"))
    batch_size: int = field(default=128, metadata=_help("batch size (over all ranks)"))
    lr: float = field(default=0.1, metadata=_help("initial learning rate"))
    momentum: float = field(default=0.9, metadata=_help("SGD momentum"))
    nesterov: bool = field(default=True, metadata=_help("Nesterov momentum"))
    weight_decay: float = field(default=1e-4, metadata=_help("L2 weight decay"))
    milestones: tuple[int, ...] | None = field(
        default=None,
        metadata=_help(
            "epochs at which lr is multiplied by gamma (default: 50%% and 75%% of epochs)"
        ),
    )
    gamma: float = field(default=0.1, metadata=_help("lr factor at each milestone"))
    mask_mode: MaskMode = field(
        default="hard",
        metadata=_help("how the mask is held on the model: hard, parametrize, prune"),
    )
    augment: bool | None = field(
        default=None, metadata=_help("random crop and flip (default: auto, the data set's default)")
    )
    amp: bool = field(default=False, metadata=_help("mixed precision (CUDA only)"))
    eval_batch_size: int = field(default=1024, metadata=_help("batch size of evaluation"))

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{_PREFIX}: {name} must be an integer >= 1, got {value!r}")
        for name, low, strict in (
            ("lr", 0.0, True),
            ("momentum", 0.0, False),
            ("weight_decay", 0.0, False),
            ("gamma", 0.0, True),
        ):
            value = getattr(self, name)
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and (value > low if strict else value >= low)
            )
            if not ok:
                want = "positive (a finite number > 0)" if strict else "a finite number >= 0"
                raise ValueError(f"{_PREFIX}: {name} must be {want}, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("nesterov", "amp"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{_PREFIX}: {name} must be True or False, got {getattr(self, name)!r}"
                )
        if self.augment is not None and not isinstance(self.augment, bool):
            raise ValueError(
                f"{_PREFIX}: augment must be True, False or None, got {self.augment!r}"
            )
        if self.mask_mode not in MASK_MODES:
            raise ValueError(
                f"{_PREFIX}: mask_mode must be one of {', '.join(MASK_MODES)}, got {self.mask_mode!r}"
            )
        if self.milestones is not None:
            ms = self.milestones
            if isinstance(ms, (str, bytes)) or not isinstance(ms, Sequence):
                raise ValueError(
                    f"{_PREFIX}: milestones must be a list of epochs or None, got {ms!r}"
                )
            if any(isinstance(m, bool) or not isinstance(m, int) or m < 0 for m in ms):
                raise ValueError(f"{_PREFIX}: milestones must be epochs >= 0, got {list(ms)!r}")
            object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in ms)))

    # ------------------------------------------------------------------ helpers
    def resolved_milestones(self) -> tuple[int, ...]:
        """The milestones in force: the given ones, or the default rule.

        The default drops the lr at 50% and 75% of the run: epochs ``epochs // 2`` and
        ``3 * epochs // 4`` (0-based; 80 and 120 of 160), keeping those strictly between 0
        and ``epochs`` and each epoch once. So a short run never drops the lr twice at
        the same epoch (100x at once): 2 epochs drop once, after the first; 3 epochs after
        the first and the second; 1 epoch never.

        >>> [TrainConfig(epochs=e).resolved_milestones() for e in (1, 2, 3, 4, 160)]
        [(), (1,), (1, 2), (2, 3), (80, 120)]
        """
        if self.milestones is not None:
            return self.milestones
        e = self.epochs
        return tuple(sorted({m for m in (e // 2, (3 * e) // 4) if 0 < m < e}))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        if out["milestones"] is not None:
            out["milestones"] = list(out["milestones"])
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are refused by name."""
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"{_PREFIX}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(cls.field_names())}"
            )
        kwargs = dict(values)
        if isinstance(kwargs.get("milestones"), list):
            kwargs["milestones"] = tuple(kwargs["milestones"])
        return cls(**kwargs)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The hyper-parameters' names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))


# ---------------------------------------------------------------- command line
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_bool(text: str) -> bool | None:
    return None if text.lower() in ("auto", "none", "default") else _bool(text)


def add_arguments(
    parser: argparse.ArgumentParser,
    *,
    defaults: Mapping[str, Any] | None = None,
    exclude: Sequence[str] = (),
    help_overrides: Mapping[str, str] | None = None,
) -> None:
    """Add one option per :class:`TrainConfig` field to ``parser``.

    ``--batch-size 64``, ``--milestones 80 120``, ``--nesterov false``, ``--augment auto``...
    Options default to ``None`` in the namespace (meaning "the config's default", which
    the help shows), so :func:`from_namespace` can tell what the user set.
    ``defaults`` replaces a field's default (``pathnet imp`` trains 1 epoch per round).
    """
    base = TrainConfig(**(dict(defaults) if defaults else {}))
    overrides = dict(help_overrides or {})
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        default = getattr(base, f.name)
        text = overrides.get(f.name, f.metadata.get("help", f.name))
        shown = "50%% and 75%% of epochs" if f.name == "milestones" and default is None else default
        if isinstance(shown, tuple):
            shown = " ".join(map(str, shown))
        text = text if "default" in text else f"{text} (default {shown})"
        kwargs: dict[str, Any] = {"default": None, "help": text}
        if f.name == "milestones":
            kwargs.update(type=int, nargs="+", metavar="EPOCH")
        elif f.name == "mask_mode":
            kwargs.update(choices=MASK_MODES)
        elif f.name == "augment":
            kwargs.update(type=_optional_bool, metavar="{true,false,auto}")
        elif f.name in ("nesterov", "amp"):
            # `--amp` alone means true; `--nesterov false` switches the default off.
            kwargs.update(type=_bool, nargs="?", const=True, metavar="BOOL")
        elif isinstance(f.default, bool):
            kwargs.update(type=_bool, metavar="BOOL")
        elif isinstance(f.default, int):
            kwargs.update(type=int, metavar="N")
        else:
            kwargs.update(type=float, metavar="X")
        parser.add_argument(_flag(f.name), dest=f"train_{f.name}", **kwargs)
    parser.set_defaults(_train_defaults=dict(defaults or {}))


def from_namespace(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that :func:`add_arguments`' options describe.

    Raises ``ValueError`` naming the option for a value the config refuses.
    """
    values: dict[str, Any] = dict(getattr(args, "_train_defaults", {}) or {})
    for name in TrainConfig.field_names():
        value = getattr(args, f"train_{name}", None)
        if value is not None:
            values[name] = tuple(value) if name == "milestones" else value
    try:
        return TrainConfig(**values)
    except ValueError as exc:
        msg = str(exc).replace(f"{_PREFIX}: ", "")
        name = msg.split(" ", 1)[0]
        raise ValueError(f"{_flag(name)}: {msg}") from None
