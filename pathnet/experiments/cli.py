"""``pathnet sweep`` and ``pathnet collect``: argparse subcommands for :mod:`pathnet.experiments`.

:func:`add_parsers` adds both to the ``pathnet`` command's subparsers; every command
function returns an exit code and raises ``ValueError`` (one line) for user mistakes.
``python -m pathnet.experiments.cli sweep CONFIG`` runs them without the main command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_parsers", "cmd_collect", "cmd_sweep", "main"]

_PREFIX = "pathnet.experiments: "


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _user_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Re-raise user errors without the module prefix (the CLI names the command)."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (ValueError, FileNotFoundError) as exc:
            raise type(exc)(str(exc).replace(_PREFIX, "")) from None

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def _slurm_options(pairs: Sequence[str]) -> dict[str, Any]:
    from pathnet._text import parse_options

    return parse_options(pairs, "--slurm-option")


@_user_errors
def cmd_sweep(args: argparse.Namespace) -> int:
    """Run (or, with ``--dry-run``, list) the trials of a sweep file."""
    from pathnet._text import format_table
    from pathnet.experiments.config import load_config
    from pathnet.experiments.run import RunOptions, run_sweep, trial_states

    config = load_config(args.config)
    out = Path(args.out or config.out or Path("runs") / "sweep" / Path(args.config).stem)
    if args.dry_run:
        rows = trial_states(config, out)
        print(format_table(rows, ["name", "state", "epochs", "mask"]))
        states = [r["state"] for r in rows]
        print(
            f"{len(rows)} trials in {out}: "
            + ", ".join(
                f"{states.count(s)} {s}" for s in ("finished", "partial", "failed", "pending")
            )
        )
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
        slurm_options=_slurm_options(args.slurm_option),
        wait=not args.no_wait,
    )
    if not report.waited:
        print(
            f"pathnet sweep: when the jobs end, `pathnet collect {out}` makes the table and figure"
        )
        return 0
    failed = [s for s in report.statuses if s["status"] == "failed"]
    print(
        f"pathnet sweep: {report.total} trials: {report.count('done')} ran, "
        f"{report.count('skipped')} were finished before, {len(failed)} failed, "
        f"{report.count('busy')} busy in another process"
    )
    for s in failed:
        print(f"  failed: {s['name']}: {s['error']} (see {out}/trials/{s['name']}/error.txt)")
    if report.ok:
        print(f"pathnet sweep: done; `pathnet collect {out}` makes the table and figure")
        return 0
    print("pathnet sweep: incomplete; run the same command again to retry or resume")
    return 1


@_user_errors
def cmd_collect(args: argparse.Namespace) -> int:
    """Write a sweep's results table and accuracy figure."""
    from pathnet._text import format_table
    from pathnet.experiments.collect import collect

    result = collect(
        args.sweep_dir,
        csv_path=args.out,
        figure_path=args.figure,
        title=args.title,
        figure=not args.no_figure,
        all_trials=args.all_trials,
    )
    print(
        format_table(
            result.summary, ["setting", "method", "density %", "runs", "mean", "min", "max"]
        )
    )
    print(f"wrote {result.csv} ({len(result.rows)} trials)")
    if result.figure is not None:
        print(f"wrote {result.figure}")
    if result.missing:
        print(
            f"pathnet collect: {len(result.missing)} trial(s) of the sweep have not finished: "
            + ", ".join(result.missing[:5])
            + (" ..." if len(result.missing) > 5 else "")
        )
    return 0


