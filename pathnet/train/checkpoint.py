"""Checkpoints of a training run: written atomically, read without running pickled code,
validated field by field, restored with the mask re-applied.

A checkpoint (``checkpoint.pt`` in a run's ``out_dir``) is a ``torch.save`` dict with a
versioned header (``format`` ``"pathnet-checkpoint"``, ``version``), the run's ``config``
(the :class:`~pathnet.train.config.TrainConfig` fields, the resolved milestones, the seed,
the mask's fingerprint, the data size), ``epoch`` (completed), ``step`` (optimizer steps),
the ``model``, ``optimizer``, ``scheduler`` and ``scaler`` states, the random states
(``rng``) and the ``history``. :func:`load_checkpoint` refuses anything else with a
:class:`CheckpointError` naming the file and the problem.

Resuming with other settings is refused, with one documented exception
(:func:`config_diff`): a run may be *extended*: ``epochs`` may grow, and the
milestones may change at epochs not yet trained; the remaining epochs then follow the
new schedule (:func:`restore_training`).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "x.pt"
>>> write_torch_file(path, {"format": "pathnet-other", "version": 1})
>>> load_checkpoint(path)
Traceback (most recent call last):
...
pathnet.train.checkpoint.CheckpointError: pathnet.train: ... is not a pathnet checkpoint; ...
"""

from __future__ import annotations

import bisect
import contextlib
import io
import json
import math
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pathnet._io import atomic_write_bytes, check_header, hash_tensors, write_csv
from pathnet.mask import Mask, apply_mask

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "IsolatedRNG",
    "checkpoint_errors",
    "config_diff",
    "load_checkpoint",
    "mask_fingerprint",
    "read_torch_file",
    "restore_model",
    "restore_training",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
    "write_metrics",
    "write_torch_file",
]

_PREFIX = "pathnet.train"
FORMAT = "pathnet-checkpoint"
VERSION = 1

#: File name of the checkpoint inside ``out_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "time_s")
#: Config entries that do not change the result, so may differ when resuming.
COSMETIC = ("eval_batch_size",)
_HINT = "delete it (or choose another out_dir) to start over, or pass resume=False to overwrite it"
_BIG = 2**62


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: truncated, foreign, damaged, or not pathnet's."""


# ------------------------------------------------------------------ files
def write_torch_file(path: str | Path, payload: Mapping[str, Any]) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save(dict(payload), buf)
    atomic_write_bytes(path, buf.getvalue())


