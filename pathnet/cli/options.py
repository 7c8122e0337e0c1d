"""The argument blocks several ``pathnet`` subcommands share: model, seed, density,
device, dataset, training hyper-parameters and data-parallel training."""

from __future__ import annotations

import argparse
from typing import Any


def _add_model(p: argparse.ArgumentParser) -> None:
    """MODEL and the options that say how to build it; read them with ``_model(args)`` or
    ``_model_and_mask(args)``."""
    from pathnet import models

    p.add_argument(
        "model",
        metavar="MODEL",
        help=f"zoo name ({', '.join(sorted(models.MODELS))}), path/to/file.py:FUNCTION or "
        "package.module:FUNCTION (a function returning an nn.Module)",
    )
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument of the model function, repeatable, JSON values: "
        "--model-arg in_channels=1 --model-arg sizes=[784,100,10]",
    )
    p.add_argument("--num-classes", type=int, default=None, help="output classes (model default)")
    p.add_argument(
        "--weights",
        default=None,
        metavar="FILE",
        help="load these weights: a state dict (torch.save(model.state_dict(), FILE)) or a "
        "`pathnet train` checkpoint; read with torch.load(weights_only=True)",
    )
    p.add_argument(
        "--input-shape",
        default=None,
        metavar="C,H,W",
        help="per-sample input shape, for a model without an input_shape attribute",
    )


def _add_density(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--density", type=float, help="fraction of weights to keep, in (0, 1]")
    g.add_argument(
        "--compression", type=float, help="alternative to --density: density = 10**-compression"
    )


def _add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the model's initialisation and of the method (default: the seed the "
        "--mask file records, else 0)",
    )


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="torch device: auto (CUDA if available), cpu, cuda, cuda:1"
    )


def _add_dataset(p: argparse.ArgumentParser, *, download: bool = False) -> None:
    p.add_argument(
        "--dataset", default="fashion-mnist", help="dataset name (default fashion-mnist)"
    )
    p.add_argument("--data-root", default=None, help="folder holding the dataset")
    if download:
        p.add_argument("--download", action="store_true", help="download the dataset if missing")


def _add_train_config(
    p: argparse.ArgumentParser, *, defaults: dict[str, Any] | None = None, **helps: str
) -> None:
    """The training hyper-parameters, one option per TrainConfig field."""
    from pathnet.train.config import add_arguments

    g = p.add_argument_group("training hyper-parameters")
    add_arguments(g, defaults=defaults, help_overrides=helps)  # type: ignore[arg-type]
    p.set_defaults(_train_defaults=dict(defaults or {}))


def add_ddp_arguments(parser: argparse.ArgumentParser, *, flag: bool = True) -> None:
    """Add the options of data-parallel training to a ``pathnet train`` parser.

    ``flag`` adds ``--ddp`` itself (omit it where DDP is implied).
    """
    g = parser.add_argument_group("data-parallel training (under torchrun)")
    if flag:
        g.add_argument(
            "--ddp",
            action="store_true",
            help="train with DistributedDataParallel over the processes torchrun starts: "
            "torchrun --nproc-per-node N -m pathnet train MODEL --ddp ...",
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
