"""IMP similarity experiment on real Fashion-MNIST (skipped when the data is absent)."""

from __future__ import annotations

import csv

import pytest

from pathnet import data as data_mod
from pathnet.cli import main


def _have_fmnist() -> bool:
    try:
        data_mod.find_dataset("fashion-mnist", "train")
    except data_mod.DatasetError:
        return False
    return True


@pytest.mark.skipif(not _have_fmnist(), reason="Fashion-MNIST not installed")
def test_imp_similarity_cli(tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(
        [
            "imp-similarity",
            "mlp",
            "--densities",
            "0.6",
            "--methods",
            "phew",
            "random",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    with open(out / "imp_similarity.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    overall = {r["method"]: r for r in rows if r["layer"] == "(all)"}
    assert set(overall) == {"phew", "random"}
    for r in overall.values():
        # matched density: the method keeps as many weights as the IMP round
        assert float(r["density_method"]) == pytest.approx(float(r["density_imp"]), abs=1e-6)
        assert 0.0 <= float(r["jaccard"]) <= 1.0
    # IMP keeps large trained weights, random picks uniformly: Jaccard of random ~ d/(2-d)
    d = float(overall["random"]["imp_density"])
    assert float(overall["random"]["jaccard"]) == pytest.approx(d / (2 - d), abs=0.02)
    assert (out / "imp_similarity_jaccard.png").is_file()
    assert "imp_density" in capsys.readouterr().out
