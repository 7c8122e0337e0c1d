"""Slow, obviously-correct references that the fast code is compared with.

Nothing here uses pathnet's own path algorithms: paths are enumerated one by one
on networkx graphs built directly from the torch parameters, or counted with
dense matrix products.
"""

from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np
import torch
from torch import nn


def dense_layer_matrices(model: nn.Module) -> list[np.ndarray]:
    """For a plain feed-forward stack (Linear / Conv2d with a single flatten), the
    per-layer (out x in x elements) weight arrays, straight from the parameters."""
    mats = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight.detach().double().numpy()
            mats.append(w.reshape(w.shape[0], w.shape[1], -1))
    return mats


def enumerate_paths(graph: nx.MultiDiGraph, sources, targets) -> list[list[tuple]]:
    """Every edge path (with parallel edges distinct) from any source to any target."""
    paths = []
    for s in sources:
        for t in targets:
            paths.extend(nx.all_simple_edge_paths(graph, s, t))
    return paths


def brute_force_path_count(graph: nx.MultiDiGraph) -> int:
    """Count input->output paths one by one; each unmasked element is its own edge."""
    last = max(d["layer"] for _, d in graph.nodes(data=True))
    sources = [n for n, d in graph.nodes(data=True) if d["layer"] == 0]
    targets = [n for n, d in graph.nodes(data=True) if d["layer"] == last]
    count = 0
    for path in enumerate_paths(graph, sources, targets):
        c = 1
        for u, v, k in path:
            c *= graph.edges[u, v, k]["multiplicity"]
        count += c
    return count


def dense_path_count(model: nn.Module, masks: dict[str, np.ndarray] | None = None) -> int:
    """Exact path count of a plain feed-forward stack by integer matrix products.

    Input units are features for an MLP, channels for a conv stack. Each unmasked
    kernel element is a distinct edge.
    """
    vec = None
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        keep = np.ones(tuple(m.weight.shape), dtype=bool)
        if masks is not None:
            keep = np.asarray(masks[f"{name}.weight"], dtype=bool)
        mult = keep.reshape(keep.shape[0], -1)
        if vec is not None and mult.shape[1] != len(vec):  # conv -> linear through a flatten
            per = mult.shape[1] // len(vec)
            mult = keep.reshape(keep.shape[0], len(vec), per)
        else:
            mult = keep.reshape(keep.shape[0], keep.shape[1], -1)
        counts = mult.sum(axis=2).astype(object)  # python ints: exact
        if vec is None:
            vec = [1] * counts.shape[1]
        vec = [
            sum(int(counts[j, i]) * vec[i] for i in range(counts.shape[1]))
            for j in range(counts.shape[0])
        ]
    return int(sum(vec))


def all_paths_products(weights: list[np.ndarray]) -> list[float]:
    """Path products of a dense chain of (out x in) matrices, one path at a time."""
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    out = []
    for units in itertools.product(*[range(s) for s in sizes]):
        p = 1.0
        for layer, w in enumerate(weights):
            p *= float(w[units[layer + 1], units[layer]])
        out.append(p)
    return out


def log10_int(n: int) -> float:
    return math.log10(n) if n > 0 else float("-inf")


def autograd_synflow_scores(
    model: nn.Module, input_shape, squared: bool = False
) -> dict[str, torch.Tensor]:
    """SynFlow scores |theta * dR/dtheta| by autograd on a float64 copy with |theta|."""
    import copy

    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.abs() if not squared else p * p)
    x = torch.ones((1, *input_shape), dtype=torch.float64)
    r = net(x).sum()
    r.backward()
    return {n: (p.grad * p).abs() for n, p in net.named_parameters() if p.dim() > 1}


# ------------------------------------------------------------ path analysis
# A network written out by hand as a list of layers, each
#   (source label, target label, weight array or None, keep array or None, n_units)
# with weight arrays of shape (out, in, elements) taken straight from the torch
# parameters (None = an identity shortcut of n_units channels). The references
# below enumerate its paths one by one, in exact rational arithmetic.


