"""Write the three pathnet notebooks from the cell sources below, then run them.

``make notebooks`` (or ``python notebooks/make_notebooks.py``) regenerates every
``.ipynb`` from these sources and executes it in place with nbclient, from the
notebooks folder, so the committed files carry their outputs (plots included).
``--no-execute`` writes the sources only. Never edit the JSON by hand:
``tests/test_notebooks.py`` checks that the committed sources equal :func:`build`'s,
that each committed notebook has its outputs, and runs each on small settings
(``PATHNET_NOTEBOOK_SMALL=1``).

Conventions of the cells: a code cell that draws carries the tag ``figure`` (the
tests check that exactly those cells show an image); every quantitative or
comparative sentence of a markdown cell is checked by an ``assert`` in the code cell
right after it, so that a change of defaults fails the notebook instead of leaving
text that its outputs contradict.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
SMALL_ENV = "PATHNET_NOTEBOOK_SMALL"

SETUP = """\
%matplotlib inline
import os

SMALL = os.environ.get("PATHNET_NOTEBOOK_SMALL") == "1"  # the test suite runs small settings
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display

import pathnet
from pathnet import analysis, figures

print("settings:", "small" if SMALL else "full")"""


def md(text: str) -> NotebookNode:
    return new_markdown_cell(text)


def code(source: str) -> NotebookNode:
    return new_code_cell(source)


def fig(source: str) -> NotebookNode:
    """A code cell that shows at least one figure."""
    return new_code_cell(source, metadata={"tags": ["figure"]})


NB1 = [
    md(
        "# Path-kernel basics\n\n"
        "A neural network is a weighted DAG: units are nodes, weights are edges, and an "
        "input->output **path** `p` has the **path product** `π_p = ∏_{k∈p} θ_k`. "
        "For a ReLU network the output is a sum over paths of path products times "
        "input values and activation patterns, which is why paths are a natural lens "
        "on sparse networks.\n\n"
        "This notebook uses a tiny MLP with named layers (`fc1`, `out`) so that every "
        "path can be listed."
    ),
    code(SETUP),
    code(
        "from collections import OrderedDict\n\n"
        "torch.manual_seed(0)\n"
        "model = torch.nn.Sequential(\n"
        "    OrderedDict(fc1=torch.nn.Linear(3, 3), relu=torch.nn.ReLU(), out=torch.nn.Linear(3, 2))\n"
        ")\n"
        "model.input_shape = (3,)  # pathnet reads the per-sample input shape from here\n"
        "dag = pathnet.to_dag(model)\n"
        "print(dag.summary())"
    ),
    md(
        "## The DAG, drawn with networkx\n\n"
        "`dag.to_networkx()` gives one node `(group, unit)` per unit and one edge per "
        "weight, with `weight = |θ|`; each node also records its group's name. Edge "
        "width shows `|θ|`."
    ),
    fig(
        "import networkx as nx\n\n"
        "G = dag.to_networkx()\n"
        "pos = nx.multipartite_layout(G, subset_key='layer')\n"
        "labels = {n: f\"{d['group']}:{n[1]}\" for n, d in G.nodes(data=True)}\n"
        "w = np.array([d['weight'] for _, _, d in G.edges(data=True)])\n\n\n"
        "def draw(ax, **edge_style):\n"
        "    nx.draw_networkx(G, pos, ax=ax, labels=labels, node_color='#cde', node_size=900,\n"
        "                     font_size=8, **edge_style)\n"
        "    ax.axis('off')\n\n\n"
        "fig, ax = plt.subplots(figsize=(5.5, 3.5))\n"
        "draw(ax, width=3 * w / w.max())\n"
        "ax.set_title('MLP 3-3-2 as a layered DAG (edge width = |θ|)');"
    ),
    md("## Every path and its product"),
    code(
        "W1 = model.fc1.weight.detach().double().numpy()  # (3 hidden, 3 inputs)\n"
        "W2 = model.out.weight.detach().double().numpy()  # (2 outputs, 3 hidden)\n"
        "paths = []\n"
        "for i in range(3):\n"
        "    for h in range(3):\n"
        "        for o in range(2):\n"
        "            paths.append(((i, h, o), (W1[h, i], W2[o, h])))\n"
        "for units, (a, b) in paths[:6]:\n"
        "    print(f'input:{units[0]} -> fc1:{units[1]} -> out:{units[2]}:  '\n"
        "          f'π = {a:+.3f} x {b:+.3f} = {a * b:+.4f}')\n"
        "print(f'... {len(paths)} paths in all; the DAG counts', analysis.path_count(dag, exact=True))"
    ),
    md("Listing the paths by hand and counting them on the DAG give the same number:"),
    code("assert len(paths) == analysis.path_count(dag, exact=True) == 3 * 3 * 2"),
    fig(
        "best_units, _ = max(paths, key=lambda p: abs(p[1][0] * p[1][1]))\n"
        "i, h, o = best_units\n"
        "best = [((0, i), (1, h)), ((1, h), (2, o))]\n"
        "fig, ax = plt.subplots(figsize=(5.5, 3.5))\n"
        "draw(ax, edge_color='#bbb')\n"
        "nx.draw_networkx_edges(G, pos, edgelist=best, ax=ax, edge_color='crimson', width=3,\n"
        "                       node_size=900)\n"
        "ax.set_title(f'the path with the largest |π|: input:{i} -> fc1:{h} -> out:{o}');"
    ),
    md(
        "## The path-kernel trace, three ways\n\n"
        "The path kernel (Gebhart et al. 2021) is `Π = J_π J_πᵀ` with `J_π` the Jacobian of "
        "path products with respect to the weights. Its trace is\n\n"
        "`Tr(Π) = Σ_p Σ_{k∈p} (π_p / θ_k)²`\n\n"
        "computed (1) by enumeration of the paths above, (2) on the DAG with one forward and "
        "one backward sweep of squared weights, `Σ_{i→j} F(i) B(j)` (`method='graph'`), and "
        "(3) with autograd on the torch model: weights replaced by `θ²`, an all-ones input, "
        "`R = Σ out`, and `Tr = Σ_k ∂R/∂(θ_k²)` (`method='autograd'`). For an MLP the three "
        "agree to float rounding:"
    ),
    code(
        "enumerated = sum((a * b / a) ** 2 + (a * b / b) ** 2 for _, (a, b) in paths)\n"
        "graph = analysis.path_kernel_trace(dag, method='graph')\n"
        "autograd = analysis.path_kernel_trace(model, method='autograd')\n"
        "print(f'enumeration {enumerated:.12f}\\nDAG sweeps  {graph:.12f}\\nautograd    {autograd:.12f}')\n"
        "assert np.isclose(enumerated, graph, rtol=1e-10) and np.isclose(graph, autograd, rtol=1e-10)"
    ),
    md(
        "## How PHEW walks choose edges\n\n"
        "PHEW (Patil & Dovrolis, 2021) builds a sparse network from random walks that "
        "alternate forward (from inputs, round robin) and backward (from outputs). A forward "
        "step from unit `i` goes to `j` with probability `|θ_ji| / Σ_j' |θ_j'i|`: heavier "
        "edges are more likely, yet every unit keeps a chance. The first walk starts at "
        "input 0; with a budget of exactly 2 weights the mask *is* that first walk "
        "(`input:0 -> fc1:h -> out:o`), so over many seeds the share of masks through each "
        "`fc1:h` should match the analytic probability `|θ_h0| / Σ_h' |θ_h'0|` within "
        "sampling error:"
    ),
    code(
        "p_first = np.abs(W1[:, 0]) / np.abs(W1[:, 0]).sum()\n"
        "n_seeds = 200 if SMALL else 2000\n"
        "density = 2 / dag.n_params\n"
        "counts = np.zeros(3)\n"
        "for s in range(n_seeds):\n"
        "    mask = pathnet.select('phew', dag, density, seed=s)\n"
        "    first = mask['fc1.weight'].numpy()\n"
        "    assert first.sum() == 1 and first[:, 0].sum() == 1  # one edge, from input 0\n"
        "    assert mask['out.weight'].numpy()[:, first[:, 0].argmax()].sum() == 1  # continues\n"
        "    counts += first[:, 0]\n"
        "share = counts / n_seeds\n"
        "sigma = np.sqrt(p_first * (1 - p_first) / n_seeds)\n"
        "for h in range(3):\n"
        "    print(f'fc1:{h}  analytic {p_first[h]:.3f}  empirical {share[h]:.3f}  (±{sigma[h]:.3f})')\n"
        "assert np.all(np.abs(share - p_first) <= 4 * sigma + 1e-9)"
    ),
    fig(
        "mask = pathnet.select('phew', model, 0.5, seed=0)\n"
        "print(mask.table())\n"
        "kept = [(u, v) for u, v, d in G.edges(data=True) if mask[d['parameter']][v[1], u[1]]]\n"
        "fig, ax = plt.subplots(figsize=(5.5, 3.5))\n"
        "draw(ax, edge_color='#ddd')\n"
        "nx.draw_networkx_edges(G, pos, edgelist=kept, ax=ax, edge_color='#1b9e77', width=2.5,\n"
        "                       node_size=900)\n"
        "ax.set_title('PHEW at 50% density (green: kept)');"
    ),
]

NB2 = [
    md(
        "# Bottlenecks: layer widths under SynFlow-L2 and PHEW\n\n"
        "A unit is **active** when it lies on at least one complete input->output path of "
        "the masked network; the **width** of a layer is its fraction of active units.\n\n"
        "SynFlow-L2 keeps the weights with the largest contribution to `R₂ = Σ_p π_p²`, "
        "pruning iteratively. PHEW samples paths in proportion to edge weights, starting "
        "walks round robin from every input and every output unit. The PHEW paper argues "
        "that the first concentrates the budget on few units (narrow layers) and the second "
        "spreads it (wide layers). This notebook measures widths and the path-kernel trace "
        "first, then states only what the numbers show; each statement is checked by an "
        "`assert` on the computed values."
    ),
    code(SETUP),
    code(
        "model_names = ['resnet20'] if SMALL else ['resnet20', 'vgg16']\n"
        "methods = ['phew', 'synflow_l2', 'random']\n"
        "densities = [0.05, 0.02]\n"
        "iterations = 10 if SMALL else 100  # SynFlow-L2 pruning iterations\n"
        "models, masks, rows = {}, {}, []\n"
        "for name in model_names:\n"
        "    model = models[name] = pathnet.models.build(name, seed=0)\n"
        "    for method in methods:\n"
        "        opts = {'iterations': iterations} if method == 'synflow_l2' else {}\n"
        "        for d in densities:\n"
        "            mask = masks[name, method, d] = pathnet.select(method, model, d, seed=0, **opts)\n"
        "            inner = [w for w in analysis.layer_widths(model, mask) if w.kind != 'input'\n"
        "                     and w.kind != 'output']\n"
        "            narrow = min(inner, key=lambda w: w.active / w.units)\n"
        "            full = narrow.active == narrow.units  # then no layer is narrowest\n"
        "            rows.append({\n"
        "                'model': name, 'method': method, 'density': d,\n"
        "                'min_width': narrow.active / narrow.units,\n"
        "                'narrowest': '(all at 100%)' if full else narrow.name,\n"
        "                'full_layers': sum(w.active == w.units for w in inner), 'layers': len(inner),\n"
        "                'log10_trace': analysis.path_kernel_trace(model, mask, log10=True),\n"
        "            })\n"
        "r = {(x['model'], x['method'], x['density']): x for x in rows}\n"
        "print(f\"{'model':9s}{'method':11s}{'density':>8s}{'narrowest layer':>26s}\"\n"
        "      f\"{'layers at 100%':>16s}{'log10 trace':>13s}\")\n"
        "for x in rows:\n"
        "    print(f\"{x['model']:9s}{x['method']:11s}{100 * x['density']:7g}%\"\n"
        "          f\"{x['narrowest']:>19s} {100 * x['min_width']:5.1f}%\"\n"
        "          f\"{x['full_layers']:>9d} of {x['layers']:<4d}{x['log10_trace']:>11.2f}\")"
    ),
    md(
        "## Layer widths\n\n"
        "`figures.plot_widths(model, masks)` draws the width of every unit group, input to "
        "output, for each mask (a `matplotlib.figure.Figure`; save it with "
        "`figures.save_figure(fig, 'widths.pdf')`)."
    ),
    fig(
        "for name in model_names:\n"
        "    for d in densities:\n"
        "        shown = {m: masks[name, m, d] for m in methods}\n"
        "        display(figures.plot_widths(models[name], shown, title=f'{name} at {100 * d:g}% density'))"
    ),
    md(
        "In every model and at every density above, SynFlow-L2's narrowest layer keeps a "
        "smaller fraction of its units than PHEW's narrowest layer, and PHEW keeps at least "
        "as many layers at full width as SynFlow-L2:"
    ),
    code(
        "for name in model_names:\n"
        "    for d in densities:\n"
        "        phew, syn = r[name, 'phew', d], r[name, 'synflow_l2', d]\n"
        "        assert syn['min_width'] < phew['min_width'], (name, d)\n"
        "        assert phew['full_layers'] >= syn['full_layers'], (name, d)"
    ),
    md(
        "## Path-kernel trace\n\n"
        "The paper describes PHEW as having path-kernel properties similar to SynFlow-L2's "
        "(a high trace, which predicts fast early training). Measured here, SynFlow-L2's "
        "trace is larger than PHEW's in every case above, and PHEW's is larger than that of "
        "random pruning at the same density; the gaps, in orders of magnitude:"
    ),
    code(
        "for name in model_names:\n"
        "    for d in densities:\n"
        "        phew, syn, rnd = (r[name, m, d]['log10_trace'] for m in methods)\n"
        "        print(f'{name:9s}{100 * d:3g}%:  SynFlow-L2 - PHEW {syn - phew:6.2f}   '\n"
        "              f'PHEW - random {phew - rnd:6.2f}')\n"
        "        assert syn > phew > rnd, (name, d)"
    ),
    md(
        "So PHEW trades trace for width: it keeps the layers wide, while SynFlow-L2 reaches "
        "the larger trace through narrower layers (both checked above)."
    ),
]

NB3 = [
    md(
        "# Reproducing the PHEW paper's data-free figures from the API\n\n"
        "`pathnet.experiments.reproduce.reproduce` runs the grid (models x methods x "
        "densities x seeds), writes tidy CSV files and draws the figures. `pathnet "
        "reproduce` on the command line runs the full default grid; here a smaller grid "
        "(three methods, two seeds) keeps the notebook quick. The files go to the repository's "
        "`figures/notebook` folder, found from this notebook's own location (a temporary "
        "folder on the test suite's small settings)."
    ),
    code(SETUP),
    code(
        "import tempfile\n"
        "from pathlib import Path\n\n\n"
        "def notebook_dir():\n"
        "    # VS Code and Jupyter name the running notebook; nbclient, nbconvert and Jupyter\n"
        "    # start the kernel in the notebook's folder.\n"
        "    for var in ('__vsc_ipynb_file__', '__session__'):\n"
        "        p = Path(str(globals().get(var, '')))\n"
        "        if p.is_absolute() and p.suffix == '.ipynb' and p.is_file():\n"
        "            return p.parent\n"
        "    if (Path.cwd() / '03_reproduce_figures.ipynb').is_file():\n"
        "        return Path.cwd()\n"
        "    raise RuntimeError('cannot find this notebook\\'s folder: start the kernel in notebooks/')\n\n\n"
        "out_dir = Path(tempfile.mkdtemp()) if SMALL else notebook_dir().parent / 'figures' / 'notebook'\n"
        "print('writing to', out_dir if SMALL else out_dir.relative_to(notebook_dir().parent))"
    ),
    code(
        "import warnings\n\n"
        "from pathnet.experiments.reproduce import ReproduceConfig, reproduce\n\n"
        "# tqdm.auto warns about ipywidgets even with the progress bar off\n"
        "warnings.filterwarnings('ignore', message='IProgress not found')\n"
        "config = ReproduceConfig(\n"
        "    models=('resnet20',) if SMALL else ('vgg16', 'resnet20'),\n"
        "    methods=('phew', 'synflow_l2', 'random'),\n"
        "    densities=(0.1, 0.05, 0.02) if SMALL else ReproduceConfig().densities,\n"
        "    seeds=(0, 1),\n"
        "    synflow_iterations=10 if SMALL else 100,\n"
        "    workers=1 if SMALL else 2,\n"
        "    accuracy=False,\n"
        ")\n"
        "result = reproduce(\n"
        "    out_dir, config, progress=False, log=lambda text: print(text.replace(str(out_dir), 'out_dir'))\n"
        ")\n"
        "print(sorted(p.name for p in out_dir.iterdir()))"
    ),
    md("The results table has one row per model, method, density and seed (the first rows):"),
    code(
        "from pathnet._text import format_table\n\n"
        "res = result['results']\n"
        "n = len(config.models) * len(config.methods) * len(config.densities) * len(config.seeds)\n"
        "assert len(res) == n\n"
        "assert len({(x['model'], x['method'], x['density'], x['seed']) for x in res}) == n\n"
        "cols = ['model', 'method', 'density', 'seed', 'log10_trace', 'effective_params',\n"
        "        'min_width_frac']\n"
        "print(format_table(res[:12], cols))"
    ),
    md("The figures `reproduce` wrote, as files in `out_dir`:"),
    fig(
        "from IPython.display import Image\n\n"
        "for name in ['trace_vs_density.png', 'widths.png', 'effective_params_vs_density.png']:\n"
        "    display(Image(filename=out_dir / name))"
    ),
]

NOTEBOOKS = {
    "01_path_kernel_basics.ipynb": NB1,
    "02_bottlenecks.ipynb": NB2,
    "03_reproduce_figures.ipynb": NB3,
}


def build() -> dict[str, NotebookNode]:
    """Every notebook, sources only (no outputs), by file name."""
    out = {}
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=[nbformat.from_dict(c) for c in cells])
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        out[name] = nb
    return out


def execute(nb: NotebookNode, timeout: int = 900) -> None:
    """Run ``nb`` in place in a python3 kernel started in the notebooks folder."""
    from nbclient import NotebookClient

    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    ).execute()


def _write(nb: NotebookNode, path: Path) -> None:
    sys.path.insert(0, str(HERE.parent))
    from pathnet._io import atomic_write_bytes

    atomic_write_bytes(path, nbformat.writes(nb).encode())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebook file names (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write the sources only")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"unknown notebook {unknown[0]!r}; choose from {', '.join(NOTEBOOKS)}")
    # full settings and the inline backend, whatever the caller's environment says
    os.environ.pop(SMALL_ENV, None)
    os.environ.pop("MPLBACKEND", None)
    for name, nb in build().items():
        if args.names and name not in args.names:
            continue
        t = time.perf_counter()
        if not args.no_execute:
            execute(nb)
        _write(nb, HERE / name)
        print(f"wrote {name} ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
