"""Write the three pathnet notebooks from the cell sources below.

Run ``python notebooks/make_notebooks.py`` after editing a cell; the ``.ipynb``
files are committed without outputs. The tests execute them headless with
``PATHNET_NOTEBOOK_SMALL=1`` (small settings).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os

SMALL = os.environ.get("PATHNET_NOTEBOOK_SMALL") == "1"  # the test suite runs the small settings
import matplotlib

if SMALL:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import pathnet
from pathnet import analysis"""

NB1 = [
    new_markdown_cell(
        "# Path-kernel basics\n\n"
        "A neural network is a weighted DAG: units are nodes, weights are edges, and an "
        "input->output **path** `p` has the **path product** `π_p = ∏_{k∈p} θ_k`. "
        "For a ReLU network the output is a sum over paths of path products times "
        "input values and activation patterns, which is why paths are a natural lens "
        "on sparse networks.\n\n"
        "This notebook uses a tiny MLP so that every path can be listed."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "model = pathnet.models.mlp([3, 3, 2], seed=0)\n"
        "dag = pathnet.to_dag(model)\n"
        "print(dag.summary())"
    ),
    new_markdown_cell(
        "## The DAG, drawn with networkx\n\n"
        "`dag.to_networkx()` gives one node `(group, unit)` per unit and one edge per "
        "weight, with `weight = |θ|`. Edge width shows `|θ|`."
    ),
    new_code_cell(
        "import networkx as nx\n\n"
        "G = dag.to_networkx()\n"
        "pos = nx.multipartite_layout(G, subset_key='layer')\n"
        "w = np.array([d['weight'] for _, _, d in G.edges(data=True)])\n"
        "fig, ax = plt.subplots(figsize=(5, 3.5))\n"
        "nx.draw_networkx(G, pos, ax=ax, node_color='#cde', width=3 * w / w.max(), font_size=7)\n"
        "ax.set_title('MLP 3-3-2 as a layered DAG (edge width = |w|)')\n"
        "ax.axis('off');"
    ),
    new_markdown_cell("## Every path and its product"),
    new_code_cell(
        "W1 = model[1].weight.detach().double().numpy()  # (3 hidden, 3 inputs)\n"
        "W2 = model[3].weight.detach().double().numpy()  # (2 outputs, 3 hidden)\n"
        "paths = []\n"
        "for i in range(3):\n"
        "    for h in range(3):\n"
        "        for o in range(2):\n"
        "            paths.append(((i, h, o), (W1[h, i], W2[o, h])))\n"
        "for units, (a, b) in paths[:6]:\n"
        "    print(f'input {units[0]} -> hidden {units[1]} -> output {units[2]}:  '\n"
        "          f'π = {a:+.3f} x {b:+.3f} = {a * b:+.4f}')\n"
        "print(f'... {len(paths)} paths in all; the DAG counts', analysis.path_count(dag, exact=True))\n"
        "assert len(paths) == analysis.path_count(dag, exact=True)"
    ),
    new_code_cell(
        "best_units, _ = max(paths, key=lambda p: abs(p[1][0] * p[1][1]))\n"
        "i, h, o = best_units\n"
        "best = [((0, i), (1, h)), ((1, h), (2, o))]\n"
        "fig, ax = plt.subplots(figsize=(5, 3.5))\n"
        "nx.draw_networkx(G, pos, ax=ax, node_color='#cde', edge_color='#bbb', font_size=7)\n"
        "nx.draw_networkx_edges(G, pos, edgelist=best, ax=ax, edge_color='crimson', width=3)\n"
        "ax.set_title(f'the path with the largest |π|: {best_units}')\n"
        "ax.axis('off');"
    ),
    new_markdown_cell(
        "## The path-kernel trace, three ways\n\n"
        "The path kernel (Gebhart et al. 2021) is `Π = J_π J_πᵀ` with `J_π` the Jacobian of "
        "path products with respect to the weights. Its trace is\n\n"
        "`Tr(Π) = Σ_p Σ_{k∈p} (π_p / θ_k)²`\n\n"
        "(1) by enumeration of the paths above, (2) on the DAG with one forward and one "
        "backward sweep of squared weights, `Σ_{i→j} F(i) B(j)`, and (3) with autograd on "
        "the torch model: weights replaced by `θ²`, an all-ones input, `R = Σ out`, and "
        "`Tr = Σ_k ∂R/∂(θ_k²)`."
    ),
    new_code_cell(
        "enumerated = sum((a * b / a) ** 2 + (a * b / b) ** 2 for _, (a, b) in paths)\n"
        "graph = analysis.path_kernel_trace(dag)\n"
        "autograd = analysis.path_kernel_trace(model, method='autograd')\n"
        "print(f'enumeration {enumerated:.12f}\\nDAG sweeps  {graph:.12f}\\nautograd    {autograd:.12f}')\n"
        "assert np.isclose(enumerated, graph, rtol=1e-10) and np.isclose(graph, autograd, rtol=1e-10)"
    ),
    new_markdown_cell(
        "## How PHEW walks choose edges\n\n"
        "PHEW (Patil & Dovrolis, 2021) builds a sparse network from random walks that "
        "alternate forward (from inputs, round robin) and backward (from outputs). A forward "
        "step from unit `i` goes to `j` with probability `|θ_ji| / Σ_j' |θ_j'i|`: paths "
        "with higher edge weights are more likely, yet every unit keeps a chance, which keeps "
        "layers wide. The first walk starts at input 0; with a budget of exactly 2 weights "
        "the mask *is* that first walk, so over many seeds the hidden unit it picks follows "
        "the analytic probabilities."
    ),
    new_code_cell(
        "p_first = np.abs(W1[:, 0]) / np.abs(W1[:, 0]).sum()\n"
        "n_seeds = 200 if SMALL else 2000\n"
        "density = 2 / dag.n_params\n"
        "counts = np.zeros(3)\n"
        "for s in range(n_seeds):\n"
        "    mask = pathnet.select('phew', dag, density, seed=s)\n"
        "    counts += mask['1.weight'][:, 0].numpy()\n"
        "for h in range(3):\n"
        "    print(f'hidden {h}: analytic {p_first[h]:.3f}  empirical {counts[h] / n_seeds:.3f}')\n"
        "assert np.allclose(counts / n_seeds, p_first, atol=0.12)"
    ),
    new_code_cell(
        "mask = pathnet.select('phew', model, 0.5, seed=0)\n"
        "print(mask.table())\n"
        "kept = [\n"
        "    (u, v) for u, v, d in G.edges(data=True)\n"
        "    if mask[d['parameter']][v[1], u[1]]\n"
        "]\n"
        "fig, ax = plt.subplots(figsize=(5, 3.5))\n"
        "nx.draw_networkx(G, pos, ax=ax, node_color='#cde', edge_color='#ddd', font_size=7)\n"
        "nx.draw_networkx_edges(G, pos, edgelist=kept, ax=ax, edge_color='#1b9e77', width=2.5)\n"
        "ax.set_title('PHEW at 50% density (green: kept)')\n"
        "ax.axis('off');"
    ),
]

