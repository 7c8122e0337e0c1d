"""Hostile and broken input: each gets one clear error and leaves no partial file behind.

Bad densities and method names, NaN/Inf and all-zero weights, masks that disconnect a
layer, unsupported modules, input shapes that do not fit, damaged or foreign mask files
and crafted pickles, corrupt checkpoints and data files, and the command line.
"""

from __future__ import annotations

import copy
import functools
import io
import math
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import pathnet
from pathnet import Mask, MaskFileError, UnsupportedModelError, analysis, models
from pathnet.cli import main
from pathnet.select import resolve_density, select, target_count
from pathnet.select.registry import METHODS, _load_builtin_methods
from pathnet.train.fit import CHECKPOINT_NAME, CheckpointError, fit
from tests.strategies import write_fashion

_load_builtin_methods()
DATA_FREE = sorted(m for m in METHODS if m not in ("snip", "grasp", "imp"))


def listing(folder: Path) -> list[str]:
    """Every name under ``folder`` (hidden temporary files included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def no_temp_files(folder: Path) -> None:
    leftovers = [n for n in listing(folder) if n.endswith(".tmp") or "/." in f"/{n}"]
    assert leftovers == [], leftovers


def small_vgg(seed: int = 0) -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    )
    model.input_shape = (3, 8, 8)
    return models.kaiming_init(model, generator=torch.Generator().manual_seed(seed))


def options(method: str) -> dict:
    return {"iterations": 3} if method.startswith("synflow") else {}


# ------------------------------------------------------------------ densities
BAD_DENSITIES = [0, 0.0, -0.1, 1.0000001, 1.5, math.nan, math.inf, -math.inf, "abc", "0.5", True]


@pytest.mark.parametrize("density", BAD_DENSITIES, ids=repr)
def test_bad_density_is_refused_by_select(density):
    model = models.mlp([6, 5, 4], seed=0)
    for method in sorted(METHODS):
        with pytest.raises(ValueError, match=r"^pathnet\.select: density must be") as info:
            select(method, model, density, seed=0)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="density"):
        resolve_density(density)


@pytest.mark.parametrize("density", [0, -0.1, 1.5, math.nan, math.inf, "abc", "0.5"], ids=repr)
def test_bad_density_is_refused_by_every_method_called_directly(density):
    """The registered functions check the density too (through target_count)."""
    model = models.mlp([6, 5, 4], seed=0)
    dag = pathnet.to_dag(model)
    with pytest.raises(ValueError, match="density"):
        target_count(dag, density)
    for method in DATA_FREE:
        with pytest.raises(ValueError, match="density") as info:
            METHODS[method](dag, density, seed=0, model=model, **options(method))
        assert str(info.value).startswith("pathnet"), (method, str(info.value))


def test_phew_called_directly_refuses_a_string_density():
    """A regression test: phew() once took the string "0.5" for the density 0.5."""
    dag = pathnet.to_dag(models.mlp([6, 5, 4], seed=0))
    with pytest.raises(ValueError, match="density"):
        METHODS["phew"](dag, "0.5", seed=0, model=None)


@pytest.mark.parametrize("compression", [-1, math.nan, math.inf, "x"], ids=repr)
def test_bad_compression_is_refused(compression):
    with pytest.raises(ValueError, match="compression"):
        select("random", models.mlp([4, 3, 2]), compression=compression)
    with pytest.raises(ValueError, match="exactly one"):
        select("random", models.mlp([4, 3, 2]), 0.5, compression=1)


def test_density_too_small_or_too_large_for_the_network():
    model = models.mlp([6, 5, 4], seed=0)  # 50 weights
    for method in DATA_FREE:
        with pytest.raises(ValueError, match="keeps none") as info:
            select(method, model, 0.01, seed=0, **options(method))
        assert "0.02" in str(info.value)  # names the smallest usable density
    keep = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) < 0.5
            for n, p in pathnet.prunable_parameters(model).items()}  # fmt: skip
    dag = pathnet.to_dag(model).with_mask(keep)
    for method in DATA_FREE:
        with pytest.raises(ValueError, match=r"present|complete"):
            select(method, dag, 0.9, seed=0, **options(method))


def test_unknown_method_names():
    model = models.mlp([4, 3, 2])
    with pytest.raises(ValueError, match=r"unknown method 'nope'; expected one of \[") as info:
        select("nope", model, 0.5)
    for method in ("phew", "synflow_l2", "random"):
        assert repr(method) in str(info.value)
    with pytest.raises(TypeError, match="method must be a method name"):
        select(3, model, 0.5)  # type: ignore[arg-type]
    assert select("SynFlow-L2", model, 0.5, iterations=2).meta["method"] == "synflow_l2"


def test_unknown_options_name_the_method():
    model = models.mlp([4, 3, 2])
    for method in DATA_FREE:
        with pytest.raises(TypeError, match=r"^pathnet\.select.*unknown option.*bogus_option"):
            select(method, model, 0.5, bogus_option=1)


# ------------------------------------------------------------------ weights
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_weights_are_refused(bad):
    model = small_vgg()
    with torch.no_grad():
        model[3].weight[1, 2, 0, 1] = bad
    with pytest.raises(ValueError, match=r"parameter '3\.weight' holds 1 NaN/Inf values"):
        pathnet.to_dag(model)
    for method in DATA_FREE:
        with pytest.raises(ValueError, match=r"'3\.weight' holds 1 NaN/Inf"):
            select(method, model, 0.5, seed=0, **options(method))
    with pytest.raises(ValueError, match=r"'3\.weight' holds 1 NaN/Inf"):
        analysis.summary(model)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_analysis_refuses_a_hand_made_dag_with_nan(bad):
    """A DAG built by hand (not by to_dag) with NaN/Inf: no silent -inf or garbage."""
    dag = pathnet.to_dag(models.mlp([6, 5, 4], seed=0))
    values = dag.blocks[1].values.copy()
    values[2, 3, 0] = bad
    dag = replace(dag, blocks=(dag.blocks[0], replace(dag.blocks[1], values=values)))
    for fn in (
        functools.partial(analysis.edge_weight_sum, method="graph"),
        functools.partial(analysis.path_kernel_trace, method="graph"),
        analysis.summary,
    ):
        with pytest.raises(ValueError, match=r"'3\.weight': holds 1 NaN/Inf"):
            fn(dag)
    assert analysis.path_count(dag, exact=True) == 6 * 5 * 4  # counts need no weights


def test_all_zero_layer():
    """PHEW refuses it by name (its walks would have no bias); the others hit the target."""
    model = small_vgg()
    with torch.no_grad():
        model[3].weight.zero_()
    dag = pathnet.to_dag(model)
    m = target_count(dag, 0.3)
    for method in DATA_FREE:
        if method in ("phew", "random_paths"):
            with pytest.raises(ValueError, match=r"parameter '3\.weight' is all zeros") as info:
                select(method, model, 0.3, seed=0)
            assert "\n" not in str(info.value)
        else:
            assert select(method, model, 0.3, seed=0, **options(method)).n_kept == m, method
    x = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % 5
    for method in ("snip", "grasp"):
        assert select(method, model, 0.3, data=(x, y)).n_kept == m
    table = analysis.summary(model)
    assert table.overall["log10_R1"] == -math.inf and table.overall["log10_R2"] == -math.inf
    assert math.isfinite(table.overall["log10_paths"])  # the paths exist, their weights are 0
    # On the DAG, d R2 / d(theta**2) of a zeroed weight is the product of the others: the
    # trace lives on. On the network as torch runs it (the default, like the authors' code)
    # the zeroed layer's outputs sit at ReLU's kink, whose derivative torch takes as 0.
    assert math.isfinite(table.overall["log10_trace"])
    assert analysis.path_kernel_trace(model, method="graph") > 0
    assert analysis.path_kernel_trace(model) == analysis.path_kernel_trace(model, method="autograd")


def test_all_zero_network():
    model = models.mlp([6, 5, 4], seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    with pytest.raises(ValueError, match=r"parameter '1\.weight' is all zeros"):
        select("phew", model, 0.5)
    for method in ("synflow", "synflow_l2", "magnitude"):
        assert select(method, model, 0.5, **options(method)).n_kept == 25


# ------------------------------------------------------------------ zero fan-out
@pytest.mark.parametrize("arch", ["mlp", "vgg", "resnet"])
def test_mask_that_disconnects_a_layer(arch):
    if arch == "mlp":
        model, cut = models.mlp([6, 5, 4, 3], seed=0), "3.weight"
    elif arch == "vgg":
        model, cut = small_vgg(), "3.weight"
    else:
        model, cut = models.resnet20(seed=0), "layer3.0.conv1.weight"
    mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in pathnet.prunable_parameters(model).items()}  # fmt: skip
    mask[cut][:] = False
    dag = pathnet.to_dag(model)
    if arch != "resnet":
        assert analysis.path_count(dag, mask, exact=True) == 0
        assert analysis.path_count(dag, mask) == -math.inf
        assert analysis.edge_weight_sum(dag, mask, p=2, method="graph") == -math.inf
        assert analysis.path_kernel_trace(dag, mask, method="graph") == 0.0
        assert analysis.effective_params(dag, mask) == 0
        widths = analysis.layer_widths(dag, mask)
        assert [w.active for w in widths] == [0] * len(widths)
        assert analysis.bottleneck(dag, mask).active == 0
        table = analysis.summary(dag, mask)
        assert table.overall["effective"] == 0 and table.overall["bottleneck_width"] == 0.0
        assert all(r["log10_paths"] == -math.inf for r in table.to_dicts())
        assert all(r["trace_share"] == 0.0 for r in table.to_dicts())
        assert '"log10_paths": null' in table.to_json()  # strict JSON
        with pytest.raises(ValueError, match="no complete input -> output path"):
            select("phew", dag.with_mask(mask), 0.1)
    else:  # the projection shortcut still carries paths round the cut
        assert analysis.path_count(dag, mask) > 0
        widths = {w.name: w for w in analysis.layer_widths(dag, mask)}
        assert widths["layer3.0.conv1"].active == 0
    # Data-free methods still hit their target on what is left, or refuse clearly.
    masked = dag.with_mask(mask)
    for method in DATA_FREE:
        try:
            graph = {"backend": "graph"} if method.startswith("synflow") else {}  # a DAG only
            got = select(method, masked, 0.05, seed=0, **options(method), **graph)
        except ValueError as exc:
            assert method in ("phew", "random_paths") and arch != "resnet", (method, exc)
            assert "no complete input -> output path" in str(exc)
            continue
        assert got.n_kept == target_count(masked, 0.05)
        assert not got[cut].any()


@pytest.mark.parametrize("method", ["phew", "random_paths"])
def test_phew_walks_round_a_fully_masked_layer(method):
    """A regression test: PHEW once refused a fully masked block as "all zeros" although
    paths remained round it (here through ResNet20's projection shortcut)."""
    model = models.resnet20(seed=0)
    keep = {n: torch.ones_like(p, dtype=torch.bool) for n, p in pathnet.prunable_parameters(model).items()}  # fmt: skip
    keep["layer3.0.conv1.weight"][:] = False
    dag = pathnet.to_dag(model).with_mask(keep)
    assert analysis.effective_params(dag) > target_count(dag, 0.05)  # feasible
    mask = select(method, dag, 0.05, seed=0)
    assert mask.n_kept == target_count(dag, 0.05)


# ------------------------------------------------------------------ models
class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.attn = nn.MultiheadAttention(4, 1, batch_first=True)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x).unsqueeze(1)
        h, _ = self.attn(h, h, h)
        return self.out(h.squeeze(1))


