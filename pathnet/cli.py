"""The ``pathnet`` command line: ``pathnet info MODEL`` and friends."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


class UserError(Exception):
    """A mistake in the command line: printed as one line, exit status 2."""


def _model(name: str, num_classes: int | None):  # noqa: ANN202
    from pathnet import models

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    try:
        return models.build(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None


def cmd_info(args: argparse.Namespace) -> int:
    import pathnet

    model = _model(args.model, args.num_classes)
    dag = pathnet.to_dag(model)
    print(f"{args.model}: input {tuple(model.input_shape)}")
    print(dag.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pathnet import __version__, models

    parser = argparse.ArgumentParser(
        prog="pathnet",
        description="Neural networks as layered DAGs of paths: PHEW, SynFlow-L2, path analysis.",
    )
    parser.add_argument("--version", action="version", version=f"pathnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="print a model's DAG: groups, sizes, edges, parameters")
    p.add_argument("model", help=f"zoo model name, one of: {', '.join(sorted(models.MODELS))}")
    p.add_argument("--num-classes", type=int, default=None, help="output classes (model default)")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"pathnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"pathnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pathnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
