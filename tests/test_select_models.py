"""Selection on models beyond the zoo: grouped/depthwise convs, channel concatenation,
global mean pooling, Conv1d; tied parameters refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pathnet

METHODS = ("phew", "random_paths", "synflow_l2", "synflow", "random", "magnitude")


class CatGrouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(12, 5)
        self.input_shape = (3, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dw(torch.relu(self.b(torch.relu(self.a(x)))))
        y = torch.cat([torch.relu(h), self.c(x)], dim=1)
        return self.fc(y.mean(dim=(2, 3)))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 10)
        self.b = nn.Linear(10, 10)
        self.b.weight = self.a.weight
        self.out = nn.Linear(10, 3)
        self.input_shape = (10,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("method", METHODS)
def test_grouped_depthwise_and_cat_models_hit_the_density_exactly(method: str) -> None:
    torch.manual_seed(0)
    model = CatGrouped()
    dag = pathnet.to_dag(model)
    options = {}
    if method.startswith("synflow"):  # the exact network computation refuses them by name
        with pytest.raises(ValueError, match=r"'b\.weight' is a grouped convolution"):
            pathnet.select(method, model, 0.3, seed=0)
        options = {"backend": "graph"}
    mask = pathnet.select(method, model, 0.3, seed=0, **options)
    assert mask.n_kept == int(0.3 * dag.n_weights)
    # elements outside a grouped conv's groups do not exist: the mask has the parameter's shape
    assert mask["b.weight"].shape == model.b.weight.shape
    assert mask["dw.weight"].shape == model.dw.weight.shape
    if method in ("phew", "random_paths"):  # every kept weight lies on a complete path
        assert pathnet.analysis.effective_params(model, mask) == mask.n_kept


@pytest.mark.parametrize("method", METHODS)
def test_tied_parameters_are_refused_by_name(method: str) -> None:
    model = Tied()
    with pytest.raises(ValueError, match=r"tied parameters \(b\.weight = a\.weight\)"):
        pathnet.select(method, model, 0.2, seed=0)
    with pytest.raises(ValueError, match="tied parameters"):
        pathnet.select.select_nested(method, model, [0.5, 0.2], seed=0)


def _brute_effective(model: nn.Module, mask: pathnet.Mask) -> int:
    """Kept weights on a complete input -> output path, by networkx reachability."""
    import networkx as nx

    dag = pathnet.to_dag(model).with_mask(mask)
    g = dag.to_networkx()
    last = len(dag.groups) - 1
    fwd = {n for n in g if n[0] == 0}
    bwd = {n for n in g if n[0] == last}
    for n in list(fwd):
        fwd |= nx.descendants(g, n)
    for n in list(bwd):
        bwd |= nx.ancestors(g, n)
    return sum(
        d["multiplicity"]
        for u, v, d in g.edges(data=True)
        if d["parameter"] and u in fwd and v in bwd
    )


@pytest.mark.parametrize("method", ("random", "phew"))
def test_effective_params_of_concatenation_models_match_brute_force(method: str) -> None:
    torch.manual_seed(1)
    model = CatGrouped()
    mask = pathnet.select(method, model, 0.15, seed=3)
    assert pathnet.analysis.effective_params(model, mask) == _brute_effective(model, mask)
