"""Collecting a sweep: one tidy CSV row per finished trial, and the accuracy figure."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathnet.experiments.config import TRIAL_KEYS, canonical_json
from pathnet.experiments.grid import RESULT_FILE, SWEEP_FILE, TRIALS_DIR, collect_rows
from pathnet.train.config import TrainConfig

__all__ = [
    "METRIC_COLUMNS",
    "CollectResult",
    "collect",
    "result_row",
    "summary_rows",
    "trial_rows",
]

_PREFIX = "pathnet.experiments"

#: Result columns that follow the configuration columns in the CSV.
METRIC_COLUMNS: tuple[str, ...] = (
    "test_acc",
    "test_loss",
    "train_acc",
    "train_loss",
    "epochs_completed",
    "mask_density",
    "n_kept",
    "n_train",
    "train_seconds",
    "resumed_from",
)

# Axes every figure panel already shows (x, curves, spread) or that differ by method.
_PLOTTED = {
    "method",
    "density",
    "seed",
    "mask_seed",
    "init_seed",
    "model",
    "dataset",
    "method_options",
}


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, Mapping)):
        return canonical_json(value)
    return value


def result_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One finished trial's row: its settings (defaults filled in) and final metrics."""
    config = {**TrainConfig().to_dict(), **(doc.get("config") or {})}
    final = doc.get("final") or {}
    mask = doc.get("mask") or {}
    history = doc.get("history") or []
    row: dict[str, Any] = {"trial": doc.get("name", ""), "hash": doc.get("hash", "")}
    row.update({k: _cell(config.get(k)) for k in TRIAL_KEYS})
    metrics = {
        "test_acc": final.get("test_acc"),
        "test_loss": final.get("test_loss"),
        "train_acc": final.get("train_acc"),
        "train_loss": final.get("train_loss"),
        "epochs_completed": doc.get("epochs_completed"),
        "mask_density": mask.get("density", 1.0),
        "n_kept": mask.get("n_kept", ""),
        "n_train": doc.get("n_train"),
        "train_seconds": round(sum(float(h.get("time_s") or 0) for h in history), 3),
        "resumed_from": doc.get("resumed_from"),
    }
    row.update({k: _cell(v) for k, v in metrics.items()})
    return row


