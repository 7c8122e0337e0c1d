"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

Round ``k`` (``k = 1 .. K``) trains the network under the mask of round ``k - 1`` (round 0
is dense), removes ``fraction`` of the weights still present by magnitude (globally or
per layer) and rewinds the survivors to their values at initialisation (``rewind="init"``)
or after ``k`` training iterations of the dense run (``rewind=k``). The last round prunes
exactly to ``int(density * n_params)`` weights. With ``out_dir`` every round's mask is
saved as it is found (``mask_01.npz``, ...) together with ``imp.json``; calling again with
the same ``out_dir`` skips the finished rounds and resumes a round whose training was
interrupted from its checkpoint (``train_01/``, ...).

>>> import torch
>>> from pathnet import models
>>> from pathnet.train.imp import imp
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(128, 6, generator=g); y = (x[:, 0] > 0).long()
>>> res = imp(models.mlp([6, 10, 2], seed=0), (x, y), density=0.5, epochs_per_round=1,
...           seed=0, progress=False)
>>> [m.n_kept for m in res]  # 80 weights: 0.8^k then exactly int(0.5 * 80)
[64, 51, 40]
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import Tensor, nn

from pathnet._io import atomic_write_bytes, check_header, hash_tensors
from pathnet._random import SeedLike
from pathnet.graph import LayeredDAG
from pathnet.mask import Mask, MaskFileError, prunable_parameters
from pathnet.select.registry import register, target_count
from pathnet.train.checkpoint import CheckpointError, read_torch_file, write_torch_file
from pathnet.train.config import TrainConfig
from pathnet.train.fit import DataLike, build_config, fit
from pathnet.train.loop import resolve_seed
from pathnet.train.pruning import imp_schedule, layer_counts, magnitude_mask

__all__ = ["ImpResult", "imp", "imp_schedule", "imp_select", "layer_counts", "magnitude_mask"]

_PREFIX = "pathnet.train.imp"
_FORMAT = "pathnet-imp"
_VERSION = 1
_STATE = "imp.json"
_REWIND = "rewind.pt"
_REWIND_FORMAT = "pathnet-imp-rewind"
# fit() options imp() sets itself.
_RESERVED = (
    "epochs",
    "seed",
    "out_dir",
    "resume",
    "stop_after",
    "mask",
    "step_callback",
    "callback",
)
# TrainConfig fields recorded apart (epochs, mask_mode) or that do not change the result.
_NOT_RECORDED = ("epochs", "mask_mode", "eval_batch_size")


class ImpResult(list[Mask]):
    """What :func:`imp` returns: the list of every round's mask, with the run's records.

    ``result[k - 1]`` is the mask of round ``k``; ``meta`` holds ``method="imp"``,
    ``round``, ``rounds``, ``density``, ``n_kept``, ``scope``, ``rewind``.

    Attributes
    ----------
    rounds : list of dict
        Per round: ``round``, ``n_kept``, ``density`` and ``train`` (the final metrics
        of the training run whose weights it was pruned from).
    trained : list of int
        Rounds whose training ran (or resumed) in this call; rounds found finished in
        ``out_dir`` are not in it.
    seed : int
    out_dir : pathlib.Path or None
    """

    def __init__(
        self,
        masks: Sequence[Mask],
        rounds: Sequence[Mapping[str, Any]],
        trained: Sequence[int],
        seed: int,
        out_dir: Path | None,
    ) -> None:
        super().__init__(masks)
        self.rounds = [dict(r) for r in rounds]
        self.trained = list(trained)
        self.seed = seed
        self.out_dir = out_dir

    def __repr__(self) -> str:
        return (
            f"ImpResult({len(self)} rounds, densities "
            f"{[round(m.density, 4) for m in self]}, trained {self.trained})"
        )

    @property
    def masks(self) -> list[Mask]:
        """The masks as a plain list."""
        return list(self)

    @property
    def final_mask(self) -> Mask:
        """The mask of the last round, at the target density."""
        return self[-1]

    @property
    def densities(self) -> list[float]:
        return [m.density for m in self]


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _recorded(cfg: TrainConfig) -> dict[str, Any]:
    """The training settings that differ from the recipe's (recorded in ``imp.json``)."""
    base, now = TrainConfig().to_dict(), cfg.to_dict()
    return {k: now[k] for k in sorted(now) if k not in _NOT_RECORDED and now[k] != base[k]}


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(
            f"{_PREFIX}: cannot read {str(path)!r} ({type(exc).__name__}: {exc}); delete the "
            f"folder to start over"
        ) from exc
    what = f"{_PREFIX}: {str(path)!r}"
    check_header(state, format=_FORMAT, version=_VERSION, what=what, error=CheckpointError)
    rounds = state.get("rounds")
    if (
        not isinstance(state.get("config"), dict)
        or not isinstance(rounds, list)
        or not all(isinstance(r, dict) and isinstance(r.get("round"), int) for r in rounds)
    ):
        raise CheckpointError(f"{what} is damaged (config or rounds); delete the folder")
    return state


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(state, indent=1) + "\n").encode())