def layer_graph(layers) -> nx.MultiDiGraph:
    """A unit-level networkx graph; each edge keeps its unmasked element weights."""
    from fractions import Fraction

    graph = nx.MultiDiGraph()
    for src, dst, w, keep, n in layers:
        if w is None:
            for u in range(n):
                graph.add_edge((src, u), (dst, u), elements=[Fraction(1)], param=False)
            continue
        w = np.asarray(w, dtype=np.float64)
        keep = np.ones(w.shape, dtype=bool) if keep is None else np.asarray(keep).reshape(w.shape)
        for j in range(w.shape[0]):
            for i in range(w.shape[1]):
                els = [Fraction(float(x)) for x in w[j, i][keep[j, i]]]
                if els:
                    graph.add_edge((src, i), (dst, j), elements=els, param=True)
    return graph


def _ends(graph: nx.MultiDiGraph, source: str, target: str):
    return (
        sorted(n for n in graph if n[0] == source),
        sorted(n for n in graph if n[0] == target),
    )


def unit_path_sums(graph: nx.MultiDiGraph, source: str, target: str) -> dict:
    """Path count, R1, R2 and path-kernel trace by enumerating unit paths.

    Per unit path the element paths factorise: count = prod mult, R_p = prod of
    per-edge sums of |w|^p, trace = sum over parameter edges l of
    mult_l * prod_{m != l} S2_m.
    """
    from fractions import Fraction

    out = {"count": 0, "r1": Fraction(0), "r2": Fraction(0), "trace": Fraction(0)}
    for path in enumerate_paths(graph, *_ends(graph, source, target)):
        data = [graph.edges[e] for e in path]
        mult = [len(d["elements"]) for d in data]
        s1 = [sum(abs(x) for x in d["elements"]) for d in data]
        s2 = [sum(x * x for x in d["elements"]) for d in data]
        out["count"] += math.prod(mult)
        out["r1"] += math.prod(s1)
        out["r2"] += math.prod(s2)
        for k, d in enumerate(data):
            if d["param"]:
                out["trace"] += mult[k] * math.prod(s2[:k] + s2[k + 1 :])
    return out


def element_path_sums(graph: nx.MultiDiGraph, source: str, target: str) -> dict:
    """The same four quantities by enumerating every element-level path explicitly:
    one unmasked element chosen on each edge, path product = product of those."""
    from fractions import Fraction

    out = {"count": 0, "r1": Fraction(0), "r2": Fraction(0), "trace": Fraction(0)}
    for path in enumerate_paths(graph, *_ends(graph, source, target)):
        data = [graph.edges[e] for e in path]
        for choice in itertools.product(*[d["elements"] for d in data]):
            prod = math.prod(choice)
            out["count"] += 1
            out["r1"] += abs(prod)
            out["r2"] += prod * prod
            for k, d in enumerate(data):
                if d["param"]:  # (pi_p / theta_k)^2 for each parameter on the path
                    out["trace"] += math.prod(x * x for m, x in enumerate(choice) if m != k)
    return out


def reachability_sets(graph: nx.MultiDiGraph, n_layers: int) -> tuple[set, set]:
    """Nodes of a pathnet ``to_networkx()`` graph reached from an input, and
    nodes that reach an output (networkx descendants / ancestors)."""
    sources = [n for n, d in graph.nodes(data=True) if d["layer"] == 0]
    targets = [n for n, d in graph.nodes(data=True) if d["layer"] == n_layers - 1]
    down = set(sources).union(*(nx.descendants(graph, s) for s in sources))
    up = set(targets).union(*(nx.ancestors(graph, t) for t in targets))
    return down, up


# ------------------------------------------------------- converter coverage
# Weights of layers that do not map one input unit to one slice of the weight,
# written out one (output, input) pair at a time for :func:`layer_graph`.


