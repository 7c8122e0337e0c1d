"""``pathnet train`` (also ``--ddp`` under torchrun) and ``pathnet imp``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pathnet.cli._common import (
    UserError,
    _density,
    _device,
    _load_mask,
    _model,
    _model_and_mask,
    _record_spec,
)
from pathnet.cli.options import (
    _add_dataset,
    _add_density,
    _add_device,
    _add_model,
    _add_seed,
    _add_train_config,
    add_ddp_arguments,
)


def cmd_train(args: argparse.Namespace) -> int:
    from pathnet.train.config import from_namespace

    config = from_namespace(args)
    if args.ddp:
        return _run_ddp(args, config)
    if args.method is not None or args.density is not None:
        raise UserError(
            "--method/--density select the mask inside a --ddp run; without --ddp, "
            "write a mask with `pathnet prune` and pass it with --mask"
        )
    from pathnet import data as data_mod
    from pathnet.train import fit

    model, spec, mask = _model_and_mask(args)
    train = data_mod.load_dataset(
        args.dataset, "train", root=args.data_root, download=args.download
    )
    test = data_mod.load_dataset(args.dataset, "test", root=args.data_root, download=args.download)
    if tuple(train.input_shape) != tuple(model.input_shape):
        raise UserError(
            f"model {args.model} takes inputs {tuple(model.input_shape)} but {args.dataset} "
            f"has {tuple(train.input_shape)}"
        )
    result = fit(
        model,
        mask,
        train,
        test,
        config=config,
        seed=spec.seed,
        device=_device(args.device),
        out_dir=args.out,
        resume=args.resume,
    )
    final = result["final"]
    print(
        f"test accuracy {final['test_acc']:.4f}, train accuracy {final['train_acc']:.4f} "
        f"after {final['epoch']} epochs; metrics in {args.out}"
    )
    return 0


def _run_ddp(args: argparse.Namespace, config: Any) -> int:
    """``pathnet train --ddp``, on every process torchrun starts."""
    import torch.distributed as dist

    from pathnet.data import load_dataset
    from pathnet.select.registry import select
    from pathnet.train.ddp import distributed, fit_ddp

    method, mask_file = args.method, args.mask
    if method and mask_file:
        raise UserError("give --mask or --method, not both")
    if not method and args.density is not None:
        raise UserError("--density needs --method")
    density = _density(args) if method else None
    with distributed(args.backend, args.device) as (rank, world, dev):
        model, spec, mask = _model_and_mask(args)  # the mask's recorded seed if none given
        mask_seed = spec.seed if args.mask_seed is None else args.mask_seed
        if rank == 0 and args.download:  # one download, then everyone reads
            load_dataset(args.dataset, "train", root=args.data_root, download=True)
            load_dataset(args.dataset, "test", root=args.data_root, download=True)
        dist.barrier()
        train = load_dataset(args.dataset, "train", root=args.data_root)
        test = load_dataset(args.dataset, "test", root=args.data_root)
        shape = tuple(getattr(model, "input_shape", train.input_shape))
        if tuple(train.input_shape) != shape:
            raise UserError(
                f"model {args.model} takes inputs {shape} but {args.dataset} has "
                f"{tuple(train.input_shape)}"
            )
        mask_fn: Any = None
        if mask is not None:
            mask_fn = lambda m: _load_mask(mask_file, m)  # noqa: E731
        elif method:
            mask_fn = lambda m: select(method, m, density, seed=mask_seed)  # noqa: E731
        result = fit_ddp(
            model,
            mask_fn,
            train,
            test,
            config=config,
            seed=spec.seed,
            device=dev,
            out_dir=args.out,
            resume=args.resume,
            sync_batchnorm=args.sync_batchnorm,
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


def cmd_imp(args: argparse.Namespace) -> int:
    from pathnet import data as data_mod
    from pathnet.train import imp
    from pathnet.train.config import from_namespace

    config = from_namespace(args)
    density = _density(args)
    model, spec = _model(args)
    train = data_mod.load_dataset(args.dataset, "train", root=args.data_root)
    test = data_mod.load_dataset(args.dataset, "test", root=args.data_root)
    masks = imp(
        model,
        train,
        test_data=test,
        density=density,
        fraction=args.fraction,
        rewind=int(args.rewind) if str(args.rewind).isdigit() else args.rewind,
        scope=args.scope,
        config=config,
        seed=spec.seed,
        device=_device(args.device),
        out_dir=args.out,
    )
    for k, m in enumerate(masks, start=1):
        print(f"round {k}/{len(masks)}: density {m.density:.4%}")
    final = Path(args.out) / "imp_final_mask.npz"
    _record_spec(masks[-1], spec)
    masks[-1].save(final)
    print(f"wrote {final}")
    return 0


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``train`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
    p = sub.add_parser("train", help="train a (masked) model on a dataset")
    _add_model(p)
    _add_dataset(p, download=True)
    p.add_argument("--mask", default=None, help="mask file (.npz); dense if omitted")
    _add_seed(p)
    _add_device(p)
    p.add_argument("--out", default="runs/train", help="folder for metrics and checkpoints")
    p.add_argument(
        "--resume",
        action="store_true",
        help="resume from the last checkpoint in --out (a larger --epochs extends the run)",
    )
    _add_train_config(p, batch_size="batch size (with --ddp: the global batch, over all ranks)")
    add_ddp_arguments(p)
    return p


def add_imp_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``imp`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
    p = sub.add_parser("imp", help="iterative magnitude pruning with rewinding")
    _add_model(p)
    _add_dataset(p)
    _add_density(p)
    p.add_argument("--fraction", type=float, default=0.2, help="pruned per round (default 0.2)")
    p.add_argument(
        "--rewind",
        default="init",
        help="'init' or an iteration number to rewind the surviving weights to",
    )
    p.add_argument("--scope", choices=("global", "layer"), default="global", help="pruning scope")
    _add_seed(p)
    _add_device(p)
    p.add_argument("--out", default="runs/imp", help="folder for the rounds (resumable)")
    _add_train_config(p, defaults={"epochs": 1}, epochs="training epochs per round")
    return p