def _load_rewind(path: Path) -> dict[str, Tensor]:
    state = read_torch_file(
        path,
        format=_REWIND_FORMAT,
        version=_VERSION,
        what="IMP rewind file",
        hint=f"delete {path.parent} to start over",
    )
    weights = state.get("state")
    if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
        raise CheckpointError(f"{_PREFIX}: {str(path)!r} does not hold a state dict")
    return weights


@dataclass
class _Plan:
    """One call of :func:`imp`: its settings, the state found in ``out_dir``, the rounds."""

    counts: list[int]
    scope: str
    rewind_step: int
    cfg: TrainConfig
    seed: int
    out: Path | None
    config: dict[str, Any]
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    rewind_state: dict[str, Tensor] | None = None

    def path(self, name: str) -> Path | None:
        return self.out / name if self.out is not None else None


def _check_rewind(rewind: Any) -> int:
    if isinstance(rewind, str):
        if rewind != "init":
            raise ValueError(f"{_PREFIX}: rewind must be 'init' or an iteration >= 0")
        return 0
    if isinstance(rewind, bool) or not isinstance(rewind, (int, np.integer)) or rewind < 0:
        raise ValueError(f"{_PREFIX}: rewind must be 'init' or an iteration >= 0, got {rewind!r}")
    return int(rewind)


def _plan(
    model: nn.Module,
    cfg: TrainConfig,
    counts: list[int],
    *,
    scope: str,
    rewind_step: int,
    seed: SeedLike,
    out_dir: str | Path | None,
) -> _Plan:
    """The run's settings, checked against those recorded in ``out_dir``."""
    out = Path(out_dir) if out_dir is not None else None
    state_path = out / _STATE if out is not None else None
    saved = _read_state(state_path) if state_path is not None and state_path.exists() else None
    if saved is not None and seed is None:
        seed_int = saved["config"].get("seed")
        if isinstance(seed_int, bool) or not isinstance(seed_int, int) or seed_int < 0:
            raise CheckpointError(f"{_PREFIX}: {str(state_path)!r} records no valid seed")
    else:
        seed_int = resolve_seed(seed)
    init_state = _cpu_state(model)
    config = {
        "counts": counts,
        "n_params": sum(p.numel() for p in prunable_parameters(model).values()),
        "scope": scope,
        "rewind": rewind_step,
        "epochs_per_round": cfg.epochs,
        "seed": seed_int,
        "mask_mode": cfg.mask_mode,
        "init": hash_tensors(init_state),
        "fit": _recorded(cfg),
    }
    plan = _Plan(counts, scope, rewind_step, cfg, seed_int, out, config)
    if saved is not None:
        old = saved["config"]
        diff = [
            f"{k}: {old.get(k)!r} in {_STATE}, {config[k]!r} now"
            for k in config
            if old.get(k) != config[k]
        ]
        if diff:
            raise ValueError(
                f"{_PREFIX}: {str(out)!r} holds IMP rounds of another run ("
                + "; ".join(d if len(d) < 300 else d[:300] + "..." for d in diff)
                + "); use another out_dir or delete it"
            )
        plan.done = {int(r["round"]): r for r in saved["rounds"]}
    if rewind_step == 0:
        plan.rewind_state = init_state
    else:
        rewind_path = plan.path(_REWIND)
        if rewind_path is not None and rewind_path.exists():
            plan.rewind_state = _load_rewind(rewind_path)
    return plan


