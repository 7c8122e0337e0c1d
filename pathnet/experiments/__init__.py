"""Experiments: grids of trials run resumably on a local pool, submitit or SLURM.

One runner (:mod:`pathnet.experiments.runner`) runs grid definitions: the sweep
(:mod:`~pathnet.experiments.sweep`, configured by a file, :mod:`~pathnet.experiments.config`),
the paper reproduction (:mod:`~pathnet.experiments.reproduce`) and the IMP comparison
(:mod:`~pathnet.experiments.imp_similarity`).

>>> from pathnet.experiments import SweepConfig
>>> config = SweepConfig.from_dict(
...     {"grid": {"method": ["phew", "dense"], "density": [0.1, 0.05], "seed": [0, 1]},
...      "fixed": {"epochs": 1}})
>>> len(config.trials())  # phew: 2 densities x 2 seeds; dense: one per seed
6
>>> [t.name[:-13] for t in config.trials()]  # each name ends with -<12 hex digits of hash>
['phew-d0.1-s0', 'phew-d0.05-s0', 'dense-d1-s0', 'phew-d0.1-s1', 'phew-d0.05-s1', 'dense-d1-s1']

See :mod:`pathnet.experiments.config` (file format, seeds), :mod:`pathnet.experiments.runner`
(folder layout, executors) and :mod:`pathnet.experiments.collect` (table and figure).
"""

from pathnet.experiments.collect import CollectResult, collect, trial_rows
from pathnet.experiments.config import DENSE, SweepConfig, Trial, config_hash, load_config
from pathnet.experiments.runner import (
    EXECUTORS,
    Grid,
    GridReport,
    GridTrial,
    RunOptions,
    SlurmOptions,
    run_grid,
)
from pathnet.experiments.sweep import (
    SweepReport,
    build_mask,
    run_sweep,
    run_trial,
    sweep_grid,
    trial_states,
)

__all__ = [
    "DENSE",
    "EXECUTORS",
    "CollectResult",
    "Grid",
    "GridReport",
    "GridTrial",
    "RunOptions",
    "SlurmOptions",
    "SweepConfig",
    "SweepReport",
    "Trial",
    "build_mask",
    "collect",
    "config_hash",
    "load_config",
    "run_grid",
    "run_sweep",
    "run_trial",
    "sweep_grid",
    "trial_rows",
    "trial_states",
]
