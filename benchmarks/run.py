"""Run benchmarks: ``python -m benchmarks.run [names ...] [--quick] [--list] [--no-save]``.

Every module ``benchmarks/bench_<name>.py`` with a ``run(quick: bool = False) ->
list[dict]`` function is a benchmark called ``<name>``; without names all of them
run. Each prints its table and writes ``benchmarks/results/<name>.md`` and
``.json`` (atomically). A module may define ``NOTES`` (Markdown text put under its
table) or a function ``notes(rows) -> str``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from benchmarks import harness

__all__ = ["discover", "main"]


def discover() -> dict[str, str]:
    """Benchmark name -> module name, for every ``benchmarks/bench_*.py``."""
    here = Path(__file__).resolve().parent
    found = {}
    for info in pkgutil.iter_modules([str(here)]):
        if info.name.startswith("bench_"):
            found[info.name.removeprefix("bench_")] = f"benchmarks.{info.name}"
    return dict(sorted(found.items()))


def _notes(module: ModuleType, rows: list[dict]) -> str:
    fn = getattr(module, "notes", None)
    if callable(fn):
        return str(fn(rows))
    return str(getattr(module, "NOTES", ""))


def main(argv: Sequence[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="Run pathnet benchmarks."
    )
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {list(available)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--no-save", action="store_true", help="print only; write no results file")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available))
        return 0
    unknown = [n for n in args.names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; expected some of {list(available)}")
    for name in args.names or list(available):
        module = importlib.import_module(available[name])
        harness.eprint(f"[benchmarks] {name}{' (quick)' if args.quick else ''} ...")
        t0 = time.perf_counter()
        rows = [dict(r) for r in module.run(quick=args.quick)]
        for row in rows:
            row.setdefault("benchmark", name)
        print(f"\n## {name} ({time.perf_counter() - t0:.1f} s)\n")
        print(harness.text_table(rows))
        notes = _notes(module, rows)
        if notes:
            print("\n" + notes.strip())
        if not args.no_save:
            command = "python -m benchmarks.run " + " ".join(
                [name] + (["--quick"] if args.quick else [])
            )
            md, js = harness.write_results(
                name, rows, quick=args.quick, notes=notes, command=command
            )
            harness.eprint(f"[benchmarks] wrote {md} and {js.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
