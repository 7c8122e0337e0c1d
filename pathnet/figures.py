"""Figures of the PHEW paper's data-free analyses, drawn from tidy result tables.

Every function takes rows (a list of dicts, as read from the CSV files that
:mod:`pathnet.experiments.reproduce` writes) and a path, and writes a PNG atomically. Colours
and markers are fixed per method so figures compare at a glance.
"""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pathnet._io import atomic_write_bytes

__all__ = [
    "METHOD_STYLE",
    "accuracy_vs_density",
    "metric_vs_density",
    "save_figure",
    "width_profile",
]

METHOD_STYLE: dict[str, dict[str, Any]] = {
    "phew": {"color": "#1b9e77", "marker": "o", "label": "PHEW"},
    "random_paths": {"color": "#66a61e", "marker": "v", "label": "random paths (PHEW ablation)"},
    "synflow_l2": {"color": "#d95f02", "marker": "s", "label": "SynFlow-L2"},
    "synflow": {"color": "#7570b3", "marker": "^", "label": "SynFlow"},
    "magnitude": {"color": "#e7298a", "marker": "D", "label": "magnitude (at init)"},
    "random": {"color": "#666666", "marker": "x", "label": "random (uniform per layer)"},
    "random_global": {"color": "#a6761d", "marker": "+", "label": "random (global)"},
    "erk": {"color": "#e6ab02", "marker": "*", "label": "ERK"},
    "snip": {"color": "#1f78b4", "marker": "<", "label": "SNIP"},
    "grasp": {"color": "#b15928", "marker": ">", "label": "GraSP"},
    "imp": {"color": "#000000", "marker": "P", "label": "IMP"},
    "dense": {"color": "#999999", "marker": "", "label": "dense"},
}


def _style(method: str) -> dict[str, Any]:
    return METHOD_STYLE.get(method, {"color": None, "marker": "o", "label": method})


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], dpi: int = 130) -> Path:
    """Write ``fig`` as PNG through a temporary file; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _num(v: Any) -> float:
    return float(v) if v not in (None, "") else math.nan


def _methods_in(rows: Iterable[Mapping[str, Any]], order: Sequence[str] | None) -> list[str]:
    present = {str(r["method"]) for r in rows}
    ranked = [m for m in (order or METHOD_STYLE) if m in present]
    return ranked + sorted(present - set(ranked))


def metric_vs_density(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    path: str | os.PathLike[str],
    *,
    ylabel: str,
    title: str,
    log_y: bool = False,
    metric_is_log10: bool = False,
    methods: Sequence[str] | None = None,
) -> Path:
    """One panel per model: ``metric`` against density (log x), mean and min-max over seeds.

    Parameters
    ----------
    rows : sequence of dict
        Tidy rows with keys ``model``, ``method``, ``density``, ``seed`` and ``metric``.
    metric_is_log10 : bool
        The metric is stored as log10 (path counts, traces); it is plotted on a
        log axis as ``10**value`` without ever forming the (overflowing) number:
        the axis shows log10 values labelled as powers of ten.
    """
    models = sorted({str(r["model"]) for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.0), squeeze=False)
    for ax, model in zip(axes[0], models):
        sub = [r for r in rows if r["model"] == model]
        for method in _methods_in(sub, methods):
            by_d: dict[float, list[float]] = defaultdict(list)
            for r in sub:
                if r["method"] == method:
                    by_d[_num(r["density"])].append(_num(r[metric]))
            d = np.array(sorted(by_d))
            vals = [np.array(by_d[x]) for x in d]
            mean = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in vals])
            lo = np.array([np.nanmin(v) if np.isfinite(v).any() else np.nan for v in vals])
            hi = np.array([np.nanmax(v) if np.isfinite(v).any() else np.nan for v in vals])
            st = _style(method)
            ax.plot(100 * d, mean, marker=st["marker"], ms=4, color=st["color"], label=st["label"])
            ax.fill_between(100 * d, lo, hi, color=st["color"], alpha=0.2, lw=0)
        ax.set_xscale("log")
        shown = [100 * _num(r["density"]) for r in sub]
        ticks = [
            t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if min(shown) <= t <= max(shown)
        ]
        if ticks:
            ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("density (% of weights kept, log scale)")
        if log_y and not metric_is_log10:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{model}: {title}")
        ax.grid(True, which="both", alpha=0.3)
        if metric_is_log10:
            ax.yaxis.set_major_formatter(
                matplotlib.ticker.FuncFormatter(lambda v, _: f"$10^{{{v:.0f}}}$")
            )
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False)
    fig.subplots_adjust(bottom=0.28, wspace=0.28)
    return save_figure(fig, path)


def width_profile(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    densities: Sequence[float],
    methods: Sequence[str] | None = None,
) -> Path:
    """Per-layer width (fraction of units on a complete path) for each method.

    One row of panels per model, one column per density; the mean over seeds is
    drawn with its min-max band. Rows need keys ``model``, ``method``,
    ``density``, ``seed``, ``group``, ``name``, ``units``, ``active``.
    """
    models = sorted({str(r["model"]) for r in rows})
    fig, axes = plt.subplots(
        len(models),
        len(densities),
        figsize=(6.0 * len(densities), 3.4 * len(models)),
        squeeze=False,
    )
    for row_ax, model in zip(axes, models):
        for ax, density in zip(row_ax, densities):
            sub = [
                r
                for r in rows
                if r["model"] == model and math.isclose(_num(r["density"]), density, rel_tol=1e-6)
            ]
            names: dict[int, str] = {}
            for method in _methods_in(sub, methods):
                by_g: dict[int, list[float]] = defaultdict(list)
                for r in sub:
                    if r["method"] == method:
                        g = int(r["group"])
                        names[g] = str(r["name"])
                        by_g[g].append(_num(r["active"]) / _num(r["units"]))
                g = np.array(sorted(by_g))
                vals = [np.array(by_g[x]) for x in g]
                st = _style(method)
                ax.plot(
                    g,
                    [100 * v.mean() for v in vals],
                    marker=st["marker"],
                    ms=4,
                    color=st["color"],
                    label=st["label"],
                )
                ax.fill_between(
                    g,
                    [100 * v.min() for v in vals],
                    [100 * v.max() for v in vals],
                    color=st["color"],
                    alpha=0.2,
                    lw=0,
                )
            ax.set_ylim(-3, 103)
            ax.set_xlabel("unit group (layer, input -> output)")
            ax.set_ylabel("width (% of units on a complete path)")
            ax.set_title(f"{model} at {100 * density:g}% density")
            ax.grid(True, alpha=0.3)
            if names and len(names) <= 24:
                ticks = sorted(names)
                ax.set_xticks(ticks)
                ax.set_xticklabels([_short(names[t]) for t in ticks], rotation=70, fontsize=6)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save_figure(fig, path)


def _short(name: str) -> str:
    return name.replace("features.", "f").replace("layer", "L").replace(".add", "+")[:14]


def accuracy_vs_density(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str = "test accuracy",
    methods: Sequence[str] | None = None,
) -> Path:
    """Test accuracy (%) against density (log x): mean and min-max over seeds.

    Rows need keys ``model`` (or ``dataset``), ``method``, ``density``, ``seed``,
    ``test_acc`` (a fraction in [0, 1]).
    """
    key = "test_acc"
    scaled = [{**r, key: 100 * _num(r[key])} for r in rows]
    return metric_vs_density(
        scaled, key, path, ylabel="test accuracy (%)", title=title, methods=methods
    )