class _LSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 4, batch_first=True)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h, _ = self.rnn(x.unsqueeze(1))
        return self.out(h[:, -1])


class _Embedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.emb(x.long()).sum(1))


@pytest.mark.parametrize(
    ("model", "shape", "needle"),
    [
        (nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(36, 2)),
         (4, 3, 3), r"module '1' \(GroupNorm\)"),
        (nn.Sequential(nn.Conv3d(4, 4, 1), nn.Flatten(), nn.Linear(36, 2)), (4, 3, 3),
         r"module '0' \(Conv3d\)"),
        (_Attention(), (4,), r"module 'attn' \(MultiheadAttention\)"),
        (_LSTM(), (4,), r"module 'rnn' \(LSTM\)"),
        (_Embedding(), (3,), r"module 'emb' \(Embedding\)"),
        (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), (4,),
         r"module '1' \(LayerNorm\)"),
    ],
    ids=["groupnorm", "conv3d", "attention", "lstm", "embedding", "layernorm"],
)  # fmt: skip
def test_unsupported_modules_are_named(model, shape, needle):
    with pytest.raises(UnsupportedModelError, match=needle) as info:
        pathnet.to_dag(model, shape)
    assert "\n" not in str(info.value)
    with pytest.raises(UnsupportedModelError, match=needle):
        select("random", model, 0.5, input_shape=shape)


