"""Figures of the PHEW paper's data-free analyses, as :class:`matplotlib.figure.Figure` objects.

Every function builds a ``Figure`` directly (no pyplot state, no change of the global
backend, so a notebook keeps its own), returns it, and, when given a ``path``, also
saves it atomically in the format the suffix names (``.png``, ``.pdf``, ``.svg`` ...).
Colours and markers are fixed per method so figures compare at a glance; PHEW is drawn
last and on top.

The table-driven functions take rows (a list of dicts, as in the CSV files that
:mod:`pathnet.experiments.reproduce` writes). :func:`plot_widths` is the one-call entry
point from a model and masks:

>>> import pathnet
>>> from pathnet import figures
>>> model = pathnet.models.mlp([20, 16, 16, 4], seed=0)
>>> masks = {m: pathnet.select.select(m, model, 0.2, seed=0) for m in ("phew", "random")}
>>> fig = figures.plot_widths(model, masks)
>>> [ax.get_ylabel() for ax in fig.axes][:1]
['width (% of units on a complete path)']
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pathnet._io import atomic_write_bytes

__all__ = [
    "FORMATS",
    "GROUP_LABEL_KEY",
    "METHOD_STYLE",
    "accuracy_vs_density",
    "group_label",
    "loss_curves",
    "metric_vs_density",
    "plot_widths",
    "sanity_deltas",
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

#: Suffixes :func:`save_figure` writes, mapped to matplotlib's format names.
FORMATS: dict[str, str] = {
    ".png": "png",
    ".pdf": "pdf",
    ".svg": "svg",
    ".eps": "eps",
    ".ps": "ps",
    ".jpg": "jpg",
    ".jpeg": "jpg",
    ".tif": "tif",
    ".tiff": "tif",
    ".webp": "webp",
}

_BAND = "Lines: mean over seeds; shaded bands: min to max over seeds."
_TICK_FONT = 8
_MAX_TICK_LABELS = 24


def _style(method: str) -> dict[str, Any]:
    return METHOD_STYLE.get(method, {"color": None, "marker": "o", "label": method})


def _draw_kwargs(method: str) -> dict[str, Any]:
    """PHEW on top and a little thicker, so that a line at 100% is never hidden."""
    st = _style(method)
    top = method == "phew"
    return {
        "marker": st["marker"],
        "ms": 5 if top else 4,
        "lw": 2.2 if top else 1.4,
        "color": st["color"],
        "label": st["label"],
        "zorder": 5 if top else 3,
    }


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 130) -> Path:
    """Write ``fig`` atomically in the format its suffix names (``.png``, ``.pdf``, ...).

    Raises
    ------
    ValueError
        An unknown or missing suffix (the message lists the known ones).
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"pathnet.figures.save_figure: cannot tell the format of {str(path)!r}; "
            f"use one of the suffixes {', '.join(FORMATS)}"
        )
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _num(v: Any) -> float:
    return float(v) if v not in (None, "") else math.nan


def _methods_in(rows: Iterable[Mapping[str, Any]], order: Sequence[str] | None) -> list[str]:
    """Methods present, in the fixed order, PHEW last (drawn on top)."""
    present = {str(r["method"]) for r in rows}
    ranked = [m for m in (order or METHOD_STYLE) if m in present]
    ranked += sorted(present - set(ranked))
    return [m for m in ranked if m != "phew"] + (["phew"] if "phew" in ranked else [])