def _cached_round(plan: _Plan, k: int, model: nn.Module) -> Mask | None:
    """Round ``k``'s mask from ``out_dir``, if that round is finished there."""
    mask_path = plan.path(f"mask_{k:02d}.npz")
    if k not in plan.done or mask_path is None or not mask_path.exists():
        return None
    try:
        mask = Mask.load(mask_path, model=model)
    except MaskFileError as exc:
        raise CheckpointError(
            f"{_PREFIX}: round {k} in {str(plan.out)!r} is damaged: {exc}"
        ) from exc
    if mask.n_kept != plan.counts[k - 1]:
        raise CheckpointError(
            f"{_PREFIX}: {str(mask_path)!r} keeps {mask.n_kept} weights, round {k} "
            f"should keep {plan.counts[k - 1]}; delete {str(plan.out)!r} to start over"
        )
    return mask


def _train_round(
    plan: _Plan,
    k: int,
    model: nn.Module,
    previous: Mask | None,
    train_data: Any,
    test_data: Any,
    *,
    device: Any,
    progress: bool,
) -> tuple[nn.Module, Any]:
    """Train round ``k``: the network under the previous mask, from the rewound weights."""
    net = copy.deepcopy(model)
    step_callback: Callable[[int, nn.Module], None] | None = None
    rewind_path = plan.path(_REWIND)
    if k == 1:
        if plan.rewind_step > 0 and plan.rewind_state is None:

            def step_callback(step: int, m: nn.Module) -> None:
                if step == plan.rewind_step:
                    plan.rewind_state = _cpu_state(m)
                    if rewind_path is not None:
                        write_torch_file(
                            rewind_path,
                            {
                                "format": _REWIND_FORMAT,
                                "version": _VERSION,
                                "state": plan.rewind_state,
                            },
                        )

    else:
        if plan.rewind_state is None:
            raise CheckpointError(
                f"{_PREFIX}: the weights to rewind to (iteration {plan.rewind_step}) are "
                f"missing from {str(plan.out)!r}; delete the folder to start over"
            )
        net.load_state_dict(plan.rewind_state)
    if progress:
        print(
            f"imp round {k}/{len(plan.counts)}: training at density "
            f"{_density(previous, plan):.4%}, then keeping {plan.counts[k - 1]:,} weights",
            flush=True,
        )
    result = fit(
        net,
        previous,
        train_data,
        test_data,
        config=plan.cfg,
        seed=plan.seed,
        device=device,
        out_dir=plan.path(f"train_{k:02d}"),
        resume=plan.out is not None,
        step_callback=step_callback,
        progress=f"round {k}/{len(plan.counts)}" if progress else False,
    )
    if k == 1 and plan.rewind_state is None:
        raise ValueError(
            f"{_PREFIX}: rewind={plan.rewind_step} but round 1 trained only "
            f"{result.epochs_completed} epochs of fewer iterations; rewind to an "
            f"earlier iteration or train longer"
        )
    return net, result


def _density(mask: Mask | None, plan: _Plan) -> float:
    return 1.0 if mask is None else mask.n_kept / plan.config["n_params"]


