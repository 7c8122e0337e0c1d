"""Masked training with the PHEW paper's recipe, checkpointed every epoch and resumable.

:func:`fit` trains a model, optionally under a :class:`~pathnet.Mask`, with SGD
(Nesterov momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10 at 50% and
75% of the epochs) on any torch device. Every epoch it writes the metrics
(``metrics.csv``, ``metrics.json``) and a checkpoint (``checkpoint.pt``: model,
optimizer, scheduler, AMP scaler, the torch/numpy/python random states and the
data-order position, the history) atomically into ``out_dir``; ``resume=True`` picks the
run up from that checkpoint and, on the CPU, finishes it bitwise identical to a run that
was never interrupted.

>>> import torch
>>> from pathnet import models
>>> from pathnet.train.fit import fit
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(256, 4, generator=g)
>>> y = (x[:, 0] > 0).long()
>>> res = fit(models.mlp([4, 8, 2], seed=0), None, (x, y), epochs=4, batch_size=32,
...           seed=0, progress=False)
>>> res.final["train_acc"] > 0.8
True
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathnet._io import atomic_write_bytes
from pathnet._random import SeedLike, make_rng
from pathnet.data import Dataset, loader
from pathnet.mask import Mask, MaskMode, apply_mask

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "FitResult",
    "evaluate",
    "fit",
    "load_checkpoint",
    "mask_fingerprint",
    "resolve_device",
]

_PREFIX = "pathnet.train.fit"
_FORMAT = "pathnet-checkpoint"
_VERSION = 1

#: File name of the checkpoint inside ``out_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
_METRIC_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "time_s")

DataLike = Dataset | tuple[Tensor, Tensor]


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: truncated, foreign, or not pathnet's."""


@dataclass
class FitResult:
    """What :func:`fit` returns; fields read as attributes or as keys (``result["final"]``).

    Attributes
    ----------
    history : list of dict
        One row per completed epoch (including those of earlier, resumed runs): ``epoch``
        (1-based), ``lr``, ``train_loss``, ``train_acc`` (running, in train mode),
        ``test_loss`` and ``test_acc`` (None without test data), ``time_s``.
    final : dict
        The last row of ``history`` (empty if no epoch completed).
    model : torch.nn.Module
        The trained model (the one passed in, modified in place).
    epochs : int
        Epochs the run is planned for.
    epochs_completed : int
        Epochs completed so far, counting resumed ones.
    epochs_run : int
        Epochs trained by this call.
    resumed_from : int or None
        Epochs already completed in the checkpoint this call resumed from.
    completed : bool
        Whether all ``epochs`` are done (False after ``stop_after``).
    seed : int
        The seed used (drawn at random when ``seed=None`` was passed).
    device : str
    out_dir : pathlib.Path or None
    """

    history: list[dict[str, Any]]
    model: nn.Module
    epochs: int
    epochs_completed: int
    epochs_run: int
    resumed_from: int | None
    completed: bool
    seed: int
    device: str
    out_dir: Path | None
    final: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.final and self.history:
            self.final = dict(self.history[-1])

    def __getitem__(self, key: str) -> Any:
        """Dict-style access to the fields (``result["final"]``), as for a plain dict."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__dataclass_fields__ else default

    @property
    def test_acc(self) -> float | None:
        """Final test accuracy (None without test data or epochs)."""
        return self.final.get("test_acc")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (everything but the model)."""
        return {
            "history": self.history,
            "final": self.final,
            "epochs": self.epochs,
            "epochs_completed": self.epochs_completed,
            "epochs_run": self.epochs_run,
            "resumed_from": self.resumed_from,
            "completed": self.completed,
            "seed": self.seed,
            "device": self.device,
            "out_dir": str(self.out_dir) if self.out_dir is not None else None,
        }


# --------------------------------------------------------------------------------------
# Devices and data.
# --------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) is CUDA when available, else the CPU; anything else as given.

    Raises ``ValueError`` for a CUDA device when CUDA is not available.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{_PREFIX}: device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, "
            f"got {device!r}"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{_PREFIX}: device {device!r} asked for, but CUDA is not available")
        if dev.index is None:  # "cuda" -> "cuda:N", so that device comparisons hold
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