def _band(values: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    def agg(f: Any) -> np.ndarray:
        return np.array([f(v) if np.isfinite(v).any() else np.nan for v in values])

    return agg(np.nanmean), agg(np.nanmin), agg(np.nanmax)


def _series(
    rows: Sequence[Mapping[str, Any]], method: str, x_key: str, metric: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``method``'s ``metric`` against ``x_key``: sorted x, and mean, min, max over seeds."""
    by_x: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        if r["method"] == method:
            by_x[_num(r[x_key])].append(_num(r[metric]))
    x = np.array(sorted(by_x))
    return (x, *_band([np.array(by_x[v]) for v in x]))


def _caption(rows: Sequence[Mapping[str, Any]], *parts: str) -> str:
    """The figure's caption: what lines and bands mean (when there are several seeds)."""
    several = len({str(r.get("seed", "")) for r in rows}) > 1
    return " ".join(p for p in ((_BAND if several else ""), *parts) if p)


def _legend(fig: Figure, axes: Sequence[Axes], caption: str, ncol: int) -> None:
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    # legend in the fixed method order (PHEW first), whatever the drawing order
    order = [st["label"] for st in METHOD_STYLE.values()]
    labels = sorted(seen, key=lambda s: order.index(s) if s in order else len(order))
    # The caption is the legend's title, so the layout engine makes room for both.
    width_chars = int(fig.get_figwidth() * 13)
    fig.legend(
        [seen[s] for s in labels],
        labels,
        loc="outside lower center",
        ncol=min(ncol, max(1, len(labels))),
        frameon=False,
        fontsize=9,
        title="\n".join(textwrap.wrap(caption, width_chars)) or None,
        title_fontsize=8,
    )


def metric_vs_density(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    path: str | os.PathLike[str] | None = None,
    *,
    ylabel: str,
    title: str,
    log_y: bool = False,
    metric_is_log10: bool = False,
    methods: Sequence[str] | None = None,
    caption: str = "",
) -> Figure:
    """One panel per model: ``metric`` against density (log x), mean and min-max over seeds.

    Parameters
    ----------
    rows : sequence of dict
        Tidy rows with keys ``model``, ``method``, ``density``, ``seed`` and ``metric``.
    metric : str
        The column to plot.
    path : path-like, optional
        Also save the figure there (format from the suffix).
    ylabel, title : str
        Axis label and panel title (the model's name is prepended).
    log_y : bool
        Logarithmic y axis.
    metric_is_log10 : bool
        The metric is stored as log10 (path counts, traces); it is plotted as log10
        values labelled as powers of ten, without forming the (overflowing) numbers.
    methods : sequence of str, optional
        Order of the methods; default :data:`METHOD_STYLE`'s.
    caption : str
        Text under the figure, after the explanation of lines and bands.

    Returns
    -------
    matplotlib.figure.Figure
    """
    models = sorted({str(r["model"]) for r in rows})
    fig = Figure(figsize=(5.4 * len(models), 4.4), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models):
        sub = [r for r in rows if r["model"] == model]
        for method in _methods_in(sub, methods):
            d, mean, lo, hi = _series(sub, method, "density", metric)
            kw = _draw_kwargs(method)
            ax.plot(100 * d, mean, **kw)
            ax.fill_between(100 * d, lo, hi, color=kw["color"], alpha=0.2, lw=0, zorder=2)
        ax.set_xscale("log")
        shown = [100 * _num(r["density"]) for r in sub]
        ticks = [
            t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if min(shown) <= t <= max(shown)
        ]
        if ticks:
            ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.tick_params(labelsize=_TICK_FONT + 1)
        ax.set_xlabel("density (% of weights kept, log scale)")
        if log_y and not metric_is_log10:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{model}: {title}")
        ax.grid(True, which="both", alpha=0.3)
        if metric_is_log10:
            ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"$10^{{{v:.0f}}}$"))
    _legend(fig, axes, _caption(rows, caption), ncol=4)
    return _finish(fig, path)


def group_label(name: str) -> str:
    """A short tick label for a unit group's name (see :data:`GROUP_LABEL_KEY`).

    >>> group_label("layer2.1.conv1"), group_label("layer2.1.add"), group_label("features.26")
    ('2.1.conv1', '2.1 sum', 'conv@26')
    """
    if name.startswith("layer"):
        name = name[len("layer") :]
    if name.endswith(".add"):
        name = name[: -len(".add")] + " sum"
    if name.startswith("features."):
        name = "conv@" + name[len("features.") :]
    return name


#: The abbreviations :func:`group_label` uses, printed under width figures.
GROUP_LABEL_KEY = (
    "Groups: 'input'; ResNet 'S.B.convK' = stage S, block B, conv K; 'S.B sum' = output of "
    "the residual addition of that block; VGG 'conv@N' = the conv at features[N]."
)


