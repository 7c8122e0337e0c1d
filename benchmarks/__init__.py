"""Benchmarks (not timed tests): ``python -m benchmarks.run [names] [--quick]``.

Each ``benchmarks/bench_<topic>.py`` exposes ``run(quick: bool = False) -> list[dict]``
returning table rows; :mod:`benchmarks.run` discovers them, prints the tables and
writes ``benchmarks/results/<topic>.md`` and ``.json`` (see :mod:`benchmarks.harness`).
"""
