"""Data-parallel training of one (masked) model with ``DistributedDataParallel``.

Start one process per GPU (or per CPU group) with ``torchrun``::

    torchrun --nproc-per-node 4 -m pathnet.train.ddp vgg16 --dataset cifar10 \\
        --method phew --density 0.05 --epochs 160 --out runs/vgg16-phew-5

:func:`fit_ddp` is :func:`pathnet.train.fit.fit`'s recipe spread over the processes of a
``torch.distributed`` group:

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
  format) into ``out_dir`` every epoch; ``resume=True`` reads the checkpoint on rank 0
  and broadcasts it.

Evaluation is sharded (rank ``r`` evaluates test samples ``r::world``) and the losses and
counts are summed over the ranks.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from pathnet.mask import Mask, apply_mask

__all__ = ["add_ddp_arguments", "distributed", "fit_ddp", "main", "run_ddp_from_args"]

_PREFIX = "pathnet.train.ddp"

MaskArg = Mask | Mapping[str, Tensor] | Callable[[nn.Module], Mapping[str, Tensor] | None] | None


def _trainer() -> ModuleType:
    """The module holding ``fit`` (its checkpoint and metrics helpers are reused).

    ``pathnet.train.fit`` names the function, so the module is looked up by its path.
    """
    for name in ("pathnet.train.trainer", "pathnet.train.fit"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    raise ImportError(f"{_PREFIX}: no pathnet.train.trainer or pathnet.train.fit module")


def _epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The permutation of pass ``epoch`` that :func:`pathnet.data.loader` draws."""
    from pathnet.data import _mix_seed

    return torch.randperm(n, generator=torch.Generator().manual_seed(_mix_seed(seed, epoch)))


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


def _mask_payload(mask: Mapping[str, Tensor] | None) -> dict[str, Any] | None:
    if mask is None:
        return None
    m = mask if isinstance(mask, Mask) else Mask(mask)
    arrays = m.to_numpy()
    return {
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "bits": {k: np.packbits(v.ravel()) for k, v in arrays.items()},
        "meta": dict(m.meta),
    }


def _mask_from_payload(payload: Mapping[str, Any] | None) -> Mask | None:
    if payload is None:
        return None
    masks = {
        k: np.unpackbits(bits, count=int(np.prod(payload["shapes"][k], dtype=np.int64)))
        .astype(bool)
        .reshape(payload["shapes"][k])
        for k, bits in payload["bits"].items()
    }
    return Mask(masks, meta=payload["meta"])


def _shard(data: Any, rank: int, world: int) -> Any:
    """Samples ``rank::world`` of a Dataset or ``(x, y)`` pair (None if there are none)."""
    from pathnet.data import Dataset

    n = len(data) if isinstance(data, Dataset) else int(data[1].shape[0])
    idx = torch.arange(rank, n, world)
    if idx.numel() == 0:
        return None
    if isinstance(data, Dataset):
        return data.select(idx)
    return data[0][idx], data[1][idx]


