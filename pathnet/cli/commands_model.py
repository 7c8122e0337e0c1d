"""``pathnet info``, ``pathnet prune`` and ``pathnet analyze``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pathnet.cli._common import (
    UserError,
    _data_methods,
    _density,
    _model,
    _model_and_mask,
    _options,
    _record_spec,
)
from pathnet.cli.options import _add_density, _add_model, _add_seed


def cmd_info(args: argparse.Namespace) -> int:
    import pathnet

    model, _ = _model(args)
    dag = pathnet.to_dag(model)
    print(f"{args.model}: input {tuple(model.input_shape)}")
    print(dag.summary())
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from pathnet.select import select

    density = _density(args)
    model, spec = _model(args)
    seed = spec.seed
    options = _options(args.option)
    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out} is a folder; expected a mask file name such as mask.npz")
    _check_method_data(args.method, args.data)
    if args.data:
        options["data"] = _data_batch(args, model, seed)
    try:
        mask = select(args.method, model, density, seed=seed, **options)
    except TypeError as exc:  # an unknown --option, or one of the wrong type
        raise UserError(str(exc)) from None
    _record_spec(mask, spec)
    try:
        path = mask.save(args.out)
    except OSError as exc:
        raise UserError(f"--out {args.out}: cannot write: {exc.strerror or exc}") from None
    print(mask.table())
    print(
        f"{args.method}: kept {mask.n_kept:,} of {mask.n_total:,} weights "
        f"(density {mask.density:.4%}, compression {mask.compression:.3f}); wrote {path}"
    )
    return 0


def _check_method_data(method: str, data: str | None) -> None:
    """``pathnet prune``: data-dependent methods need ``--data``; IMP has its own command."""
    key = method.lower().replace("-", "_")
    if key == "imp":
        raise UserError(
            "--method imp trains the network between pruning rounds, which prune does not do "
            "(its --data is a scoring batch): run `pathnet imp MODEL --dataset NAME --density D`"
        )
    if key in _data_methods() and not data:
        raise UserError(
            f"--method {method} needs a batch of real data: pass --data DATASET "
            "(10 images per class of its training split), e.g. --data fashion-mnist"
        )


def _data_batch(args: argparse.Namespace, model: Any, seed: int) -> Any:
    """``--data``: 10 training images per class, fitted to the model's input shape.

    Images smaller than the model's input (28x28 for a 32x32 VGG) are padded with black
    around the centre, as the zoo's docs advise; other mismatches are a ``UserError``.
    """
    import torch

    from pathnet import data as data_mod

    ds = data_mod.load_dataset(args.data, "train", root=args.data_root, download=args.download)
    sub = data_mod.subset_per_class(ds, 10, seed=seed)
    x = sub.images
    want = tuple(model.input_shape)
    have = tuple(x.shape[1:])
    if have == want:
        return (x, sub.labels)
    if len(want) == len(have) == 3 and want[0] != have[0]:
        raise UserError(
            f"--data {args.data} has {have[0]}-channel images {have} but {args.model} takes "
            f"{want}: build the model for them with --model-arg in_channels={have[0]}"
        )
    pad = [w - h for w, h in zip(want[1:], have[1:], strict=False)]
    if len(want) == len(have) == 3 and all(p >= 0 and p % 2 == 0 for p in pad):
        out = sub.pad_value.to(x.dtype)[None, :, None, None].expand(x.shape[0], *want).clone()
        top, left = pad[0] // 2, pad[1] // 2
        out[:, :, top : top + have[1], left : left + have[2]] = x
        return (out, sub.labels)
    if len(want) == 1 and int(torch.tensor(have).prod()) == want[0]:
        return (x.reshape(x.shape[0], -1), sub.labels)
    hint = " (ResNets: --model-arg input_size=N)" if args.model.lower().startswith("resnet") else ""
    raise UserError(f"--data {args.data} has images {have} but {args.model} takes {want}{hint}")


def cmd_analyze(args: argparse.Namespace) -> int:
    from pathnet import analysis

    model, _, mask = _model_and_mask(args)
    table = analysis.summary(model, mask)
    if args.format == "table":
        text = f"{table}\n"
    elif args.format == "csv":
        text = table.to_csv()
    else:
        text = table.to_json() + "\n"
    if args.out:
        from pathnet._io import atomic_write_bytes

        if Path(args.out).is_dir():
            raise UserError(f"--out {args.out} is a folder; expected a file name")
        try:
            atomic_write_bytes(args.out, text.encode())
        except OSError as exc:
            raise UserError(f"--out {args.out}: cannot write: {exc.strerror or exc}") from None
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def add_info_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``info`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
    p = sub.add_parser("info", help="print a model's DAG: groups, sizes, edges, parameters")
    _add_model(p)
    return p


def add_prune_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``prune`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
    p = sub.add_parser("prune", help="select a sparse subnetwork; write a mask file")
    _add_model(p)
    p.add_argument("--method", default="phew", help="selection method (default phew)")
    _add_density(p)
    _add_seed(p)
    p.add_argument("--out", required=True, help="mask file to write (.npz)")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option, repeatable, e.g. --option bias=square --option iterations=50",
    )
    p.add_argument(
        "--data",
        default=None,
        help="dataset for data-dependent methods (snip, grasp): 10 images per class",
    )
    p.add_argument("--data-root", default=None, help="folder holding the --data dataset")
    p.add_argument("--download", action="store_true", help="download the --data dataset if missing")
    return p


def add_analyze_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``analyze`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
    p = sub.add_parser("analyze", help="path analysis of a model and mask")
    _add_model(p)
    p.add_argument("--mask", default=None, help="mask file (.npz); dense if omitted")
    _add_seed(p)
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format"
    )
    p.add_argument("--out", default=None, help="write the output here instead of stdout")
    return p
