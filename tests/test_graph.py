"""Foundation: torch -> LayeredDAG conversion, checked against the parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import pathnet
from pathnet import models
from tests.reference import brute_force_path_count, dense_path_count


def test_mlp_edges_equal_parameters():
    model = models.mlp([5, 4, 3], seed=0)
    dag = pathnet.to_dag(model)
    assert [g.size for g in dag.groups] == [5, 4, 3]
    assert [g.kind for g in dag.groups] == ["input", "hidden", "output"]
    for block, (name, param) in zip(dag.blocks, pathnet.prunable_parameters(model).items()):
        assert block.param == name
        w = param.detach().double().numpy()
        np.testing.assert_array_equal(block.abs_weight.toarray(), np.abs(w))
        np.testing.assert_allclose(block.sq_weight.toarray(), w**2, rtol=1e-12)
        np.testing.assert_array_equal(block.multiplicity.toarray(), np.ones_like(w))


def test_conv_edges_are_kernel_l1_norms():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, (1, 2)))
    dag = pathnet.to_dag(model, (2, 6, 6))
    assert [g.size for g in dag.groups] == [2, 3, 4]
    b0, b1 = dag.blocks
    w0 = model[0].weight.detach().double().numpy()
    np.testing.assert_allclose(b0.abs_weight.toarray(), np.abs(w0).sum(axis=(2, 3)), rtol=1e-6)
    assert b0.kernel_shape == (3, 3) and b1.kernel_shape == (1, 2)
    np.testing.assert_array_equal(b1.multiplicity.toarray(), np.full((4, 3), 2.0))


def test_flatten_aggregates_spatial_positions():
    # conv -> 2x2 spatial -> flatten -> linear: each channel->neuron edge holds 4 weights
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 5)
    )
    dag = pathnet.to_dag(model, (1, 6, 6))
    fc = dag.block_of("4.weight")
    assert fc.kernel_shape == (4,) and fc.shape == (5, 3)
    w = model[4].weight.detach().double().numpy().reshape(5, 3, 4)
    np.testing.assert_allclose(fc.abs_weight.toarray(), np.abs(w).sum(axis=2), rtol=1e-6)


def test_mlp_input_units_are_pixels_but_conv_input_units_are_channels():
    assert pathnet.to_dag(models.mlp()).groups[0].size == 784
    assert pathnet.to_dag(models.lenet5()).groups[0].size == 1
    assert pathnet.to_dag(models.vgg16()).groups[0].size == 3


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_zoo_model_converts_with_all_parameters(name):
    model = models.build(name)
    dag = pathnet.to_dag(model)
    params = pathnet.prunable_parameters(model)
    assert set(dag.params) == set(params)
    assert dag.n_params == sum(p.numel() for p in params.values())
    assert dag.groups[-1].size == model(torch.zeros(2, *model.input_shape)).shape[1]


def test_vgg16_shape():
    dag = pathnet.to_dag(models.vgg16())
    assert len(dag.blocks) == 14 and len(dag.groups) == 15
    assert dag.n_params == 14_715_584


def test_resnet20_groups_identity_and_projection_blocks():
    model = models.resnet20()
    dag = pathnet.to_dag(model)
    kinds = [b.kind for b in dag.blocks]
    assert kinds.count("identity") == 7  # 9 blocks, 2 with projection shortcuts
    assert kinds.count("conv") == 19 + 2 and kinds.count("linear") == 1
    sums = [g for g in dag.groups if g.kind == "sum"]
    assert len(sums) == 9
    proj = dag.block_of("layer2.0.shortcut.0.weight")
    assert proj.kernel_shape == (1, 1)
    assert dag.groups[proj.source].name == "layer1.2.add"
    assert dag.groups[proj.target].name == "layer2.0.add"
    conv2 = dag.block_of("layer2.0.conv2.weight")
    assert conv2.target == proj.target  # last conv and shortcut end in the same sum group
    for block in dag.blocks:
        if block.kind == "identity":
            np.testing.assert_array_equal(block.abs_weight.toarray(), np.eye(block.n_units))
            assert block.n_params == 0


class CustomResidual(nn.Module):
    """A hand-written model: functional ops, a residual block, view-flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.nn.functional.relu(self.bn(self.a(x)))
        x = x + self.b(y)
        x = torch.nn.functional.avg_pool2d(x, 2)
        return self.head(x.view(x.size(0), -1))