def read_torch_file(
    path: str | Path, *, format: str, version: int, what: str, hint: str = _HINT
) -> dict[str, Any]:
    """Read a versioned ``torch.save`` dict with ``weights_only=True`` (no pickled code).

    Raises :class:`CheckpointError` for a missing, truncated, corrupt or foreign file, or
    a newer version (the header is checked by :func:`pathnet._io.check_header`).
    """
    path = Path(path)
    name = f"{what} {str(path)!r}"
    if not path.is_file():
        raise CheckpointError(f"{_PREFIX}: no {what} at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on damaged files
        raise CheckpointError(
            f"{_PREFIX}: cannot read {name}: it is truncated or corrupt "
            f"({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != format:
        raise CheckpointError(f"{_PREFIX}: {str(path)!r} is not a pathnet {what}; {hint}")
    check_header(
        state, format=format, version=version, what=f"{_PREFIX}: {name}", error=CheckpointError
    )
    return state


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a checkpoint (``state`` without the header) atomically."""
    write_torch_file(path, {"format": FORMAT, "version": VERSION, **state})


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_config(config: Any, fail: Any) -> None:
    if not isinstance(config, dict):
        fail(f"its config is a {type(config).__name__}, not a dict")
    if not _whole(config.get("epochs"), 1, _BIG):
        fail(f"its config's epochs is {config.get('epochs')!r}")
    if not _whole(config.get("seed"), 0, 2**63 - 1):
        fail(f"its config's seed is {config.get('seed')!r}")
    for key, value in config.items():
        plain = value is None or isinstance(value, (bool, str)) or _number(value)
        if not isinstance(key, str) or not (plain or key == "milestones"):
            fail(f"its config holds {key!r}: {value!r}")
    ms = config.get("milestones")
    if not isinstance(ms, list) or not all(_whole(m, 0, _BIG) for m in ms):
        fail(f"its config's milestones are {ms!r}")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`pathnet.train.fit.fit` (or ``fit_ddp``).

    Never executes pickled code, and checks every field's type and range.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupt, not a pathnet checkpoint, or damaged
        (a field missing, of the wrong type, or out of range, such as an ``epoch`` above
        the run's ``epochs``).
    """
    state = read_torch_file(path, format=FORMAT, version=VERSION, what="checkpoint")

    def fail(problem: str) -> None:
        raise CheckpointError(f"{_PREFIX}: checkpoint {str(path)!r} is damaged: {problem}; {_HINT}")

    keys = ("epoch", "step", "config", "model", "optimizer", "scheduler", "rng", "history")
    missing = [k for k in keys if k not in state]
    if missing:
        fail(f"it lacks {missing}")
    config = state["config"]
    _check_config(config, fail)
    epoch = state["epoch"]
    if not _whole(epoch, 0, _BIG):
        fail(f"epoch is {epoch!r}")
    if epoch > config["epochs"]:
        fail(f"it records epoch {epoch} of a {config['epochs']}-epoch run")
    if not _whole(state["step"], 0, _BIG):
        fail(f"step is {state['step']!r}")
    for key in ("model", "optimizer", "scheduler", "rng"):
        if not isinstance(state[key], dict):
            fail(f"{key} is a {type(state[key]).__name__}, not a dict")
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state["model"].items()):
        fail("model is not a state dict of named tensors")
    _check_history(state["history"], epoch, fail)
    if state.get("scaler") is not None and not isinstance(state["scaler"], dict):
        fail("scaler is not a dict")
    return state


def _number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and abs(value) < 2**62
        and math.isfinite(value)
    )


def _check_history(history: Any, epoch: int, fail: Any) -> None:
    if not isinstance(history, list) or len(history) != epoch:
        fail(f"history is not a list of {epoch} rows")
    for i, row in enumerate(history, start=1):
        if not isinstance(row, dict) or row.get("epoch") != i:
            fail(f"history row {i} is not the row of epoch {i}")
        for key, value in row.items():
            if not isinstance(key, str) or not (value is None or _number(value)):
                fail(f"history row {i} holds {key!r}: {value!r}")


def _like(saved: Any, fresh: Any) -> bool:
    """Whether a saved state entry has the kind of value a fresh object's state holds."""
    if isinstance(fresh, bool) or fresh is None:
        return saved is None or isinstance(saved, bool)
    if isinstance(fresh, (int, float)):
        return _number(saved) and (isinstance(fresh, float) or isinstance(saved, int))
    if isinstance(fresh, Mapping):  # e.g. the milestones Counter
        return isinstance(saved, Mapping) and all(
            _whole(k, 0, _BIG) and _whole(v, 0, _BIG) for k, v in saved.items()
        )
    if isinstance(fresh, (list, tuple)):
        return isinstance(saved, (list, tuple)) and all(_number(v) for v in saved)
    return isinstance(saved, type(fresh))


