"""The training loop, written once: one :func:`train_epoch`, one :func:`evaluate`.

Both take a ``reduce`` hook: a function that sums a small float64 tensor of statistics
(loss sum, correct predictions, samples) over the processes of a run, in place. A single
process passes nothing (the identity); :mod:`pathnet.train.ddp` passes
``torch.distributed.all_reduce``. :func:`pathnet.train.fit.fit` and
:func:`pathnet.train.ddp.fit_ddp` differ only in the batches they hand in (the whole data
set, or one rank's shard of every global batch) and in that hook.

>>> import torch
>>> from pathnet import models
>>> x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0)); y = (x[:, 0] > 0).long()
>>> model = models.mlp([4, 8, 2], seed=0)
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> batches = TensorBatches(x, y, 16, shuffle=True, seed=0, device=torch.device("cpu"))
>>> stats, step = train_epoch(model, batches, opt, device=torch.device("cpu"))
>>> step, sorted(stats)
(3, ['train_acc', 'train_loss'])
>>> loss, acc = evaluate(model, (x, y))
>>> 0.0 <= acc <= 1.0
True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathnet._random import SeedLike, make_rng
from pathnet.data import Dataset, loader, mix_seed
from pathnet.train.config import TrainConfig

__all__ = [
    "Batches",
    "DataLike",
    "Reduce",
    "TensorBatches",
    "autocast",
    "check_data",
    "evaluate",
    "make_batches",
    "make_optimizer",
    "n_samples",
    "resolve_device",
    "resolve_seed",
    "run_epoch",
    "to_device",
    "train_epoch",
]

_PREFIX = "pathnet.train"

DataLike = Dataset | tuple[Tensor, Tensor]

#: Sums a statistics tensor over the processes of a run, in place (identity for one).
Reduce = Callable[[Tensor], Any]


class Batches(Protocol):
    """What :func:`train_epoch` iterates: ``(x, y)`` pairs, one pass per ``iter``."""

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]: ...


# ------------------------------------------------------------------ devices, seeds, data
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


def resolve_seed(seed: SeedLike) -> int:
    """An int seed as it is (validated); anything else draws one from it.

    >>> resolve_seed(7)
    7
    """
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        make_rng(int(seed))  # validates (non-negative)
        return int(seed)
    return int(make_rng(seed).integers(0, 2**31 - 1))


def check_data(data: Any, what: str) -> DataLike:
    """A non-empty :class:`~pathnet.data.Dataset`, or float inputs with 1-D integer labels."""
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


def n_samples(data: DataLike) -> int:
    return len(data) if isinstance(data, Dataset) else int(data[1].shape[0])


def to_device(data: DataLike, device: torch.device) -> DataLike:
    """Move a whole data set to an accelerator once, so that batches need no copies."""
    if device.type == "cpu":
        return data
    if isinstance(data, Dataset):
        return data if data.images.device == device else data.to(device)
    x, y = data
    return (x.to(device), y.to(device))


def epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The permutation of pass ``epoch`` that :func:`pathnet.data.loader` draws."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))


class TensorBatches:
    """Batches of an ``(x, y)`` pair, ordered like :class:`pathnet.data.BatchLoader`.

    Pass ``k`` draws its order from a generator seeded with ``(seed, k)``; no augmentation.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        device: torch.device,
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
        order = epoch_order(n, self.seed, epoch) if self.shuffle else torch.arange(n)
        order = order.to(self.x.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield (
                self.x[idx].to(self.device, non_blocking=True),
                self.y[idx].to(self.device, non_blocking=True),
            )


def make_batches(
    data: DataLike,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    augment: bool | None,
    device: torch.device,
) -> Batches:
    """A :class:`~pathnet.data.BatchLoader` for a Dataset, :class:`TensorBatches` for a pair."""
    data = to_device(data, device)
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
    return TensorBatches(x, y, batch_size, shuffle=shuffle, seed=seed, device=device)


def autocast(device: torch.device, amp: bool) -> Any:
    """float16 autocast when ``amp``, else autocast explicitly off."""
    if amp:
        return torch.autocast(device_type=device.type, dtype=torch.float16)
    return torch.autocast(device_type=device.type, enabled=False)


# ------------------------------------------------------------------ the loop
def make_optimizer(
    params: Iterable[nn.Parameter], config: TrainConfig, *, amp: bool
) -> tuple[torch.optim.Optimizer, Any, Any]:
    """The recipe's SGD, its step schedule and (with ``amp``) a gradient scaler.

    The milestones are :meth:`TrainConfig.resolved_milestones`.
    """
    optimizer = torch.optim.SGD(
        list(params),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.resolved_milestones()), gamma=config.gamma
    )
    scaler = torch.amp.GradScaler("cuda") if amp else None
    return optimizer, scheduler, scaler


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    amp: bool = False,
    scaler: Any = None,
    reduce: Reduce | None = None,
    on_step: Callable[[int], None] | None = None,
    step: int = 0,
    on_batch: Callable[[int, float, int, int], None] | None = None,
) -> tuple[dict[str, float], int]:
    """One pass of SGD over ``batches``; returns ``({"train_loss", "train_acc"}, step)``.

    ``step`` counts optimizer steps over the run; ``on_step(step)`` is called after each.
    ``on_batch(step, loss, correct, n)`` (optional) receives each batch's mean loss,
    correct predictions and size (this process's, before any reduction).
    The loss and accuracy are running means in train mode, summed over the processes
    by ``reduce``.
    """
    model.train()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, seen
    for x, y in batches:
        with autocast(device, amp):
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
        correct = (logits.detach().argmax(1) == y).sum()
        sums[0] += loss.detach().double() * n
        sums[1] += correct
        sums[2] += n
        if on_batch is not None:
            on_batch(step, float(loss.detach()), int(correct), n)
        if on_step is not None:
            on_step(step)
    if reduce is not None:
        reduce(sums)
    return {"train_loss": float(sums[0] / sums[2]), "train_acc": float(sums[1] / sums[2])}, step


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: DataLike | None,
    *,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    amp: bool = False,
    reduce: Reduce | None = None,
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``, in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
    data : Dataset or tuple (x, y) of tensors
        None only with ``reduce``: a process holding no samples of a sharded test set.
    batch_size : int, default 1024
    device : str or torch.device, optional
        Default: the device of the model's first parameter.
    amp : bool, default False
        float16 autocast (CUDA only).
    reduce : callable, optional
        Sums the statistics over processes (see the module docstring).

    Returns
    -------
    (loss, accuracy) : tuple of float
    """
    if data is not None:
        data = check_data(data, "data")
    elif reduce is None:
        raise TypeError(f"{_PREFIX}.evaluate: data must be a Dataset or a tuple (x, y)")
    if device is None:
        p = next(model.parameters(), None)
        dev = p.device if p is not None else torch.device("cpu")
    else:
        dev = resolve_device(device)
    sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss, correct, seen
    was_training = model.training
    model.eval()
    try:
        if data is not None:
            for x, y in make_batches(
                data, batch_size, shuffle=False, seed=0, augment=False, device=dev
            ):
                with autocast(dev, amp and dev.type == "cuda"):
                    out = model(x)
                sums[0] += F.cross_entropy(out.float(), y, reduction="sum").double()
                sums[1] += (out.argmax(1) == y).sum()
                sums[2] += int(y.shape[0])
    finally:
        model.train(was_training)
    if reduce is not None:
        reduce(sums)
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def run_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    epoch: int,
    device: torch.device,
    amp: bool,
    scaler: Any,
    test: DataLike | None,
    eval_model: nn.Module,
    eval_batch_size: int,
    has_test: bool | None = None,
    reduce: Reduce | None = None,
    on_step: Callable[[int], None] | None = None,
    step: int = 0,
    on_batch: Callable[[int, float, int, int], None] | None = None,
) -> tuple[dict[str, Any], int]:
    """Train epoch ``epoch`` (0-based), step the schedule, evaluate: the history row.

    ``eval_model`` is the model evaluated (the unwrapped one under DDP). ``has_test``
    (default: ``test is not None``) says whether the run has test data; under DDP a
    process may hold no test samples (``test`` None) while others do.
    """
    t0 = time.perf_counter()
    batches.set_epoch(epoch)
    lr = float(optimizer.param_groups[0]["lr"])
    stats, step = train_epoch(
        model,
        batches,
        optimizer,
        device=device,
        amp=amp,
        scaler=scaler,
        reduce=reduce,
        on_step=on_step,
        step=step,
        on_batch=on_batch,
    )
    scheduler.step()
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **stats}
    row["test_loss"], row["test_acc"] = None, None
    if (test is not None) if has_test is None else has_test:
        row["test_loss"], row["test_acc"] = evaluate(
            eval_model, test, batch_size=eval_batch_size, device=device, amp=amp, reduce=reduce
        )
    row["time_s"] = time.perf_counter() - t0
    return row, step
