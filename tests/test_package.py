"""The package as a user meets it: light import, lazy sub-packages, ``python -m pathnet``."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_is_light_and_subpackages_are_reachable() -> None:
    heavy = ("pathnet.train", "pathnet.data", "pathnet.figures", "pathnet.experiments")
    code = (
        "import sys, pathnet; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules)); "
        "print(callable(pathnet.train.fit), callable(pathnet.figures.plot_widths), "
        "callable(pathnet.data.load_dataset))"
    )
    loaded, reachable = _run(code).splitlines()
    assert loaded == "[]"
    assert reachable == "True True True"


def test_unknown_attribute_is_an_attribute_error() -> None:
    assert (
        _run("import pathnet\ntry:\n    pathnet.nope\nexcept AttributeError as e:\n    print(e)")
        == "module 'pathnet' has no attribute 'nope'"
    )


def test_python_dash_m_pathnet() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pathnet", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pathnet ")
    bad = subprocess.run([sys.executable, "-m", "pathnet", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