def _default_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def fit_ddp(
    model: nn.Module,
    mask: MaskArg,
    train_data: Any,
    test_data: Any = None,
    *,
    epochs: int = 160,
    batch_size: int = 128,
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
    milestones: Sequence[int] | None = None,
    gamma: float = 0.1,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = False,
    augment: bool | None = None,
    eval_batch_size: int = 1024,
    out_dir: str | Path | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    sync_batchnorm: bool = False,
    progress: bool = False,
) -> Any:
    """Train ``model`` under ``mask`` on every rank of the initialised process group.

    Call it on every rank with the same arguments (see :func:`distributed`). The
    parameters are those of :func:`pathnet.train.fit.fit`, except:

    Parameters
    ----------
    mask : Mask, mapping, callable or None
        Only rank 0's is used, and broadcast: a mask, or a function ``model -> mask``
        called on rank 0 alone (e.g. ``lambda m: pathnet.select("phew", m, 0.1, seed=0)``),
        or None (dense).
    batch_size : int, default 128
        The **global** batch: each of the ``W`` ranks takes ``batch_size / W`` samples
        per step (``batch_size`` must be a multiple of ``W``).
    seed : int, default 0
        Data order (the same on every rank), augmentation and dropout (per rank).
    device : str or torch.device, optional
        Default: the current CUDA device with the NCCL backend, else the CPU.
    sync_batchnorm : bool, default False
        Convert BatchNorm layers to ``SyncBatchNorm`` (statistics over the global batch).

    Returns
    -------
    FitResult
        On every rank, with the same history; ``model`` is the unwrapped model.
    """
    tr = _trainer()
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            f"{_PREFIX}: fit_ddp runs inside an initialised torch.distributed process group; "
            f"start it with torchrun (see pathnet.train.ddp.distributed)"
        )
    rank, world = dist.get_rank(), dist.get_world_size()
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{_PREFIX}: {name} must be a positive integer, got {value!r}")
    if batch_size % world:
        raise ValueError(
            f"{_PREFIX}: batch_size {batch_size} is not a multiple of the {world} processes"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{_PREFIX}: seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    local_bs = batch_size // world
    epochs = int(epochs)
    ms = (
        tr._default_milestones(epochs) if milestones is None else sorted(int(m) for m in milestones)
    )
    train = tr._check_data(train_data, "train_data")
    test = tr._check_data(test_data, "test_data") if test_data is not None else None
    dev = _default_device() if device is None else tr.resolve_device(device)
    use_amp = bool(amp) and dev.type == "cuda"

    # ---- one mask, chosen on rank 0
    def rank0_mask() -> dict[str, Any] | None:
        chosen = mask(model) if callable(mask) and not isinstance(mask, Mapping) else mask
        return _mask_payload(chosen)

    m = _mask_from_payload(_from_rank0(rank0_mask, dev))
    if m is not None:
        m.check(model)

    from pathnet.data import Dataset

    n_train = len(train) if isinstance(train, Dataset) else int(train[1].shape[0])
    if n_train < world:
        raise ValueError(f"{_PREFIX}: {n_train} training samples for {world} processes")
    do_augment = isinstance(train, Dataset) and (
        train.default_augment if augment is None else bool(augment)
    )
    if augment and not isinstance(train, Dataset):
        raise ValueError(f"{_PREFIX}: augment=True needs a pathnet Dataset")
    if isinstance(train, Dataset) and dev.type == "cuda":
        train = train.to(dev)
    config: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": int(batch_size),
        "lr": float(lr),
        "momentum": float(momentum),
        "nesterov": bool(nesterov),
        "weight_decay": float(weight_decay),
        "milestones": ms,
        "gamma": float(gamma),
        "mask_mode": "hard",
        "mask": tr.mask_fingerprint(m),
        "seed": seed,
        "augment": augment,
        "amp": use_amp,
        "n_train": n_train,
        "world_size": world,
        "sync_batchnorm": bool(sync_batchnorm),
    }
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / tr.CHECKPOINT_NAME if out is not None else None
    saved = None
    if resume and ckpt_path is not None:
        path = ckpt_path
        saved = _from_rank0(lambda: tr.load_checkpoint(path) if path.exists() else None, dev)
    if saved is not None:
        diff = tr._config_diff(saved["config"], config)
        if diff:
            raise ValueError(
                f"{_PREFIX}: the checkpoint in {str(out)!r} is of a run with other settings ("
                + "; ".join(diff)
                + "); use another out_dir, or resume=False to start over"
            )

    # ---- model: masked, then wrapped (DDP copies rank 0's weights to every rank)
    model.to(dev)
    if m is not None:
        apply_mask(model, m, mode="hard")
    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[dev.index] if dev.type == "cuda" else None
    )
    params = [p for p in ddp.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov and momentum > 0,
        weight_decay=weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=ms, gamma=gamma)
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    test_shard = _shard(test, rank, world) if test is not None else None
    rng_devices = [dev] if dev.type == "cuda" else []

    with torch.random.fork_rng(devices=rng_devices):
        history: list[dict[str, Any]] = []
        start_epoch, step = 0, 0
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            if scaler is not None and saved.get("scaler") is not None:
                scaler.load_state_dict(saved["scaler"])
            torch.set_rng_state(saved["rng"]["torch"][rank])
            if dev.type == "cuda" and saved["rng"].get("cuda"):
                torch.cuda.set_rng_state(saved["rng"]["cuda"][rank], dev)
            history = [dict(r) for r in saved["history"]]
            start_epoch, step = int(saved["epoch"]), int(saved["step"])
        else:
            torch.manual_seed(_rank_seed(seed, 0x7061746E, rank))
        resumed_from = start_epoch if saved is not None else None
        end_epoch = epochs if stop_after is None else min(epochs, int(stop_after))
        n_use = n_train - n_train % world
        steps_per_epoch = math.ceil(n_use // world / local_bs)
        pbar = None
        if progress and rank == 0 and start_epoch < end_epoch:
            from tqdm import tqdm

            pbar = tqdm(total=(end_epoch - start_epoch) * steps_per_epoch, desc="fit_ddp")
        try:
            for epoch in range(start_epoch, end_epoch):
                t0 = time.perf_counter()
                epoch_lr = float(optimizer.param_groups[0]["lr"])
                mine = _epoch_order(n_train, seed, epoch)[:n_use][rank::world]
                aug_gen = torch.Generator().manual_seed(_rank_seed(seed, epoch, rank, 1))
                ddp.train()
                sums = torch.zeros(3, dtype=torch.float64, device=dev)  # loss, correct, seen
                for start in range(0, mine.numel(), local_bs):
                    idx = mine[start : start + local_bs]
                    x, y = _batch(train, idx, dev, do_augment, aug_gen)
                    with tr._autocast(dev, use_amp):
                        logits = ddp(x)
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
                    nb = int(y.shape[0])
                    sums[0] += loss.detach().double() * nb
                    sums[1] += (logits.detach().argmax(1) == y).sum()
                    sums[2] += nb
                    if pbar is not None:
                        pbar.update(1)
                scheduler.step()
                dist.all_reduce(sums)
                row: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "lr": epoch_lr,
                    "train_loss": float(sums[0] / sums[2]),
                    "train_acc": float(sums[1] / sums[2]),
                    "test_loss": None,
                    "test_acc": None,
                }
                if test is not None:
                    row["test_loss"], row["test_acc"] = _evaluate(
                        model, test_shard, dev, int(eval_batch_size), use_amp, tr
                    )
                row["time_s"] = time.perf_counter() - t0
                history.append(row)
                if pbar is not None:
                    pbar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row['train_acc']:.3f}")
                if out is not None:
                    _save(
                        tr,
                        out,
                        ckpt_path,
                        epoch,
                        step,
                        config,
                        model,
                        optimizer,
                        scheduler,
                        scaler,
                        history,
                        dev,
                        epochs,
                    )
        finally:
            if pbar is not None:
                pbar.close()
    dist.barrier()
    done = len(history)
    return tr.FitResult(
        history=[dict(r) for r in history],
        model=model,
        epochs=epochs,
        epochs_completed=done,
        epochs_run=done - start_epoch,
        resumed_from=resumed_from,
        completed=done >= epochs,
        seed=seed,
        device=str(dev),
        out_dir=out,
    )


