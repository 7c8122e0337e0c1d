"""Plotting API: Figures returned, formats from suffixes, no global backend switch, legibility."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.figure import Figure

import pathnet
from pathnet import figures


def _width_rows(n_groups: int, seeds: int = 2) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for method in ("phew", "random", "synflow_l2"):
        for seed in range(seeds):
            for g in range(n_groups):
                active = 10 if method == "phew" else 10 - (g + seed) % 4
                rows.append(
                    {"model": "net", "method": method, "density": 0.05, "seed": seed}
                    | {"group": g, "name": f"layer1.{g}.conv1", "units": 10, "active": active}
                )
    return rows


def test_functions_return_figures_and_save_in_the_suffix_format(tmp_path: Path) -> None:
    rows = _width_rows(5)
    fig = figures.width_profile(rows, densities=[0.05])
    assert isinstance(fig, Figure)
    magic = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}
    for suffix, head in magic.items():
        path = figures.save_figure(fig, tmp_path / f"w{suffix}")
        assert path.read_bytes()[: len(head)] == head, suffix
    # path= saves too, and still returns the Figure
    out = figures.width_profile(rows, tmp_path / "again.pdf", densities=[0.05])
    assert isinstance(out, Figure) and (tmp_path / "again.pdf").read_bytes()[:4] == b"%PDF"


def test_unknown_suffix_is_refused_by_name(tmp_path: Path) -> None:
    fig = figures.width_profile(_width_rows(3), densities=[0.05])
    with pytest.raises(ValueError, match=r"\.xyz|suffix"):
        figures.save_figure(fig, tmp_path / "w.xyz")
    assert not list(tmp_path.iterdir())


def test_importing_figures_keeps_the_users_backend() -> None:
    code = (
        "import matplotlib; matplotlib.use('svg'); import pathnet.figures, pathnet; "
        "pathnet.figures.width_profile([], densities=[]) if False else None; "
        "print(matplotlib.get_backend())"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "svg"


def test_phew_is_drawn_on_top_and_the_band_is_explained() -> None:
    fig = figures.width_profile(_width_rows(6), densities=[0.05])
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    z_phew = lines["PHEW"].get_zorder()
    assert all(z_phew > line.get_zorder() for k, line in lines.items() if k != "PHEW")
    legend = fig.legends[0]
    caption = legend.get_title().get_text()
    assert "min to max over seeds" in caption and "stage S, block B" in caption
    # one seed: no band to explain
    single = figures.width_profile(_width_rows(6, seeds=1), densities=[0.05])
    assert "seeds" not in single.legends[0].get_title().get_text()


def test_many_groups_keep_readable_labels() -> None:
    fig = figures.width_profile(_width_rows(60, seeds=1), densities=[0.05])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert 0 < len(labels) <= figures._MAX_TICK_LABELS + 1
    assert all(labels)
    assert all(t.get_fontsize() >= 8 for t in fig.axes[0].get_xticklabels())


def test_plot_widths_one_call_from_model_and_masks(tmp_path: Path) -> None:
    model = pathnet.models.mlp([12, 10, 10, 3], seed=0)
    masks = {m: pathnet.select.select(m, model, 0.25, seed=0) for m in ("phew", "random")}
    fig = figures.plot_widths(model, masks, tmp_path / "w.png")
    assert (tmp_path / "w.png").stat().st_size > 1000
    ax = fig.axes[0]
    phew = next(line for line in ax.get_lines() if line.get_label() == "PHEW")
    expected = [
        100 * w.active / w.units for w in pathnet.analysis.layer_widths(model, masks["phew"])
    ]
    assert list(phew.get_ydata()) == pytest.approx(expected)
    kept = sum(int(t.sum()) for t in masks["phew"].values())
    total = sum(t.numel() for t in masks["phew"].values())
    assert f"{100 * kept / total:.3g}%" in ax.get_title()
