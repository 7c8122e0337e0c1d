"""Converter coverage: global mean pooling, channel concatenation, grouped and depthwise
convs, Conv1d, tied parameters, half precision and meta tensors.

Every supported form is checked on a tiny instance: its path count (and sums of
path products) against brute-force enumeration of a unit graph written out by
hand from the torch parameters (:func:`tests.reference.layer_graph`), with
random masks; and masks go round the DAG unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pathnet
from pathnet import analysis
from tests.reference import (
    brute_force_path_count,
    expand_grouped,
    layer_graph,
    split_inputs,
    unit_path_sums,
)


# ------------------------------------------------------------------ helpers
def weights(model: nn.Module) -> dict[str, np.ndarray]:
    """Every Linear/Conv weight by name (float64), straight from torch."""
    return {
        f"{n}.weight": m.weight.detach().double().numpy()
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))
    }


def random_keep(model: nn.Module, rng: np.random.Generator, density: float = 0.6) -> dict:
    return {n: rng.random(w.shape) < density for n, w in weights(model).items()}


def as3(arr: np.ndarray, n_in: int | None = None) -> np.ndarray:
    return arr.reshape(arr.shape[0], arr.shape[1] if n_in is None else n_in, -1)


def check_counts(model: nn.Module, shape: tuple[int, ...], layers, keep: dict) -> None:
    """pathnet's counts and path-product sums equal brute-force enumeration of ``layers``."""
    ref = unit_path_sums(layer_graph(layers), "in", "out")
    dag = pathnet.to_dag(model, shape).with_mask(keep)
    assert ref["count"] > 0  # the instance must not be vacuous
    assert analysis.path_count(dag, exact=True) == ref["count"]
    assert brute_force_path_count(dag.to_networkx()) == ref["count"]
    for p in (1, 2):
        got = analysis.edge_weight_sum(dag, p=p, method="graph")
        assert got == pytest.approx(np.log10(float(ref[f"r{p}"])), rel=1e-9, abs=1e-9)


def check_mask_round_trip(dag: pathnet.LayeredDAG, keep: dict) -> None:
    mask = pathnet.Mask({k: torch.from_numpy(v) for k, v in keep.items()})
    masked = dag.with_mask(mask)
    assert masked.to_mask() == mask
    assert dag.mask_from_elements(dag.elements_from_mask(mask)) == mask
    assert masked.n_weights_present == sum(
        int(v.sum()) for k, v in keep.items() if k not in dag.tied
    )


# ------------------------------------------------------- global mean pooling
class _Pool(nn.Module):
    def __init__(self, form: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)
        self.form = form

    def forward(self, x):
        x = torch.relu(self.conv(x))
        if self.form == "mean23":
            x = x.mean(dim=(2, 3))
        elif self.form == "mean-neg":
            x = x.mean((-1, -2))
        elif self.form == "torch.mean-keepdim":
            x = torch.mean(x, dim=[2, 3], keepdim=True).view(x.size(0), -1)
        elif self.form == "sum":
            x = x.sum(dim=(2, 3))
        elif self.form == "F.adaptive_avg_pool2d":
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        elif self.form == "nn.AdaptiveAvgPool2d":
            x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


@pytest.mark.parametrize(
    "form",
    ["mean23", "mean-neg", "torch.mean-keepdim", "sum", "F.adaptive_avg_pool2d", "nn.AdaptiveAvgPool2d"],
)  # fmt: skip
@pytest.mark.parametrize("seed", range(2))
def test_global_mean_pooling_forms(form, seed):
    torch.manual_seed(seed)
    model = _Pool(form)
    dag = pathnet.to_dag(model, (2, 5, 5))
    assert [g.size for g in dag.groups] == [2, 3, 2]
    assert dag.block_of("fc.weight").kernel_shape == ()  # one edge per channel
    w = weights(model)
    keep = random_keep(model, np.random.default_rng(seed))
    layers = [
        ("in", "h", as3(w["conv.weight"]), keep["conv.weight"], 0),
        ("h", "out", as3(w["fc.weight"]), keep["fc.weight"], 0),
    ]
    check_counts(model, (2, 5, 5), layers, keep)


class _Reduce(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3, 2)
        self.how = how

    def forward(self, x):
        x = self.conv(x)
        if self.how == "all":
            return self.fc(x.mean().expand(x.size(0), 3))
        return self.fc(x.mean(dim=1).mean(dim=(1, 2)).unsqueeze(1).expand(-1, 3))


