"""Masked training with the PHEW paper's recipe, checkpointed every epoch and resumable.

:func:`fit` trains a model, optionally under a :class:`~pathnet.Mask`, with the
hyper-parameters of a :class:`~pathnet.train.config.TrainConfig` (by default the paper's
SGD: Nesterov momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10 at 50% and
75% of the epochs) on any torch device, using the loop of :mod:`pathnet.train.loop`.
Every epoch it writes the metrics (``metrics.csv``, ``metrics.json``) and a checkpoint
(:mod:`pathnet.train.checkpoint`) atomically into ``out_dir``; ``resume=True`` picks the
run up from that checkpoint and, on the CPU, finishes it bitwise identical to a run that
was never interrupted.

>>> import torch
>>> from pathnet import models
>>> from pathnet.train.fit import fit
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.randn(256, 4, generator=g)
>>> y = (x[:, 0] > 0).long()
>>> res = fit(models.mlp([4, 8, 2], seed=0), None, (x, y), epochs=4, batch_size=32,
...           seed=0, progress=False)
>>> res.final["train_acc"] > 0.8
True
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pathnet._io import write_csv
from pathnet._random import SeedLike
from pathnet.mask import Mask, apply_mask
from pathnet.train.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    IsolatedRNG,
    checkpoint_errors,
    config_diff,
    load_checkpoint,
    mask_fingerprint,
    own_copy,
    restore_model,
    restore_training,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_metrics,
)
from pathnet.train.config import TrainConfig
from pathnet.train.dst import DST, DSTRun, check_dst
from pathnet.train.loop import (
    DataLike,
    check_data,
    evaluate,
    make_batches,
    make_optimizer,
    n_samples,
    resolve_device,
    resolve_seed,
    run_epoch,
    to_device,
)

__all__ = [
    "CHECKPOINT_NAME",
    "CheckpointError",
    "FitResult",
    "build_config",
    "evaluate",
    "fit",
    "load_checkpoint",
    "mask_fingerprint",
    "resolve_device",
]

_PREFIX = "pathnet.train.fit"


@dataclass
class FitResult:
    """What :func:`fit` returns; fields read as attributes or as keys (``result["final"]``).

    Attributes
    ----------
    history : list of dict
        One row per completed epoch (including those of earlier, resumed runs): ``epoch``
        (1-based), ``lr``, ``train_loss``, ``train_acc`` (running, in train mode),
        ``test_loss`` and ``test_acc`` (None without test data), ``time_s``.
    final : dict
        The last row of ``history`` (empty if no epoch completed).
    model : torch.nn.Module
        The trained model (the one passed in, modified in place).
    epochs : int
        Epochs the run is planned for.
    epochs_completed : int
        Epochs completed so far, counting resumed ones.
    epochs_run : int
        Epochs trained by this call.
    resumed_from : int or None
        Epochs already completed in the checkpoint this call resumed from.
    completed : bool
        Whether all ``epochs`` are done (False after ``stop_after``).
    seed : int
        The seed used (drawn at random when ``seed=None`` was passed).
    device : str
    out_dir : pathlib.Path or None
    steps : list of dict
        With ``log_every``: one row per ``log_every`` optimizer steps (and one for the
        rest of each epoch): ``step`` (the last step of the window, counted from 1 over
        the run), ``epoch`` (1-based), ``samples`` (training samples seen so far),
        ``train_loss`` and ``train_acc`` (means over the window's samples, train mode).
        Empty without ``log_every``.
    mask : Mask or None
        The mask at the end of training (with ``dst``, the last updated one).
    dst_log : list of dict or None
        With ``dst``: one row per mask update (and one for the initial mask, step 0);
        see :class:`pathnet.train.dst.DSTRun`.
    """

    history: list[dict[str, Any]]
    model: nn.Module
    epochs: int
    epochs_completed: int
    epochs_run: int
    resumed_from: int | None
    completed: bool
    seed: int
    device: str
    out_dir: Path | None
    final: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    mask: Mask | None = None
    dst_log: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if not self.final and self.history:
            self.final = dict(self.history[-1])

    def __getitem__(self, key: str) -> Any:
        """Dict-style access to the fields (``result["final"]``), as for a plain dict."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.__dataclass_fields__ else default

    @property
    def test_acc(self) -> float | None:
        """Final test accuracy (None without test data or epochs)."""
        return self.final.get("test_acc")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (everything but the model)."""
        return {
            "history": self.history,
            "final": self.final,
            "epochs": self.epochs,
            "epochs_completed": self.epochs_completed,
            "epochs_run": self.epochs_run,
            "resumed_from": self.resumed_from,
            "completed": self.completed,
            "seed": self.seed,
            "device": self.device,
            "out_dir": str(self.out_dir) if self.out_dir is not None else None,
            "steps": self.steps,
            **({"dst_log": self.dst_log} if self.dst_log is not None else {}),
        }


def build_config(
    config: TrainConfig | None, overrides: Mapping[str, Any], what: str
) -> TrainConfig:
    """``config`` (default ``TrainConfig()``) with ``overrides`` (field names) applied.

    >>> build_config(None, {"epochs": 3}, "fit").epochs
    3
    """
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(
            f"pathnet.train.{what}: config must be a TrainConfig, got {type(config).__name__}"
        )
    unknown = sorted(set(overrides) - set(TrainConfig.field_names()))
    if unknown:
        raise TypeError(
            f"pathnet.train.{what}: unexpected keyword argument(s) {', '.join(unknown)}; "
            f"training options are {', '.join(TrainConfig.field_names())}"
        )
    base = config if config is not None else TrainConfig()
    return base.replace(**overrides) if overrides else base


def run_config(
    cfg: TrainConfig, *, mask: Mask | None, seed: int, amp: bool, n_train: int
) -> dict[str, Any]:
    """What a checkpoint records of its run: the config's fields, the milestones in
    force, the effective ``amp``, the mask's fingerprint, the seed and the data size."""
    return {
        **cfg.to_dict(),
        "milestones": list(cfg.resolved_milestones()),
        "amp": amp,
        "mask": mask_fingerprint(mask),
        "seed": seed,
        "n_train": n_train,
    }


@dataclass
class _Run:
    """One call of :func:`fit`, its arguments checked."""

    cfg: TrainConfig
    model: nn.Module
    mask: Mask | None
    train: DataLike
    test: DataLike | None
    dev: torch.device
    amp: bool
    seed: int
    out: Path | None
    saved: dict[str, Any] | None
    record: dict[str, Any]
    dst: DST | None = None

    @property
    def ckpt_path(self) -> Path | None:
        return self.out / CHECKPOINT_NAME if self.out is not None else None


def _prepare(
    model: nn.Module,
    mask: Mapping[str, Tensor] | None,
    train_data: Any,
    test_data: Any,
    cfg: TrainConfig,
    *,
    seed: SeedLike,
    device: Any,
    out_dir: str | Path | None,
    resume: bool,
    dst: DST | None = None,
) -> _Run:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{_PREFIX}: model must be a torch.nn.Module, got {type(model).__name__}")
    train = check_data(train_data, "train_data")
    test = check_data(test_data, "test_data") if test_data is not None else None
    dev = resolve_device(device)
    # On an accelerator the data sets are moved there once (they are preloaded tensors).
    train = to_device(train, dev)
    test = to_device(test, dev) if test is not None else None
    use_amp = cfg.amp
    if use_amp and dev.type != "cuda":
        warnings.warn(
            f"{_PREFIX}: amp=True needs CUDA; training in float32 on {dev}",
            RuntimeWarning,
            stacklevel=3,
        )
        use_amp = False
    m = None
    if mask is not None:
        # A private copy: the model may write into the tensors it is given (a resume does).
        m = own_copy(mask if isinstance(mask, Mask) else Mask(mask))
        m.check(model)
    if resume and out_dir is None:
        raise ValueError(f"{_PREFIX}: resume=True needs the out_dir of the run to resume")
    out = Path(out_dir) if out_dir is not None else None
    saved = None
    if resume and out is not None and (out / CHECKPOINT_NAME).exists():
        saved = load_checkpoint(out / CHECKPOINT_NAME)
    seed_int = int(saved["config"]["seed"]) if saved is not None and seed is None else None
    seed_int = resolve_seed(seed) if seed_int is None else seed_int
    record = run_config(cfg, mask=m, seed=seed_int, amp=use_amp, n_train=n_samples(train))
    if dst is not None:
        record["dst"] = check_dst(dst, cfg.mask_mode, m)
    if saved is not None:
        diff = config_diff(saved["config"], record, completed=saved["epoch"])
        if diff:
            raise ValueError(
                f"{_PREFIX}: the checkpoint in {str(out)!r} is of a run with other settings ("
                + "; ".join(diff)
                + "); use another out_dir, or resume=False to start over"
            )
    return _Run(cfg, model, m, train, test, dev, use_amp, seed_int, out, saved, record, dst)


def fit(
    model: nn.Module,
    mask: Mapping[str, Tensor] | None,
    train_data: DataLike,
    test_data: DataLike | None = None,
    *,
    config: TrainConfig | None = None,
    seed: SeedLike = None,
    device: str | torch.device | None = "auto",
    out_dir: str | Path | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    step_callback: Callable[[int, nn.Module], None] | None = None,
    progress: bool | str = True,
    log_every: int | None = None,
    dst: DST | None = None,
    **overrides: Any,
) -> FitResult:
    """Train ``model`` under ``mask`` with the PHEW paper's recipe.

    The model is modified in place: it is moved to ``device``, the mask is applied to it
    with :func:`pathnet.apply_mask` (pruned weights are set to zero and stay exactly zero;
    nothing else is re-initialised), and it is trained. Training draws its data order,
    augmentation and dropout from ``seed`` and leaves the caller's global random states
    (torch, numpy, python) as they were.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits ``[batch, classes]``.
    mask : Mask, mapping of str to bool tensor, or None
        The subnetwork to train; None trains densely (or keeps a mask already applied).
    train_data, test_data : Dataset or tuple (x, y) of tensors
        A :class:`pathnet.data.Dataset`, or float inputs with integer labels.
        ``test_data`` is evaluated after every epoch; optional.
    config : TrainConfig, optional
        The training hyper-parameters (default: the paper's recipe, ``TrainConfig()``).
    **overrides
        Any :class:`~pathnet.train.config.TrainConfig` field given by name replaces the
        config's: ``epochs`` (160), ``batch_size`` (128), ``lr``, ``momentum``,
        ``nesterov``, ``weight_decay`` (0.1, 0.9, True, 1e-4), ``milestones`` (epochs,
        0-based, at which the lr is multiplied by ``gamma``; default
        :meth:`TrainConfig.resolved_milestones`), ``gamma`` (0.1), ``mask_mode``
        (``"hard"``), ``amp``, ``augment``, ``eval_batch_size``. ``mask_mode`` says how
        the mask is applied (:func:`pathnet.apply_mask`); ``"hard"`` leaves plain
        ``weight`` parameters, so checkpoints load into an unmasked model and match those
        of :func:`pathnet.train.ddp.fit_ddp`, and it is the fastest. ``amp`` (float16
        mixed precision) needs CUDA and is ignored with a warning elsewhere. ``augment``
        (random crops and flips) defaults to :attr:`Dataset.default_augment`; tuples
        ``(x, y)`` are never augmented. On an accelerator, ``train_data`` and
        ``test_data`` are copied to its memory once, for the whole run.
    seed : int, numpy Generator or None
        Seed of data order, augmentation and dropout (and of the numpy and python
        generators during training). None draws one; it is in ``result.seed``.
    device : "auto", "cpu", "cuda", "cuda:N" or torch.device, default "auto"
        "auto" is CUDA when available. Results are bitwise reproducible on the CPU; on
        CUDA only if you also enable ``torch.use_deterministic_algorithms``.
    out_dir : str or pathlib.Path, optional
        Where ``metrics.csv``, ``metrics.json`` and ``checkpoint.pt`` are written
        (atomically, every epoch). None writes nothing.
    resume : bool, default False
        Continue from ``out_dir/checkpoint.pt`` when it exists (a finished run is
        returned as it is, its weights loaded into ``model``). ``model`` must be built
        the same way as for the interrupted run; its weights are replaced and the mask
        is applied again after loading (the checkpoint's own mask buffers never count).
        The settings must be the checkpoint's, except that a run may be extended: a
        larger ``epochs``, and milestones changed at epochs not yet trained (see
        :func:`pathnet.train.checkpoint.config_diff`); the remaining epochs follow the
        new schedule. Without ``resume`` an existing checkpoint is overwritten.
    stop_after : int, optional
        Stop once this many epochs (counted from the start of the run) are complete,
        leaving a checkpoint to resume from; ``result.completed`` is then False.
    callback : callable, optional
        ``callback(row)`` after every epoch, once its checkpoint is written; raising
        (e.g. ``KeyboardInterrupt``) aborts the run, which can then be resumed.
    step_callback : callable, optional
        ``step_callback(step, model)`` after every optimizer step, ``step`` counting
        from 1 over the whole run (used by IMP to rewind to iteration k).
    progress : bool or str, default True
        A tqdm progress bar on stderr; a string labels it (``pathnet imp`` passes
        ``"round k/N"``).
    log_every : int, optional
        Log the training loss and accuracy every ``log_every`` optimizer steps into
        ``result.steps`` (see :class:`FitResult`; the "learns fast" curves), kept in
        the checkpoint and written to ``out_dir/steps.csv``.
    dst : pathnet.train.DST, optional
        Dynamic sparse training: the mask changes every ``dst.every`` steps at a
        constant density per layer (:mod:`pathnet.train.dst`); needs a mask and
        ``mask_mode="hard"``. ``result.mask`` is the final mask, ``result.dst_log``
        the log of the updates; checkpoints hold the current mask, so a resumed run
        ends bitwise identical to an uninterrupted one.

    Returns
    -------
    FitResult
        History (per-epoch loss, train/test accuracy, lr, time), final metrics, model.

    Raises
    ------
    CheckpointError
        ``resume=True`` and the checkpoint is truncated, corrupt or not pathnet's.
    ValueError
        Bad arguments, or a checkpoint written with other settings (seed, fewer epochs,
        hyper-parameters, mask, data size).
    TypeError
        An unknown keyword argument.

    Examples
    --------
    >>> import torch, pathnet
    >>> from pathnet.train.fit import fit
    >>> model = pathnet.models.mlp([4, 8, 2], seed=0)
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 4, generator=g); y = (x[:, 1] > 0).long()
    >>> keep = {n: torch.rand(p.shape, generator=g) < 0.5
    ...         for n, p in pathnet.prunable_parameters(model).items()}
    >>> res = fit(model, keep, (x, y), epochs=2, seed=1, progress=False)
    >>> bool((model[1].weight[~keep["1.weight"]] == 0).all())
    True
    """
    cfg = build_config(config, overrides, "fit")
    if stop_after is not None and (isinstance(stop_after, bool) or int(stop_after) < 1):
        raise ValueError(f"{_PREFIX}: stop_after must be a positive integer, got {stop_after!r}")
    if log_every is not None and (
        isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1
    ):
        raise ValueError(
            f"{_PREFIX}: log_every must be a positive integer or None, got {log_every!r}"
        )
    run = _prepare(
        model,
        mask,
        train_data,
        test_data,
        cfg,
        seed=seed,
        device=device,
        out_dir=out_dir,
        resume=resume,
        dst=dst,
    )
    end = cfg.epochs if stop_after is None else min(cfg.epochs, int(stop_after))
    return _train(
        run,
        end,
        callback=callback,
        step_callback=step_callback,
        progress=progress,
        steps=_StepLog(log_every) if log_every else None,
    )


class _StepLog:
    """Windows of ``every`` optimizer steps: mean loss and accuracy, one row each."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.rows: list[dict[str, Any]] = []
        self.samples = 0
        self.epoch = 1
        self.last = 0
        self._reset()

    def _reset(self) -> None:
        self.loss, self.correct, self.n, self.k = 0.0, 0, 0, 0

    def __call__(self, step: int, loss: float, correct: int, n: int) -> None:
        self.loss += loss * n
        self.correct += correct
        self.n += n
        self.k += 1
        self.samples += n
        self.last = step
        if self.k == self.every:
            self.flush()

    def flush(self) -> None:
        """Close the open window (at an epoch's end)."""
        if self.n:
            self.rows.append(
                {
                    "step": self.last,
                    "epoch": self.epoch,
                    "samples": self.samples,
                    "train_loss": self.loss / self.n,
                    "train_acc": self.correct / self.n,
                }
            )
        self._reset()


def _train(
    run: _Run,
    end_epoch: int,
    *,
    callback: Callable[[dict[str, Any]], None] | None,
    step_callback: Callable[[int, nn.Module], None] | None,
    progress: bool | str,
    steps: _StepLog | None = None,
) -> FitResult:
    cfg, model, dev, saved = run.cfg, run.model, run.dev, run.saved
    model.to(dev)
    dyn = None
    if run.dst is not None:  # before the mask zeroes them: DSTRun keeps the initial weights
        dyn = DSTRun(run.dst, model, run.mask, saved=saved, path=run.ckpt_path)
    mask_now = dyn.mask if dyn is not None else run.mask
    if mask_now is not None:
        apply_mask(model, own_copy(mask_now), mode=cfg.mask_mode)
    if saved is not None:
        restore_model(model, saved, mask_now, cfg.mask_mode, run.ckpt_path)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler, scaler = make_optimizer(params, cfg, amp=run.amp)
    batches = make_batches(
        run.train, cfg.batch_size, shuffle=True, seed=run.seed, augment=cfg.augment, device=dev
    )
    with IsolatedRNG(dev):
        history: list[dict[str, Any]] = []
        start, step = 0, 0
        if saved is not None:
            history, start, step = _restore(run, optimizer, scheduler, scaler, batches)
            if steps is not None:
                steps.rows = [dict(r) for r in saved.get("steps") or []]
                steps.samples = steps.rows[-1]["samples"] if steps.rows else 0
        else:
            seed_everything(run.seed)
        if dyn is not None:
            dyn.attach(
                model,
                optimizer,
                total_steps=cfg.epochs * len(batches),
                steps_per_epoch=len(batches),
                step=step,
            )
        label = progress if isinstance(progress, str) else "fit"
        pbar = _progress_bar(bool(progress), (end_epoch - start) * len(batches), label)

        def on_step(k: int) -> None:
            if dyn is not None:
                dyn.on_step(k)
            if step_callback is not None:
                step_callback(k, model)
            if pbar is not None:
                pbar.update(1)

        try:
            for epoch in range(start, end_epoch):
                if steps is not None:
                    steps.epoch = epoch + 1
                row, step = run_epoch(
                    model,
                    batches,
                    optimizer,
                    scheduler,
                    epoch=epoch,
                    device=dev,
                    amp=run.amp,
                    scaler=scaler,
                    test=run.test,
                    eval_model=model,
                    eval_batch_size=cfg.eval_batch_size,
                    on_step=on_step,
                    step=step,
                    on_batch=steps,
                )
                if steps is not None:
                    steps.flush()
                history.append(row)
                _describe(pbar, row, cfg.epochs, label)
                if run.out is not None:
                    _save(run, history, step, optimizer, scheduler, scaler, steps, dyn)
                if callback is not None:
                    callback(dict(row))
        finally:
            if pbar is not None:
                pbar.close()
            if dyn is not None:
                dyn.close()

    done = len(history)
    return FitResult(
        history=copy.deepcopy(history),
        model=model,
        epochs=cfg.epochs,
        epochs_completed=done,
        epochs_run=done - start,
        resumed_from=start if saved is not None else None,
        completed=done >= cfg.epochs,
        seed=run.seed,
        device=str(dev),
        out_dir=run.out,
        steps=copy.deepcopy(steps.rows) if steps is not None else [],
        mask=dyn.mask if dyn is not None else run.mask,
        dst_log=copy.deepcopy(dyn.log) if dyn is not None else None,
    )


def _restore(
    run: _Run, optimizer: Any, scheduler: Any, scaler: Any, batches: Any
) -> tuple[list[dict[str, Any]], int, int]:
    """The checkpoint's optimizer, schedule, random and data-order states; its history."""
    saved = run.saved
    assert saved is not None
    cfg = run.cfg
    restore_training(
        saved,
        optimizer,
        scheduler,
        scaler,
        milestones=cfg.resolved_milestones(),
        gamma=cfg.gamma,
        path=run.ckpt_path,
    )
    with checkpoint_errors(run.ckpt_path):
        set_rng_state(saved["rng"], run.dev)
        batches.set_epoch(int(saved["rng"].get("data_epoch", saved["epoch"])))
    history = [dict(r) for r in saved["history"]]
    start = int(saved["epoch"])
    if run.out is not None:
        # A run killed between its checkpoint and its metrics files left them one epoch
        # behind; the checkpoint's history is complete, so write them from it.
        _write_metrics(run, history, start)
    return history, start, int(saved["step"])


def _save(
    run: _Run,
    history: list[dict[str, Any]],
    step: int,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    steps: _StepLog | None = None,
    dyn: DSTRun | None = None,
) -> None:
    """The checkpoint after epoch ``len(history)``, then the metrics files."""
    assert run.ckpt_path is not None
    done = len(history)
    rng = rng_state(run.dev)
    rng["data_epoch"] = done
    save_checkpoint(
        run.ckpt_path,
        {
            "epoch": done,
            "step": step,
            "config": run.record,
            "model": run.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng,
            "history": history,
            "steps": steps.rows if steps is not None else [],
            **({"dst": dyn.state_dict()} if dyn is not None else {}),
        },
    )
    _write_metrics(run, history, done)
    if steps is not None and run.out is not None:
        write_csv(steps.rows, run.out / "steps.csv")


def _write_metrics(run: _Run, history: list[dict[str, Any]], done: int) -> None:
    assert run.out is not None
    summary = {
        "config": run.record,
        "device": str(run.dev),
        "epochs_completed": done,
        "completed": done == run.cfg.epochs,
    }
    write_metrics(run.out, history, summary)


def _progress_bar(progress: bool, total: int, desc: str = "fit") -> Any:
    if not progress or total <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True)


def _describe(pbar: Any, row: Mapping[str, Any], epochs: int, label: str) -> None:
    if pbar is None:
        return
    epoch = f"{row['epoch']}/{epochs}"
    pbar.set_description(f"fit {epoch}" if label == "fit" else f"{label}, epoch {epoch}")
    post = {"loss": f"{row['train_loss']:.3f}", "acc": f"{row['train_acc']:.3f}"}
    if row["test_acc"] is not None:
        post["test"] = f"{row['test_acc']:.3f}"
    pbar.set_postfix(post)
