"""The notebooks: generated from make_notebooks.py, committed with outputs, and runnable.

``make notebooks`` regenerates and executes them (full settings); here each runs headless
on small settings (``PATHNET_NOTEBOOK_SMALL=1``), and the committed files are checked
against the generator and for their outputs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_notebooks", NB_DIR / "make_notebooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _has_image(cell: Any) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def _figure_cells(nb: Any) -> list[int]:
    return [i for i, c in enumerate(_code_cells(nb)) if "figure" in c.metadata.get("tags", [])]


def test_the_three_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_path_kernel_basics.ipynb",
        "02_bottlenecks.ipynb",
        "03_reproduce_figures.ipynb",
    ]


def test_committed_sources_equal_the_generator():
    """Nobody hand-edits the JSON: the cells are make_notebooks.py's, in order."""
    built = _generator().build()
    assert sorted(built) == [p.name for p in NOTEBOOKS]
    for path in NOTEBOOKS:
        committed = nbformat.read(path, as_version=4)
        want = [(c.cell_type, c.source, c.metadata.get("tags")) for c in built[path.name].cells]
        got = [(c.cell_type, c.source, c.metadata.get("tags")) for c in committed.cells]
        assert got == want, f"{path.name} differs from make_notebooks.py: run `make notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_its_outputs(path):
    """Executed top to bottom without error; every figure cell shows an image."""
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: not executed in order"
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
    figures = _figure_cells(nb)
    assert figures, f"{path.name} has no figure cell"
    missing = [i for i in figures if not _has_image(cells[i])]
    assert not missing, f"{path.name}: figure cells {missing} have no image output"
    # committed from the full settings, not the tests' small ones
    setup = "".join(str(o.get("text", "")) for o in cells[0].outputs)
    assert "settings: full" in setup, f"{path.name} was committed from the small settings"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch):
    """Small settings, from the notebooks folder; exactly the tagged cells draw."""
    monkeypatch.setenv("PATHNET_NOTEBOOK_SMALL", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows images
    # the kernel starts in notebooks/: make it import this checkout's pathnet
    root = str(NB_DIR.parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )
    generator = _generator()
    nb = generator.build()[path.name]
    generator.execute(nb, timeout=600)  # raises CellExecutionError, naming the cell
    cells = _code_cells(nb)
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
    drawn = [i for i, c in enumerate(cells) if _has_image(c)]
    assert drawn == _figure_cells(nb)
