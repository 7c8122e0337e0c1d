"""The ``pathnet`` command line.

Subcommands: ``info``, ``prune``, ``analyze``, ``train``, ``imp``, ``imp-similarity``,
``reproduce``, ``figures``, ``sweep``, ``collect``. User mistakes print one line
``pathnet CMD: error: ...`` and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


class UserError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


# ------------------------------------------------------------------ helpers
def _model(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(model, spec)`` from the MODEL options; see :func:`pathnet.specs.model_from_args`."""
    from pathnet.specs import model_from_args

    return model_from_args(args)


def _model_and_mask(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """``(model, spec, mask)``; see :func:`pathnet.specs.model_and_mask_from_args`."""
    from pathnet.specs import model_and_mask_from_args

    return model_and_mask_from_args(args)


def _record_spec(mask: Any, spec: Any) -> None:
    """Write the model's spec into a mask's meta (``pathnet prune``, ``pathnet imp``)."""
    mask.meta["model"] = spec.entry
    mask.meta["model_spec"] = spec.to_meta()


def _density(args: argparse.Namespace) -> float:
    from pathnet.select import resolve_density

    try:
        return resolve_density(args.density, getattr(args, "compression", None))
    except ValueError as exc:
        raise UserError(str(exc).replace("pathnet.select: ", "")) from None


def _options(pairs: Sequence[str], option: str = "--option") -> dict[str, Any]:
    from pathnet._text import parse_options

    try:
        return parse_options(pairs, option)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return dev


def _load_mask(path: str, model: Any = None) -> Any:
    """Read a mask file; checked against ``model`` when given."""
    from pathnet import Mask

    return Mask.load(path, model=model)


# ----------------------------------------------------------------- commands
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


def _data_methods() -> frozenset[str]:
    from pathnet.experiments.config import DATA_METHODS

    return frozenset(DATA_METHODS)


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


def cmd_imp_similarity(args: argparse.Namespace) -> int:
    from pathnet._text import format_table
    from pathnet.experiments.imp_similarity import imp_similarity

    rows = imp_similarity(
        args.model,
        args.dataset,
        densities=tuple(args.densities),
        methods=tuple(args.methods),
        seeds=tuple(range(args.seeds)),
        epochs_per_round=args.epochs,
        out_dir=args.out,
        data_root=args.data_root,
        device=_device(args.device),
        progress=not args.quiet,
        workers=args.workers,
    )
    overall = [r for r in rows if r["layer"] == "(all)"]
    cols = [
        "seed",
        "imp_density",
        "method",
        "jaccard",
        "jaccard_units",
        "width_imp",
        "width_method",
    ]
    print(format_table(overall, cols))
    print(f"wrote {args.out}/imp_similarity.csv and its figures")
    return 0


def _check_reproduce_args(args: argparse.Namespace) -> None:
    """Refuse ``pathnet reproduce`` options it cannot run, before any work or progress bar."""
    from pathnet import models
    from pathnet.select import METHODS
    from pathnet.select.registry import _load_builtin_methods

    for name in args.models:
        if name.lower() not in models.MODELS:
            raise UserError(
                f"--models: unknown model {name!r}; reproduce runs zoo models: "
                f"{', '.join(sorted(models.MODELS))}"
            )
    _load_builtin_methods()
    for method in args.methods or ():
        key = method.lower().replace("-", "_")
        if key not in METHODS:
            raise UserError(
                f"--methods: unknown method {method!r}; expected one of {sorted(METHODS)}"
            )
        if key in _data_methods() | {"imp"}:
            raise UserError(
                f"--methods: {method} is data-dependent (it needs real data or training); "
                "reproduce runs the data-free methods only, e.g. phew synflow_l2 synflow random"
            )
    for d in args.densities or ():
        if not 0 < d <= 1:
            raise UserError(f"--densities: each density must be in (0, 1], got {d}")
    for option in ("seeds", "workers", "synflow_iterations"):
        if getattr(args, option) < 1:
            flag = "--" + option.replace("_", "-")
            raise UserError(f"{flag} must be a positive integer, got {getattr(args, option)}")


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pathnet.experiments.reproduce import (
        DEFAULT_DENSITIES,
        DEFAULT_METHODS,
        ReproduceConfig,
        reproduce,
    )

    _check_reproduce_args(args)
    config = ReproduceConfig(
        models=tuple(args.models),
        methods=tuple(args.methods or DEFAULT_METHODS),
        densities=tuple(args.densities or DEFAULT_DENSITIES),
        seeds=tuple(range(args.seeds)),
        synflow_iterations=args.synflow_iterations,
        workers=args.workers,
        accuracy=not args.no_accuracy,
    )
    reproduce(args.out, config, progress=not args.quiet)
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from pathnet._io import read_csv
    from pathnet.experiments.reproduce import draw_figures

    folder = Path(args.dir)
    results_csv = folder / "reproduce_results.csv"
    if not results_csv.is_file():
        raise UserError(f"no {results_csv}; run `pathnet reproduce --out {folder}` first")

    def rows(name: str) -> list[dict[str, str]]:
        path = folder / name
        return read_csv(path) if path.is_file() else []

    written = draw_figures(
        folder,
        read_csv(results_csv),
        rows("reproduce_widths.csv"),
        rows("reproduce_accuracy.csv"),
    )
    for p in written:
        print(f"wrote {p}")
    return 0


_EXPERIMENTS = "pathnet.experiments: "


def _experiment_errors(
    fn: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """Re-raise pathnet.experiments' user errors without the module prefix."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (ValueError, FileNotFoundError) as exc:
            raise type(exc)(str(exc).replace(_EXPERIMENTS, "")) from None

    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


def _train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The training options given on the command line (checked by TrainConfig)."""
    from pathnet.train.config import TrainConfig, from_namespace

    config = from_namespace(args).to_dict()
    names = TrainConfig.field_names()
    return {k: config[k] for k in names if getattr(args, f"train_{k}", None) is not None}


@_experiment_errors
def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or, with ``--dry-run``, list) the trials of a sweep file."""
    from pathnet.experiments import RunOptions, load_config, run_sweep, trial_states
    from pathnet.experiments.sweep import report_lines, state_lines

    config = load_config(args.config).override(_train_overrides(args))
    out = Path(args.out or config.out or Path("runs") / "sweep" / Path(args.config).stem)
    if args.dry_run:
        print("\n".join(state_lines(trial_states(config, out), out)))
        return 0
    options = RunOptions(
        data_root=args.data_root or config.data_root,
        download=args.download,
        device=args.device,
        threads=args.threads,
        progress=args.progress,
    )
    report = run_sweep(
        config,
        out,
        executor=args.executor,
        workers=args.workers,
        options=options,
        trials_per_job=args.trials_per_job,
        timeout_min=args.timeout_min,
        array_parallelism=args.array_parallelism,
        slurm_partition=args.partition,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        slurm_options=_options(args.slurm_option, "--slurm-option"),
        wait=not args.no_wait,
    )
    print("\n".join(report_lines(report, out)))
    return 0 if report.ok or not report.waited else 1


@_experiment_errors
def cmd_collect(args: argparse.Namespace) -> int:
    """Write a sweep's results table and accuracy figure."""
    from pathnet.experiments.collect import collect

    result = collect(
        args.sweep_dir,
        csv_path=args.out,
        figure_path=args.figure,
        title=args.title,
        figure=not args.no_figure,
        all_trials=args.all_trials,
    )
    print("\n".join(result.lines()))
    return 0


# ------------------------------------------------------------------- parser
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


def _add_sweep_parsers(sub: Any) -> None:
    """The ``sweep`` and ``collect`` subcommands."""
    from pathnet.experiments.runner import EXECUTORS
    from pathnet.train.config import add_arguments

    p = sub.add_parser(
        "sweep",
        help="run a grid of prune-and-train trials (resumable; local pool, submitit or SLURM)",
        description=(
            "Run every trial of a sweep file (TOML; YAML with PyYAML; JSON): the product of "
            "its [grid] lists with its [fixed] settings. Each trial is written to "
            "OUT/trials/<method>-d<density>-s<seed>-<hash>/; finished trials are skipped and "
            "interrupted ones resume from their last epoch, so rerunning the same command "
            "completes a sweep. Masks are built once per mask key in OUT/masks/."
        ),
    )
    p.add_argument("config", help="sweep file (.toml, .yaml/.yml with PyYAML, or .json)")
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: process pool here (default); submitit-local: submitit's local jobs; "
        "slurm: a SLURM job array through submitit",
    )
    kind: Callable[[str], Any]
    for flag, kind, default, text in (
        ("--out", str, None, "sweep folder (default: the file's `out`, else runs/sweep/<file>)"),
        ("--workers", _positive_int, 1, "local: worker processes (1, the default, runs in "
         "this process); submitit-local: jobs; with several GPUs each local worker gets one"),
        ("--threads", _positive_int, None,
         "torch threads per trial (default: this machine's CPUs shared among the workers)"),
        ("--device", str, "auto", "torch device of every trial: auto (default), cpu, cuda"),
        ("--data-root", str, None, "folder holding the data sets (default: the usual search)"),
    ):  # fmt: skip
        p.add_argument(flag, type=kind, default=default, help=text)
    for flag, text in (
        ("--download", "download missing data sets"),
        ("--progress", "a progress bar per trial"),
        ("--dry-run", "list the trials and their state; run nothing"),
    ):
        p.add_argument(flag, action="store_true", help=text)
    add_arguments(
        p.add_argument_group("training settings (replace the sweep file's, for every trial)")
    )
    g = p.add_argument_group("submitit executors (submitit-local, slurm)")
    for flag, kind, default, text in (
        ("--timeout-min", _positive_int, 240, "time limit of one job in minutes (default "
         "240); a timed-out SLURM job is requeued and resumes"),
        ("--array-parallelism", _positive_int, 64, "slurm: array tasks running at once (default 64)"),
        ("--trials-per-job", _positive_int, 1, "slurm: trials run in turn by one array task (default 1)"),
        ("--partition", str, None, "slurm: partition"),
        ("--gpus-per-node", int, None, "GPUs of each job"),
        ("--cpus-per-task", int, None, "CPUs of each job"),
        ("--mem-gb", float, None, "memory of each job, in GB"),
    ):  # fmt: skip
        g.add_argument(flag, type=kind, default=default, help=text)
    g.add_argument(
        "--no-wait", action="store_true", help="submit the jobs and return; `pathnet collect` later"
    )
    g.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="further submitit slurm_KEY parameter, repeatable: --slurm-option account=abc",
    )
    p.set_defaults(func=cmd_sweep)
    _add_collect_parser(sub)