def expand_grouped(arr, groups: int):
    """A grouped conv's ``(out, in/groups, *kernel)`` weight (or mask) as the dense
    ``(out, in, k)`` array of every (output, input) channel pair, and which pairs
    exist: output ``j`` reads input ``i`` iff both lie in the same group."""
    arr = np.asarray(arr)
    n_out, a = arr.shape[:2]
    n_in, per = a * groups, n_out // groups
    k = int(np.prod(arr.shape[2:], dtype=np.int64))
    dense = np.zeros((n_out, n_in, k), dtype=arr.dtype)
    exists = np.zeros((n_out, n_in, k), dtype=bool)
    for j in range(n_out):
        for i in range(n_in):
            if i // a == j // per:
                dense[j, i] = arr[j, i - (j // per) * a].reshape(-1)
                exists[j, i] = True
    return dense, exists


def split_inputs(arr, sizes, per_unit: int = 1):
    """A ``(out, sum(sizes) * per_unit, ...)`` weight (or mask) of a layer that reads a
    concatenation, cut into one ``(out, size, elements)`` array per concatenated input."""
    arr = np.asarray(arr)
    n_out = arr.shape[0]
    full = arr.reshape(n_out, sum(sizes), -1) if per_unit == 1 else arr.reshape(n_out, -1, per_unit)
    out, start = [], 0
    for s in sizes:
        out.append(full[:, start : start + s])
        start += s
    return out


# ------------------------------------------------- the network as torch runs it
# Plain float64 autograd on a deep copy of the real network (zero padding,
# pooling, BatchNorm in eval mode, residual additions all as torch runs them).


def _linearised(model: nn.Module, p: int, buffers: bool) -> nn.Module:
    """Float64 eval copy with |x| (p=1) or x**2 (p=2) in the state (buffers or not)."""
    import copy

    from torch.nn.utils import parametrize

    net = copy.deepcopy(model)
    for module in net.modules():  # bake any mask into plain weights
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    net = net.double().eval()
    with torch.no_grad():
        for t in net.state_dict().values() if buffers else net.parameters():
            if t.is_floating_point():
                t.copy_(t * t if p == 2 else t.abs())
    return net


def _weights(net: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{n}.weight": m.weight
        for n, m in net.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
    }


def autograd_synflow_mask(
    model: nn.Module, density: float, iterations: int, method: str, variant: str = "phew"
) -> dict[str, np.ndarray]:
    """SynFlow / SynFlow-L2 by the book: per step a fresh masked float64 copy,
    one backward, scores compared with np.lexsort (score desc, |w|**q desc, index asc)."""
    p, q = (2, 1) if method == "synflow_l2" and variant == "phew" else (1, 1)
    if method == "synflow_l2" and variant == "gebhart":
        q = 2
    names = list(_weights(model))
    w0 = {n: t.detach().double().abs() for n, t in _weights(model).items()}
    sizes = [w0[n].numel() for n in names]
    n_params = sum(sizes)
    keep = np.ones(n_params, dtype=bool)
    secondary = np.concatenate([(w0[n] ** q).numpy().ravel() for n in names])
    m = int(density * n_params)
    for t in range(1, iterations + 1):
        k = max(m, int(n_params * density ** (t / iterations)))
        if k >= keep.sum():
            continue
        net = _linearised(model, p, buffers=True)
        ws = _weights(net)
        with torch.no_grad():
            at = 0
            for n, size in zip(names, sizes):
                ws[n].mul_(torch.from_numpy(keep[at : at + size].reshape(ws[n].shape)))
                at += size
        x = torch.ones((1, *model.input_shape), dtype=torch.float64)
        grads = torch.autograd.grad(net(x).sum(), [ws[n] for n in names], allow_unused=True)
        score = np.concatenate(
            [
                (np.zeros(s) if g is None else g.abs().numpy().ravel()) * sec
                for g, s, sec in zip(grads, sizes, np.split(secondary, np.cumsum(sizes)[:-1]))
            ]
        )
        alive = np.flatnonzero(keep)
        order = np.lexsort((alive, -secondary[alive], -score[alive]))
        keep[:] = False
        keep[alive[order[:k]]] = True
    out, at = {}, 0
    for n, size in zip(names, sizes):
        out[n] = keep[at : at + size].reshape(w0[n].shape)
        at += size
    return out


def autograd_network_value(model: nn.Module, mask: dict | None, p: int, trace: bool) -> float:
    """R = sum(net(ones)) (SynFlow's linearisation: all state |x| or x**2), or the
    path-kernel trace (parameters squared, buffers as they are, p=2): the sum of
    dR/d(theta**2) over the unmasked weights."""
    net = _linearised(model, p, buffers=not trace)
    ws = _weights(net)
    on = {
        n: torch.ones_like(w) if mask is None else torch.as_tensor(np.asarray(mask[n])).double()
        for n, w in ws.items()
    }
    with torch.no_grad():
        for n, w in ws.items():
            w.mul_(on[n])
    x = torch.ones((1, *model.input_shape), dtype=torch.float64)
    r = net(x).sum()
    if not trace:
        return float(r)
    grads = torch.autograd.grad(r, list(ws.values()), allow_unused=True)
    return float(sum((g * on[n]).sum() for n, g in zip(ws, grads) if g is not None))