@pytest.mark.parametrize(
    ("model", "shape", "needle"),
    [
        (models.mlp([6, 5, 4]), (5,), r"at module '1' \(Linear\).*mat1 and mat2"),
        (models.vgg11(), (1, 28, 28), r"at module 'features\.0' \(Conv2d\).*3 channels"),
        (models.vgg11(), (3, 8, 8), r"at module 'features\.\d+' \(MaxPool2d\).*too small"),
        (models.vgg11(), (3, 64, 64), r"at module 'classifier' \(Linear\)"),
    ],
    ids=["mlp-features", "vgg-channels", "vgg-too-small", "vgg-too-large"],
)
def test_input_shapes_that_do_not_fit(model, shape, needle, capfd):
    with pytest.raises(ValueError, match=needle) as info:
        pathnet.to_dag(model, shape)
    msg = str(info.value)
    assert msg.startswith(f"pathnet.to_dag: input_shape {shape} does not fit")
    assert "\n" not in msg
    assert capfd.readouterr().err == ""  # torch's own traceback is not printed


@pytest.mark.parametrize("shape", [(0,), (-1,), (2.5,), ("a",), (1, 6), 6, (1, 2, 3, 4)], ids=repr)
def test_malformed_input_shapes(shape):
    with pytest.raises(ValueError, match="input_shape must be"):
        pathnet.to_dag(models.mlp([6, 5, 4]), shape)


