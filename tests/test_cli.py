"""The command line: models as zoo names or entry points, weights, mask specs, one-line errors.

Issue 15.1 (MODEL may be ``file.py:function`` or ``package.module:function`` with
``--model-arg``; ``--weights``; masks record the model's spec and later commands honour
it) and 15.5 (every user mistake is one line naming the option, exit status 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pathnet import Mask, analysis, models
from pathnet.cli import main
from pathnet.specs import ModelSpec, ModelSpecError, resolve_model_for_mask
from tests.strategies import write_fashion

MODEL_FILE = """
import torch.nn as nn

def net(width=8, seed=None):
    g = None if seed is None else __import__("torch").Generator().manual_seed(seed)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 3))
    if g is not None:
        for p in m.parameters():
            p.data.normal_(generator=g)
    m.input_shape = (1, 4, 4)
    return m

def unseeded(width=8):
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, width), nn.ReLU(), nn.Linear(width, 3))
    m.input_shape = (1, 4, 4)
    return m

def noshape():
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

def number():
    return 3

not_callable = 7
"""


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, command: str, *needles: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"pathnet {command}: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


@pytest.fixture
def model_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "mymodels.py"
    path.write_text(MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    return path


def summary_json(model, mask=None) -> dict:
    return json.loads(analysis.summary(model, mask).to_json())


def analyze_json(argv: list, capsys) -> dict:
    code, out, err = run_cli(["analyze", *argv, "--format", "json"], capsys)
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------ 15.1: entry points
def test_file_entry_point_with_model_args(model_file, capsys):
    code, out, err = run_cli(["info", f"{model_file}:net", "--model-arg", "width=5"], capsys)
    assert code == 0, err
    assert "input (1, 4, 4)" in out and "3 groups" in out and "24 units" in out  # 16 + 5 + 3
    # A relative path works too, and the model function gets --seed.
    a = analyze_json(["mymodels.py:net", "--seed", "1"], capsys)
    b = analyze_json(["mymodels.py:net", "--seed", "2"], capsys)
    assert a == summary_json(ModelSpec("mymodels.py:net", seed=1).build())
    assert a["overall"] != b["overall"]


def test_unseeded_function_is_seeded_through_torch(model_file, capsys):
    state = torch.random.get_rng_state()
    a = analyze_json(["mymodels.py:unseeded", "--seed", "4"], capsys)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is restored
    assert a == analyze_json(["mymodels.py:unseeded", "--seed", "4"], capsys)
    assert a != analyze_json(["mymodels.py:unseeded", "--seed", "5"], capsys)


def test_module_entry_point_is_the_zoo_function(capsys):
    sizes = ["--model-arg", "sizes=[16, 4, 2]"]
    code, out, err = run_cli(["info", "pathnet.models:mlp", *sizes], capsys)
    assert code == 0, err
    code, zoo, _ = run_cli(["info", "mlp", *sizes], capsys)
    assert out.splitlines()[1:] == zoo.splitlines()[1:]
    assert analyze_json(["pathnet.models:mlp", *sizes, "--seed", "3"], capsys) == summary_json(
        models.mlp([16, 4, 2], seed=3)
    )


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["missing.py:net"], ["MODEL", "no model file 'missing.py'"]),
        (["mymodels.py:nope"], ["MODEL", "has no function 'nope'"]),
        (["mymodels.py:not_callable"], ["MODEL", "not a function"]),
        (["mymodels.py:number"], ["MODEL", "returned 'int'", "torch.nn.Module"]),
        (["mymodels.py:noshape"], ["--input-shape", "input_shape", "C,H,W"]),
        (["mymodels.py:noshape", "--input-shape", "0,4,4"], ["--input-shape", "got '0,4,4'"]),
        (["mymodels.py:noshape", "--input-shape", "a,b"], ["--input-shape", "positive integers"]),
        (["mymodels.py"], ["MODEL", "mymodels.py:FUNCTION"]),
        (["no_such_pkg.models:net"], ["MODEL", "no module 'no_such_pkg.models'"]),
        (["resnet50"], ["MODEL", "unknown model 'resnet50'", "file.py:FUNCTION"]),
        (["mymodels.py:net", "--model-arg", "width"], ["--model-arg", "key=value"]),
        (["mymodels.py:net", "--model-arg", "depth=3"], ["--model-arg", "'depth'", "['width']"]),
        (["mymodels.py:net", "--model-arg", "seed=3"], ["--model-arg", "--seed"]),
        (["mlp", "--model-arg", "sizes=[784, 0]"], ["--model-arg", "mlp"]),
        (["vgg11", "--num-classes", "0"], ["--num-classes", "positive"]),
        (["mlp", "--weights", "missing.pt"], ["--weights", "no weights file 'missing.pt'"]),
    ],
)  # fmt: skip
def test_model_mistakes_are_one_line(model_file, capsys, argv, needles):
    assert_one_line_error(*run_cli(["info", *argv], capsys)[::2], "info", *needles)


def test_input_shape_option_builds_a_shapeless_model(model_file, capsys):
    code, out, err = run_cli(["info", "mymodels.py:noshape", "--input-shape", "1,4,4"], capsys)
    assert code == 0 and "input (1, 4, 4)" in out, err


# ------------------------------------------------------------------ 15.1: weights
def test_weights_state_dict_and_train_checkpoint(tmp_path, capsys):
    trained = models.mlp(seed=5)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    got = analyze_json(["mlp", "--weights", tmp_path / "w.pt"], capsys)
    assert got == summary_json(trained) and got != summary_json(models.mlp(seed=0))
    # A checkpoint of `pathnet train` (a dict with "format" and a "model" state dict).
    data = write_fashion(tmp_path / "data" / "fashion-mnist", 20).parent
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "mlp", "--data-root", data, "--epochs", "1",
                            "--batch-size", "10", "--device", "cpu", "--out", run], capsys)  # fmt: skip
    assert code == 0, err
    (ckpt,) = [p for p in run.iterdir() if p.suffix == ".pt"]
    saved = torch.load(ckpt, weights_only=True)
    assert saved["format"] == "pathnet-checkpoint"
    model = models.mlp()
    model.load_state_dict(saved["model"])
    assert analyze_json(["mlp", "--weights", ckpt], capsys) == summary_json(model)


def test_weights_that_do_not_fit_name_the_keys(tmp_path, capsys):
    torch.save(models.lenet5().state_dict(), tmp_path / "lenet.pt")
    code, _, err = run_cli(["info", "mlp", "--weights", tmp_path / "lenet.pt"], capsys)
    assert_one_line_error(code, err, "info", "--weights", "do not fit mlp", "missing ['1.weight'",
                          "unexpected ['features.0.weight'")  # fmt: skip
    torch.save(models.mlp([784, 20, 10]).state_dict(), tmp_path / "small.pt")
    code, _, err = run_cli(["info", "mlp", "--weights", tmp_path / "small.pt"], capsys)
    assert_one_line_error(
        code, err, "info", "--weights", "shape of 1.weight (20, 784) vs (300, 784)"
    )
    torch.save({"a": 1}, tmp_path / "junk.pt")
    code, _, err = run_cli(["info", "mlp", "--weights", tmp_path / "junk.pt"], capsys)
    assert_one_line_error(code, err, "info", "--weights", "not a state dict")
    (tmp_path / "text.pt").write_text("hello")
    code, _, err = run_cli(["info", "mlp", "--weights", tmp_path / "text.pt"], capsys)
    assert_one_line_error(code, err, "info", "--weights", "cannot read")


# ------------------------------------------------------------------ 15.1: masks record the spec
def test_prune_records_the_model_spec_and_analyze_uses_its_seed(tmp_path, capsys):
    out = tmp_path / "m3.npz"
    assert run_cli(["prune", "mlp", "--density", "0.1", "--method", "random", "--seed", "3",
                    "--out", out], capsys)[0] == 0  # fmt: skip
    meta = Mask.load(out).meta
    assert meta["model"] == "mlp"  # the model's name, not the class name MLP
    assert meta["model_spec"] == {"entry": "mlp", "args": {}, "seed": 3,
                                  "weights_sha256": None, "input_shape": None}  # fmt: skip
    mask = Mask.load(out)
    seed3 = summary_json(models.mlp(seed=3), mask)
    assert seed3 != summary_json(models.mlp(seed=0), mask)
    assert analyze_json(["mlp", "--mask", out], capsys) == seed3
    assert analyze_json(["mlp", "--mask", out, "--seed", "3"], capsys) == seed3
    code, _, err = run_cli(["analyze", "mlp", "--mask", out, "--seed", "4"], capsys)
    assert_one_line_error(code, err, "analyze", "--seed", "seed-3", "--seed 4")
    code, _, err = run_cli(["analyze", "lenet5", "--mask", out], capsys)
    assert_one_line_error(code, err, "analyze", "does not fit LeNet5")
    # Trained weights of the same model may be analysed with the mask chosen at init.
    torch.save(models.mlp(seed=9).state_dict(), tmp_path / "w.pt")
    got = analyze_json(["mlp", "--mask", out, "--weights", tmp_path / "w.pt"], capsys)
    assert got == summary_json(models.mlp(seed=9), mask)


def test_mask_recorded_arguments_and_entry(model_file, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert run_cli(["prune", "mymodels.py:net", "--model-arg", "width=6", "--seed", "2",
                    "--density", "0.5", "--method", "random", "--out", out], capsys)[0] == 0  # fmt: skip
    spec = Mask.load(out).meta["model_spec"]
    assert spec["entry"] == "mymodels.py:net" and spec["args"] == {"width": 6}
    expected = summary_json(
        ModelSpec("mymodels.py:net", {"width": 6}, seed=2).build(), Mask.load(out)
    )
    assert analyze_json(["mymodels.py:net", "--mask", out], capsys) == expected
    code, _, err = run_cli(["analyze", "mymodels.py:net", "--mask", out, "--model-arg", "width=7"],
                           capsys)  # fmt: skip
    assert_one_line_error(code, err, "analyze", "--model-arg", "{'width': 6}", "{'width': 7}")
    code, _, err = run_cli(["analyze", "mymodels.py:unseeded", "--mask", out], capsys)
    assert_one_line_error(code, err, "analyze", "MODEL", "mymodels.py:net", "mymodels.py:unseeded")


def test_mask_on_weights_refuses_other_weights(tmp_path, capsys):
    torch.save(models.mlp(seed=5).state_dict(), tmp_path / "w5.pt")
    torch.save(models.mlp(seed=6).state_dict(), tmp_path / "w6.pt")
    out = tmp_path / "m.npz"
    assert run_cli(["prune", "mlp", "--density", "0.1", "--method", "magnitude", "--weights",
                    tmp_path / "w5.pt", "--out", out], capsys)[0] == 0  # fmt: skip
    sha = Mask.load(out).meta["model_spec"]["weights_sha256"]
    assert isinstance(sha, str) and len(sha) == 64
    code, _, err = run_cli(["analyze", "mlp", "--mask", out], capsys)
    assert_one_line_error(code, err, "analyze", "--weights", sha[:12], "no --weights")
    code, _, err = run_cli(["analyze", "mlp", "--mask", out, "--weights", tmp_path / "w6.pt"],
                           capsys)  # fmt: skip
    assert_one_line_error(code, err, "analyze", "--weights", sha[:12])
    assert analyze_json(["mlp", "--mask", out, "--weights", tmp_path / "w5.pt"], capsys) == (
        summary_json(models.mlp(seed=5), Mask.load(out))
    )


def test_resolve_model_for_mask():
    rec = {"model_spec": ModelSpec("resnet20", {"in_channels": 1}, seed=3).to_meta()}
    got = resolve_model_for_mask(ModelSpec("ResNet20"), rec)
    assert (got.seed, got.args) == (3, {"in_channels": 1})
    assert resolve_model_for_mask(ModelSpec("mlp"), {}).seed == 0
    assert resolve_model_for_mask(ModelSpec("mlp", seed=2), None).seed == 2
    # A mask written before specs existed: only model_seed and the class name.
    assert (
        resolve_model_for_mask(ModelSpec("resnet20"), {"model": "ResNet", "model_seed": 3}).seed
        == 3
    )
    with pytest.raises(ModelSpecError, match="seed-3 weights, got --seed 1") as info:
        resolve_model_for_mask(ModelSpec("resnet20", seed=1), {"model_seed": 3})
    assert info.value.option == "--seed"
    with pytest.raises(ModelSpecError, match="model resnet20, got vgg16"):
        resolve_model_for_mask(ModelSpec("vgg16"), rec)
    assert ModelSpec.from_meta({"model": "ResNet"}) is None
    spec = ModelSpec("a/b.py:f", {"x": [1, 2]}, 4, "ab" * 32, (1, 2, 3))
    assert ModelSpec.from_meta(json.loads(json.dumps(spec.to_meta()))) == spec


# ------------------------------------------------------------------ 15.5: one-line mistakes
def fashion_installed() -> bool:
    try:
        from pathnet.data import find_dataset

        find_dataset("fashion-mnist", "train")
    except (OSError, ValueError):
        return False
    return True


@pytest.mark.parametrize("real", [False, True])
def test_prune_three_channel_model_on_one_channel_data(tmp_path, capsys, real):
    argv = ["prune", "vgg16", "--method", "snip", "--density", "0.05", "--data", "fashion-mnist",
            "--out", tmp_path / "s.npz"]  # fmt: skip
    if real and not fashion_installed():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    if not real:
        argv += ["--data-root", write_fashion(tmp_path / "d" / "fashion-mnist", 100).parent]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "prune", "--data fashion-mnist", "--model-arg in_channels=1")
    assert not (tmp_path / "s.npz").exists()


def test_prune_pads_small_images_for_the_model(tmp_path, capsys):
    from pathnet.cli import _data_batch

    data = write_fashion(tmp_path / "d" / "fashion-mnist", 100).parent
    args = type("A", (), {"data": "fashion-mnist", "data_root": data, "download": False,
                          "model": "vgg11"})()  # fmt: skip
    x, y = _data_batch(args, models.vgg11(in_channels=1), 0)
    assert x.shape == (100, 1, 32, 32) and y.shape == (100,)
    from pathnet.data import load_dataset, subset_per_class

    sub = subset_per_class(load_dataset("fashion-mnist", "train", root=data), 10, seed=0)
    assert torch.equal(x[:, :, 2:30, 2:30], sub.images)
    assert torch.all(x[:, :, :2] == sub.pad_value[0])


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--method", "snip"], ["--data", "batch of real data"]),
        (["--method", "grasp"], ["--data"]),
        (["--method", "imp"], ["--data", "pathnet imp"]),
    ],
)
def test_prune_data_methods_name_the_option(tmp_path, capsys, argv, needles):
    code, _, err = run_cli(["prune", "mlp", "--density", "0.1", *argv, "--out", tmp_path / "m.npz"],
                           capsys)  # fmt: skip
    assert_one_line_error(code, err, "prune", *needles)
    assert "train_data=" not in err and "data=(inputs" not in err


def test_missing_dataset_says_download(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATHNET_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, _, err = run_cli(["prune", "mlp", "--density", "0.1", "--method", "snip", "--data",
                            "cifar10", "--data-root", tmp_path / "empty", "--out",
                            tmp_path / "m.npz"], capsys)  # fmt: skip
    assert_one_line_error(code, err, "prune", "'cifar10'", "--download")
    assert "load_dataset(" not in err


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--methods", "phew", "snip"], ["--methods", "snip", "data-dependent"]),
        (["--methods", "phew", "nope"], ["--methods", "unknown method 'nope'"]),
        (["--models", "resnet50"], ["--models", "unknown model 'resnet50'"]),
        (["--densities", "0.1", "2"], ["--densities", "got 2.0"]),
        (["--seeds", "0"], ["--seeds", "positive"]),
        (["--workers", "0"], ["--workers", "positive"]),
    ],
)
def test_reproduce_refuses_before_any_work(tmp_path, capsys, argv, needles):
    t0 = time.perf_counter()
    code, _, err = run_cli(["reproduce", "--out", tmp_path / "r", *argv], capsys)
    assert_one_line_error(code, err, "reproduce", *needles)  # one line: no progress bar
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_analyze_out_writes_every_format(tmp_path, capsys, fmt):
    code, printed, err = run_cli(["analyze", "mlp", "--format", fmt], capsys)
    assert code == 0, err
    out = tmp_path / f"t.{fmt}"
    code, said, err = run_cli(["analyze", "mlp", "--format", fmt, "--out", out], capsys)
    assert code == 0, err
    assert out.read_text() == printed and said == f"wrote {out}\n"
    code, _, err = run_cli(["analyze", "mlp", "--format", fmt, "--out", tmp_path], capsys)
    assert_one_line_error(code, err, "analyze", "--out", "is a folder")


@pytest.mark.parametrize(
    "content",
    [b"", b"hello", b"PK\x03\x04broken", b"\x80\x04K\x01."],
    ids=["empty", "text", "zip", "pickle"],
)
def test_unreadable_mask_files(tmp_path, capsys, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    code, _, err = run_cli(["analyze", "mlp", "--mask", path], capsys)
    assert_one_line_error(code, err, "analyze", "m.npz")


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["prune", "mlp", "--density", "2"], ["prune", "got 2.0"]),
        (["prune", "nomodel", "--density", "0.1"], ["prune", "unknown model 'nomodel'"]),
        (["prune", "mlp", "--density", "0.1", "--model-arg", "=1"], ["prune", "--model-arg"]),
        (["analyze", "mlp", "--seed", "x"], ["analyze", "--seed", "invalid int"]),
        (["analyze", "mlp", "--mask"], ["analyze", "--mask", "expected one argument"]),
        (["info", "mlp", "--model-arg", "sizes=[1"], ["info", "--model-arg"]),
        (["info", "mlp", "--num-classes", "5"], ["info", "--num-classes", "sizes=[...]"]),
        (["analyze", "mlp", "--out", "{tmp}/file/t.txt"], ["analyze", "--out", "cannot write"]),
        (
            ["prune", "mlp", "--density", "0.1", "--method", "random", "--out", "{tmp}/file/m.npz"],
            ["prune", "--out", "cannot write"],
        ),
    ],
)
def test_more_mistakes(tmp_path, capsys, argv, needles):
    (tmp_path / "file").write_text("a file, not a folder")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "prune" and "--out" not in argv:
        argv = [*argv, "--out", tmp_path / "m.npz"]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, needles[0], *needles[1:])


def test_interrupt_exits_130_and_bugs_keep_their_traceback(monkeypatch, capsys):
    import pathnet.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_info", interrupted)
    code, _, err = run_cli(["info", "mlp"], capsys)
    assert code == 130 and err == "pathnet info: interrupted\n"
    for bug in (RuntimeError("boom"), KeyError("x"), TypeError("bad"), AttributeError("y")):

        def broken(args, bug=bug):
            raise bug

        monkeypatch.setattr(cli, "cmd_info", broken)
        with pytest.raises(type(bug)):
            main(["info", "mlp"])


def test_python_m_pathnet_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pathnet", "info", "mymodels.py:net"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr
        == "pathnet info: error: MODEL: no model file 'mymodels.py' (from 'mymodels.py:net')\n"
    )


def test_train_uses_the_mask_seed(tmp_path, capsys):
    mask = tmp_path / "m3.npz"
    assert run_cli(["prune", "mlp", "--density", "0.1", "--method", "random", "--seed", "3",
                    "--out", mask], capsys)[0] == 0  # fmt: skip
    data = write_fashion(tmp_path / "data" / "fashion-mnist", 20).parent
    base = ["train", "mlp", "--mask", mask, "--data-root", data, "--epochs", "1",
            "--batch-size", "10", "--device", "cpu"]  # fmt: skip
    code, _, err = run_cli([*base, "--seed", "4", "--out", tmp_path / "r4"], capsys)
    assert_one_line_error(code, err, "train", "--seed", "seed-3", "--seed 4")
    assert run_cli([*base, "--out", tmp_path / "run"], capsys)[0] == 0
    (ckpt,) = [p for p in (tmp_path / "run").iterdir() if p.suffix == ".pt"]
    assert torch.load(ckpt, weights_only=True)["config"]["seed"] == 3