def _batch(
    train: Any, idx: Tensor, dev: torch.device, augment: bool, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    from pathnet.data import Dataset, random_crop_flip

    if isinstance(train, Dataset):
        idx = idx.to(train.images.device)
        x, y = train.images[idx], train.labels[idx]
        if augment:
            pad = max(1, train.input_shape[-1] // 8)
            x = random_crop_flip(x, gen, padding=pad, fill=train.pad_value)
    else:
        x, y = train[0][idx], train[1][idx]
    return x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)


def _evaluate(
    model: nn.Module, shard: Any, dev: torch.device, batch_size: int, amp: bool, tr: ModuleType
) -> tuple[float, float]:
    """Loss and accuracy over the whole test set: each rank its shard, summed."""
    sums = torch.zeros(3, dtype=torch.float64, device=dev)
    if shard is not None:
        loss, acc = tr.evaluate(model, shard, batch_size=batch_size, device=dev, amp=amp)
        n = len(shard) if not isinstance(shard, tuple) else int(shard[1].shape[0])
        sums += torch.tensor([loss * n, acc * n, n], dtype=torch.float64, device=dev)
    dist.all_reduce(sums)
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def _save(
    tr: ModuleType,
    out: Path,
    ckpt_path: Path | None,
    epoch: int,
    step: int,
    config: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    history: list[dict[str, Any]],
    dev: torch.device,
    epochs: int,
) -> None:
    """Rank 0 writes the checkpoint (every rank's random state in it) and the metrics."""
    states = [None] * dist.get_world_size()
    mine = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
    }
    dist.all_gather_object(states, mine)
    if dist.get_rank() != 0:
        return
    assert ckpt_path is not None
    tr._save_checkpoint(
        ckpt_path,
        {
            "format": tr._FORMAT,
            "version": tr._VERSION,
            "epoch": epoch + 1,
            "step": step,
            "config": config,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": {
                "torch": [s["torch"] for s in states],  # type: ignore[index]
                "cuda": [s["cuda"] for s in states] if dev.type == "cuda" else None,  # type: ignore[index]
                "data_epoch": epoch + 1,
            },
            "history": history,
        },
    )
    tr._write_metrics(
        out,
        history,
        {
            "config": config,
            "device": str(dev),
            "epochs_completed": epoch + 1,
            "completed": epoch + 1 == epochs,
        },
    )


