"""The model zoo against the PHEW authors' model files (github.com/ShreyasMalakarjunPatil/PHEW).

The expected architectures are restated here from the authors' ``Models/vgg_cifar.py``,
``Models/resnet_cifar2.py`` (ResNet20/32) and ``Models/resnet_tinyimagenet.py``
(ResNet18), not derived from pathnet's code.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pathnet
from pathnet import models
from pathnet.select import select, target_count

zoo: Any = models  # built models are typed loosely here

# The authors' cfg 'A', 'B', 'D', 'E' (no trailing "M": four max-pools).
AUTHORS_VGG: dict[str, list[Any]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512),
    ],
}
CIFAR_RESNETS = {"resnet20": 3, "resnet32": 5, "resnet56": 9}  # blocks per stage

# Inputs that fit each model with one input channel.
ONE_CHANNEL = {
    "mlp": ({"in_channels": 1}, (1, 28, 28)),
    "lenet5": ({"in_channels": 1}, (1, 28, 28)),
    **{name: ({"in_channels": 1}, (1, 32, 32)) for name in AUTHORS_VGG},
    **{name: ({"in_channels": 1, "input_size": 28}, (1, 28, 28)) for name in CIFAR_RESNETS},
    "resnet18": ({"in_channels": 1, "input_size": 28}, (1, 28, 28)),
}


def of_type(model: nn.Module, kind: type) -> list[Any]:
    return [m for m in model.modules() if isinstance(m, kind)]


def assert_normal(w: torch.Tensor, std: float, where: str) -> None:
    """Sample mean and std of ``w`` agree with normal(0, std) within 6 standard errors."""
    x = w.detach().double().flatten()
    n = x.numel()
    assert abs(float(x.mean())) < 6 * std / math.sqrt(n), where
    rel = float(x.std()) / std - 1
    assert abs(rel) < 6 / math.sqrt(2 * n), (where, float(x.std()), std)


def assert_unit_batchnorm(model: nn.Module) -> None:
    for bn in of_type(model, nn.BatchNorm2d):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


def fan(w: torch.Tensor, mode: str) -> int:
    area = math.prod(w.shape[2:])
    return (w.shape[1] if mode == "fan_in" else w.shape[0]) * area


# ------------------------------------------------------------------ VGG
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("name", sorted(AUTHORS_VGG))
def test_vgg_layers_are_the_authors(name, batch_norm):
    model = zoo.build(name, batch_norm=batch_norm, seed=0)
    cfg = AUTHORS_VGG[name]
    expected: list[tuple] = []
    c_in = 3
    for v in cfg:
        if v == "M":
            expected.append(("pool", 2))
            continue
        expected.append(("conv", c_in, v, True))
        if batch_norm:
            expected.append(("bn", v))
        expected.append(("relu",))
        c_in = v
    got: list[tuple] = []
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            assert m.kernel_size == (3, 3) and m.padding == (1, 1) and m.stride == (1, 1)
            got.append(("conv", m.in_channels, m.out_channels, m.bias is not None))
        elif isinstance(m, nn.BatchNorm2d):
            assert m.affine
            got.append(("bn", m.num_features))
        elif isinstance(m, nn.ReLU):
            got.append(("relu",))
        elif isinstance(m, nn.MaxPool2d):
            assert m.stride == 2
            got.append(("pool", m.kernel_size))
        else:
            raise AssertionError(f"unexpected layer {m}")
    assert got == expected
    assert len(of_type(model, nn.MaxPool2d)) == 4
    assert [m.kernel_size for m in of_type(model, nn.AvgPool2d)] == [2]
    linears = of_type(model, nn.Linear)
    assert len(linears) == 1 and (linears[0].in_features, linears[0].out_features) == (512, 10)


def test_vgg_forward_is_pool_then_avgpool2_then_linear():
    model = zoo.vgg16(seed=0).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fmap = model.features(x)
        assert fmap.shape == (2, 512, 2, 2)
        expected = model.classifier(fmap.mean(dim=(2, 3)))
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(AUTHORS_VGG))
def test_vgg_initialisation_is_the_authors(name):
    model = zoo.build(name, batch_norm=True, seed=1)
    for i, conv in enumerate(of_type(model, nn.Conv2d)):
        # kaiming_normal_ defaults: fan_in, gain sqrt(2) (leaky_relu with a = 0)
        assert_normal(conv.weight, math.sqrt(2 / fan(conv.weight, "fan_in")), f"conv {i}")
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))
    fc = model.classifier
    assert_normal(fc.weight, 0.01, "classifier")
    assert torch.equal(fc.bias, torch.zeros_like(fc.bias))
    assert_unit_batchnorm(model)


@pytest.mark.parametrize("side", [28, 31, 64])
def test_vgg_rejects_sizes_that_do_not_reach_1x1(side):
    model = zoo.vgg11(seed=0)
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 3, side, side))


def test_vgg_runs_on_padded_28x28_one_channel_images():
    model = zoo.vgg16(in_channels=1, seed=0)
    x = F.pad(torch.rand(2, 1, 28, 28), (2, 2, 2, 2))
    assert model.input_shape == (1, 32, 32) == tuple(x.shape[1:])
    assert model(x).shape == (2, 10)
    assert model(torch.zeros(2, 1, 63, 63)).shape == (2, 10)  # sides 32..63 fit


def test_vgg_parameter_names_and_count_are_unchanged():
    # Parameter names and counts stay as they were: saved masks still load.
    model = zoo.vgg16()
    names = [n for n, _ in model.named_parameters()]
    assert names[0] == "features.0.weight" and names[-2:] == [
        "classifier.weight",
        "classifier.bias",
    ]
    assert "features.28.weight" in names
    assert (
        sum(p.numel() for p in model.parameters()) == 14_719_818
    )  # 13 convs 3x3 with bias + Linear(512, 10)


# ------------------------------------------------------------------ ResNets
def block_signature(block: Any) -> tuple:
    convs = [block.conv1, block.conv2]
    assert all(c.bias is None and c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert isinstance(block.bn1, nn.BatchNorm2d) and isinstance(block.bn2, nn.BatchNorm2d)
    if isinstance(block.shortcut, nn.Identity):
        shortcut = None
    else:
        proj, bn = block.shortcut
        assert isinstance(bn, nn.BatchNorm2d) and proj.bias is None and proj.kernel_size == (1, 1)
        shortcut = (proj.in_channels, proj.out_channels, proj.stride[0])
    return (block.conv1.in_channels, block.conv1.out_channels, block.conv1.stride[0], shortcut)


def authors_blocks(n: int, widths: list[int], c: int) -> list[tuple]:
    """The authors' block plan: first block of every later stage has stride 2 and a 1x1
    projection (stride 2); the CIFAR file projects only where it downsamples, the
    Tiny-ImageNet file where stride != 1 or the width changes (the same blocks here)."""
    out = []
    for k, w in enumerate(widths):
        for b in range(n):
            stride = 2 if k > 0 and b == 0 else 1
            out.append((c, w, stride, (c, w, stride) if stride != 1 or c != w else None))
            c = w
    return out


@pytest.mark.parametrize("name", sorted(CIFAR_RESNETS))
def test_cifar_resnet_layers_are_the_authors(name):
    n = CIFAR_RESNETS[name]
    model = zoo.build(name, seed=0)
    assert (model.conv1.in_channels, model.conv1.out_channels) == (3, 16)
    assert model.conv1.stride == (1, 1) and model.conv1.bias is None
    blocks = of_type(model, models.BasicBlock)
    assert [block_signature(b) for b in blocks] == authors_blocks(n, [16, 32, 64], 16)
    assert len(of_type(model, nn.Conv2d)) == 1 + 6 * n + 2
    assert not of_type(model, nn.MaxPool2d)
    assert (model.fc.in_features, model.fc.out_features) == (64, 10)


def test_resnet18_layers_are_the_authors_tiny_imagenet_resnet18():
    model = zoo.resnet18(seed=0)
    assert model.input_shape == (3, 64, 64)
    assert (model.conv1.in_channels, model.conv1.out_channels) == (3, 64)
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert not of_type(model, nn.MaxPool2d)  # no stem max pool
    blocks = of_type(model, models.BasicBlock)
    assert [block_signature(b) for b in blocks] == authors_blocks(2, [64, 128, 256, 512], 64)
    assert (model.fc.in_features, model.fc.out_features) == (512, 200)


def resnet_trunk(model: Any, x: torch.Tensor) -> torch.Tensor:
    x = torch.relu(model.bn1(model.conv1(x)))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


@pytest.mark.parametrize(
    ("name", "side", "final"),
    [("resnet20", 32, 8), ("resnet20", 28, 7), ("resnet18", 64, 8), ("resnet18", 32, 4)],
)
def test_resnet_pooling_is_the_authors_full_window_average(name, side, final):
    # CIFAR: avg_pool2d(out, out.size()[3]); CIFAR ResNet18: avg_pool2d(out, 4);
    # Tiny-ImageNet: AdaptiveAvgPool2d(1). All are one window over the final square map.
    model = zoo.build(name, input_size=side, seed=0).eval()
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fmap = resnet_trunk(model, x)
        assert fmap.shape[2:] == (final, final)
        expected = model.fc(F.avg_pool2d(fmap, fmap.size()[3]).flatten(1))
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CIFAR_RESNETS))
def test_cifar_resnet_initialisation_is_the_authors(name):
    model = zoo.build(name, seed=2)
    for i, conv in enumerate(of_type(model, nn.Conv2d)):
        assert_normal(conv.weight, math.sqrt(2 / fan(conv.weight, "fan_in")), f"conv {i}")
    assert_normal(model.fc.weight, math.sqrt(2 / 64), "fc")  # kaiming_normal_ defaults
    assert torch.equal(model.fc.bias, torch.zeros(10))
    assert_unit_batchnorm(model)


def test_resnet18_initialisation_is_the_authors_fan_out():
    model = zoo.resnet18(seed=3)
    for i, conv in enumerate(of_type(model, nn.Conv2d)):
        assert_normal(conv.weight, math.sqrt(2 / fan(conv.weight, "fan_out")), f"conv {i}")
    assert_normal(model.fc.weight, math.sqrt(2 / 200), "fc")
    # the bias keeps nn.Linear's default law: uniform(-1/sqrt(512), 1/sqrt(512))
    bias, bound = model.fc.bias.detach().double(), 1 / math.sqrt(512)
    assert bias.abs().max() <= bound and bias.abs().max() > 0.9 * bound
    assert abs(float(bias.std()) / (bound / math.sqrt(3)) - 1) < 6 / math.sqrt(2 * 200)
    assert_unit_batchnorm(model)


# ------------------------------------------------------------------ every model
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_model_runs_on_one_channel_data(name):
    kwargs, shape = ONE_CHANNEL[name]
    model = zoo.build(name, seed=0, **kwargs)
    assert tuple(model.input_shape) == shape
    out = model(torch.rand(1, *shape, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 200 if name == "resnet18" else 10)
    dag = pathnet.to_dag(model)
    assert dag.groups[0].size == (784 if name == "mlp" else 1)
    assert dag.n_params == sum(p.numel() for p in pathnet.prunable_parameters(model).values())


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_default_input_shape_fits_the_model(name):
    model = zoo.build(name, seed=0)
    assert model(torch.zeros(1, *model.input_shape)).shape[0] == 1


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_same_seed_same_weights_in_every_model(name):
    kwargs, _ = ONE_CHANNEL[name]
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b, c = (zoo.build(name, seed=s, **kwargs) for s in (5, 5, 6))
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_unseeded_models_draw_from_the_global_generator():
    torch.manual_seed(4)
    a = zoo.resnet20()
    torch.manual_seed(4)
    b = zoo.resnet20()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize(
    "name", ["lenet5", "vgg11", "resnet20", pytest.param("resnet18", marks=pytest.mark.slow)]
)
def test_phew_runs_on_one_channel_models(name):
    kwargs, _ = ONE_CHANNEL[name]
    model = zoo.build(name, seed=0, **kwargs)
    mask = select("phew", model, 0.05, seed=0)
    assert mask.n_kept == target_count(pathnet.to_dag(model), 0.05)


def test_signatures_stay_backward_compatible():
    assert isinstance(zoo.vgg16(100, True).features[1], nn.BatchNorm2d)
    assert zoo.resnet20(100).fc.out_features == 100
    assert zoo.lenet5(7).input_shape == (1, 28, 28)
    assert zoo.mlp([6, 4, 2], input_shape=(1, 2, 3)).input_shape == (1, 2, 3)
    assert models.kaiming_init is pathnet.models.kaiming_init


@pytest.mark.parametrize(
    ("name", "kwargs", "needle"),
    [
        ("vgg16", {"in_channels": 0}, r"pathnet\.models\.vgg16: in_channels must be a positive"),
        ("vgg11", {"num_classes": 0}, r"pathnet\.models\.vgg11: num_classes"),
        ("resnet20", {"in_channels": "1"}, r"pathnet\.models\.resnet20: in_channels"),
        ("resnet18", {"input_size": True}, r"pathnet\.models\.resnet18: input_size"),
        ("lenet5", {"in_channels": 1.5}, r"pathnet\.models\.lenet5: in_channels"),
        ("mlp", {"in_channels": 3}, r"pathnet\.models\.mlp: sizes\[0\] = 784 is not"),
        (
            "mlp",
            {"in_channels": 3, "input_shape": (1, 28, 28), "sizes": [784, 10]},
            r"pathnet\.models\.mlp: input_shape \(1, 28, 28\) does not have in_channels = 3",
        ),
    ],
)
def test_bad_arguments_name_the_model_and_parameter(name, kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        zoo.build(name, **kwargs)


def test_mlp_reads_in_channels_square_images():
    model = zoo.mlp([3 * 32 * 32, 100, 10], in_channels=3, seed=0)
    assert model.input_shape == (3, 32, 32)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