NB2 = [
    new_markdown_cell(
        "# Bottlenecks: why SynFlow-L2 makes narrow layers and PHEW does not\n\n"
        "SynFlow-L2 keeps the weights with the largest contribution to `R₂ = Σ_p π_p²`. "
        "Squared path products are dominated by a few paths through the largest weights, and "
        "pruning iteratively makes the rich richer: whole units lose every in- or out-edge. "
        "A unit is **active** when it lies on at least one complete input->output path; the "
        "**width** of a layer is its fraction of active units.\n\n"
        "PHEW samples paths in proportion to edge weights, starting walks round robin from "
        "every input and every output unit, so it spreads the budget over units while still "
        "preferring heavy edges."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "models = ['resnet20'] if SMALL else ['vgg16', 'resnet20']\n"
        "densities = [0.05, 0.02]\n"
        "iterations = 10 if SMALL else 100\n"
        "rows = []\n"
        "for name in models:\n"
        "    model = pathnet.models.build(name, seed=0)\n"
        "    dag = pathnet.to_dag(model)\n"
        "    for method in ['phew', 'synflow_l2']:\n"
        "        opts = {'iterations': iterations} if method == 'synflow_l2' else {}\n"
        "        for d in densities:\n"
        "            mask = pathnet.select(method, dag, d, seed=0, **opts)\n"
        "            for w in analysis.layer_widths(dag, mask):\n"
        "                rows.append({'model': name, 'method': method, 'density': d, 'seed': 0,\n"
        "                             'group': w.group, 'name': w.name, 'kind': w.kind,\n"
        "                             'units': w.units, 'active': w.active})\n"
        "            b = analysis.bottleneck(dag, mask)\n"
        "            print(f'{name:8s} {method:10s} {100 * d:3g}%: narrowest {b.name!r} '\n"
        "                  f'{b.active}/{b.units} units ({100 * b.width:.0f}%)')"
    ),
    new_code_cell(
        "from pathnet import figures\n"
        "import tempfile, pathlib\n"
        "out = pathlib.Path(tempfile.mkdtemp()) / 'widths.png'\n"
        "figures.width_profile(rows, out, densities=densities)\n"
        "from IPython.display import Image\n"
        "Image(filename=str(out))"
    ),
    new_markdown_cell(
        "The narrowest layer of SynFlow-L2 is far narrower than PHEW's; in ResNet20 the "
        "SynFlow-L2 masks lose units where the projection shortcuts carry the signal. Both "
        "methods keep a high path-kernel trace, which predicts fast early training; PHEW "
        "keeps it *and* the width:"
    ),
    new_code_cell(
        "model = pathnet.models.resnet20(seed=0)\n"
        "dag = pathnet.to_dag(model)\n"
        "for method in ['phew', 'synflow_l2', 'random']:\n"
        "    opts = {'iterations': iterations} if method == 'synflow_l2' else {}\n"
        "    mask = pathnet.select(method, dag, 0.05, seed=0, **opts)\n"
        "    t = analysis.path_kernel_trace(dag, mask, log10=True)\n"
        "    b = analysis.bottleneck(dag, mask)\n"
        "    print(f'{method:10s} log10 trace {t:7.2f}   narrowest layer width {100 * b.width:5.1f}%')"
    ),
]