def _add_collect_parser(sub: Any) -> None:
    p = sub.add_parser(
        "collect",
        help="one CSV row per finished trial of a sweep, and its accuracy-vs-density figure",
        description=(
            "Read SWEEP_DIR/trials/*/result.json and write results.csv (configuration "
            "columns and final metrics, one row per trial) and accuracy_vs_density.png "
            "(mean and min-max over seeds, log density axis)."
        ),
    )
    p.add_argument("sweep_dir", help="folder written by `pathnet sweep`")
    for flag, text in (
        ("--out", "CSV file (default SWEEP_DIR/results.csv)"),
        ("--figure", "PNG file (default SWEEP_DIR/accuracy_vs_density.png)"),
        ("--title", "figure title"),
    ):
        p.add_argument(flag, default=None, help=text)
    p.add_argument("--no-figure", action="store_true", help="write the CSV only")
    p.add_argument(
        "--all",
        dest="all_trials",
        action="store_true",
        help="every trial in SWEEP_DIR/trials, not only those of the last `pathnet sweep`",
    )
    p.set_defaults(func=cmd_collect)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: ...``, exit status 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from pathnet import __version__
    from pathnet.experiments.reproduce import DEFAULT_METHODS

    parser = OneLineParser(
        prog="pathnet",
        description="Neural networks as layered DAGs of paths: PHEW, SynFlow-L2, path analysis.",
    )
    parser.add_argument("--version", action="version", version=f"pathnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="print a model's DAG: groups, sizes, edges, parameters")
    _add_model(p)
    p.set_defaults(func=cmd_info)

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
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("analyze", help="path analysis of a model and mask")
    _add_model(p)
    p.add_argument("--mask", default=None, help="mask file (.npz); dense if omitted")
    _add_seed(p)
    p.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output format"
    )
    p.add_argument("--out", default=None, help="write the output here instead of stdout")
    p.set_defaults(func=cmd_analyze)

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
    p.set_defaults(func=cmd_train)

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
    p.set_defaults(func=cmd_imp)

    p = sub.add_parser(
        "imp-similarity",
        help="compare PHEW, SynFlow-L2, SynFlow and random masks with IMP masks",
    )
    p.add_argument("model", nargs="?", default="mlp", help="zoo model name (default mlp)")
    p.add_argument(
        "--dataset", default="fashion-mnist", help="dataset name (default fashion-mnist)"
    )
    p.add_argument("--data-root", default=None, help="folder holding the dataset")
    p.add_argument(
        "--densities",
        nargs="+",
        type=float,
        default=[0.1, 0.05, 0.02],
        help="densities to match (default 0.1 0.05 0.02; the nearest IMP round is used)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=["phew", "synflow_l2", "synflow", "random"],
        help="methods compared with IMP",
    )
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per IMP round")
    _add_device(p)
    p.add_argument(
        "--out", default="figures/imp_similarity", help="output folder (IMP rounds are cached)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--workers", type=_positive_int, default=1, help="worker processes, one seed each"
    )
    p.set_defaults(func=cmd_imp_similarity)

    p = sub.add_parser(
        "reproduce",
        help="the paper's data-free width and path-kernel figures (no data needed)",
    )
    p.add_argument("--out", default="figures", help="output folder (default figures/)")
    p.add_argument(
        "--models", nargs="+", default=["vgg16", "resnet20"], help="models (default vgg16 resnet20)"
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help=f"methods (default {' '.join(DEFAULT_METHODS)})",
    )
    p.add_argument(
        "--densities",
        nargs="+",
        type=float,
        default=None,
        help="densities (default 0.8**k for k=3..18 plus 0.1, 0.05, 0.02)",
    )
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    p.add_argument(
        "--synflow-iterations", type=int, default=100, help="SynFlow iterations (default 100)"
    )
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--no-accuracy", action="store_true", help="skip the Fashion-MNIST accuracy figure"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("figures", help="redraw the figures from the CSV files of a reproduce run")
    p.add_argument("dir", nargs="?", default="figures", help="folder of a reproduce run")
    p.set_defaults(func=cmd_figures)

    _add_sweep_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pathnet`` command; returns the exit status.

    User mistakes print one line ``pathnet CMD: error: ...`` on stderr and return 2; an
    interrupt returns 130; a bug (an exception pathnet did not raise for the user) keeps
    its traceback.
    """
    command = "pathnet"
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a one-line usage error
            return exc.code if isinstance(exc.code, int) else 2
        command = f"pathnet {args.command}"
        func: Callable[[argparse.Namespace], int] = args.func
        try:
            return func(args)
        except Exception as exc:
            msg = _user_message(exc, args)
            if msg is None:
                raise
            print(f"{command}: error: {msg}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130


def _user_message(exc: BaseException, args: argparse.Namespace) -> str | None:
    """The one line to print for a user mistake, or None for a bug (keep the traceback)."""
    from pathnet.specs import ModelSpecError

    if isinstance(exc, ModelSpecError):
        return exc.cli_message()
    if type(exc).__name__ == "DatasetNotFoundError":
        first = str(exc).splitlines()[0].replace("pathnet.data: ", "").split(". Looked in")[0]
        searched = getattr(exc, "searched", ())
        where = f" (looked in {', '.join(str(p) for p in searched[:3])}" + (
            f" and {len(searched) - 3} more)" if len(searched) > 3 else ")"
        )
        fix = (
            "pass --download to fetch it"
            if hasattr(args, "download")
            else "fetch it once with `pathnet train MODEL --dataset NAME --download`"
        )
        return f"{first}{where if searched else ''}; {fix}, or set PATHNET_DATA to its folder"
    if isinstance(exc, (UserError, ValueError, OSError)):
        pass
    elif isinstance(exc, (KeyError, RuntimeError, TypeError)):
        text = str(exc).strip("'\"")
        if not text.startswith("pathnet"):  # not one of pathnet's own messages
            return None
    else:
        return None
    text = str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