def _planned(sweep_dir: Path) -> list[str] | None:
    try:
        doc = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
        return [t["name"] for t in doc["trials"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def trial_rows(
    sweep_dir: str | os.PathLike[str], *, all_trials: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the finished trials of a sweep, and the names of the unfinished ones.

    By default only the trials of the sweep's plan (``sweep.json``, written by the last
    ``pathnet sweep``) are read; ``all_trials`` reads every ``trials/*/result.json``.
    Rows hold ``trial``, ``hash``, every setting of :data:`TRIAL_KEYS` (lists and
    tables as JSON text, None as empty) and :data:`METRIC_COLUMNS`; sorted by model,
    dataset, method, density (descending) and seeds.
    """
    root = Path(sweep_dir)
    if not (root / TRIALS_DIR).is_dir() and not (root / SWEEP_FILE).is_file():
        raise ValueError(
            f"{_PREFIX}: {root} is not a sweep folder (no {TRIALS_DIR}/ or {SWEEP_FILE})"
        )
    plan = None if all_trials else _planned(root)
    names = (
        plan
        if plan is not None
        else sorted(p.parent.name for p in (root / TRIALS_DIR).glob(f"*/{RESULT_FILE}"))
    )
    tables, missing = collect_rows(root, names, lambda doc: {"results": [result_row(doc)]})
    rows = tables.get("results", [])
    rows.sort(
        key=lambda r: (
            r["model"],
            r["dataset"],
            r["method"],
            -float(r["density"]),
            r["init_seed"],
            r["mask_seed"],
            r["seed"],
            r["hash"],
        )
    )
    return rows, missing


def _panel_labels(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``model / dataset`` plus every other setting that varies across the rows."""
    varying = [k for k in TRIAL_KEYS if k not in _PLOTTED and len({str(r[k]) for r in rows}) > 1]
    labels = []
    for r in rows:
        extra = ", ".join(f"{k}={r[k]}" for k in varying)
        labels.append(f"{r['model']} / {r['dataset']}" + (f" ({extra})" if extra else ""))
    return labels


def summary_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Test accuracy (%) per panel, method and density: runs, mean, min, max."""
    groups: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for label, r in zip(_panel_labels(rows), rows):
        if r["test_acc"] != "":
            groups[(label, str(r["method"]), float(r["density"]))].append(
                100 * float(r["test_acc"])
            )
    out = []
    for (label, method, density), acc in groups.items():
        out.append(
            {
                "setting": label,
                "method": method,
                "density %": 100 * density,
                "runs": len(acc),
                "mean": sum(acc) / len(acc),
                "min": min(acc),
                "max": max(acc),
            }
        )
    return out


@dataclass
class CollectResult:
    """What :func:`collect` found and wrote."""

    rows: list[dict[str, Any]]
    missing: list[str]
    csv: Path | None = None
    figure: Path | None = None
    summary: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What ``pathnet collect`` prints: the summary table and the files written."""
        from pathnet._text import format_table

        cols = ["setting", "method", "density %", "runs", "mean", "min", "max"]
        out = [format_table(self.summary, cols), f"wrote {self.csv} ({len(self.rows)} trials)"]
        if self.figure is not None:
            out.append(f"wrote {self.figure}")
        if self.missing:
            out.append(
                f"pathnet collect: {len(self.missing)} trial(s) of the sweep have not finished: "
                + ", ".join(self.missing[:5])
                + (" ..." if len(self.missing) > 5 else "")
            )
        return out


def collect(
    sweep_dir: str | os.PathLike[str],
    *,
    csv_path: str | os.PathLike[str] | None = None,
    figure_path: str | os.PathLike[str] | None = None,
    title: str | None = None,
    figure: bool = True,
    all_trials: bool = False,
) -> CollectResult:
    """Write the sweep's table (``results.csv``) and figure (``accuracy_vs_density.png``).

    Parameters
    ----------
    sweep_dir : path-like
        A folder written by ``pathnet sweep``.
    csv_path, figure_path : path-like, optional
        Default ``<sweep_dir>/results.csv`` and ``<sweep_dir>/accuracy_vs_density.png``.
    title : str, optional
        Figure title; default "test accuracy after N epochs" (or the sweep's name).
    figure : bool, default True
        Draw the figure (test accuracy against density, log axis, mean and min-max
        over seeds, one panel per model/dataset and any other varying setting).
    all_trials : bool, default False
        See :func:`trial_rows`.

    Raises
    ------
    ValueError
        Not a sweep folder, or no trial has finished.
    """
    from pathnet._io import write_csv

    root = Path(sweep_dir)
    rows, missing = trial_rows(root, all_trials=all_trials)
    if not rows:
        raise ValueError(
            f"{_PREFIX}: no finished trial in {root} ({len(missing)} unfinished); "
            f"run `pathnet sweep` first"
        )
    result = CollectResult(rows=rows, missing=missing, summary=summary_rows(rows))
    result.csv = write_csv(rows, csv_path or root / "results.csv")
    if figure:
        from pathnet import figures

        plot_rows = [
            {**r, "model": label}
            for label, r in zip(_panel_labels(rows), rows)
            if r["test_acc"] != "" and math.isfinite(float(r["test_acc"]))
        ]
        if not plot_rows:
            return result
        if title is None:
            epochs = sorted({int(r["epochs"]) for r in rows})
            title = "test accuracy after " + "/".join(map(str, epochs)) + " epoch(s)"
        result.figure = figures.save_figure(
            figures.accuracy_vs_density(plot_rows, title=title),
            figure_path or root / "accuracy_vs_density.png",
        )
    return result
