"""The benchmark harness runs: every ``benchmarks/bench_*.py`` at its ``--quick`` sizes.

Timings are not checked here (speed claims are ratios the harness reports); this only
keeps ``make bench`` from breaking unnoticed, as it did once when the analyses' default
method changed under it.
"""

from __future__ import annotations

import torch

from benchmarks.run import discover, main


def test_every_benchmark_runs_quick(capsys):
    names = discover()
    assert {"analysis", "dst", "phew", "synflow"} <= set(names)
    threads = torch.get_num_threads()
    try:
        assert main(["--quick", "--no-save"]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    for name in names:
        assert f"## {name} (" in out