# ------------------------------------------------------------------ mask files
def test_in_memory_masks_that_do_not_fit():
    model = models.mlp([6, 5, 4], seed=0)
    dag = pathnet.to_dag(model)
    good = {n: torch.ones_like(p, dtype=torch.bool) for n, p in pathnet.prunable_parameters(model).items()}  # fmt: skip
    cases = [
        ({**good, "3.weight": torch.ones(4, 6, dtype=torch.bool)},
         r"mask for '3\.weight' has shape \(4, 6\), the parameter has \(4, 5\)"),
        ({**good, "3.weight": torch.ones(4, 5)}, r"mask for '3\.weight' must be boolean"),
        ({"1.weight": good["1.weight"]}, r"missing \['3\.weight'\]"),
        ({**good, "9.weight": good["1.weight"]}, r"unknown \['9\.weight'\]"),
    ]  # fmt: skip
    for mask, needle in cases:
        with pytest.raises(ValueError, match=needle):
            dag.with_mask(mask)
        with pytest.raises(ValueError, match=needle):
            analysis.summary(model, mask)
    with pytest.raises(ValueError, match="dtype bool"):
        pathnet.apply_mask(model, {**good, "3.weight": torch.ones(4, 5, dtype=torch.uint8)})
    with pytest.raises(ValueError, match=r"'3\.weight' has shape \(4, 6\)"):
        pathnet.apply_mask(model, {**good, "3.weight": torch.ones(4, 6, dtype=torch.bool)})
    assert not hasattr(model[1], "weight_orig") and not hasattr(model[1], "parametrizations")


def test_crafted_pickles_are_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    # an object array as the header, a raw pickle, a zip whose .npy member is a pickle
    np.savez(tmp_path / "evil.npz", header=np.array([Evil()], dtype=object))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(Evil()))
    buf = io.BytesIO()
    np.save(buf, np.array([Evil()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "evil2.npz", "w") as zf:
        zf.writestr("header.npy", buf.getvalue())
        zf.writestr("param0.npy", buf.getvalue())
    for name in ("evil.npz", "evil.pkl", "evil2.npz"):
        with pytest.raises(MaskFileError, match=name.replace(".", r"\.")):
            Mask.load(tmp_path / name)
    # a checkpoint is a pickle too: torch.load runs with weights_only=True
    ckpt = tmp_path / "run" / CHECKPOINT_NAME
    ckpt.parent.mkdir()
    torch.save({"format": "pathnet-checkpoint", "evil": Evil()}, ckpt)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        fit(models.mlp([4, 3, 2]), None, (torch.zeros(4, 4), torch.zeros(4, dtype=torch.long)),
            epochs=1, out_dir=ckpt.parent, resume=True, progress=False)  # fmt: skip
    assert not marker.exists()


# ------------------------------------------------------------------ checkpoints
def tiny_data(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long()


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "foreign", "other-model"])
def test_corrupt_checkpoint_is_left_alone(tmp_path, damage):
    opts = {"epochs": 2, "batch_size": 16, "seed": 0, "progress": False, "device": "cpu"}
    fit(models.mlp([4, 3, 2], seed=0), None, tiny_data(), out_dir=tmp_path, stop_after=1, **opts)
    path = tmp_path / CHECKPOINT_NAME
    data = path.read_bytes()
    model = models.mlp([4, 3, 2], seed=0)
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
        needle = "truncated or corrupt"
    elif damage == "empty":
        path.write_bytes(b"")
        needle = "truncated or corrupt"
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
        needle = "truncated or corrupt"
    elif damage == "foreign":
        torch.save({"state_dict": {}}, path)
        needle = "not a pathnet checkpoint"
    else:
        model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
        needle = "does not fit this model"
    damaged = path.read_bytes()
    before = listing(tmp_path)
    with pytest.raises(CheckpointError, match=needle) as info:
        fit(model, None, tiny_data(), out_dir=tmp_path, resume=True, **opts)
    assert str(path) in str(info.value)
    assert path.read_bytes() == damaged  # not silently restarted or overwritten
    assert listing(tmp_path) == before
    no_temp_files(tmp_path)


# ------------------------------------------------------------------ the command line
def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, command: str, needle: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"pathnet {command}: error: "), err
    assert "Traceback" not in err
    assert needle in err, err