def add_parsers(subparsers: Any) -> None:
    """Add the ``sweep`` and ``collect`` subcommands to an argparse subparsers object."""
    from pathnet.experiments.run import EXECUTORS

    p = subparsers.add_parser(
        "sweep",
        help="run a grid of prune-and-train trials (resumable; local pool, submitit or SLURM)",
        description=(
            "Run every trial of a sweep file (TOML; YAML with PyYAML): the product of its "
            "[grid] lists with its [fixed] settings. Each trial is written to "
            "OUT/trials/<method>-d<density>-s<seed>-<hash>/; finished trials are skipped and "
            "interrupted ones resume from their last epoch, so rerunning the same command "
            "completes a sweep. Masks are built once per mask key in OUT/masks/."
        ),
    )
    p.add_argument("config", help="sweep file (.toml, .yaml/.yml with PyYAML, or .json)")
    p.add_argument(
        "--out",
        default=None,
        help="sweep folder (default: the file's `out`, else runs/sweep/<file name>)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: process pool here (default); submitit-local: submitit's local jobs; "
        "slurm: a SLURM job array through submitit",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="local: worker processes (1 runs in this process, the default); "
        "submitit-local: jobs; with several GPUs each local worker gets one",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="torch threads per trial (default: this machine's CPUs shared among the workers)",
    )
    p.add_argument(
        "--device", default="auto", help="torch device of every trial: auto (default), cpu, cuda"
    )
    p.add_argument(
        "--data-root", default=None, help="folder holding the data sets (default: the usual search)"
    )
    p.add_argument("--download", action="store_true", help="download missing data sets")
    p.add_argument("--progress", action="store_true", help="a progress bar per trial")
    p.add_argument(
        "--dry-run", action="store_true", help="list the trials and their state; run nothing"
    )
    g = p.add_argument_group("submitit executors (submitit-local, slurm)")
    g.add_argument(
        "--timeout-min",
        type=_positive_int,
        default=240,
        help="time limit of one job in minutes (default 240); a timed-out SLURM job is "
        "requeued and resumes",
    )
    g.add_argument(
        "--no-wait",
        action="store_true",
        help="submit the jobs and return; `pathnet collect` once they end",
    )
    g.add_argument(
        "--array-parallelism",
        type=_positive_int,
        default=64,
        help="slurm: array tasks running at once (default 64)",
    )
    g.add_argument(
        "--trials-per-job",
        type=_positive_int,
        default=1,
        help="slurm: trials run in turn by one array task (default 1)",
    )
    g.add_argument("--partition", default=None, help="slurm: partition")
    g.add_argument("--gpus-per-node", type=int, default=None, help="GPUs of each job")
    g.add_argument("--cpus-per-task", type=int, default=None, help="CPUs of each job")
    g.add_argument("--mem-gb", type=float, default=None, help="memory of each job, in GB")
    g.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="further submitit slurm_KEY parameter, repeatable: --slurm-option account=abc "
        "--slurm-option qos=high",
    )
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser(
        "collect",
        help="one CSV row per finished trial of a sweep, and its accuracy-vs-density figure",
        description=(
            "Read SWEEP_DIR/trials/*/result.json and write results.csv (configuration "
            "columns and final metrics, one row per trial) and accuracy_vs_density.png "
            "(mean and min-max over seeds, log density axis)."
        ),
    )
    p.add_argument("sweep_dir", help="folder written by `pathnet sweep`")
    p.add_argument("--out", default=None, help="CSV file (default SWEEP_DIR/results.csv)")
    p.add_argument(
        "--figure", default=None, help="PNG file (default SWEEP_DIR/accuracy_vs_density.png)"
    )
    p.add_argument("--no-figure", action="store_true", help="write the CSV only")
    p.add_argument("--title", default=None, help="figure title")
    p.add_argument(
        "--all",
        dest="all_trials",
        action="store_true",
        help="every trial in SWEEP_DIR/trials, not only those of the last `pathnet sweep`",
    )
    p.set_defaults(func=cmd_collect)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pathnet.experiments.cli {sweep,collect} ...``."""
    parser = argparse.ArgumentParser(prog="pathnet", description="pathnet sweeps")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_parsers(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"pathnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as exc:
        print(f"pathnet {args.command}: error: {str(exc).replace(_PREFIX, '')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