def _group_ticks(ax: Axes, names: Mapping[int, str]) -> None:
    ticks = sorted(names)
    step = max(1, math.ceil(len(ticks) / _MAX_TICK_LABELS))
    shown = ticks[::step]
    if ticks[-1] not in shown:
        shown.append(ticks[-1])
    ax.set_xticks(shown)
    ax.set_xticklabels(
        [group_label(names[t]) for t in shown], rotation=60, ha="right", fontsize=_TICK_FONT
    )


def width_profile(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    densities: Sequence[float],
    methods: Sequence[str] | None = None,
    caption: str = "",
) -> Figure:
    """Per-layer width (fraction of units on a complete path) for each method.

    One row of panels per model, one column per density; the mean over seeds is drawn
    with its min-max band. Rows need keys ``model``, ``method``, ``density``, ``seed``,
    ``group``, ``name``, ``units``, ``active``. Tick labels abbreviate group names
    (:func:`group_label`); at most 24 labels per panel, every k-th beyond that.

    Returns
    -------
    matplotlib.figure.Figure
    """
    models = sorted({str(r["model"]) for r in rows})
    fig = Figure(figsize=(6.4 * len(densities), 3.9 * len(models) + 0.8), layout="constrained")
    axes = fig.subplots(len(models), len(densities), squeeze=False)
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
                        gid = int(r["group"])
                        names[gid] = str(r["name"])
                        by_g[gid].append(100 * _num(r["active"]) / _num(r["units"]))
                groups = np.array(sorted(by_g))
                mean, lo, hi = _band([np.array(by_g[x]) for x in groups])
                kw = _draw_kwargs(method)
                ax.plot(groups, mean, **kw)
                ax.fill_between(groups, lo, hi, color=kw["color"], alpha=0.2, lw=0, zorder=2)
            ax.set_ylim(-3, 104)
            ax.set_xlabel("unit group (input -> output)")
            ax.set_ylabel("width (% of units on a complete path)")
            ax.set_title(f"{model} at {100 * density:g}% density")
            ax.grid(True, alpha=0.3)
            ax.tick_params(axis="y", labelsize=_TICK_FONT + 1)
            if names:
                _group_ticks(ax, names)
    _legend(fig, list(axes.ravel()), _caption(rows, GROUP_LABEL_KEY, caption), ncol=6)
    return _finish(fig, path)


def accuracy_vs_density(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str = "test accuracy",
    methods: Sequence[str] | None = None,
    caption: str = "",
) -> Figure:
    """Test accuracy (%) against density (log x): mean and min-max over seeds.

    Rows need keys ``model`` (or ``dataset``), ``method``, ``density``, ``seed``,
    ``test_acc`` (a fraction in [0, 1]).
    """
    key = "test_acc"
    scaled = [{**r, key: 100 * _num(r[key])} for r in rows]
    return metric_vs_density(
        scaled,
        key,
        path,
        ylabel="test accuracy (%)",
        title=title,
        methods=methods,
        caption=caption,
    )