@pytest.mark.parametrize(
    ("how", "needle"), [("all", "every dimension|dim=None"), ("channel", r"channel")]
)
def test_reductions_over_channels_are_refused(how, needle):
    with pytest.raises(
        pathnet.UnsupportedModelError, match=r"node 'mean' \(method \.mean\(\)\)"
    ) as e:
        pathnet.to_dag(_Reduce(how), (2, 5, 5))
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ Conv1d
def _conv1d_net(head: str) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv1d(2, 3, 3),
        nn.BatchNorm1d(3),
        nn.ReLU(),
        nn.MaxPool1d(2),
        nn.Conv1d(3, 4, 2, padding=1),
    ]
    if head == "pool":
        layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)]
    elif head == "mean":
        return _Mean1d(nn.Sequential(*layers), nn.Linear(4, 2))
    else:  # flatten: each channel -> neuron edge holds the 4 positions of the channel
        layers += [nn.AvgPool1d(1), nn.Flatten(), nn.Linear(4 * 4, 2)]
    return nn.Sequential(*layers)


class _Mean1d(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x):
        return self.head(self.body(x).mean(-1))


@pytest.mark.parametrize("head", ["pool", "flatten", "mean"])
@pytest.mark.parametrize("seed", range(2))
def test_conv1d_stack_counts(head, seed):
    torch.manual_seed(seed)
    model = _conv1d_net(head)
    dag = pathnet.to_dag(model, (2, 9))
    assert [g.size for g in dag.groups] == [2, 3, 4, 2]
    first, second, last = weights(model)
    assert dag.block_of(first).kernel_shape == (3,)
    assert dag.block_of(last).kernel_shape == ((4,) if head == "flatten" else ())
    w = weights(model)
    keep = random_keep(model, np.random.default_rng(seed))
    layers = [
        ("in", "a", as3(w[first]), keep[first], 0),
        ("a", "b", as3(w[second]), keep[second], 0),
        ("b", "out", as3(w[last], 4), keep[last], 0),
    ]
    check_counts(model, (2, 9), layers, keep)
    check_mask_round_trip(dag, keep)


def test_conv1d_errors_name_the_layer_not_input_shape():
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 5, 2))
    assert pathnet.to_dag(model, (2, 7)).groups[0].size == 2
    with pytest.raises(ValueError, match=r"does not fit .* at module '0' \(Conv1d\)"):
        pathnet.to_dag(model, (2, 7, 7))
    # (channels, length) shapes are only for models that hold a Conv1d
    with pytest.raises(ValueError, match=r"\(channels, length\) for a model with Conv1d"):
        pathnet.to_dag(pathnet.models.mlp([6, 5, 4]), (1, 6))


# -------------------------------------------------- grouped and depthwise
def _grouped_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(4, 6, 3, groups=2),  # 2 groups of 2 -> 3 channels
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, groups=6),  # depthwise
        nn.BatchNorm2d(6),
        nn.Conv2d(6, 3, 1, groups=3),  # 3 groups of 2 -> 1 channel
        nn.Flatten(),
        nn.Linear(3 * 2 * 2, 2),
    )


@pytest.mark.parametrize("seed", range(3))
def test_grouped_and_depthwise_conv_counts(seed):
    torch.manual_seed(seed)
    model = _grouped_net()
    dag = pathnet.to_dag(model, (4, 4, 4))
    assert [g.size for g in dag.groups] == [4, 6, 6, 3, 2]
    assert dag.n_weights == sum(w.size for w in weights(model).values()) == 108 + 54 + 6 + 24
    # blocks are dense over every channel pair; the cross-group elements do not exist
    assert sum(b.n_params for b in dag.blocks) == 216 + 324 + 18 + 24
    assert dag.n_params == dag.n_present == dag.n_weights
    # channel i connects only to the outputs of its group
    depthwise = dag.block_of("2.weight").multiplicity.toarray()
    np.testing.assert_array_equal(depthwise, 9 * np.eye(6))
    w = weights(model)
    keep = random_keep(model, np.random.default_rng(seed), 0.7)
    layers = []
    for src, dst, name, groups in (("in", "a", "0", 2), ("a", "b", "2", 6), ("b", "c", "4", 3)):
        dense_w, exists = expand_grouped(w[f"{name}.weight"], groups)
        dense_k, _ = expand_grouped(keep[f"{name}.weight"], groups)
        layers.append((src, dst, dense_w, dense_k & exists, 0))
    layers.append(("c", "out", as3(w["6.weight"], 3), keep["6.weight"], 0))
    check_counts(model, (4, 4, 4), layers, keep)
    check_mask_round_trip(dag, keep)