@pytest.mark.parametrize(
    ("argv", "command", "needle"),
    [
        (["prune", "mlp", "--density", "abc"], "prune", "invalid float value: 'abc'"),
        (["prune", "mlp", "--density", "0"], "prune", "density must be in (0, 1], got 0.0"),
        (["prune", "mlp", "--density", "nan"], "prune", "got nan"),
        (["prune", "mlp", "--density=-inf"], "prune", "got -inf"),
        (["prune", "mlp", "--density", "1.5"], "prune", "got 1.5"),
        (["prune", "mlp", "--compression", "-1"], "prune", "compression must be finite"),
        (["prune", "mlp", "--density", "0.1", "--compression", "1"], "prune", "not allowed"),
        (["prune", "mlp"], "prune", "--density --compression is required"),
        (["prune", "mlp", "--density", "0.1", "--method", "nope"], "prune", "unknown method 'nope'"),
        (["prune", "nomodel", "--density", "0.1"], "prune", "unknown model 'nomodel'"),
        (["prune", "mlp", "--density", "0.1", "--option", "foo=1"], "prune", "unknown option ['foo']"),
        (["prune", "mlp", "--density", "0.1", "--option", "foo"], "prune", "key=value"),
        (["prune", "mlp", "--density", "0.1", "--method", "synflow", "--option", "iterations=x"],
         "prune", "iterations must be an int"),
        (["prune", "mlp", "--density", "0.1", "--option", "max_walks=1"], "prune", "max_walks=1"),
        (["prune", "mlp", "--density", "0.1", "--method", "snip"], "prune", "batch of real data"),
        (["prune", "mlp", "--density", "0.1", "--seed", "-1"], "prune", "seed must be non-negative"),
        (["prune", "vgg11", "--num-classes", "0", "--density", "0.1"], "prune", "--num-classes"),
        (["info", "vgg11", "--num-classes", "x"], "info", "invalid int value: 'x'"),
        (["info", "nomodel"], "info", "unknown model 'nomodel'"),
        (["analyze", "mlp", "--mask", "{tmp}/missing.npz"], "analyze", "no such file"),
        (["analyze", "mlp", "--format", "xml"], "analyze", "invalid choice: 'xml'"),
        (["train", "mlp", "--epochs", "0", "--data-root", "{data}"], "train", "epochs must be"),
        (["train", "mlp", "--batch-size", "0", "--data-root", "{data}"], "train", "batch_size"),
        (["train", "mlp", "--lr", "nan", "--data-root", "{data}"], "train", "lr must be positive"),
        (["train", "mlp", "--device", "tpu", "--data-root", "{data}"], "train", "--device"),
        (["train", "mlp", "--dataset", "nope"], "train", "unknown data set name 'nope'"),
        (["train", "vgg11", "--data-root", "{data}"], "train", "takes inputs (3, 32, 32)"),
        (["train", "mlp", "--method", "phew"], "train", "--method/--density select the mask"),
        (["imp", "mlp", "--density", "0.5", "--fraction", "2", "--data-root", "{data}"], "imp",
         "fraction must be in (0, 1)"),
        (["figures", "{tmp}/nothing"], "figures", "run `pathnet reproduce"),
        (["sweep", "{tmp}/none.toml"], "sweep", "no sweep file"),
        (["sweep", "{tmp}/s.toml", "--workers", "0"], "sweep", "expected a positive integer"),
        (["collect", "{tmp}"], "collect", "not a sweep folder"),
    ],
)  # fmt: skip
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, command, needle):
    data = write_fashion(tmp_path / "data" / "fashion-mnist", 20).parent
    (tmp_path / "s.toml").write_text('[grid]\nmethod = ["phew"]\ndensity = [0.1]\n')
    argv = [a.format(tmp=tmp_path, data=data) for a in argv]
    if command == "prune":
        argv += ["--out", str(tmp_path / "out" / "m.npz")]
    if command in ("train", "imp"):
        argv += ["--out", str(tmp_path / "out")]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, command, needle)
    out = tmp_path / "out"
    assert not out.exists() or listing(out) == [], listing(out)  # nothing half-written