class _TensorBatches:
    """Batches of an ``(x, y)`` pair, ordered like :class:`pathnet.data.BatchLoader`.

    Pass ``k`` draws its order from a generator seeded with ``(seed, k)``; no augmentation.
    """

    def __init__(
        self, x: Tensor, y: Tensor, batch_size: int, shuffle: bool, seed: int, device: torch.device
    ) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.device = device
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        n = len(self.y)
        if self.shuffle:
            state = np.random.SeedSequence([self.seed, epoch]).generate_state(2, dtype=np.uint32)
            gen = torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        order = order.to(self.x.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield (
                self.x[idx].to(self.device, non_blocking=True),
                self.y[idx].to(self.device, non_blocking=True),
            )


def _check_data(data: Any, what: str) -> DataLike:
    if isinstance(data, Dataset):
        if len(data) == 0:
            raise ValueError(f"{_PREFIX}: {what} is empty")
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(f"{_PREFIX}: {what} must be a Dataset or a tuple (x, y) of tensors")
        if not x.is_floating_point():
            raise ValueError(f"{_PREFIX}: {what} inputs must be floating point, got {x.dtype}")
        if y.dim() != 1 or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(
                f"{_PREFIX}: {what} labels must be a 1-D integer tensor, got "
                f"{y.dtype} of shape {tuple(y.shape)}"
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{_PREFIX}: {what} has {x.shape[0]} inputs but {y.shape[0]} labels")
        if y.shape[0] == 0:
            raise ValueError(f"{_PREFIX}: {what} is empty")
        return (x, y.long())
    raise TypeError(
        f"{_PREFIX}: {what} must be a pathnet Dataset or a tuple (x, y) of tensors, got "
        f"{type(data).__name__}"
    )


def _batches(
    data: DataLike,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    augment: bool | None,
    device: torch.device,
) -> Any:
    data = _to_device(data, device)
    if isinstance(data, Dataset):
        return loader(
            data, batch_size=batch_size, shuffle=shuffle, seed=seed, augment=augment, device=device
        )
    if augment:
        raise ValueError(
            f"{_PREFIX}: augment=True needs a pathnet Dataset (CIFAR-style crops and flips); "
            f"tuples (x, y) are used as they are"
        )
    x, y = data
    return _TensorBatches(x, y, batch_size, shuffle, seed, device)


def _to_device(data: DataLike, device: torch.device) -> DataLike:
    """Move a whole data set to an accelerator once, so that batches need no copies."""
    if device.type == "cpu":
        return data
    if isinstance(data, Dataset):
        return data if data.images.device == device else data.to(device)
    x, y = data
    return (x.to(device), y.to(device))


def _n_samples(data: DataLike) -> int:
    return len(data) if isinstance(data, Dataset) else int(data[1].shape[0])


def _autocast(device: torch.device, amp: bool) -> Any:
    if amp:
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return torch.autocast(device_type=device.type, enabled=False)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataLike,
    *,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    amp: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``, in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
    data : Dataset or tuple (x, y) of tensors
    batch_size : int, default 1024
    device : str or torch.device, optional
        Default: the device of the model's first parameter.
    amp : bool, default False
        float16 autocast (CUDA only).

    Returns
    -------
    (loss, accuracy) : tuple of float
    """
    data = _check_data(data, "data")
    if device is None:
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
    else:
        dev = resolve_device(device)
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=dev)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    try:
        for x, y in _batches(data, batch_size, shuffle=False, seed=0, augment=False, device=dev):
            with _autocast(dev, amp and dev.type == "cuda"):
                out = model(x)
            total_loss += F.cross_entropy(out.float(), y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
    finally:
        model.train(was_training)
    n = _n_samples(data)
    return float(total_loss) / n, int(correct) / n


# --------------------------------------------------------------------------------------
# Random states, checkpoints, metrics files.
# --------------------------------------------------------------------------------------


def _rng_state(device: torch.device) -> dict[str, Any]:
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


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])


def _seed_everything(seed: int) -> None:
    """Seed torch (dropout and anything else on the global generators), numpy, python."""
    ss = np.random.SeedSequence([seed, 0x7061746E])  # "patn": independent of the data order
    s_torch, s_np, s_py = (int(s) for s in ss.generate_state(3, dtype=np.uint32))
    torch.manual_seed(s_torch)
    np.random.seed(s_np)  # noqa: NPY002
    random.seed(s_py)


class _IsolatedRNG:
    """Restore the caller's global torch, CUDA, numpy and python random states on exit."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> _IsolatedRNG:
        self.saved = _rng_state(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        _set_rng_state(self.saved, self.device)


def mask_fingerprint(mask: Mapping[str, Tensor] | None) -> str | None:
    """SHA-256 of a mask's names, shapes and bits (None for no mask)."""
    if mask is None:
        return None
    h = hashlib.sha256()
    for name in sorted(mask):
        t = torch.as_tensor(mask[name]).detach().cpu().bool()
        h.update(name.encode() + b"\0" + repr(tuple(t.shape)).encode() + b"\0")
        h.update(np.packbits(t.numpy().ravel()).tobytes())
    return h.hexdigest()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit`, never executing pickled code.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupt, or not a pathnet checkpoint.
    """
    path = Path(path)
    hint = (
        "delete it (or choose another out_dir) to start over, or pass resume=False to overwrite it"
    )
    if not path.is_file():
        raise CheckpointError(f"{_PREFIX}: no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on damaged files
        raise CheckpointError(
            f"{_PREFIX}: cannot read checkpoint {str(path)!r}: it is truncated or corrupt "
            f"({type(exc).__name__}: {exc}); {hint}"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointError(f"{_PREFIX}: {str(path)!r} is not a pathnet checkpoint; {hint}")
    if int(state.get("version", -1)) > _VERSION:
        raise CheckpointError(
            f"{_PREFIX}: {str(path)!r} has checkpoint version {state.get('version')}; this "
            f"pathnet reads up to {_VERSION}"
        )
    missing = [
        k
        for k in ("epoch", "step", "config", "model", "optimizer", "scheduler", "rng", "history")
        if k not in state
    ]
    if missing:
        raise CheckpointError(
            f"{_PREFIX}: checkpoint {str(path)!r} lacks {missing}; it is damaged. {hint}"
        )
    return state


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _write_metrics(out_dir: Path, history: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(_METRIC_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in _METRIC_COLUMNS})
    atomic_write_bytes(out_dir / "metrics.csv", buf.getvalue().encode())
    doc = {**summary, "history": [{k: _finite(v) for k, v in r.items()} for r in history]}
    atomic_write_bytes(out_dir / "metrics.json", (json.dumps(doc, indent=1) + "\n").encode())


def _config_diff(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(now))
    return [
        f"{k}: {saved.get(k)!r} in the checkpoint, {now.get(k)!r} now"
        for k in keys
        if saved.get(k) != now.get(k)
    ]


def _default_milestones(epochs: int) -> list[int]:
    """Epochs (0-based) at which the lr drops: 50% and 75% of the run (80, 120 of 160)."""
    return [m for m in (epochs // 2, (3 * epochs) // 4) if 0 < m < epochs]


def _resolve_seed(seed: SeedLike) -> int:
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        make_rng(int(seed))  # validates (non-negative)
        return int(seed)
    return int(make_rng(seed).integers(0, 2**31 - 1))


# --------------------------------------------------------------------------------------
# Training.
# --------------------------------------------------------------------------------------


def fit(
    model: nn.Module,
    mask: Mapping[str, Tensor] | None,
    train_data: DataLike,
    test_data: DataLike | None = None,
    *,
    epochs: int = 160,
    batch_size: int = 128,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
    milestones: Sequence[int] | None = None,
    gamma: float = 0.1,
    mask_mode: MaskMode = "hard",
    seed: SeedLike = None,
    device: str | torch.device | None = "auto",
    amp: bool = False,
    augment: bool | None = None,
    eval_batch_size: int = 1024,
    out_dir: str | Path | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    step_callback: Callable[[int, nn.Module], None] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` under ``mask`` with the PHEW paper's recipe.

    The model is modified in place: it is moved to ``device``, the mask is applied to it
    with :func:`pathnet.apply_mask` (pruned weights are set to zero and stay exactly zero;
    nothing else is re-initialised), and it is trained. Training draws its data order,
    augmentation and dropout from ``seed`` and leaves the caller's global random states
    (torch, numpy, python) as they were.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``[batch, classes]``.
    mask : Mask, mapping of str to bool tensor, or None
        The subnetwork to train; None trains densely (or keeps a mask already applied).
    train_data, test_data : Dataset or tuple (x, y) of tensors
        A :class:`pathnet.data.Dataset`, or float inputs with integer labels.
        ``test_data`` is evaluated after every epoch; optional.
    epochs : int, default 160
    batch_size : int, default 128
    lr, momentum, nesterov, weight_decay : default 0.1, 0.9, True, 1e-4
        SGD hyper-parameters.
    milestones : sequence of int, optional
        Epochs (0-based) at which the lr is multiplied by ``gamma``; default
        ``[epochs // 2, 3 * epochs // 4]`` (80 and 120 of 160).
    gamma : float, default 0.1
    mask_mode : {"hard", "parametrize", "prune"}, default "hard"
        How the mask is applied (:func:`pathnet.apply_mask`); the trained model keeps
        it. ``"hard"`` leaves plain ``weight`` parameters, so checkpoints load into an
        unmasked model and match those of :func:`pathnet.train.ddp.fit_ddp`, and it is
        the fastest.
    seed : int, numpy Generator or None
        Seed of data order, augmentation and dropout (and of the numpy and python
        generators during training). None draws one; it is in ``result.seed``.
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default "auto"
        "auto" is CUDA when available. Results are bitwise reproducible on the CPU; on
        CUDA only if you also enable ``torch.use_deterministic_algorithms``.
    amp : bool, default False
        float16 mixed precision with a gradient scaler; CUDA only, ignored with a
        warning elsewhere.
    augment : bool, optional
        Random crops and flips; default :attr:`Dataset.default_augment` (CIFAR and
        Tiny-ImageNet training splits). Tuples ``(x, y)`` are never augmented.
    eval_batch_size : int, default 1024
        On an accelerator, ``train_data`` and ``test_data`` are copied to its memory
        once, for the whole run.
    out_dir : str or pathlib.Path, optional
        Where ``metrics.csv``, ``metrics.json`` and ``checkpoint.pt`` are written
        (atomically, every epoch). None writes nothing.
    resume : bool, default False
        Continue from ``out_dir/checkpoint.pt`` when it exists (a finished run is
        returned as it is, its weights loaded into ``model``). ``model`` must be built
        the same way as for the interrupted run; its weights are replaced. Without
        ``resume`` an existing checkpoint is overwritten.
    stop_after : int, optional
        Stop once this many epochs (counted from the start of the run) are complete,
        leaving a checkpoint to resume from; ``result.completed`` is then False.
    callback : callable, optional
        ``callback(row)`` after every epoch, once its checkpoint is written; raising
        (e.g. ``KeyboardInterrupt``) aborts the run, which can then be resumed.
    step_callback : callable, optional
        ``step_callback(step, model)`` after every optimizer step, ``step`` counting
        from 1 over the whole run (used by IMP to rewind to iteration k).
    progress : bool, default True
        A tqdm progress bar on stderr.

    Returns
    -------
    FitResult
        History (per-epoch loss, train/test accuracy, lr, time), final metrics, model.

    Raises
    ------
    CheckpointError
        ``resume=True`` and the checkpoint is truncated, corrupt or not pathnet's.
    ValueError
        Bad arguments, or a checkpoint written with other settings (seed, epochs,
        hyper-parameters, mask, data size).

    Examples
    --------
    >>> import torch, pathnet
    >>> from pathnet.train.fit import fit
    >>> model = pathnet.models.mlp([4, 8, 2], seed=0)
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 4, generator=g); y = (x[:, 1] > 0).long()
    >>> keep = {n: torch.rand(p.shape, generator=g) < 0.5
    ...         for n, p in pathnet.prunable_parameters(model).items()}
    >>> res = fit(model, keep, (x, y), epochs=2, seed=1, progress=False)
    >>> bool((model[1].weight[~keep["1.weight"]] == 0).all())
    True
    """
    # ---- arguments
    if not isinstance(model, nn.Module):
        raise TypeError(f"{_PREFIX}: model must be a torch.nn.Module, got {type(model).__name__}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{_PREFIX}: {name} must be a positive integer, got {value!r}")
    if isinstance(eval_batch_size, bool) or int(eval_batch_size) < 1:
        raise ValueError(f"{_PREFIX}: eval_batch_size must be a positive integer")
    if stop_after is not None and (isinstance(stop_after, bool) or int(stop_after) < 1):
        raise ValueError(f"{_PREFIX}: stop_after must be a positive integer, got {stop_after!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"{_PREFIX}: lr must be positive, got {lr!r}")
    if mask_mode not in ("hard", "parametrize", "prune"):
        raise ValueError(
            f"{_PREFIX}: mask_mode must be 'hard', 'parametrize' or 'prune', got {mask_mode!r}"
        )
    epochs = int(epochs)
    ms = _default_milestones(epochs) if milestones is None else sorted(int(m) for m in milestones)
    if any(m < 0 for m in ms):
        raise ValueError(f"{_PREFIX}: milestones must be epochs >= 0, got {ms}")
    train = _check_data(train_data, "train_data")
    test = _check_data(test_data, "test_data") if test_data is not None else None
    dev = resolve_device(device)
    # On an accelerator the data sets are moved there once (they are preloaded tensors).
    train = _to_device(train, dev)
    test = _to_device(test, dev) if test is not None else None
    use_amp = bool(amp)
    if use_amp and dev.type != "cuda":
        warnings.warn(
            f"{_PREFIX}: amp=True needs CUDA; training in float32 on {dev}",
            RuntimeWarning,
            stacklevel=2,
        )
        use_amp = False
    m = None
    if mask is not None:
        m = mask if isinstance(mask, Mask) else Mask(mask)
        m.check(model)
    if resume and out_dir is None:
        raise ValueError(f"{_PREFIX}: resume=True needs the out_dir of the run to resume")
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None

    saved: dict[str, Any] | None = None
    if resume and ckpt_path is not None and ckpt_path.exists():
        saved = load_checkpoint(ckpt_path)
    if saved is not None and seed is None:
        seed_int = int(saved["config"]["seed"])
    else:
        seed_int = _resolve_seed(seed)

    config: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": int(batch_size),
        "lr": float(lr),
        "momentum": float(momentum),
        "nesterov": bool(nesterov),
        "weight_decay": float(weight_decay),
        "milestones": ms,
        "gamma": float(gamma),
        "mask_mode": mask_mode,
        "mask": mask_fingerprint(m),
        "seed": seed_int,
        "augment": augment,
        "amp": use_amp,
        "n_train": _n_samples(train),
    }
    if saved is not None:
        diff = _config_diff(saved["config"], config)
        if diff:
            raise ValueError(
                f"{_PREFIX}: the checkpoint in {str(out)!r} is of a run with other settings ("
                + "; ".join(diff)
                + "); use another out_dir, or resume=False to start over"
            )

    # ---- model, optimizer, schedule
    model.to(dev)
    if m is not None:
        apply_mask(model, m, mode=mask_mode)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov and momentum > 0,
        weight_decay=weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=ms, gamma=gamma)
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    batches = _batches(
        train, int(batch_size), shuffle=True, seed=seed_int, augment=augment, device=dev
    )

    with _IsolatedRNG(dev):
        history: list[dict[str, Any]] = []
        start_epoch, step = 0, 0
        if saved is not None:
            try:
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
                if scaler is not None and saved.get("scaler") is not None:
                    scaler.load_state_dict(saved["scaler"])
            except (RuntimeError, ValueError, KeyError) as exc:
                raise CheckpointError(
                    f"{_PREFIX}: checkpoint {str(ckpt_path)!r} does not fit this model or "
                    f"mask mode: {exc}"
                ) from exc
            _set_rng_state(saved["rng"], dev)
            history = [dict(r) for r in saved["history"]]
            start_epoch, step = int(saved["epoch"]), int(saved["step"])
            batches.set_epoch(int(saved["rng"].get("data_epoch", start_epoch)))
        else:
            _seed_everything(seed_int)
        resumed_from = start_epoch if saved is not None else None

        end_epoch = epochs if stop_after is None else min(epochs, int(stop_after))
        summary = {"config": config, "device": str(dev)}
        if saved is not None and out is not None:
            # A run killed between its checkpoint and its metrics files left them one epoch
            # behind; the checkpoint's history is complete, so write them from it.
            _write_metrics(
                out,
                history,
                {**summary, "epochs_completed": start_epoch, "completed": start_epoch == epochs},
            )
        pbar = None
        if progress and start_epoch < end_epoch:
            from tqdm import tqdm

            pbar = tqdm(
                total=(end_epoch - start_epoch) * len(batches),
                desc="fit",
                unit="batch",
                dynamic_ncols=True,
            )
        try:
            for epoch in range(start_epoch, end_epoch):
                t0 = time.perf_counter()
                batches.set_epoch(epoch)
                epoch_lr = float(optimizer.param_groups[0]["lr"])
                model.train()
                loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
                correct = torch.zeros((), dtype=torch.int64, device=dev)
                seen = 0
                for x, y in batches:
                    with _autocast(dev, use_amp):
                        logits = model(x)
                        loss = F.cross_entropy(logits.float(), y)
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        optimizer.step()
                    step += 1
                    n = int(y.shape[0])
                    seen += n
                    loss_sum += loss.detach().double() * n
                    correct += (logits.detach().argmax(1) == y).sum()
                    if step_callback is not None:
                        step_callback(step, model)
                    if pbar is not None:
                        pbar.update(1)
                scheduler.step()
                row: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "lr": epoch_lr,
                    "train_loss": float(loss_sum) / seen,
                    "train_acc": int(correct) / seen,
                    "test_loss": None,
                    "test_acc": None,
                }
                if test is not None:
                    row["test_loss"], row["test_acc"] = evaluate(
                        model, test, batch_size=int(eval_batch_size), device=dev, amp=use_amp
                    )
                row["time_s"] = time.perf_counter() - t0
                history.append(row)
                if pbar is not None:
                    pbar.set_description(f"fit {epoch + 1}/{epochs}")
                    post = {"loss": f"{row['train_loss']:.3f}", "acc": f"{row['train_acc']:.3f}"}
                    if row["test_acc"] is not None:
                        post["test"] = f"{row['test_acc']:.3f}"
                    pbar.set_postfix(post)
                if out is not None:
                    assert ckpt_path is not None
                    rng = _rng_state(dev)
                    rng["data_epoch"] = epoch + 1
                    _save_checkpoint(
                        ckpt_path,
                        {
                            "format": _FORMAT,
                            "version": _VERSION,
                            "epoch": epoch + 1,
                            "step": step,
                            "config": config,
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "scaler": scaler.state_dict() if scaler is not None else None,
                            "rng": rng,
                            "history": history,
                        },
                    )
                    _write_metrics(
                        out,
                        history,
                        {
                            **summary,
                            "epochs_completed": epoch + 1,
                            "completed": epoch + 1 == epochs,
                        },
                    )
                if callback is not None:
                    callback(dict(row))
        finally:
            if pbar is not None:
                pbar.close()

    done = len(history)
    return FitResult(
        history=copy.deepcopy(history),
        model=model,
        epochs=epochs,
        epochs_completed=done,
        epochs_run=done - start_epoch,
        resumed_from=resumed_from,
        completed=done >= epochs,
        seed=seed_int,
        device=str(dev),
        out_dir=out,
    )