def test_grouped_conv_selection_maps_to_its_own_parameter():
    model = nn.Sequential(nn.Conv2d(2, 4, 1, groups=2), nn.Flatten(), nn.Linear(4, 1))
    dag = pathnet.to_dag(model, (2, 1, 1))
    b = dag.blocks_of("0.weight")[0]
    # every element that exists, selected by its flat index in the block's values
    present = np.flatnonzero(dag.blocks[b].present_mask().ravel())
    assert present.size == 4  # weight (4, 1, 1, 1): 4 elements of a 4x2 dense block
    mask = dag.mask_from_elements({b: present})
    assert bool(mask["0.weight"].all()) and not bool(mask["2.weight"].any())
    # an element that does not exist selects nothing
    absent = np.setdiff1d(np.arange(dag.blocks[b].n_params), present)
    assert not bool(dag.mask_from_elements({b: absent})["0.weight"].any())


# -------------------------------------------------------------- torch.cat
class _Dense(nn.Module):
    """DenseNet-style: each layer reads the concatenation of everything before it."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv2d(2, 3, 3, padding=1)
        self.c1 = nn.Conv2d(3, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.c2 = nn.Conv2d(5, 2, 1)
        self.fc = nn.Linear(7 * 2 * 2, 2)

    def forward(self, x):
        x = self.c0(x)
        x = torch.cat([x, self.c1(F.relu(x))], 1)
        x = torch.cat((x, self.c2(F.relu(self.bn(x)))), dim=1)
        return self.fc(torch.flatten(F.avg_pool2d(x, 2), 1))


class _CatInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(2, 3, 3, padding=1)
        self.d = nn.Conv2d(5, 2, 3)
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        x = torch.cat([x, self.c(x)], dim=-3)
        return self.fc(self.d(x).mean((2, 3)))


@pytest.mark.parametrize("seed", range(3))
def test_densenet_concatenation_counts(seed):
    torch.manual_seed(seed)
    model = _Dense()
    dag = pathnet.to_dag(model, (2, 4, 4))
    assert [(g.name, g.size, g.kind) for g in dag.groups] == [
        ("input", 2, "input"), ("c0", 3, "hidden"), ("c1", 2, "hidden"),
        ("c2", 2, "hidden"), ("fc", 2, "output"),
    ]  # fmt: skip
    assert (
        len(dag.blocks_of("fc.weight")) == 3 and dag.n_weights == dag.n_params == 54 + 54 + 10 + 56
    )
    w = weights(model)
    keep = random_keep(model, np.random.default_rng(seed), 0.7)
    c2w, c2k = split_inputs(w["c2.weight"], [3, 2]), split_inputs(keep["c2.weight"], [3, 2])
    fcw = split_inputs(w["fc.weight"], [3, 2, 2], per_unit=4)
    fck = split_inputs(keep["fc.weight"], [3, 2, 2], per_unit=4)
    layers = [
        ("in", "c0", as3(w["c0.weight"]), keep["c0.weight"], 0),
        ("c0", "c1", as3(w["c1.weight"]), keep["c1.weight"], 0),
        ("c0", "c2", c2w[0], c2k[0], 0),
        ("c1", "c2", c2w[1], c2k[1], 0),
        ("c0", "out", fcw[0], fck[0], 0),
        ("c1", "out", fcw[1], fck[1], 0),
        ("c2", "out", fcw[2], fck[2], 0),
    ]
    check_counts(model, (2, 4, 4), layers, keep)
    check_mask_round_trip(dag, keep)


@pytest.mark.parametrize("seed", range(2))
def test_concatenating_the_input_counts(seed):
    torch.manual_seed(seed)
    model = _CatInput()
    w = weights(model)
    keep = random_keep(model, np.random.default_rng(seed), 0.7)
    dw, dk = split_inputs(w["d.weight"], [2, 3]), split_inputs(keep["d.weight"], [2, 3])
    layers = [
        ("in", "c", as3(w["c.weight"]), keep["c.weight"], 0),
        ("in", "d", dw[0], dk[0], 0),
        ("c", "d", dw[1], dk[1], 0),
        ("d", "out", as3(w["fc.weight"]), keep["fc.weight"], 0),
    ]
    check_counts(model, (2, 5, 5), layers, keep)


class _BadCat(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 2, 1)
        self.b = nn.Conv2d(2, 2, 1)
        self.fc = nn.Linear(16, 2)
        self.how = how

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], dim=2 if self.how == "dim2" else 1)
        if self.how == "add":
            y = y + torch.cat([x, x], 1)
        if self.how == "output":
            return y
        return self.fc(y.flatten(1))


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("dim2", r"node 'cat' \(function cat\) concatenates along dim=2"),
        ("add", r"adds a channel concatenation"),
        ("output", r"concatenation \(torch.cat\) feeds a residual sum or the model output"),
    ],
)
def test_unsupported_concatenations_are_refused(how, needle):
    with pytest.raises(pathnet.UnsupportedModelError, match=needle) as e:
        pathnet.to_dag(_BadCat(how), (2, 2, 2))
    assert "\n" not in str(e.value)


# --------------------------------------------------------------- refusals
class _SE(nn.Module):
    """Squeeze-and-excitation gating: x * sigmoid(fc(mean(x)))."""

    def __init__(self, index: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc = nn.Linear(3, 3)
        self.out = nn.Linear(3, 2)
        self.index = index

    def forward(self, x):
        x = self.conv(x)
        g = torch.sigmoid(self.fc(x.mean((2, 3))))
        g = g[:, :, None, None] if self.index else g.view(-1, 3, 1, 1)
        return self.out((x * g).mean((2, 3)))


@pytest.mark.parametrize(
    ("model", "shape", "needle"),
    [
        (_SE(index=True), (2, 5, 5), r"node 'mul' \(function mul\) multiplies two tensors elementwise \(gating"),
        (_SE(index=False), (2, 5, 5), r"node 'mul' \(function mul\) multiplies two tensors elementwise \(gating"),
        (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), (4,),
         r"module '1' \(LayerNorm\), which normalises each sample across its units"),
        (nn.Sequential(nn.Conv2d(2, 4, 1), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4, 2)), (2, 1, 1),
         r"module '1' \(GroupNorm\)"),
    ],
    ids=["se-index", "se-view", "layernorm", "groupnorm"],
)  # fmt: skip
def test_refusals_name_the_node_and_the_reason(model, shape, needle):
    with pytest.raises(pathnet.UnsupportedModelError, match=needle) as e:
        pathnet.to_dag(model, shape)
    assert "\n" not in str(e.value)


def test_scaling_by_a_number_is_per_unit():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(0.5 * self.a(x) / 2)

    assert [g.size for g in pathnet.to_dag(Scaled(), (3,)).groups] == [3, 3, 2]


# ------------------------------------------------------- tied parameters
def _tied_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    model[4].weight = model[2].weight
    return nn.Sequential(model, nn.Linear(4, 2))


def _tied_convnet() -> nn.Module:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.Conv2d(3, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 3, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 2),
    )
    model[3].weight = model[1].weight
    return model


@pytest.mark.parametrize(
    ("make", "shape", "tied", "chain"),
    [
        (_tied_mlp, (3,), {"0.4.weight": "0.2.weight"}, ["0.0", "0.2", "0.4", "1"]),
        (_tied_convnet, (2, 4, 4), {"3.weight": "1.weight"}, ["0", "1", "3", "6"]),
    ],
    ids=["mlp", "conv"],
)
def test_tied_parameters_one_tensor_two_blocks(make, shape, tied, chain):
    model = make()
    dag = pathnet.to_dag(model, shape)
    assert dag.tied == tied
    ((name, canon),) = tied.items()
    # both names keep their block; the tensor counts once
    assert dag.block_of(name) is not dag.block_of(canon)
    distinct = {id(p): p.numel() for n, p in model.named_parameters() if n.endswith("weight")}
    assert dag.n_weights == sum(distinct.values())
    assert dag.n_params == dag.n_weights + dag.block_of(name).n_params  # in both blocks
    assert dag.canonical(name) == canon and dag.canonical(canon) == canon
    # path counts: a path crossing both blocks picks an element of each independently
    rng = np.random.default_rng(0)
    w = weights(model)
    keep = random_keep(model, rng, 0.6)
    keep[name] = keep[canon]
    names = [f"{c}.weight" for c in chain]
    labels = ["in", "a", "b", "c", "out"]
    layers = [(labels[k], labels[k + 1], as3(w[n]), keep[n], 0) for k, n in enumerate(names)]
    check_counts(model, shape, layers, keep)
    check_mask_round_trip(dag, keep)
    assert dag.with_mask(keep).n_weights_present == sum(
        int(keep[n].sum()) for n in names if n != name
    )


def test_tied_parameters_get_one_mask():
    dag = pathnet.to_dag(_tied_mlp(), (3,))
    b_tied, b_canon = dag.blocks_of("0.4.weight")[0], dag.blocks_of("0.2.weight")[0]
    # an element selected through either name is kept under both
    for b in (b_tied, b_canon):
        mask = dag.mask_from_elements({b: np.array([5])})
        assert torch.equal(mask["0.4.weight"], mask["0.2.weight"])
        assert int(mask["0.4.weight"].sum()) == 1  # Mask.n_kept counts per name: 2
    rows, cols = np.array([1]), np.array([2])
    mask = dag.mask_from_edges({b_tied: (rows, cols)})
    assert bool(mask["0.2.weight"][1, 2]) and torch.equal(mask["0.4.weight"], mask["0.2.weight"])
    # masks that differ between the names of one tensor are refused, naming both
    keep = {n: np.ones(tuple(dag.block_of(n).param_shape), bool) for n in dag.params}
    keep["0.4.weight"][0, 0] = False
    with pytest.raises(ValueError, match=r"'0.4.weight' and '0.2.weight' are one tied tensor"):
        dag.with_mask(keep)


def test_tied_parameters_with_different_applied_masks_are_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    model[1].weight = model[0].weight
    model[0].register_buffer("weight_mask", torch.ones(4, 4))  # torch.nn.utils.prune's buffer
    model[1].register_buffer("weight_mask", torch.ones(4, 4))
    dag = pathnet.to_dag(model, (4,))
    assert dag.tied == {"1.weight": "0.weight"} and dag.n_weights_present == 16 + 8
    model[1].weight_mask[0, 0] = 0
    with pytest.raises(
        pathnet.UnsupportedModelError, match=r"'1.weight' and '0.weight' are one tied"
    ):
        pathnet.to_dag(model, (4,))


def test_partially_overlapping_weights_are_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    shared = nn.Parameter(torch.randn(20))
    del model[0].weight, model[1].weight
    model[0].weight = shared[:16].view(4, 4)
    model[1].weight = shared[4:20].view(4, 4)
    with pytest.raises(
        pathnet.UnsupportedModelError, match=r"'1.weight' shares storage with '0.weight'"
    ):
        pathnet.to_dag(model, (4,))


# ---------------------------------------------------- dtypes and devices
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("make", [lambda: pathnet.models.mlp([6, 5, 4], seed=0), _grouped_net])
def test_half_precision_models_convert_in_float64(dtype, make):
    torch.manual_seed(0)
    full = make()
    shape = (4, 4, 4) if isinstance(full[0], nn.Conv2d) else (6,)
    half = make().to(dtype)
    dag = pathnet.to_dag(half, shape)
    for block in dag.blocks:
        assert block.values is not None and block.values.dtype == np.float64
        assert block.param is not None
        w = half.get_submodule(block.param.rsplit(".", 1)[0]).weight.detach().double().numpy()
        np.testing.assert_array_equal(block.to_param(block.values), w)
    assert analysis.path_count(dag, exact=True) == analysis.path_count(
        pathnet.to_dag(full, shape), exact=True
    )
    assert pathnet.to_dag(full, shape).blocks[0].values.dtype == np.float32  # unchanged


def test_meta_device_models_are_refused_with_what_to_do():
    model = pathnet.models.mlp([4, 3, 2]).to("meta")
    with pytest.raises(ValueError, match=r"parameter '1.weight' of MLP is on the meta device") as e:
        pathnet.to_dag(model)
    assert "to_empty(device='cpu')" in str(e.value)


@pytest.mark.parametrize("mode", ["parametrize", "prune", "hard"])
def test_masked_models_have_no_false_ties(mode):
    # under a parametrization, module.weight is recomputed on each access and its
    # address may be reused: ties are read from the stored tensors
    model = pathnet.models.resnet20(seed=0)
    rng = np.random.default_rng(0)
    keep = {
        n: rng.random(tuple(p.shape)) < 0.3 for n, p in pathnet.prunable_parameters(model).items()
    }
    mask = pathnet.Mask({k: torch.from_numpy(v) for k, v in keep.items()})
    pathnet.apply_mask(model, mask, mode=mode)
    dag = pathnet.to_dag(model)
    assert dag.tied == {} and dag.to_mask() == mask