NB3 = [
    new_markdown_cell(
        "# Reproducing the PHEW paper's data-free figures from the API\n\n"
        "`pathnet.experiments.reproduce.reproduce` runs the grid (models x methods x densities x seeds), "
        "writes tidy CSV files and draws the figures. `pathnet reproduce` on the command line "
        "runs the full default grid; here a small grid keeps the notebook quick."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "import tempfile\n"
        "from pathnet.experiments.reproduce import ReproduceConfig, reproduce\n\n"
        "config = ReproduceConfig(\n"
        "    models=('resnet20',) if SMALL else ('vgg16', 'resnet20'),\n"
        "    methods=('phew', 'synflow_l2', 'random'),\n"
        "    densities=(0.1, 0.05, 0.02) if SMALL else ReproduceConfig().densities,\n"
        "    seeds=(0, 1) if SMALL else (0, 1, 2),\n"
        "    synflow_iterations=10 if SMALL else 100,\n"
        "    workers=1 if SMALL else 2,\n"
        "    accuracy=False,\n"
        ")\n"
        "out_dir = tempfile.mkdtemp() if SMALL else '../figures/notebook'\n"
        "result = reproduce(out_dir, config, progress=False)"
    ),
    new_code_cell(
        "from pathnet._text import format_table\n"
        "cols = ['model', 'method', 'density', 'seed', 'log10_trace', 'effective_params', 'min_width_frac']\n"
        "print(format_table(result['results'][:12], cols))"
    ),
    new_code_cell(
        "from IPython.display import Image, display\n"
        "for name in ['trace_vs_density.png', 'widths.png', 'effective_params_vs_density.png']:\n"
        "    display(Image(filename=f'{out_dir}/{name}'))"
    ),
]


def main() -> None:
    for name, cells in [
        ("01_path_kernel_basics.ipynb", NB1),
        ("02_bottlenecks.ipynb", NB2),
        ("03_reproduce_figures.ipynb", NB3),
    ]:
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
