"""``pathnet imp-similarity``, ``reproduce``, ``figures``, ``sweep`` and ``collect``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pathnet.cli._common import UserError, _data_methods, _device, _options
from pathnet.cli.options import _add_device, _positive_int


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


def add_imp_similarity_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``imp-similarity`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
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
    return p


def add_reproduce_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``reproduce`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
    from pathnet.experiments.reproduce import DEFAULT_METHODS

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
    return p


def add_figures_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``figures`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
    p = sub.add_parser("figures", help="redraw the figures from the CSV files of a reproduce run")
    p.add_argument("dir", nargs="?", default="figures", help="folder of a reproduce run")
    return p


def add_sweep_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``sweep`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
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
    return p


def add_collect_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``collect`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
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
    return p


@_experiment_errors
def cmd_experiment(args: argparse.Namespace) -> int:
    """Run a named experiment (or all), or list them."""
    from pathnet._text import format_table
    from pathnet.experiments import RunOptions
    from pathnet.experiments.named import experiments, run_experiment

    EXPERIMENTS = experiments()

    if args.list or not args.name:
        rows = [
            {"name": e.name, "summary": e.summary,
             "default budget": e.budget.get("default", "")}
            for e in EXPERIMENTS.values()
        ]  # fmt: skip
        print(format_table(rows, ["name", "summary"]))
        print("\nall: every experiment above, in this order. Budgets (default profile):")
        for e in EXPERIMENTS.values():
            print(f"  {e.name}: {e.budget.get('default', '')}")
        return 0
    if args.quick and args.recipe == "paper":
        raise UserError("--quick and --recipe paper exclude each other")
    profile = "quick" if args.quick else ("paper" if args.recipe == "paper" else "default")
    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    for name in names:
        if name not in EXPERIMENTS:
            raise UserError(
                f"unknown experiment {name!r}; expected one of {', '.join(EXPERIMENTS)} or all "
                "(see pathnet experiment --list)"
            )
    options = RunOptions(
        data_root=args.data_root, device=args.device, threads=args.threads, progress=args.progress
    )
    for name in names:
        files = run_experiment(
            name,
            args.out,
            profile=profile,
            executor=args.executor,
            workers=args.workers,
            options=options,
            report_dir=args.report_dir,
            run=not args.report_only,
        )
        print(f"{name}: wrote " + ", ".join(str(f) for f in files))
    return 0


def add_experiment_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``experiment`` subcommand's parser (its ``func`` is set by :func:`pathnet.cli.build_parser`)."""
    from pathnet.experiments.runner import EXECUTORS

    p = sub.add_parser(
        "experiment",
        help="run a named experiment (learn-fast, generalize, sanity, ...); --list shows them",
        description=(
            "Run a named experiment resumably (rerun the same command to complete an "
            "interrupted one) and write its report: a tidy CSV of every trial, summary "
            "tables (mean ± std over seeds), figures and report.md in OUT/<name>. "
            "The default profile fits the CPU budget stated by --list; --quick runs a few "
            "small trials of the same code; --recipe paper uses the PHEW authors' recipe."
        ),
    )
    p.add_argument("name", nargs="?", help="experiment name, or 'all'")
    p.add_argument("--list", action="store_true", help="list the experiments and budgets")
    p.add_argument("--quick", action="store_true", help="a few small trials (under 2 minutes)")
    p.add_argument("--recipe", choices=("default", "paper"), default="default",
                   help="paper: SGD Nesterov 0.9, lr 0.1 x0.1 at epochs 80 and 120, 160 epochs, "
                        "batch 128, weight decay 1e-4, full training set")  # fmt: skip
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local pool (default), submitit-local or slurm")  # fmt: skip
    kind: Callable[[str], Any]
    for flag, kind, default, text in (
        ("--out", str, "runs/experiments", "trials and reports (default runs/experiments)"),
        ("--report-dir", str, None, "write the reports into REPORT_DIR/<name> instead"),
        ("--workers", _positive_int, 1, "worker processes of the local pool (default 1)"),
        ("--threads", _positive_int, None, "torch threads per trial (default: CPUs / workers)"),
        ("--data-root", str, None, "folder holding the data sets (default: the usual search)"),
    ):  # fmt: skip
        p.add_argument(flag, type=kind, default=default, help=text)
    _add_device(p)
    p.add_argument("--progress", action="store_true", help="a progress bar per trial")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the trials finished so far; run nothing")  # fmt: skip
    return p
