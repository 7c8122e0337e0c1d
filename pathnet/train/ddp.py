"""Data-parallel training of one (masked) model with ``DistributedDataParallel``.

Start one process per GPU (or per CPU group) with ``torchrun``::

    torchrun --nproc-per-node 4 -m pathnet train vgg16 --ddp --dataset cifar10 \\
        --method phew --density 0.05 --epochs 160 --out runs/vgg16-phew-5

:func:`fit_ddp` is :func:`pathnet.train.fit.fit`'s recipe and loop
(:mod:`pathnet.train.loop`) spread over the processes of a ``torch.distributed`` group:

* **one mask**: rank 0 selects (or loads) it and broadcasts it; every rank applies it
  with :func:`pathnet.apply_mask` in ``"hard"`` mode *before* the model is wrapped, so the
  pruned weights are zero everywhere and their gradients are zeroed before DDP averages
  them: they stay exactly zero on every rank.
* **one data order**: every epoch all ranks draw the permutation that a single process
  draws (the order of :func:`pathnet.data.loader` for the same seed and epoch),
  drop its last ``n mod world`` samples, and rank ``r`` takes the strided slice
  ``perm[r::world]`` in batches of ``batch_size / world``. The ranks' batches ``k``
  together are then exactly the single process's batch ``k`` of ``batch_size``, and
  since DDP averages gradients, a run on ``W`` ranks follows the single-process run on
  the same samples up to float rounding (without augmentation, which each rank draws
  from its own generator).
* **rank 0 writes**: ``metrics.csv``, ``metrics.json`` and ``checkpoint.pt`` (fit's
  format, :mod:`pathnet.train.checkpoint`) into ``out_dir`` every epoch;
  ``resume=True`` reads the checkpoint on rank 0 and broadcasts it.

The loss, accuracy and evaluation statistics are summed over the ranks by the loop's
``reduce`` hook (``torch.distributed.all_reduce``); evaluation is sharded (rank ``r``
evaluates test samples ``r::world``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from pathnet.data import Dataset, random_crop_flip
from pathnet.mask import Mask, apply_mask
from pathnet.train.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_errors,
    config_diff,
    load_checkpoint,
    own_copy,
    restore_model,
    restore_training,
    save_checkpoint,
    write_metrics,
)
from pathnet.train.config import TrainConfig
from pathnet.train.dst import DST, DSTRun, check_dst
from pathnet.train.fit import FitResult, build_config, run_config
from pathnet.train.loop import (
    DataLike,
    check_data,
    epoch_order,
    make_optimizer,
    n_samples,
    resolve_device,
    run_epoch,
)

__all__ = ["distributed", "fit_ddp"]

_PREFIX = "pathnet.train.ddp"

MaskArg = Mask | Mapping[str, Tensor] | Callable[[nn.Module], Mapping[str, Tensor] | None] | None


def _rank_seed(seed: int, *words: int) -> int:
    state = np.random.SeedSequence([seed, *words]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


def _from_rank0(fn: Callable[[], Any], device: torch.device) -> Any:
    """``fn()`` computed on rank 0 and broadcast to every rank.

    An exception on rank 0 is raised on every rank (rather than leaving the others
    waiting in the broadcast): as itself on rank 0, as a RuntimeError elsewhere.
    """
    box: list[Any] = [None]
    error: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", fn())
        except Exception as exc:
            error = exc
            box[0] = ("error", f"{type(exc).__name__}: {exc}")
    dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    status, value = box[0]
    if error is not None:
        raise error
    if status == "error":
        raise RuntimeError(f"{_PREFIX}: rank 0 failed: {value}")
    return value


def _rank0_mask(mask: MaskArg, model: nn.Module, device: torch.device) -> Mask | None:
    """Rank 0's mask (a callable is called there alone), the same on every rank."""

    def choose() -> tuple[dict[str, Tensor], dict[str, Any], list[list[str]]] | None:
        chosen = mask(model) if callable(mask) and not isinstance(mask, Mapping) else mask
        if chosen is None:
            return None
        m = chosen if isinstance(chosen, Mask) else Mask(chosen)
        return dict(m.items()), dict(m.meta), [list(g) for g in getattr(m, "tied", ())]

    payload = _from_rank0(choose, device)
    return None if payload is None else Mask(payload[0], meta=payload[1], tied=payload[2])