def imp(
    model: nn.Module,
    train_data: DataLike,
    test_data: DataLike | None = None,
    *,
    density: float | None = None,
    rounds: int | None = None,
    fraction: float | None = None,
    rewind: Literal["init"] | int = "init",
    scope: Literal["global", "layer"] = "global",
    epochs_per_round: int | None = None,
    out_dir: str | Path | None = None,
    seed: SeedLike = None,
    mask_mode: Literal["hard", "parametrize", "prune"] | None = None,
    config: TrainConfig | None = None,
    device: Any = "auto",
    progress: bool = True,
    **fit_options: Any,
) -> ImpResult:
    """Iterative magnitude pruning with rewinding, down to ``density``.

    ``model`` itself is not modified: every round trains a copy of it.

    Parameters
    ----------
    model : torch.nn.Module
        The network at initialisation.
    train_data, test_data : Dataset or tuple (x, y) of tensors
        As for :func:`pathnet.train.fit.fit`.
    density : float, optional
        Target density in (0, 1); the last round keeps exactly ``int(density * n)`` of
        the ``n`` prunable weights. Required unless ``rounds`` is given.
    rounds : int, optional
        Number of rounds; see :func:`imp_schedule`.
    fraction : float, optional
        Fraction of the remaining weights pruned per round; default 0.2, so the rounds
        reach densities ``0.8, 0.64, ...`` and then exactly ``density``.
    rewind : "init" or int, default "init"
        Rewind survivors to their initial values, or (an int ``k``) to their values after
        ``k`` iterations of the dense training of round 1 (``0`` is the same as
        ``"init"``). Later rounds then train ``epochs_per_round`` epochs from those
        weights with a fresh optimizer and the full lr schedule.
    scope : {"global", "layer"}, default "global"
        Rank weights over the whole network or prune every layer by the same fraction.
    epochs_per_round : int, optional
        Training epochs per round: ``config.epochs`` when a config is given, else 10
        (the paper's full schedule is 160).
    out_dir : str or pathlib.Path, optional
        Cache of the rounds: ``imp.json``, ``mask_XX.npz``, ``rewind.pt`` and the
        training folders ``train_XX/``. A second call with the same folder (and
        settings) skips the finished rounds.
    seed : int, numpy Generator or None
        Seed of every round's training (data order, augmentation, dropout).
    mask_mode : {"hard", "parametrize", "prune"}, optional
        How :func:`pathnet.train.fit.fit` applies each round's mask (default: the
        config's, ``"hard"``); the result is the same.
    config : TrainConfig, optional
        The training hyper-parameters of every round.
    device : str or torch.device, default "auto"
    progress : bool, default True
        One line per round (``imp round k/N: ...``) and the round's progress bar.
    **fit_options
        :class:`~pathnet.train.config.TrainConfig` fields (``batch_size``, ``lr``,
        ``amp``, ...), replacing the config's.

    Returns
    -------
    ImpResult
        A list with one mask per round (nested, densities ``0.8**k`` then the target),
        and the attributes ``rounds`` (training metrics per round) and ``trained``
        (rounds trained by this call).

    Raises
    ------
    ValueError
        Bad arguments, or ``out_dir`` holding a run with other settings or another
        initial model.
    CheckpointError
        A damaged state file in ``out_dir``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{_PREFIX}: model must be a torch.nn.Module, got {type(model).__name__}")
    bad = sorted(set(fit_options) & set(_RESERVED))
    if bad:
        raise TypeError(f"{_PREFIX}: imp() sets {bad} itself; use epochs_per_round, seed, out_dir")
    if scope not in ("global", "layer"):
        raise ValueError(f"{_PREFIX}: scope must be 'global' or 'layer', got {scope!r}")
    rewind_step = _check_rewind(rewind)
    if epochs_per_round is None:
        epochs_per_round = config.epochs if config is not None else 10
    if isinstance(epochs_per_round, bool) or int(epochs_per_round) < 1:
        raise ValueError(f"{_PREFIX}: epochs_per_round must be a positive integer")
    overrides = {**fit_options, "epochs": int(epochs_per_round)}
    if mask_mode is not None:
        overrides["mask_mode"] = mask_mode
    cfg = build_config(config, overrides, "imp")
    params = prunable_parameters(model)
    counts = imp_schedule(sum(p.numel() for p in params.values()), density, rounds, fraction)
    plan = _plan(
        model, cfg, counts, scope=scope, rewind_step=rewind_step, seed=seed, out_dir=out_dir
    )
    state_doc: dict[str, Any] = {
        "format": _FORMAT,
        "version": _VERSION,
        "config": plan.config,
        "rounds": [],
    }
    masks: list[Mask] = []
    records: list[dict[str, Any]] = []
    trained: list[int] = []
    previous: Mask | None = None
    for k, n_keep in enumerate(counts, start=1):
        mask = _cached_round(plan, k, model)
        if mask is not None:
            record = plan.done[k]
        else:
            net, result = _train_round(
                plan, k, model, previous, train_data, test_data, device=device, progress=progress
            )
            trained.append(k)
            mask = magnitude_mask(net, n_keep, previous=previous, scope=scope)
            mask.meta.update(_round_meta(plan, k, mask))
            record = {"round": k, "n_kept": mask.n_kept, "density": mask.density}
            record["train"] = result.final
            if plan.out is not None:
                mask.save(plan.out / f"mask_{k:02d}.npz")
        masks.append(mask)
        records.append(record)
        state_doc["rounds"].append(record)
        if k in trained and plan.out is not None:
            _write_state(plan.out / _STATE, state_doc)
        previous = mask

    state_path = plan.path(_STATE)
    if state_path is not None and not state_path.exists():
        _write_state(state_path, state_doc)
    assert [m.n_kept for m in masks] == counts
    assert all(set(m) == set(params) for m in masks)
    return ImpResult(masks=masks, rounds=records, trained=trained, seed=plan.seed, out_dir=plan.out)


def _round_meta(plan: _Plan, k: int, mask: Mask) -> dict[str, Any]:
    return {
        "method": "imp",
        "round": k,
        "rounds": len(plan.counts),
        "density": mask.density,
        "n_kept": mask.n_kept,
        "scope": plan.scope,
        "rewind": "init" if plan.rewind_step == 0 else plan.rewind_step,
        "epochs_per_round": plan.cfg.epochs,
        "seed": plan.seed,
    }


# ------------------------------------------------------------------ as a selection method
@register("imp")
def imp_select(
    dag: LayeredDAG,
    density: float,
    *,
    seed: SeedLike,
    model: nn.Module | None,
    train_data: Any = None,
    test_data: Any = None,
    **options: Any,
) -> Mask:
    """``pathnet.select("imp", model, density, train_data=...)``: :func:`imp`'s final mask.

    Registered here, in the training layer, so that :mod:`pathnet.select` never imports
    training code: the selection registry imports this module (by name, lazily) the
    first time the ``"imp"`` method is asked for.

    Parameters
    ----------
    dag : LayeredDAG
        Used to check the density only.
    density : float
        Target density; the mask keeps exactly ``int(density * n_params)`` weights.
    seed : int, numpy Generator or None
        Seed of every round's training.
    model : torch.nn.Module
        The network at initialisation (required; it is not modified).
    train_data : Dataset or tuple (x, y) of tensors
        Training data (required).
    test_data : Dataset or tuple (x, y) of tensors, optional
    **options
        Passed to :func:`imp` (``rewind``, ``scope``, ``fraction``, ``rounds``,
        ``epochs_per_round``, ``out_dir``, ``progress``, and TrainConfig fields).

    Returns
    -------
    Mask
        The last round's mask (``meta["round"]``, ``meta["rounds"]``).
    """
    if model is None:
        raise ValueError(
            "pathnet.select('imp'): IMP trains the network, so it needs the torch model, "
            "not a LayeredDAG"
        )
    if train_data is None:
        raise ValueError("pathnet.select('imp'): pass the training data as train_data=...")
    if density >= 1.0:
        raise ValueError("pathnet.select('imp'): density must be below 1 for IMP to prune")
    expected = target_count(dag, density)
    result = imp(model, train_data, test_data, density=density, seed=seed, **options)
    mask = result.final_mask
    if mask.n_kept != expected:  # the DAG and the model count the same weights
        raise RuntimeError(
            f"pathnet.select('imp'): kept {mask.n_kept} weights, expected {expected}"
        )
    return mask