def _check_state_like(
    saved: Any, fresh: Mapping[str, Any], what: str, required: Sequence[str]
) -> None:
    """``saved`` has ``required`` and only ``fresh``'s keys, each with the kind of value
    ``fresh`` holds there (another torch version may have fewer entries)."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{what} is not a dict")
    extra = sorted(map(str, set(saved) - set(fresh)))
    missing = sorted(set(required) - set(saved))
    if extra or missing:
        raise CheckpointError(f"{what} has unknown entries {extra} or lacks {missing}")
    for key, value in saved.items():
        if not _like(value, fresh[key]):
            raise CheckpointError(f"{what} holds {key}={value!r}")


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer, what: str) -> None:
    fresh = optimizer.state_dict()
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        raise CheckpointError(f"{what}: optimizer is not an optimizer state")
    groups, state = saved["param_groups"], saved["state"]
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        raise CheckpointError(f"{what}: optimizer has other parameter groups")
    for g, f in zip(groups, fresh["param_groups"]):
        if not isinstance(g, dict):
            raise CheckpointError(f"{what}: optimizer has a damaged parameter group")
        params = g.get("params")
        if not isinstance(params, list) or len(params) != len(f["params"]):
            raise CheckpointError(f"{what}: optimizer has other parameters")
        _check_state_like(
            {k: v for k, v in g.items() if k != "params"},
            {k: v for k, v in f.items() if k != "params"},
            f"{what}: optimizer group",
            ("lr", "initial_lr", "momentum", "weight_decay"),
        )
    n_params = sum(len(f["params"]) for f in fresh["param_groups"])
    if not isinstance(state, dict) or not all(
        _whole(k, 0, n_params - 1)
        and isinstance(v, dict)
        and all(isinstance(t, Tensor) or t is None for t in v.values())
        for k, v in state.items()
    ):
        raise CheckpointError(f"{what}: optimizer state is damaged")


@contextlib.contextmanager
def checkpoint_errors(path: str | Path | None) -> Iterator[None]:
    """Turn what torch raises on a checkpoint that does not fit into a CheckpointError."""
    try:
        yield
    except CheckpointError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:
        raise CheckpointError(
            f"{_PREFIX}: checkpoint {str(path)!r} does not fit this model or mask mode, or "
            f"is damaged ({type(exc).__name__}: {exc})"
        ) from exc


# ------------------------------------------------------------------ config
def mask_fingerprint(mask: Mapping[str, Tensor] | None) -> str | None:
    """SHA-256 of a mask's names, shapes and bits (None for no mask).

    >>> a = mask_fingerprint({"w": torch.tensor([True, False])})
    >>> a == mask_fingerprint({"w": torch.tensor([True, False])}), len(a)
    (True, 64)
    """
    if mask is None:
        return None
    return hash_tensors({k: torch.as_tensor(v).bool() for k, v in mask.items()})


def config_diff(saved: Mapping[str, Any], now: Mapping[str, Any], *, completed: int) -> list[str]:
    """Why a run with config ``now`` cannot resume a checkpoint of ``saved`` (empty: it can).

    Every entry must agree, except the cosmetic ``eval_batch_size`` and the schedule's
    length: ``epochs`` may grow (never shrink), and ``milestones`` may change at epochs
    not yet trained (``>= completed``), so a finished run can be extended.

    >>> old = {"epochs": 1, "milestones": [], "lr": 0.1}
    >>> config_diff(old, {"epochs": 2, "milestones": [1], "lr": 0.1}, completed=1)
    []
    >>> config_diff(old, {"epochs": 2, "milestones": [0], "lr": 0.1}, completed=1)
    ['milestones: [] in the checkpoint, [0] now (the epochs already trained would change; to extend the run give milestones that keep [] before epoch 1)']
    """
    special = ("epochs", "milestones", *COSMETIC)
    keys = sorted((set(saved) | set(now)) - set(special))
    diff = [
        f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now"
        for k in keys
        if saved.get(k) != now.get(k)
    ]
    if now["epochs"] < saved["epochs"]:
        diff.append(
            f"epochs: {saved['epochs']} in the checkpoint, {now['epochs']} now (a run can be "
            f"extended, not shortened)"
        )
    old_ms, new_ms = list(saved["milestones"]), list(now["milestones"])
    if [m for m in old_ms if m < completed] != [m for m in new_ms if m < completed]:
        past = [m for m in old_ms if m < completed]
        diff.append(
            f"milestones: {old_ms} in the checkpoint, {new_ms} now (the epochs already "
            f"trained would change; to extend the run give milestones that keep {past} "
            f"before epoch {completed})"
        )
    return diff


# ------------------------------------------------------------------ restoring
def restore_model(
    model: nn.Module,
    saved: Mapping[str, Any],
    mask: Mask | None,
    mode: str,
    path: str | Path | None,
) -> None:
    """Load the checkpoint's weights, then re-apply ``mask`` (never the checkpoint's).

    The model state may hold a mask (``parametrize``/``prune`` buffers) or non-zero
    weights at pruned positions (a damaged or tampered file); re-applying the run's own
    mask with :func:`pathnet.apply_mask` after loading makes both harmless.
    """
    with checkpoint_errors(path):
        model.load_state_dict(saved["model"])
    if mask is not None:
        apply_mask(model, own_copy(mask), mode=mode)  # type: ignore[arg-type]


def restore_training(
    saved: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    *,
    milestones: Sequence[int],
    gamma: float,
    path: str | Path | None,
) -> None:
    """Load the optimizer, schedule and scaler states.

    When the run is extended with other milestones (see :func:`config_diff`), the
    schedule takes the new ones and the learning rate of the next epoch is what they
    give: ``lr * gamma ** (milestones <= completed epochs)``.
    """
    what = f"{_PREFIX}: checkpoint {str(path)!r} is damaged"
    _check_optimizer(saved["optimizer"], optimizer, what)
    _check_state_like(
        saved["scheduler"],
        scheduler.state_dict(),
        f"{what}: scheduler",
        ("milestones", "gamma", "base_lrs", "last_epoch"),
    )
    if saved["scheduler"]["last_epoch"] != saved["epoch"]:
        raise CheckpointError(f"{what}: its schedule is not at epoch {saved['epoch']}")
    with checkpoint_errors(path):
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved.get("scaler") is not None:
            scaler.load_state_dict(saved["scaler"])
    for group in optimizer.param_groups:
        for p in group["params"]:
            for value in optimizer.state.get(p, {}).values():
                if isinstance(value, Tensor) and value.dim() and value.shape != p.shape:
                    raise CheckpointError(f"{what}: optimizer state of another shape")
    new = sorted(int(m) for m in milestones)
    if new != sorted(saved["config"]["milestones"]):
        completed = int(saved["epoch"])
        scheduler.milestones = Counter(new)
        drops = bisect.bisect_right(new, completed)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * gamma**drops
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def own_copy(mask: Mask) -> Mask:
    """A copy of ``mask`` whose tensors nothing else holds (a model may write into them)."""
    return Mask(
        {k: v.clone() for k, v in mask.items()}, meta=mask.meta, tied=getattr(mask, "tied", ())
    )


# ------------------------------------------------------------------ random states
def rng_state(device: torch.device) -> dict[str, Any]:
    """The global torch (and CUDA), numpy and python random states."""
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 (the global state)
    np_state = {
        **np_state,
        "state": {**np_state["state"], "key": np_state["state"]["key"].tolist()},
    }
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": np_state,
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    """Seed torch (dropout and anything else on the global generators), numpy, python."""
    ss = np.random.SeedSequence([seed, 0x7061746E])  # "patn": independent of the data order
    s_torch, s_np, s_py = (int(s) for s in ss.generate_state(3, dtype=np.uint32))
    torch.manual_seed(s_torch)
    np.random.seed(s_np)  # noqa: NPY002
    random.seed(s_py)


class IsolatedRNG:
    """Restore the caller's global torch, CUDA, numpy and python random states on exit."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> IsolatedRNG:
        self.saved = rng_state(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        set_rng_state(self.saved, self.device)


# ------------------------------------------------------------------ metrics files
def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_metrics(out_dir: Path, history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """``metrics.csv`` (one row per epoch) and ``metrics.json`` (``summary`` + history)."""
    rows = [{k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS} for row in history]
    if rows:
        write_csv(rows, out_dir / "metrics.csv")
    else:
        atomic_write_bytes(out_dir / "metrics.csv", (",".join(METRIC_COLUMNS) + "\n").encode())
    doc = {**summary, "history": [{k: _finite(v) for k, v in r.items()} for r in history]}
    atomic_write_bytes(out_dir / "metrics.json", (json.dumps(doc, indent=1) + "\n").encode())