def test_cli_unknown_command_and_no_command(capsys):
    code, _, err = run_cli(["nope"], capsys)
    assert code == 2 and err.startswith("pathnet: error: argument COMMAND: invalid choice")
    assert err.count("\n") == 1
    code, _, err = run_cli([], capsys)
    assert code == 2 and err.count("\n") == 1 and "required: COMMAND" in err
    assert run_cli(["--version"], capsys)[:2] == (0, f"pathnet {pathnet.__version__}\n")


def test_cli_prune_into_a_folder_or_nowhere(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(["prune", "mlp", "--density", "0.1", "--method", "random",
                            "--out", tmp_path], capsys)  # fmt: skip
    assert_one_line_error(code, err, "prune", "is a folder")
    code, _, err = run_cli(["prune", "mlp", "--density", "0.1", "--method", "random",
                            "--out", tmp_path / "file" / "m.npz"], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and err.startswith("pathnet prune: error: ")
    assert listing(tmp_path) == ["file"]


def test_cli_damaged_files(tmp_path, capsys):
    model_mask = tmp_path / "m.npz"
    assert run_cli(["prune", "mlp", "--density", "0.1", "--method", "random",
                    "--out", model_mask], capsys)[0] == 0  # fmt: skip
    data = model_mask.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(["analyze", "mlp", "--mask", tmp_path / "cut.npz"], capsys)
    assert_one_line_error(code, err, "analyze", "cut.npz")
    code, _, err = run_cli(["analyze", "lenet5", "--mask", model_mask], capsys)
    assert_one_line_error(code, err, "analyze", "does not fit LeNet5")
    code, _, err = run_cli(["train", "lenet5", "--mask", model_mask, "--out", tmp_path / "r"],
                           capsys)  # fmt: skip
    assert_one_line_error(code, err, "train", "does not fit LeNet5")

    # A corrupt checkpoint stops `train --resume` and is left alone.
    data_root = write_fashion(tmp_path / "data" / "fashion-mnist", 30).parent
    run = tmp_path / "run"
    base = ["train", "mlp", "--data-root", data_root, "--epochs", "2", "--batch-size", "10",
            "--device", "cpu", "--out", run]  # fmt: skip
    assert run_cli(base, capsys)[0] == 0
    ckpt = run / CHECKPOINT_NAME
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    before = listing(run)
    code, _, err = run_cli([*base, "--resume"], capsys)
    assert_one_line_error(code, err, "train", "truncated or corrupt")
    assert listing(run) == before and len(ckpt.read_bytes()) == 100

    # A truncated data file names itself.
    bad = data_root / "fashion-mnist" / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-8])
    code, _, err = run_cli([*base[:-1], tmp_path / "run2"], capsys)
    assert_one_line_error(code, err, "train", "train-labels-idx1-ubyte.gz")
    assert not (tmp_path / "run2").exists() or listing(tmp_path / "run2") == []


def test_sweep_rebuilds_a_damaged_mask_file(tmp_path):
    from pathnet.experiments import Trial, build_mask

    trial = Trial.from_settings({"method": "random", "density": 0.1, "model": "mlp"})
    model = models.build("mlp", seed=trial.init_seed)
    mask, path = build_mask(trial, model, tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    again, path2 = build_mask(trial, copy.deepcopy(model), tmp_path)
    assert path2 == path and again == mask
    assert Mask.load(path) == mask
    no_temp_files(tmp_path)