def plot_widths(
    model: Any,
    masks: Mapping[str, Any],
    path: str | os.PathLike[str] | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    title: str | None = None,
) -> Figure:
    """Layer widths of ``model`` under each of ``masks``, in one call.

    Parameters
    ----------
    model : torch.nn.Module
        The network the masks belong to.
    masks : mapping of str to Mask
        Label (a method name such as ``"phew"`` gets its fixed style) to mask.
    path : path-like, optional
        Also save the figure there (format from the suffix).
    input_shape : tuple of int, optional
        Per-sample input shape, if the model has no ``input_shape`` attribute.
    title : str, optional
        Panel title; default the model's class name and the masks' densities.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from pathnet import analysis

    rows = []
    densities = []
    for label, mask in masks.items():
        widths = analysis.layer_widths(model, mask, input_shape=input_shape)
        kept = sum(int(t.sum()) for t in mask.values())
        total = sum(int(t.numel()) for t in mask.values())
        densities.append(kept / max(total, 1))
        rows += [
            {"model": "m", "method": label, "density": 0, "seed": 0, "group": i, "name": w.name}
            | {"units": w.units, "active": w.active}
            for i, w in enumerate(widths)
        ]
    fig = width_profile(rows, densities=[0.0])
    ax = fig.axes[0]
    if len({round(d, 6) for d in densities}) == 1:
        shown = f"density {100 * densities[0]:.3g}%"
    else:
        shown = ", ".join(f"{k} {100 * d:.3g}%" for k, d in zip(masks, densities))
    ax.set_title(title or f"{type(model).__name__}: layer widths ({shown})")
    return _finish(fig, path)


def loss_curves(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    metric: str = "train_loss",
    ylabel: str = "training loss (window mean)",
    title: str = "",
    methods: Sequence[str] | None = None,
    caption: str = "",
) -> Figure:
    """One panel per density: ``metric`` against training samples seen, per method.

    The "learns fast" picture. Rows are logged steps (``fit(log_every=...)``) with keys
    ``method``, ``density``, ``seed``, ``samples`` and ``metric``; the dense baseline
    (``method == "dense"``) is drawn in every panel. Lines: mean over seeds at each
    logged point; bands: min to max.
    """
    densities = sorted({_num(r["density"]) for r in rows if r["method"] != "dense"}, reverse=True)
    densities = densities or [1.0]
    fig = Figure(figsize=(4.6 * len(densities), 4.2), layout="constrained")
    axes = fig.subplots(1, len(densities), squeeze=False, sharey=True)[0]
    firsts, highest, lowest = [], -math.inf, math.inf
    for ax, d in zip(axes, densities):
        sub = [r for r in rows if r["method"] == "dense" or _num(r["density"]) == d]
        for method in _methods_in(sub, methods):
            x, mean, lo, hi = _series(sub, method, "samples", metric)
            if x.size:
                firsts.append(mean[0])
                highest = max(highest, float(np.nanmax(mean)))
                lowest = min(lowest, float(np.nanmin(lo)))
            kw = {**_draw_kwargs(method), "ms": 0}
            if method == "dense":
                kw.update(ls="--")
            ax.plot(x, mean, **kw)
            ax.fill_between(x, lo, hi, color=kw["color"], alpha=0.12, lw=0, zorder=2)
        ax.set_xlabel("training samples seen")
        ax.set_title(f"{title}{', ' if title else ''}density {100 * d:g}%")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=_TICK_FONT + 1)
    axes[0].set_ylabel(ylabel)
    # A diverging run (loss in the tens) would flatten every other curve: cut the axis at
    # 2.5x the median first value and say so.
    cap = 2.5 * float(np.nanmedian(firsts)) if firsts else math.inf
    if highest > cap:
        axes[0].set_ylim(min(0.0, lowest), cap)
        caption = f"{caption} y axis cut at {cap:.2g}: a line leaving the top diverged.".strip()
    _legend(fig, axes, _caption(rows, caption), ncol=5)
    return _finish(fig, path)


def sanity_deltas(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str = "sanity checks",
    checks: Sequence[str] | None = None,
    caption: str = "",
) -> Figure:
    """Bars: the change of test accuracy (points) each sanity check causes, per method.

    Rows have keys ``method``, ``sanity`` (the check), ``delta_mean`` and ``delta_std``
    (percentage points; the error bar is one standard deviation over seeds).
    """
    checks = list(checks or dict.fromkeys(str(r["sanity"]) for r in rows))
    methods = [m for m in METHOD_STYLE if any(r["method"] == m for r in rows)]
    fig = Figure(figsize=(max(6.0, 0.9 * len(methods) + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(checks))
    palette = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]
    for j, check in enumerate(checks):
        xs, ys, es = [], [], []
        for i, m in enumerate(methods):
            hit = [r for r in rows if r["method"] == m and r["sanity"] == check]
            if hit:
                xs.append(i + (j - (len(checks) - 1) / 2) * width)
                ys.append(_num(hit[0]["delta_mean"]))
                es.append(_num(hit[0]["delta_std"]))
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=check, color=palette[j % len(palette)])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels([_style(m)["label"] for m in methods], rotation=30, ha="right")
    ax.set_ylabel("change of test accuracy (points)")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=len(checks), frameon=False, fontsize=9,
               title=caption or None, title_fontsize=8)  # fmt: skip
    return _finish(fig, path)