def test_custom_residual_model():
    model = CustomResidual()
    dag = pathnet.to_dag(model, (2, 4, 4))
    assert [g.kind for g in dag.groups] == ["input", "hidden", "hidden", "sum", "output"]
    assert sorted(b.kind for b in dag.blocks) == ["conv", "conv", "conv", "identity", "linear"]
    assert dag.block_of("head.weight").kernel_shape == (4,)


def test_to_dag_does_not_modify_the_model():
    model = models.resnet20(seed=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pathnet.to_dag(model)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("module", "needle"),
    [
        (nn.Conv3d(4, 4, 1), "Conv3d"),
        (nn.GroupNorm(2, 4), "GroupNorm"),
        (nn.MultiheadAttention(4, 1), "MultiheadAttention"),
        (nn.LayerNorm([4, 6, 6]), "LayerNorm"),
    ],
)
def test_unsupported_modules_are_named(module, needle):
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(2, 4, 1)
            self.bad = module

        def forward(self, x):
            x = self.c(x)
            if isinstance(self.bad, nn.MultiheadAttention):
                t = x.flatten(2).transpose(1, 2)
                return self.bad(t, t, t)[0]
            return self.bad(x)

    with pytest.raises(pathnet.UnsupportedModelError) as err:
        pathnet.to_dag(M(), (2, 6, 6))
    assert needle in str(err.value)


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"input_shape \(3, 28, 28\) does not fit"):
        pathnet.to_dag(models.mlp([100, 10]), (3, 28, 28))
    with pytest.raises(ValueError, match="no input_shape"):
        pathnet.to_dag(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="positive"):
        pathnet.to_dag(nn.Sequential(nn.Linear(3, 2)), (0,))


def test_nan_weights_are_refused():
    model = models.mlp([4, 3, 2], seed=0)
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"'1.weight' holds 1 NaN/Inf"):
        pathnet.to_dag(model)


def test_to_networkx_refuses_big_nets_unless_forced():
    dag = pathnet.to_dag(models.mlp([30, 30, 10]))
    with pytest.raises(ValueError, match="force=True"):
        dag.to_networkx(max_edges=100)
    assert dag.to_networkx(max_edges=100, force=True).number_of_edges() == 1200


# ---------------------------------------------------- brute-force path counts
@pytest.mark.parametrize("seed", range(4))
def test_path_count_enumeration_equals_dense_count_mlp(seed):
    rng = np.random.default_rng(seed)
    sizes = list(rng.integers(2, 5, size=rng.integers(3, 5)))
    model = models.mlp(sizes, seed=seed)
    masks = {
        n: rng.random(tuple(p.shape)) < 0.6 for n, p in pathnet.prunable_parameters(model).items()
    }
    dag = pathnet.to_dag(model).with_mask(masks)
    assert brute_force_path_count(dag.to_networkx()) == dense_path_count(model, masks)


@pytest.mark.parametrize("seed", range(3))
def test_path_count_enumeration_equals_dense_count_conv(seed):
    rng = np.random.default_rng(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 2), nn.ReLU(), nn.Conv2d(3, 2, 2), nn.Flatten(), nn.Linear(2 * 2 * 2, 2)
    )
    masks = {
        n: rng.random(tuple(p.shape)) < 0.5 for n, p in pathnet.prunable_parameters(model).items()
    }
    dag = pathnet.to_dag(model, (2, 4, 4)).with_mask(masks)
    assert brute_force_path_count(dag.to_networkx()) == dense_path_count(model, masks)
