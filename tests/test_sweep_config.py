"""Sweep configuration files: everything refused at load, with one line naming the problem.

Hostile and careless inputs (issue 16, item 9): non-string keys, duplicate keys, NaN and
infinite options, unknown methods, models and options, subsets too small for one sample
per class, runaway grids; and random bytes or mutations of a valid file, which must give
the loader's own error, quickly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathnet.cli import main
from pathnet.experiments import SweepConfig, load_config
from pathnet.experiments.config import MAX_TRIALS

yaml = pytest.importorskip("yaml")

BASE = {"grid": {"method": ["phew"], "density": [0.1]}}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(path: Path, *needles: str, capsys: pytest.CaptureFixture[str]) -> str:
    """load_config raises one ValueError line holding every needle; the CLI exits 2."""
    with pytest.raises(ValueError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    assert main(["sweep", str(path), "--dry-run", "--out", str(path.parent / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pathnet sweep: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return message


# ------------------------------------------------------------------ keys
@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("1: x\ngrid: {method: [phew], density: [0.1]}\n", "int key 1"),
        ("grid: {method: [phew], density: [0.1], 2: [3]}\n", "[grid] has the int key 2"),
        ("grid: {method: [phew], density: [0.1]}\nfixed: {null: 1}\n", "NoneType key None"),
        ("grid: {method: [phew], density: [0.1]}\nfixed: {true: 1}\n", "bool key True"),
        ("grid: {method: [phew], density: [0.1]}\nmethod_options: {1: {a: 1}}\n", "key 1"),
        ("grid: {method: [phew], density: [0.1]}\nmethod_options: {phew: {7: 1}}\n", "key 7"),
        ("grid: {method: [phew], density: [0.1]}\nmodel_options: {0.5: 1}\n", "key 0.5"),
    ],
)
def test_yaml_non_string_keys_are_refused(tmp_path, capsys, text, needle):
    message = refused(write(tmp_path, "s.yaml", text), needle, capsys=capsys)
    assert "keys must be strings" in message


@pytest.mark.parametrize(
    ("name", "text", "key"),
    [
        ("s.json", '{"grid": {"method": ["phew"], "density": [0.1], "density": [0.2]}}',
         "'density'"),
        ("s.json", '{"grid": {"method": ["phew"], "density": [0.1]}, "fixed": {"epochs": 1}, '
         '"fixed": {"epochs": 2}}', "'fixed'"),
        ("s.json", '{"grid": {"method": ["synflow"], "density": [0.1]}, "method_options": '
         '{"synflow": {"iterations": 5, "iterations": 6}}}', "'iterations'"),
        ("s.yaml", "grid:\n  method: [phew]\n  density: [0.1]\n  density: [0.2]\n",
         "'density' (line 4)"),
        ("s.yaml", "grid: {method: [phew], density: [0.1]}\nfixed: {epochs: 1}\n"
         "fixed: {epochs: 2}\n", "'fixed' (line 3)"),
    ],
)  # fmt: skip
def test_duplicate_keys_are_refused_by_name(tmp_path, capsys, name, text, key):
    message = refused(write(tmp_path, name, text), "duplicate key", key, name, capsys=capsys)
    assert "cannot parse" in message


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    text = (
        "grid:\n  method: [phew]\n  density: [0.1]\n"
        "fixed:\n  <<: {epochs: 1, batch_size: 10}\n  epochs: 2\n"
    )
    config = load_config(write(tmp_path, "s.yaml", text))
    (trial,) = config.trials()
    assert trial.train.epochs == 2 and trial.train.batch_size == 10


# ---------------------------------------------------------------- values
@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("s.toml", '[grid]\nmethod = ["synflow"]\ndensity = [0.1]\n'
         "[method_options.synflow]\niterations = nan\n", "method_options.synflow.iterations"),
        ("s.toml", '[grid]\nmethod = ["synflow"]\ndensity = [0.1]\n'
         "[method_options.synflow]\niterations = inf\n", "method_options.synflow.iterations"),
        ("s.json", '{"grid": {"method": ["synflow"], "density": [0.1]}, '
         '"method_options": {"synflow": {"iterations": NaN}}}', "method_options.synflow.iterations"),
        ("s.yaml", "grid: {method: [phew], density: [0.1]}\n"
         "method_options: {phew: {max_walks: [1, .inf]}}\n", "method_options.phew.max_walks"),
        ("s.yaml", "grid: {method: [phew], density: [0.1]}\nmodel_options: {sizes: -.inf}\n",
         "model_options.sizes"),
        ("s.toml", '[grid]\nmethod = ["phew"]\ndensity = [nan]\n', "density"),
        ("s.toml", '[grid]\nmethod = ["phew"]\ndensity = [0.1]\nlr = [inf]\n', "lr"),
        ("s.toml", '[grid]\nmethod = ["phew"]\ndensity = [0.1]\n[fixed]\ngamma = nan\n', "gamma"),
    ],
)  # fmt: skip
def test_non_finite_numbers_are_refused_naming_the_setting(tmp_path, capsys, name, text, needle):
    message = refused(write(tmp_path, name, text), needle, capsys=capsys)
    assert "finite" in message


@pytest.mark.parametrize(
    ("doc", "needles"),
    [
        ({"method_options": {"phew": {"walks": 3}}}, ("phew takes no option 'walks'", "bias")),
        ({"grid": {"method": ["synflow_l2"], "density": [0.1]},
          "method_options": {"synflow_l2": {"iteration": 3}}}, ("'iteration'", "iterations")),
        ({"grid": {"method": ["random"], "density": [0.1]},
          "method_options": {"random": {"bias": "abs"}}}, ("random takes no option 'bias'",)),
        ({"grid": {"method": ["snip"], "density": [0.1]},
          "method_options": {"snip": {"data": "x"}}}, ("data is set by the sweep",)),
        ({"model_options": {"depth": 3}}, ("mlp takes no option 'depth'", "sizes")),
        ({"fixed": {"model": "vgg11"}, "model_options": {"num_class": 3}}, ("'num_class'",)),
        ({"fixed": {"model": "resnet20"}, "model_options": {"seed": 3}}, ("'seed'",)),
        ({"fixed": {"model": "lenet6"}}, ("unknown model 'lenet6'",)),
        ({"grid": {"method": ["phew", "phewx"], "density": [0.1]}}, ("unknown method 'phewx'",)),
        ({"fixed": {"train_subset": 9}}, ("train_subset = 9", "10 classes", "at least 10")),
        ({"fixed": {"test_subset": 1, "dataset": "cifar100", "model": "vgg11",
                    }, "model_options": {"num_classes": 100}}, ("test_subset = 1", "100 classes")),
        ({"fixed": {"dataset": "cifar100", "model": "vgg11"}}, ("10 outputs", "num_classes = 100")),
        ({"fixed": {"mask_mode": "soft"}}, ("mask_mode",)),
        ({"fixed": {"milestones": 5}}, ("milestones",)),
        ({"grid": {"method": ["phew"], "density": [0.1], "seed": list(range(MAX_TRIALS + 1))}},
         (f"{MAX_TRIALS + 1:,} trials",)),
    ],
)  # fmt: skip
def test_unknown_names_and_small_subsets_are_caught_at_load(doc, needles):
    full = {**BASE, **doc}
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:
        SweepConfig.from_dict(full)
    assert time.perf_counter() - t0 < 1.0
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_valid_options_and_subsets_load():
    config = SweepConfig.from_dict(
        {
            "grid": {"method": ["phew", "synflow_l2", "snip"], "density": [0.1]},
            "fixed": {"model": "vgg11", "dataset": "cifar100", "train_subset": 100},
            "method_options": {
                "phew": {"bias": "square", "max_walks": 10**6},
                "synflow_l2": {"iterations": 10, "variant": "phew"},
                "snip": {"train_mode": False},
            },
            "model_options": {"num_classes": 100, "batch_norm": True},
        }
    )
    assert len(config.trials()) == 3


def test_cli_training_options_replace_the_files(tmp_path, capsys):
    cfg = write(tmp_path, "s.toml", '[grid]\nmethod = ["phew"]\ndensity = [0.1]\nepochs = [4, 5]\n')
    out = str(tmp_path / "out")
    assert main(["sweep", str(cfg), "--out", out, "--dry-run"]) == 0
    assert "0/4" in capsys.readouterr().out
    assert (
        main(["sweep", str(cfg), "--out", out, "--dry-run", "--epochs", "2", "--lr", "0.05"]) == 0
    )
    text = capsys.readouterr().out
    assert "0/2" in text and "0/4" not in text and "1 trials" in text
    assert main(["sweep", str(cfg), "--out", out, "--dry-run", "--lr", "nan"]) == 2
    assert "--lr" in capsys.readouterr().err


# ------------------------------------------------- random bytes and mutations
VALID = {
    "s.toml": '[grid]\nmethod = ["phew", "synflow"]\ndensity = [0.1, 0.05]\nseed = [0, 1]\n'
    '[fixed]\nepochs = 2\ntrain_subset = 100\n[method_options.synflow]\niterations = 10\n',
    "s.json": json.dumps(
        {"grid": {"method": ["phew", "synflow"], "density": [0.1, 0.05], "seed": [0, 1]},
         "fixed": {"epochs": 2, "train_subset": 100},
         "method_options": {"synflow": {"iterations": 10}}}
    ),
    "s.yaml": "grid:\n  method: [phew, synflow]\n  density: [0.1, 0.05]\n  seed: [0, 1]\n"
    "fixed: {epochs: 2, train_subset: 100}\nmethod_options:\n  synflow: {iterations: 10}\n",
}  # fmt: skip


def test_the_valid_files_load(tmp_path):
    hashes = set()
    for name, text in VALID.items():
        config = load_config(write(tmp_path, name, text))
        hashes.add(tuple(t.hash for t in config.trials()))
    assert len(hashes) == 1 and len(next(iter(hashes))) == 8


def _only_our_error(path: Path) -> None:
    t0 = time.perf_counter()
    try:
        load_config(path)
    except ValueError as exc:
        assert "\n" not in str(exc), str(exc)
        assert str(exc).startswith("pathnet.experiments: "), str(exc)
    assert time.perf_counter() - t0 < 1.0


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(sorted(VALID)), data=st.binary(max_size=400))
def test_random_bytes_give_only_our_error(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    _only_our_error(path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(sorted(VALID)),
    edits=st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 3), st.sampled_from(list(' "[]{}:,=-.\n01aeNn#&*!'))),
        min_size=1,
        max_size=6,
    ),
)  # fmt: skip
def test_mutated_files_give_only_our_error(tmp_path, name, edits):
    text = VALID[name]
    for pos, cut, char in edits:
        pos %= len(text) + 1
        text = text[:pos] + char + text[pos + cut :]
    path = tmp_path / name
    path.write_text(text)
    _only_our_error(path)


def test_large_files_and_yaml_alias_bombs_are_refused_quickly(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="at most 1 MB"):
        load_config(big)
    bomb = "a: &a [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]\n"
    for k in "bcdefgh":
        bomb += f"{k}: &{k} [*{chr(ord(k) - 1)}, *{chr(ord(k) - 1)}, *{chr(ord(k) - 1)}]\n"
    bomb += "grid: {method: [phew], density: *h}\n"
    with pytest.raises(ValueError):
        load_config(write(tmp_path, "bomb.yaml", bomb))
    axes = ("seed", "mask_seed", "init_seed", "epochs", "batch_size")
    grid = "grid:\n  method: [phew]\n  density: [0.1]\n" + "".join(
        f"  {k}: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" for k in axes
    )
    with pytest.raises(ValueError, match=r"100,000 trials in .*; at most 10,000"):
        load_config(write(tmp_path, "wide.yaml", grid))
    assert time.perf_counter() - t0 < 2.0