class ShardedBatches:
    """Rank ``rank``'s part of every global batch of a single process's epoch.

    Pass ``k`` takes the permutation :func:`pathnet.data.loader` draws for ``(seed, k)``,
    drops its last ``n mod world`` samples, keeps ``perm[rank::world]`` and yields it in
    batches of ``local_batch``; augmentation (Datasets only) from a per-rank generator.
    """

    def __init__(
        self,
        data: DataLike,
        *,
        seed: int,
        rank: int,
        world: int,
        local_batch: int,
        device: torch.device,
        augment: bool,
    ) -> None:
        self.data, self.seed, self.rank, self.world = data, seed, rank, world
        self.local_batch, self.device, self.augment = local_batch, device, augment
        self.n = n_samples(data)
        self.n_use = self.n - self.n % world
        self.epoch = 0

    def __len__(self) -> int:
        return -(-(self.n_use // self.world) // self.local_batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        mine = epoch_order(self.n, self.seed, epoch)[: self.n_use][self.rank :: self.world]
        gen = torch.Generator().manual_seed(_rank_seed(self.seed, epoch, self.rank, 1))
        for start in range(0, mine.numel(), self.local_batch):
            yield self._batch(mine[start : start + self.local_batch], gen)

    def _batch(self, idx: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        data = self.data
        if isinstance(data, Dataset):
            idx = idx.to(data.images.device)
            x, y = data.images[idx], data.labels[idx]
            if self.augment:
                pad = max(1, data.input_shape[-1] // 8)
                x = random_crop_flip(x, gen, padding=pad, fill=data.pad_value)
        else:
            x, y = data[0][idx], data[1][idx]
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _shard(data: DataLike, rank: int, world: int) -> DataLike | None:
    """Samples ``rank::world`` of a Dataset or ``(x, y)`` pair (None if there are none)."""
    idx = torch.arange(rank, n_samples(data), world)
    if idx.numel() == 0:
        return None
    if isinstance(data, Dataset):
        return data.select(idx)
    return data[0][idx], data[1][idx]


def _default_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(t: Tensor) -> None:
    dist.all_reduce(t)


def fit_ddp(
    model: nn.Module,
    mask: MaskArg,
    train_data: Any,
    test_data: Any = None,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    sync_batchnorm: bool = False,
    progress: bool = False,
    dst: DST | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``model`` under ``mask`` on every rank of the initialised process group.

    Call it on every rank with the same arguments (see :func:`distributed`). The
    parameters are those of :func:`pathnet.train.fit.fit` (a ``config`` and/or its
    fields by name), except:

    Parameters
    ----------
    mask : Mask, mapping, callable or None
        Only rank 0's is used, and broadcast: a mask, or a function ``model -> mask``
        called on rank 0 alone (e.g. ``lambda m: pathnet.select("phew", m, 0.1, seed=0)``),
        or None (dense). It is applied in ``"hard"`` mode.
    batch_size : int, default 128
        The **global** batch: each of the ``W`` ranks takes ``batch_size / W`` samples
        per step (``batch_size`` must be a multiple of ``W``).
    seed : int, default 0
        Data order (the same on every rank), augmentation and dropout (per rank).
    device : str or torch.device, optional
        Default: the current CUDA device with the NCCL backend, else the CPU.
    sync_batchnorm : bool, default False
        Convert BatchNorm layers to ``SyncBatchNorm`` (statistics over the global batch).
    dst : pathnet.train.DST, optional
        Dynamic sparse training, as in :func:`~pathnet.train.fit.fit`: every rank
        computes the update from the same all-reduced gradients, then takes rank 0's
        mask (broadcast), so the mask is the same on every rank.

    Returns
    -------
    FitResult
        On every rank, with the same history; ``model`` is the unwrapped model.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            f"{_PREFIX}: fit_ddp runs inside an initialised torch.distributed process group; "
            f"start it with torchrun (see pathnet.train.ddp.distributed)"
        )
    cfg = build_config(config, overrides, "fit_ddp")
    rank, world = dist.get_rank(), dist.get_world_size()
    seed = _check_args(cfg, seed, world)
    train = check_data(train_data, "train_data")
    test = check_data(test_data, "test_data") if test_data is not None else None
    dev = _default_device() if device is None else resolve_device(device)
    use_amp = cfg.amp and dev.type == "cuda"
    m = _rank0_mask(mask, model, dev)
    if m is not None:
        m.check(model)
    n_train = n_samples(train)
    if n_train < world:
        raise ValueError(f"{_PREFIX}: {n_train} training samples for {world} processes")
    if cfg.augment and not isinstance(train, Dataset):
        raise ValueError(f"{_PREFIX}: augment=True needs a pathnet Dataset")
    do_augment = isinstance(train, Dataset) and (
        train.default_augment if cfg.augment is None else cfg.augment
    )
    if isinstance(train, Dataset) and dev.type == "cuda":
        train = train.to(dev)
    record = {
        **run_config(cfg, mask=m, seed=seed, amp=use_amp, n_train=n_train),
        "world_size": world,
        "sync_batchnorm": bool(sync_batchnorm),
    }
    if dst is not None:
        record["dst"] = check_dst(dst, cfg.mask_mode, m)
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / CHECKPOINT_NAME if out is not None else None
    saved = _resume_point(ckpt, record, dev) if resume else None

    dyn = None
    if dst is not None:  # before the mask zeroes them: DSTRun keeps the initial weights
        dyn = DSTRun(dst, model, m, saved=saved, path=ckpt, broadcast=lambda x: _bcast(x, dev))
        for t in dyn.init.values():  # rank 0's initial weights (those DDP starts from)
            _bcast_tensor(t, dev)
    model, ddp = _wrap(model, dyn.mask if dyn is not None else m, saved, ckpt, dev, sync_batchnorm)
    run = _DdpRun(
        cfg=cfg,
        model=model,
        ddp=ddp,
        batches=ShardedBatches(
            train,
            seed=seed,
            rank=rank,
            world=world,
            local_batch=cfg.batch_size // world,
            device=dev,
            augment=do_augment,
        ),
        test=_shard(test, rank, world) if test is not None else None,
        has_test=test is not None,
        dev=dev,
        amp=use_amp,
        seed=seed,
        rank=rank,
        record=record,
        out=out,
        saved=saved,
        dyn=dyn,
    )
    rng_devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        history, start = _train(run, stop_after, progress)
    dist.barrier()
    done = len(history)
    return FitResult(
        history=[dict(r) for r in history],
        model=model,
        epochs=cfg.epochs,
        epochs_completed=done,
        epochs_run=done - start,
        resumed_from=start if saved is not None else None,
        completed=done >= cfg.epochs,
        seed=seed,
        device=str(dev),
        out_dir=out,
        mask=dyn.mask if dyn is not None else m,
        dst_log=[dict(r) for r in dyn.log] if dyn is not None else None,
    )


def _bcast_tensor(t: Tensor, dev: torch.device) -> None:
    """Rank 0's values of ``t`` (a CPU tensor) on every rank, in place."""
    x = t.to(dev).view(torch.uint8) if t.dtype == torch.bool else t.to(dev)
    dist.broadcast(x, src=0)
    t.copy_(x.view(torch.bool) if t.dtype == torch.bool else x)


def _bcast(mask: Mask, dev: torch.device) -> Mask:
    """Rank 0's mask on every rank."""
    out = {k: v.clone() for k, v in mask.items()}
    for v in out.values():
        _bcast_tensor(v, dev)
    return Mask(out, meta=mask.meta)


@dataclass
class _DdpRun:
    """One rank's part of a :func:`fit_ddp` call, its arguments checked."""

    cfg: TrainConfig
    model: nn.Module
    ddp: nn.parallel.DistributedDataParallel
    batches: ShardedBatches
    test: DataLike | None
    has_test: bool
    dev: torch.device
    amp: bool
    seed: int
    rank: int
    record: dict[str, Any]
    out: Path | None
    saved: dict[str, Any] | None
    dyn: DSTRun | None = None

    @property
    def ckpt(self) -> Path | None:
        return self.out / CHECKPOINT_NAME if self.out is not None else None


def _train(
    run: _DdpRun, stop_after: int | None, progress: bool
) -> tuple[list[dict[str, Any]], int]:
    """The epochs of one rank (under its own random state); the history and first epoch."""
    cfg, dev, saved = run.cfg, run.dev, run.saved
    optimizer, scheduler, scaler = make_optimizer(
        [p for p in run.ddp.parameters() if p.requires_grad], cfg, amp=run.amp
    )
    history: list[dict[str, Any]] = []
    start, step = 0, 0
    if saved is not None:
        restore_training(
            saved,
            optimizer,
            scheduler,
            scaler,
            milestones=cfg.resolved_milestones(),
            gamma=cfg.gamma,
            path=run.ckpt,
        )
        _restore_rng(saved, run.rank, dev, run.ckpt)
        history = [dict(r) for r in saved["history"]]
        start, step = int(saved["epoch"]), int(saved["step"])
    else:
        torch.manual_seed(_rank_seed(run.seed, 0x7061746E, run.rank))
    end = cfg.epochs if stop_after is None else min(cfg.epochs, int(stop_after))
    dyn = run.dyn
    if dyn is not None:
        dyn.attach(
            run.model,
            optimizer,
            total_steps=cfg.epochs * len(run.batches),
            steps_per_epoch=len(run.batches),
            step=step,
        )
    pbar = None
    if progress and run.rank == 0 and start < end:
        from tqdm import tqdm

        pbar = tqdm(total=(end - start) * len(run.batches), desc="fit_ddp")
    try:
        for epoch in range(start, end):
            row, step = run_epoch(
                run.ddp,
                run.batches,
                optimizer,
                scheduler,
                epoch=epoch,
                device=dev,
                amp=run.amp,
                scaler=scaler,
                test=run.test,
                has_test=run.has_test,
                eval_model=run.model,
                eval_batch_size=cfg.eval_batch_size,
                reduce=_all_reduce,
                on_step=lambda k: _on_step(k, dyn, pbar),
                step=step,
            )
            history.append(row)
            if pbar is not None:
                pbar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['train_acc']:.3f}")
            if run.out is not None:
                state = {"epoch": epoch + 1, "step": step, "config": run.record}
                if dyn is not None:
                    state["dst"] = dyn.state_dict()
                _save(
                    run.out,
                    state,
                    run.model,
                    optimizer,
                    scheduler,
                    scaler,
                    history,
                    dev,
                    cfg.epochs,
                )
    finally:
        if pbar is not None:
            pbar.close()
        if dyn is not None:
            dyn.close()
    return history, start


def _on_step(step: int, dyn: DSTRun | None, pbar: Any) -> None:
    if dyn is not None:
        dyn.on_step(step)
    if pbar is not None:
        pbar.update(1)


def _restore_rng(saved: Mapping[str, Any], rank: int, dev: torch.device, ckpt: Any) -> None:
    with checkpoint_errors(ckpt):
        torch.set_rng_state(saved["rng"]["torch"][rank])
        if dev.type == "cuda" and saved["rng"].get("cuda"):
            torch.cuda.set_rng_state(saved["rng"]["cuda"][rank], dev)


def _check_args(cfg: TrainConfig, seed: Any, world: int) -> int:
    if cfg.batch_size % world:
        raise ValueError(
            f"{_PREFIX}: batch_size {cfg.batch_size} is not a multiple of the {world} processes"
        )
    if cfg.mask_mode != "hard":
        raise ValueError(f"{_PREFIX}: fit_ddp holds masks in 'hard' mode, got {cfg.mask_mode!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{_PREFIX}: seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _resume_point(
    ckpt: Path | None, record: Mapping[str, Any], dev: torch.device
) -> dict[str, Any] | None:
    """Rank 0's checkpoint (None without one), broadcast, checked against ``record``."""
    if ckpt is None:
        return None
    path = ckpt
    saved = _from_rank0(lambda: load_checkpoint(path) if path.exists() else None, dev)
    if saved is not None:
        diff = config_diff(saved["config"], record, completed=saved["epoch"])
        if diff:
            raise ValueError(
                f"{_PREFIX}: the checkpoint in {str(ckpt.parent)!r} is of a run with other "
                "settings (" + "; ".join(diff) + "); use another out_dir, or resume=False to "
                "start over"
            )
    return saved


def _wrap(
    model: nn.Module,
    mask: Mask | None,
    saved: Mapping[str, Any] | None,
    ckpt: Path | None,
    dev: torch.device,
    sync_batchnorm: bool,
) -> tuple[nn.Module, nn.parallel.DistributedDataParallel]:
    """The model masked and restored, then wrapped (DDP copies rank 0's weights everywhere)."""
    model.to(dev)
    if mask is not None:
        apply_mask(model, own_copy(mask), mode="hard")
    if saved is not None:
        restore_model(model, saved, mask, "hard", ckpt)
    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[dev.index] if dev.type == "cuda" else None
    )
    return model, ddp


def _save(
    out: Path,
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    history: list[dict[str, Any]],
    dev: torch.device,
    epochs: int,
) -> None:
    """Rank 0 writes the checkpoint (every rank's random state in it) and the metrics."""
    state = {
        **state,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": history,
    }
    states: list[Any] = [None] * dist.get_world_size()
    mine = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
    }
    dist.all_gather_object(states, mine)
    if dist.get_rank() != 0:
        return
    done = int(state["epoch"])
    state["rng"] = {
        "torch": [s["torch"] for s in states],
        "cuda": [s["cuda"] for s in states] if dev.type == "cuda" else None,
        "data_epoch": done,
    }
    save_checkpoint(out / CHECKPOINT_NAME, state)
    summary = {
        "config": state["config"],
        "device": str(dev),
        "epochs_completed": done,
        "completed": done == epochs,
    }
    write_metrics(out, state["history"], summary)


# ----------------------------------------------------------------- process group
@contextlib.contextmanager
def distributed(
    backend: str = "auto", device: str = "auto"
) -> Iterator[tuple[int, int, torch.device]]:
    """Join the process group that ``torchrun`` set up; yields ``(rank, world, device)``.

    ``device`` ``"auto"`` (or ``"cuda"``) is ``cuda:LOCAL_RANK`` when CUDA is available,
    else the CPU; ``backend`` ``"auto"`` is NCCL on CUDA, gloo on the CPU. An already
    initialised group is used as it is (and left alone).
    """
    if dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size(), _default_device()
        return
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError(
            f"{_PREFIX}: no torch.distributed environment (RANK, WORLD_SIZE); start the "
            f"processes with torchrun, e.g. `torchrun --nproc-per-node 2 -m pathnet train "
            f"mlp --ddp ...`"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device in ("auto", "cuda"):
        dev = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        if device == "cuda" and dev.type != "cuda":
            raise ValueError(f"{_PREFIX}: --device cuda: no CUDA device is available")
    else:
        dev = resolve_device(device)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"{_PREFIX}: backend must be auto, nccl or gloo, got {backend!r}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend)
    try:
        yield dist.get_rank(), dist.get_world_size(), dev
    finally:
        dist.destroy_process_group()
