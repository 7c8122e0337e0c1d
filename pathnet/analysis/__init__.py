"""Path analysis of (masked) networks: counts, products, trace, widths, similarity.

Every function takes a torch model or a :class:`~pathnet.LayeredDAG` and an
optional mask, and never modifies the model:

>>> import pathnet
>>> from pathnet import analysis
>>> model = pathnet.models.mlp([4, 3, 2], seed=0)
>>> analysis.path_count(model, exact=True)
24
>>> [w.active for w in analysis.layer_widths(model)]
[4, 3, 2]
"""

from pathnet.analysis.paths import (
    as_dag,
    edge_weight_sum,
    path_count,
    path_kernel_trace,
    prepare,
)
from pathnet.analysis.similarity import jaccard, mask_similarity
from pathnet.analysis.summary import Table, summary
from pathnet.analysis.widths import (
    GroupWidth,
    active_units,
    bottleneck,
    effective_mask,
    effective_params,
    layer_widths,
)

__all__ = [
    "GroupWidth",
    "Table",
    "active_units",
    "as_dag",
    "bottleneck",
    "edge_weight_sum",
    "effective_mask",
    "effective_params",
    "jaccard",
    "layer_widths",
    "mask_similarity",
    "path_count",
    "path_kernel_trace",
    "prepare",
    "summary",
]
