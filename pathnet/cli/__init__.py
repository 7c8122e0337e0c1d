"""The ``pathnet`` command line.

Subcommands: ``info``, ``prune``, ``analyze``, ``train``, ``imp``, ``imp-similarity``,
``reproduce``, ``figures``, ``sweep``, ``collect``, ``experiment``. User mistakes print one line
``pathnet CMD: error: ...`` and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pathnet.cli._common import (
    UserError,
    _data_methods,
    _density,
    _device,
    _load_mask,
    _model,
    _model_and_mask,
    _options,
    _record_spec,
)
from pathnet.cli.commands_experiments import (
    _check_reproduce_args,
    _experiment_errors,
    _train_overrides,
    add_collect_parser,
    add_experiment_parser,
    add_figures_parser,
    add_imp_similarity_parser,
    add_reproduce_parser,
    add_sweep_parser,
    cmd_collect,
    cmd_experiment,
    cmd_figures,
    cmd_imp_similarity,
    cmd_reproduce,
    cmd_sweep,
)
from pathnet.cli.commands_model import (
    _check_method_data,
    _data_batch,
    add_analyze_parser,
    add_info_parser,
    add_prune_parser,
    cmd_analyze,
    cmd_info,
    cmd_prune,
)
from pathnet.cli.commands_train import (
    _run_ddp,
    add_imp_parser,
    add_train_parser,
    cmd_imp,
    cmd_train,
)
from pathnet.cli.options import (
    _add_dataset,
    _add_density,
    _add_device,
    _add_model,
    _add_seed,
    _add_train_config,
    _positive_int,
    add_ddp_arguments,
)

__all__ = ["main"]

# Every name of the former single-module cli stays importable from ``pathnet.cli`` (tests
# and scripts use them). build_parser looks the ``cmd_*`` functions up here, so patching
# ``pathnet.cli.cmd_info`` patches the command ``main`` runs.
_REEXPORTED = (
    _add_dataset, _add_density, _add_device, _add_model, _add_seed, _add_train_config,
    _check_method_data, _check_reproduce_args, _data_batch, _data_methods, _density,
    _device, _experiment_errors, _load_mask, _model, _model_and_mask, _options,
    _positive_int, _record_spec, _run_ddp, _train_overrides, add_ddp_arguments,
)  # fmt: skip


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: ...``, exit status 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``pathnet`` parser; each subcommand's ``func`` is its ``cmd_*`` function here.

    Examples
    --------
    >>> args = build_parser().parse_args(["prune", "mlp", "--density", "0.1", "--out", "m.npz"])
    >>> args.func.__name__, args.method, args.density
    ('cmd_prune', 'phew', 0.1)
    """
    from pathnet import __version__

    parser = OneLineParser(
        prog="pathnet",
        description="Neural networks as layered DAGs of paths: PHEW, SynFlow-L2, path analysis.",
    )
    parser.add_argument("--version", action="version", version=f"pathnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    add_info_parser(sub).set_defaults(func=cmd_info)
    add_prune_parser(sub).set_defaults(func=cmd_prune)
    add_analyze_parser(sub).set_defaults(func=cmd_analyze)
    add_train_parser(sub).set_defaults(func=cmd_train)
    add_imp_parser(sub).set_defaults(func=cmd_imp)
    add_imp_similarity_parser(sub).set_defaults(func=cmd_imp_similarity)
    add_reproduce_parser(sub).set_defaults(func=cmd_reproduce)
    add_figures_parser(sub).set_defaults(func=cmd_figures)
    _add_sweep_parsers(sub)
    return parser


def _add_sweep_parsers(sub: Any) -> None:
    """The ``sweep`` and ``collect`` subcommands."""
    add_sweep_parser(sub).set_defaults(func=cmd_sweep)
    add_collect_parser(sub).set_defaults(func=cmd_collect)
    add_experiment_parser(sub).set_defaults(func=cmd_experiment)


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
