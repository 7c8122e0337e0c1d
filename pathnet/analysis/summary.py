"""All path analyses of a masked network in one table.

:func:`summary` gives one row per prunable parameter (edge block): its density
and effective weights, the paths through it, its share of the path-kernel
trace, and the width of the unit group it feeds. Whole-network numbers (path
count, ``R``, ``R2``, trace, bottleneck) are in ``table.overall``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from pathnet._io import atomic_write_bytes
from pathnet._text import format_table
from pathnet.analysis.paths import (
    MaskLike,
    ModelOrDAG,
    block_log_paths,
    block_log_traces,
    log_total,
    logsumexp,
    prepare,
)
from pathnet.analysis.widths import (
    block_effective,
    group_widths,
    narrowest,
    reachability,
)
from pathnet.graph.propagate import backward_log, forward_log

__all__ = ["Table", "summary"]

_LN10 = math.log(10.0)


@dataclass(frozen=True)
class Table:
    """Rows of named values, printable and exportable.

    Attributes
    ----------
    columns : tuple of str
        Column order for printing and CSV.
    rows : tuple of dict
        One dict per row, keyed by column.
    title : str
        First line of ``str(table)``.
    overall : dict
        Whole-table values (totals, network-level quantities); printed below the
        rows and written by :meth:`to_json`, not by :meth:`to_csv`.
    """

    columns: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]
    title: str = ""
    overall: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", tuple(dict(r) for r in self.rows))
        for k, row in enumerate(self.rows):
            unknown = sorted(set(row) - set(self.columns))
            if unknown:
                raise ValueError(f"pathnet.analysis.Table: row {k} has unknown columns {unknown}")

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        lines = [self.title] if self.title else []
        lines.append(format_table(self.rows, self.columns))
        lines.extend(f"{k}: {_fmt(v)}" for k, v in self.overall.items())
        return "\n".join(lines)

    def to_dicts(self) -> list[dict[str, Any]]:
        """The rows as new dicts, keys in column order (missing cells are None)."""
        return [{c: row.get(c) for c in self.columns} for row in self.rows]

    def to_csv(self, path: str | os.PathLike[str] | None = None) -> str:
        """The rows as CSV text (header = columns); with ``path``, also written there atomically."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.to_dicts())
        text = buf.getvalue()
        if path is not None:
            atomic_write_bytes(path, text.encode())
        return text

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int = 2) -> str:
        """The table as JSON: ``title``, ``columns``, ``rows``, ``overall``.

        Non-finite floats (``log10`` of 0 is ``-inf``) are written as ``null`` so
        that the text is strict JSON. With ``path``, the text is also written there
        atomically.
        """
        doc = {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [{k: _json_value(v) for k, v in r.items()} for r in self.to_dicts()],
            "overall": {k: _json_value(v) for k, v in self.overall.items()},
        }
        text = json.dumps(doc, indent=indent, allow_nan=False)
        if path is not None:
            atomic_write_bytes(path, text.encode())
        return text


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


SUMMARY_COLUMNS = (
    "param",
    "kind",
    "source",
    "target",
    "params",
    "kept",
    "density",
    "effective",
    "edges",
    "log10_paths",
    "trace_share",
    "units",
    "active",
    "width",
    "no_path_in",
    "no_path_out",
)


def summary(
    model_or_dag: ModelOrDAG,
    mask: MaskLike | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
) -> Table:
    """Every path analysis of a (masked) network, one row per prunable parameter.

    Parameters
    ----------
    model_or_dag : torch.nn.Module or LayeredDAG
    mask : Mask or mapping of str to bool array, optional
    input_shape : tuple of int, optional

    Returns
    -------
    Table
        Rows, one per prunable parameter (edge block) in DAG order:

        ``param``, ``kind``, ``source``, ``target``
            the parameter, ``"conv"``/``"linear"``, and the groups it joins;
        ``params``, ``kept``, ``density``
            its elements, the unmasked ones, their fraction;
        ``effective``
            unmasked elements on a complete input -> output path;
        ``edges``
            unit-to-unit edges with at least one unmasked element;
        ``log10_paths``
            ``log10`` of the number of input -> output paths through it;
        ``trace_share``
            its elements' share of the path-kernel trace;
        ``units``, ``active``, ``width``, ``no_path_in``, ``no_path_out``
            the *target* group's units, active units, their fraction, and units
            no input reaches / that reach no output. A residual sum fed by a conv
            and a projection shortcut appears in both rows.

        ``overall`` holds ``params``, ``kept``, ``density``, ``effective``,
        ``log10_paths``, ``log10_R1``, ``log10_R2`` (sums of path products and of
        their squares), ``log10_trace``, and the bottleneck (narrowest hidden or
        sum group: ``bottleneck``, ``bottleneck_active``, ``bottleneck_units``,
        ``bottleneck_width``).

    Examples
    --------
    >>> import pathnet
    >>> table = summary(pathnet.models.mlp([4, 3, 2], seed=0))
    >>> [r["param"] for r in table.to_dicts()], table.overall["effective"]
    (['1.weight', '3.weight'], 18)
    """
    dag = prepare(model_or_dag, mask, input_shape=input_shape)
    f0, b0 = forward_log(dag, 0), backward_log(dag, 0)
    f2, b2 = forward_log(dag, 2), backward_log(dag, 2)
    reach = reachability(dag)
    widths = group_widths(dag, reach)
    effective = block_effective(dag, reach)
    log_paths = block_log_paths(dag, f0, b0)
    log_traces = block_log_traces(dag, f2, b2)
    log_trace = logsumexp(log_traces)

    rows = []
    for blk, eff, lp, lt in zip(dag.blocks, effective, log_paths, log_traces):
        if blk.param is None:
            continue
        w = widths[blk.target]
        rows.append(
            {
                "param": blk.param,
                "kind": blk.kind,
                "source": dag.groups[blk.source].name,
                "target": w.name,
                "params": blk.n_params,
                "kept": blk.n_present,
                "density": blk.n_present / blk.n_params,
                "effective": eff,
                "edges": blk.multiplicity.nnz,
                "log10_paths": lp / _LN10,
                "trace_share": math.exp(lt - log_trace) if lt > -math.inf else 0.0,
                "units": w.units,
                "active": w.active,
                "width": w.width,
                "no_path_in": w.no_path_in,
                "no_path_out": w.no_path_out,
            }
        )
    narrow = narrowest(widths)
    overall = {
        "params": dag.n_params,
        "kept": dag.n_present,
        "density": dag.n_present / dag.n_params,
        "effective": sum(effective),
        "log10_paths": log_total(f0[-1]) / _LN10,
        "log10_R1": log_total(forward_log(dag, 1)[-1]) / _LN10,
        "log10_R2": log_total(f2[-1]) / _LN10,
        "log10_trace": log_trace / _LN10,
        "bottleneck": narrow.name if narrow else "",
        "bottleneck_active": narrow.active if narrow else 0,
        "bottleneck_units": narrow.units if narrow else 0,
        "bottleneck_width": narrow.width if narrow else math.nan,
    }
    title = f"pathnet.analysis.summary: {dag.model_name}, density {overall['density']:.4g}"
    return Table(SUMMARY_COLUMNS, tuple(rows), title, overall)