# ----------------------------------------------------------------- process group, CLI
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
            f"processes with torchrun, e.g. `torchrun --nproc-per-node 2 -m pathnet.train.ddp "
            f"mlp ...` or `torchrun --nproc-per-node 2 --no-python pathnet train --ddp ...`"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device in ("auto", "cuda"):
        dev = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        if device == "cuda" and dev.type != "cuda":
            raise ValueError(f"{_PREFIX}: --device cuda: no CUDA device is available")
    else:
        dev = _trainer().resolve_device(device)
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


def add_ddp_arguments(parser: argparse.ArgumentParser, *, flag: bool = True) -> None:
    """Add the options of data-parallel training to a ``pathnet train`` parser.

    ``flag`` adds ``--ddp`` itself (omit it where DDP is implied). The parser is expected
    to have ``pathnet train``'s options too (model, --dataset, --data-root, --download,
    --mask, --epochs, --lr, --batch-size, --seed, --device, --amp, --out, --resume).
    """
    g = parser.add_argument_group("data-parallel training (under torchrun)")
    if flag:
        g.add_argument(
            "--ddp",
            action="store_true",
            help="train with DistributedDataParallel over the processes torchrun starts: "
            "torchrun --nproc-per-node N --no-python pathnet train --ddp ...",
        )
    g.add_argument(
        "--backend",
        choices=("auto", "nccl", "gloo"),
        default="auto",
        help="torch.distributed backend (default: nccl on CUDA, gloo on the CPU)",
    )
    g.add_argument(
        "--method",
        default=None,
        help="select the mask with this method on rank 0 and broadcast it (instead of --mask)",
    )
    g.add_argument("--density", type=float, default=None, help="density for --method, in (0, 1]")
    g.add_argument(
        "--mask-seed",
        type=int,
        default=None,
        help="seed of --method (default: --seed, as `pathnet prune` uses it)",
    )
    g.add_argument(
        "--sync-batchnorm",
        action="store_true",
        help="BatchNorm statistics over the global batch (SyncBatchNorm)",
    )


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    from pathnet import models

    p.add_argument("model", help=f"zoo model name, one of: {', '.join(sorted(models.MODELS))}")
    p.add_argument("--num-classes", type=int, default=None, help="output classes (model default)")
    p.add_argument("--dataset", default="fashion-mnist", help="dataset (default fashion-mnist)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset")
    p.add_argument("--download", action="store_true", help="download the dataset if missing")
    p.add_argument(
        "--mask", default=None, help="mask file (.npz), read on rank 0; dense if omitted"
    )
    p.add_argument("--epochs", type=int, default=160, help="epochs (default 160)")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default 0.1)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=128,
        help="global batch size, over all ranks (default 128)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the initial weights and data order (default 0)"
    )
    p.add_argument(
        "--device", default="auto", help="auto (cuda:LOCAL_RANK if available), cpu, cuda"
    )
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--out", default="runs/train", help="folder for metrics and checkpoints")
    p.add_argument("--resume", action="store_true", help="resume from the checkpoint in --out")


