"""Property tests: random architectures and masks against slow, obviously-correct references.

Architectures (MLPs, conv stacks with varying kernel/stride/padding/dilation, residual
blocks with identity and projection shortcuts, pooling, flatten points) come from
``tests/strategies.py``; each spec also writes down its unit-level edges straight from the
torch parameter layout, independently of :func:`pathnet.to_dag`, so that the converter,
the sweeps and the analyses are all checked against path-by-path enumeration
(``tests/reference.py``).

The default run is small and derandomized (the same examples every time); the ``slow``
variants run many more examples.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

import pathnet
from pathnet import analysis
from pathnet.select import select
from pathnet.select.registry import METHODS, _load_builtin_methods
from tests.reference import brute_force_path_count, layer_graph, unit_path_sums
from tests.strategies import (
    keep_masks,
    profile,
    reference_layers,
    specs,
    torch_index,
    tweak_weights,
)

_load_builtin_methods()

#: Methods that need training data; SNIP and GraSP get a tiny batch, IMP (which trains)
#: is left to its own tests.
DATA_METHODS = ("snip", "grasp")
SKIPPED_METHODS = ("imp",)


def log10_exact(x: int | Fraction) -> float:
    """log10 of a non-negative exact number of any size (-inf for 0)."""
    x = Fraction(x)
    if x == 0:
        return -math.inf
    return math.log10(x.numerator) - math.log10(x.denominator)


def arch_kind(spec) -> str:
    kinds = {op[0] for op in spec.ops}
    if "res" in kinds:
        shortcuts = sorted({op[1] for op in spec.ops if op[0] == "res"})
        return "residual (" + ", ".join(shortcuts) + ")"
    if "conv" in kinds:
        return "conv stack" + (" + linear head" if "linear" in kinds else "")
    names = {"linear": "mlp", "flatten": "mlp on pixels", "gap": "mlp on pooled channels"}
    return names.get(spec.ops[0][0], "pooling + linear")


def as_mask(keep: dict[str, np.ndarray]) -> pathnet.Mask:
    return pathnet.Mask({k: torch.from_numpy(np.asarray(v)) for k, v in keep.items()})


# ------------------------------------------------------------------ path counts
def check_paths_equal_enumeration(spec, data) -> None:
    net = spec.build()
    data.draw(tweak_weights(net), label="weights")
    keep = data.draw(keep_masks(net), label="mask")
    layers, out = reference_layers(net, keep)
    ref = unit_path_sums(layer_graph(layers), "in", out)
    dag = pathnet.to_dag(net)

    count = analysis.path_count(dag, keep, exact=True)
    event(f"architecture: {arch_kind(spec)}")
    event("paths: none" if count == 0 else "paths: some")
    assert isinstance(count, int)
    assert count == ref["count"], spec
    assert count == brute_force_path_count(dag.with_mask(keep).to_networkx())
    assert analysis.path_count(dag, keep) == pytest.approx(log10_exact(count), abs=1e-9)
    for p in (1, 2):  # exact rational sums of path products: no rounding anywhere
        exact = analysis.edge_weight_sum(net, as_mask(keep), p=p, method="graph", exact=True)
        assert exact == ref[f"r{p}"], (spec, p)
        assert analysis.edge_weight_sum(dag, keep, p=p, method="graph") == pytest.approx(
            log10_exact(exact), abs=1e-9
        )
    trace = analysis.path_kernel_trace(dag, keep, method="graph", log10=True)
    assert trace == pytest.approx(log10_exact(ref["trace"]), abs=1e-9)


@profile(40)
@given(specs(), st.data())
def test_path_quantities_equal_enumeration(spec, data):
    check_paths_equal_enumeration(spec, data)


@pytest.mark.slow
@profile(600)
@given(specs(max_channels=4, max_weighted=5), st.data())
def test_path_quantities_equal_enumeration_many(spec, data):
    check_paths_equal_enumeration(spec, data)


# ------------------------------------------------------------------ mask layout
def check_mask_layout(spec, data) -> None:
    net = spec.build()
    keep = data.draw(keep_masks(net), label="mask")
    dag = pathnet.to_dag(net)
    params = dict(net.named_parameters())
    assert set(dag.params) == set(pathnet.prunable_parameters(net))
    masked = dag.with_mask(keep)
    for b, block in enumerate(dag.blocks):
        if block.param is None:
            continue
        w = params[block.param].detach().numpy()
        assert block.param_shape == tuple(w.shape)
        n_out, n_in, n_elem = block.values.shape
        j, i, e = (a.ravel() for a in np.indices((n_out, n_in, n_elem)))
        where = [torch_index(net, block.param, *t) for t in zip(j.tolist(), i.tolist(), e.tolist())]
        at = tuple(np.array(where).T)
        # element (j, i, e) of the block is the parameter element the torch layout says ...
        np.testing.assert_array_equal(block.values[j, i, e], w[at])
        # ... and so is its mask bit
        em = masked.blocks[b].present_mask()
        np.testing.assert_array_equal(em[j, i, e], keep[block.param][at])
        # flat index (j * n_in + i) * n_elem + e, as mask_from_elements documents
        assert np.array_equal((j * n_in + i) * n_elem + e, np.arange(block.n_params))

    mask = as_mask(keep)
    assert masked.to_mask() == mask
    elements = dag.elements_from_mask(keep)
    assert dag.mask_from_elements(elements) == mask
    assert sum(len(v) for v in elements.values()) == mask.n_kept

    # Any subset of elements round-trips (duplicates collapse; identity blocks have none).
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="subset seed"))
    chosen = {
        b: rng.integers(0, blk.n_params, size=rng.integers(0, blk.n_params + 1))
        for b, blk in enumerate(dag.blocks)
        if blk.param is not None
    }
    back = dag.elements_from_mask(dag.mask_from_elements(chosen))
    for b, idx in chosen.items():
        np.testing.assert_array_equal(back[b], np.unique(idx))

    # Whole edges keep exactly their present elements.
    edges = {b: blk.edges for b, blk in enumerate(masked.blocks) if blk.param is not None}
    assert masked.mask_from_edges(edges) == mask


@profile(40)
@given(specs(), st.data())
def test_masks_map_back_to_the_right_parameters(spec, data):
    check_mask_layout(spec, data)


@pytest.mark.slow
@profile(500)
@given(specs(max_channels=4, max_units=5, max_weighted=5), st.data())
def test_masks_map_back_to_the_right_parameters_many(spec, data):
    check_mask_layout(spec, data)


# ------------------------------------------------------------------ methods
def method_options(method: str, net: torch.nn.Module) -> dict:
    if method.startswith("synflow"):
        return {"iterations": 3}
    if method in DATA_METHODS:
        g = torch.Generator().manual_seed(0)
        x = torch.randn((4, *net.input_shape), generator=g)
        classes = net.output_shape[0]
        return {"data": (x, torch.arange(4) % classes)}
    return {}


def check_methods(spec, data) -> None:
    net = spec.build()
    premask = data.draw(st.booleans(), label="premasked")
    keep = data.draw(keep_masks(net), label="mask") if premask else None
    model = copy.deepcopy(net)
    if keep is not None:
        pathnet.apply_mask(model, as_mask(keep), mode="prune")
    dag = pathnet.to_dag(model)
    n = dag.n_params
    density = data.draw(
        st.one_of(
            st.floats(1.0 / n, 1.0),
            st.integers(1, n).map(lambda k: k / n),  # int(k / n * n) may still be k - 1
            st.just(1.0),
            st.floats(0.0, 1.0 / n, exclude_min=True),  # keeps none
        ),
        label="density",
    )
    m = int(density * n)
    present = dag.to_mask()
    effective = analysis.effective_mask(dag)
    for method in sorted(METHODS):
        if method in SKIPPED_METHODS:
            continue
        # The refusals that are legitimate, decided without the method's own code.
        legit = []
        if m < 1:
            legit.append("keeps none")
        if m > dag.n_present:
            legit.append("more than present")
        if method in ("phew", "random_paths") and m > effective.n_kept:
            legit.append("more than on complete paths")
        if method in DATA_METHODS and len(net.output_shape) != 1:
            legit.append("output is not [N, classes]")
        try:
            mask = select(method, model, density, seed=1, **method_options(method, net))
        except (ValueError, RuntimeError) as exc:
            msg = str(exc)
            assert msg.startswith("pathnet"), (method, msg)
            assert "\n" not in msg, (method, msg)
            assert legit, f"{method} refused a feasible target {m} of {n}: {msg}\n{spec}"
            event(f"refused: {', '.join(legit)}")
            continue
        event(f"{method}: hit its target")
        assert not legit, f"{method} accepted {legit}: kept {mask.n_kept}\n{spec}"
        assert mask.n_kept == m, (method, mask.n_kept, m, spec)
        assert set(mask) == set(dag.params)
        for name in mask:
            assert tuple(mask[name].shape) == dag.block_of(name).param_shape
            assert not (mask[name] & ~present[name]).any(), f"{method} revived {name}"
            if method in ("phew", "random_paths"):  # walks only cross complete paths
                assert not (mask[name] & ~effective[name]).any(), f"{method}: {name}"


@profile(15)
@given(specs(), st.data())
def test_every_method_hits_its_target_or_refuses_clearly(spec, data):
    check_methods(spec, data)


@pytest.mark.slow
@profile(300)
@given(specs(max_channels=4, max_units=5, max_weighted=5), st.data())
def test_every_method_hits_its_target_or_refuses_clearly_many(spec, data):
    check_methods(spec, data)


# ------------------------------------------------------------------ finiteness
def _finite_or(value: float, allowed_minus_inf: bool, what: str) -> None:
    assert not math.isnan(value), what
    assert value != math.inf, what
    if value == -math.inf:
        assert allowed_minus_inf, what


def check_analysis_finite(spec, data) -> None:
    """No NaN or Inf anywhere, with these documented exceptions.

    * A ``log10`` value is ``-inf`` exactly when the quantity is 0: no input -> output
      path (path counts, paths through a block), or every path carries a zero weight
      (sums of path products, the trace). Each is checked against the exact value.
    * ``summary().overall["bottleneck_width"]`` is NaN when the network has no hidden or
      residual-sum group (a single Linear or Conv2d layer): there is no bottleneck.
    """
    net = spec.build()
    data.draw(tweak_weights(net), label="weights")
    keep = data.draw(keep_masks(net), label="mask")
    layers, out = reference_layers(net, keep)
    ref = unit_path_sums(layer_graph(layers), "in", out)
    dag = pathnet.to_dag(net)
    table = analysis.summary(dag, keep)
    o = table.overall
    _finite_or(o["log10_paths"], ref["count"] == 0, "log10_paths")
    _finite_or(o["log10_R1"], ref["r1"] == 0, "log10_R1")
    _finite_or(o["log10_R2"], ref["r2"] == 0, "log10_R2")
    _finite_or(o["log10_trace"], ref["trace"] == 0, "log10_trace")
    inner = [g for g in dag.groups if g.kind in ("hidden", "sum")]
    if inner:
        assert 0.0 <= o["bottleneck_width"] <= 1.0
    else:
        assert math.isnan(o["bottleneck_width"])  # the documented exception
    for k in ("density", "params", "kept", "effective"):
        _finite_or(float(o[k]), False, k)
    shares = 0.0
    for row in table.to_dicts():
        for key, value in row.items():
            if isinstance(value, float):
                _finite_or(value, key == "log10_paths" and row["effective"] == 0, key)
        assert 0.0 <= row["trace_share"] <= 1.0 and 0.0 <= row["width"] <= 1.0
        shares += row["trace_share"]
    if ref["trace"] > 0:
        assert shares == pytest.approx(1.0)
    for p in (0, 1, 2):
        value = analysis.edge_weight_sum(dag, keep, p=p, method="graph")
        _finite_or(value, ref[("count", "r1", "r2")[p]] == 0, f"edge_weight_sum p={p}")
    tr = analysis.path_kernel_trace(dag, keep, method="graph")
    assert math.isfinite(tr) and tr >= 0.0 and (tr == 0.0) == (ref["trace"] == 0)
    for w in analysis.layer_widths(dag, keep):
        assert 0 <= w.active <= w.units and 0.0 <= w.width <= 1.0
    assert 0 <= analysis.effective_params(dag, keep) <= dag.n_params
    other = data.draw(keep_masks(net), label="other mask")
    sim = analysis.mask_similarity(keep, other, dag)
    for row in [*sim.to_dicts(), sim.overall]:
        for key, value in row.items():
            if isinstance(value, float):
                _finite_or(value, False, f"mask_similarity {key}")


@profile(30)
@given(specs(), st.data())
def test_analysis_never_returns_nan_or_inf(spec, data):
    check_analysis_finite(spec, data)


@pytest.mark.slow
@profile(500)
@given(specs(max_channels=4, max_weighted=5), st.data())
def test_analysis_never_returns_nan_or_inf_many(spec, data):
    check_analysis_finite(spec, data)
