"""Shared helpers for ``benchmarks/bench_<topic>.py``: timing, memory, machine info, results files.

A benchmark module exposes ``run(quick: bool = False) -> list[dict]``: one dict per
table row, with a ``"benchmark"`` column (added from the module name when missing).
:func:`write_results` stores the rows as ``benchmarks/results/<topic>.md`` (a
Markdown table with the command, date and machine) and ``.json``, each written
atomically (a reader sees the old file or the new one).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "Timing",
    "columns",
    "machine_info",
    "markdown_table",
    "peak_memory",
    "text_table",
    "timeit",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class Timing:
    """Wall-clock times of repeated calls: ``best`` (minimum), ``median``, ``runs``.

    ``cpu`` holds the process CPU time (all threads) of each call, so
    ``best_cpu / best`` shows how many cores the best call kept busy.
    """

    def __init__(
        self, times: Sequence[float], result: Any = None, cpu: Sequence[float] = ()
    ) -> None:
        self.times = list(times)
        self.cpu = list(cpu)
        self.result = result

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def best_cpu(self) -> float:
        """CPU time of the call with the best wall time."""
        return self.cpu[self.times.index(self.best)] if self.cpu else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def runs(self) -> int:
        return len(self.times)


def timeit(fn: Callable[[], Any], *, repeat: int = 3, warmup: int = 0) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times timed with ``perf_counter``.

    The result of the last call is kept in ``Timing.result``.
    """
    for _ in range(warmup):
        fn()
    times, cpu, out = [], [], None
    for _ in range(max(1, repeat)):
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return Timing(times, out, cpu)


def peak_memory(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(result, peak MiB)`` of one call of ``fn``, traced with ``tracemalloc``.

    Counts Python and NumPy allocations (NumPy reports its buffers to tracemalloc);
    memory allocated inside numba kernels is not seen. Run timings separately:
    tracing slows allocation-heavy Python code.
    """
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()
    return out, (peak - base) / 2**20


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU, threads, load, library versions."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    for mod in ("numpy", "numba", "torch", "scipy"):
        try:
            module = __import__(mod)
            info[mod] = module.__version__
        except ImportError:
            continue
    try:
        import numba

        info["numba_threads"] = numba.get_num_threads()
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows`` in first-seen order, ``benchmark`` first."""
    cols: list[str] = ["benchmark"]
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    return cols


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _numeric(rows: Sequence[Mapping[str, Any]], col: str) -> bool:
    vals = [r.get(col) for r in rows if r.get(col) is not None]
    return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


def markdown_table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table; numbers right-aligned."""
    cols = list(cols or columns(rows))
    head = "| " + " | ".join(cols) + " |"
    rule = "|" + "|".join("---:" if _numeric(rows, c) else "---" for c in cols) + "|"
    body = [
        "| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows
    ]
    return "\n".join([head, rule, *body])


def text_table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str] | None = None) -> str:
    """A plain-text table for the terminal."""
    cols = list(cols or columns(rows))
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(cols)]
    num = [_numeric(rows, c) for c in cols]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(vals, widths, num)
        ).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, cells)])


def _atomic_write(path: Path, text: str) -> None:
    from pathnet._io import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def write_results(
    topic: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    quick: bool = False,
    notes: str = "",
    command: str | None = None,
    directory: Path | None = None,
) -> tuple[Path, Path]:
    """Write ``<directory>/<topic>.md`` and ``.json`` atomically; returns both paths."""
    directory = directory or RESULTS_DIR
    command = command or "python -m benchmarks.run " + topic + (" --quick" if quick else "")
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    rows = [dict(r) for r in rows]
    md = [
        f"# Benchmark: {topic}",
        "",
        f"Command: `{command}`  ",
        f"Date: {when}{' (quick run)' if quick else ''}  ",
        "Machine: " + ", ".join(f"{k}={v}" for k, v in info.items()),
        "",
        markdown_table(rows),
        "",
    ]
    if notes:
        md += [notes.strip(), ""]
    payload = {
        "benchmark": topic,
        "command": command,
        "date": when,
        "quick": quick,
        "machine": info,
        "notes": notes.strip(),
        "rows": rows,
    }
    md_path = directory / f"{topic}.md"
    json_path = directory / f"{topic}.json"
    _atomic_write(md_path, "\n".join(md))
    _atomic_write(json_path, json.dumps(payload, indent=2, default=_json_default) + "\n")
    return md_path, json_path


def _json_default(v: Any) -> Any:
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
    except ImportError:
        pass
    return str(v)


def eprint(*args: Any) -> None:
    """Progress messages go to stderr, tables to stdout."""
    print(*args, file=sys.stderr, flush=True)