def run_ddp_from_args(args: argparse.Namespace) -> int:
    """Run ``pathnet train --ddp`` from parsed arguments (on every torchrun process)."""
    from pathnet import models
    from pathnet.data import load_dataset
    from pathnet.select.registry import resolve_density, select

    method = getattr(args, "method", None)
    mask_file = getattr(args, "mask", None)
    if method and mask_file:
        raise ValueError(f"{_PREFIX}: give --mask or --method, not both")
    density = resolve_density(args.density) if method else None
    if not method and getattr(args, "density", None) is not None:
        raise ValueError(f"{_PREFIX}: --density needs --method")
    mask_seed = args.seed if getattr(args, "mask_seed", None) is None else args.mask_seed
    with distributed(getattr(args, "backend", "auto"), args.device) as (rank, world, dev):
        kwargs: dict[str, Any] = {"seed": args.seed}
        if getattr(args, "num_classes", None) is not None:
            kwargs["num_classes"] = args.num_classes
        model = models.build(args.model, **kwargs)
        root, download = args.data_root, getattr(args, "download", False)
        if rank == 0 and download:  # one download, then everyone reads
            load_dataset(args.dataset, "train", root=root, download=True)
            load_dataset(args.dataset, "test", root=root, download=True)
        dist.barrier()
        train = load_dataset(args.dataset, "train", root=root)
        test = load_dataset(args.dataset, "test", root=root)
        shape = tuple(getattr(model, "input_shape", train.input_shape))
        if tuple(train.input_shape) != shape:
            raise ValueError(
                f"{_PREFIX}: model {args.model} takes inputs {shape} but "
                f"{args.dataset} has {tuple(train.input_shape)}"
            )
        mask_fn: MaskArg = None
        if mask_file:
            mask_fn = lambda m: Mask.load(mask_file, model=m)  # noqa: E731
        elif method:
            mask_fn = lambda m: select(method, m, density, seed=mask_seed)  # noqa: E731
        result = fit_ddp(
            model,
            mask_fn,
            train,
            test,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            device=dev,
            amp=args.amp,
            out_dir=args.out,
            resume=args.resume,
            sync_batchnorm=getattr(args, "sync_batchnorm", False),
            progress=rank == 0,
        )
        if rank == 0:
            final = result.final
            print(
                f"{world} processes ({dev.type}): test accuracy {final['test_acc']:.4f}, train "
                f"accuracy {final['train_acc']:.4f} after {final['epoch']} epochs; metrics in "
                f"{args.out}"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun --nproc-per-node N -m pathnet.train.ddp MODEL [options]``."""
    parser = argparse.ArgumentParser(
        prog="python -m pathnet.train.ddp",
        description="Train a (masked) model with DistributedDataParallel; start it with "
        "torchrun --nproc-per-node N -m pathnet.train.ddp MODEL ...",
    )
    _add_train_arguments(parser)
    add_ddp_arguments(parser, flag=False)
    args = parser.parse_args(argv)
    try:
        return run_ddp_from_args(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"pathnet train --ddp: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
