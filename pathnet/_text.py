"""Text helpers shared by every layer: printed tables and ``key=value`` option lists.

>>> print(format_table([{"name": "a", "n": 1200}, {"name": "bb", "n": 3}], ["name", "n"]))
name      n
----  -----
a     1,200
bb        3
>>> parse_options(["iterations=10", "variant=phew"])
{'iterations': 10, 'variant': 'phew'}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["format_table", "parse_options"]


def format_table(rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> str:
    """Left-aligned text, right-aligned numbers; used by every printed table."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return f"{int(v):,}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(cols)]
    numeric = [
        all(isinstance(r.get(c), (int, float, np.integer, np.floating)) for r in rows) for c in cols
    ]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric)
        ).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths]), *map(line, cells)])


def parse_options(pairs: Sequence[str], option: str = "--option") -> dict[str, Any]:
    """``key=value`` pairs to a dict; values parsed as JSON where they parse.

    Raises
    ------
    ValueError
        A pair without ``=``; the message names ``option``.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{option} takes key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
