"""Data-parallel training: two CPU processes (gloo) against one process on the same batches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pathnet
from pathnet import Mask, models
from pathnet.cli import add_ddp_arguments
from pathnet.train.ddp import distributed, fit_ddp
from pathnet.train.fit import fit

WORLD = 2
SETTINGS = {
    "epochs": 3,
    "batch_size": 24,  # global: 12 per rank
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "seed": 5,
    "progress": False,
}


def problem() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A separable 4-class problem: 240 training samples (10 steps of 24), 101 test samples."""
    w = torch.randn(10, 4, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(341, 10, generator=torch.Generator().manual_seed(0))
    y = (x @ w).argmax(1)
    return (x[:240], y[:240]), (x[240:], y[240:])


def metrics(history: list[dict]) -> list[dict]:
    """History rows without their wall-clock time."""
    return [{k: v for k, v in row.items() if k != "time_s"} for row in history]


def net() -> torch.nn.Module:
    return models.mlp([10, 32, 16, 4], seed=0)


def half_mask(model: torch.nn.Module) -> Mask:
    g = torch.Generator().manual_seed(7)
    return Mask(
        {
            n: torch.rand(p.shape, generator=g) < 0.5
            for n, p in pathnet.prunable_parameters(model).items()
        }
    )


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        train, test = problem()
        calls: list[int] = []
        error = None
        try:
            fit_ddp(net(), lambda m: 1 / 0, train, test, **SETTINGS)
        except Exception as exc:
            error = type(exc).__name__

        def choose(model: torch.nn.Module) -> Mask:
            calls.append(rank)
            return half_mask(model)

        model = net()
        res = fit_ddp(model, choose, train, test, out_dir=Path(out) / "full", **SETTINGS)
        # Interrupted after one epoch, then resumed: only rank 0's mask argument counts.
        fit_ddp(net(), half_mask if rank == 0 else None, train, test,
                out_dir=Path(out) / "resumed", stop_after=1, **SETTINGS)  # fmt: skip
        resumed_model = net()
        resumed = fit_ddp(resumed_model, half_mask if rank == 0 else None, train, test,
                          out_dir=Path(out) / "resumed", resume=True, **SETTINGS)  # fmt: skip
        torch.save(
            {
                "state": {k: v.clone() for k, v in model.state_dict().items()},
                "resumed_state": resumed_model.state_dict(),
                "calls": calls,
                "error": error,
                "history": res.history,
                "resumed_from": resumed.resumed_from,
                "resumed_history": resumed.history,
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(WORLD, str(tmp_path / "pg"), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]

    # A failure on rank 0 is raised on every rank instead of leaving the others waiting.
    assert ranks[0]["error"] == "ZeroDivisionError" and ranks[1]["error"] == "RuntimeError"

    # The mask was chosen once, on rank 0; both ranks end with the same weights and
    # metrics; pruned weights are exactly zero, kept ones are not.
    assert ranks[0]["calls"] == [0] and ranks[1]["calls"] == []
    for k in ranks[0]["state"]:
        assert torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]), k
    assert metrics(ranks[0]["history"]) == metrics(ranks[1]["history"])
    for name, kept in half_mask(net()).items():
        w = ranks[0]["state"][name]
        assert torch.all(w[~kept] == 0), name
        assert torch.count_nonzero(w[kept]) == int(kept.sum()), name

    # 2 ranks x 12 samples follow 1 process x 24 samples on the same batches.
    model = net()
    single = fit(model, half_mask(model), *problem(), device="cpu", **SETTINGS)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][k], v, rtol=0, atol=1e-5)
    for a, b in zip(ranks[0]["history"], single.history):
        assert a["epoch"] == b["epoch"] and a["lr"] == pytest.approx(b["lr"])
        for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key

    # Interrupted after epoch 1 and resumed: bitwise the uninterrupted run.
    assert ranks[0]["resumed_from"] == 1
    for k, v in ranks[0]["state"].items():
        assert torch.equal(ranks[0]["resumed_state"][k], v), k
    assert metrics(ranks[0]["resumed_history"]) == metrics(ranks[0]["history"])

    # Rank 0 wrote fit's metrics files and checkpoint.
    doc = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert doc["epochs_completed"] == 3 and doc["completed"] is True
    assert doc["config"]["world_size"] == WORLD
    assert len((tmp_path / "full" / "metrics.csv").read_text().splitlines()) == 1 + 3
    assert (tmp_path / "full" / "checkpoint.pt").is_file()


def test_fit_ddp_needs_a_process_group() -> None:
    train, _ = problem()
    with pytest.raises(ValueError, match="process group"):
        fit_ddp(net(), None, train, epochs=1)


def test_distributed_without_torchrun_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="torchrun"), distributed():
        pass


def test_ddp_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_ddp_arguments(parser)
    args = parser.parse_args(["--ddp", "--method", "phew", "--density", "0.1", "--backend", "gloo"])
    assert args.ddp and args.method == "phew" and args.density == 0.1 and args.mask_seed is None
    for action in parser._actions:
        assert action.help, action.dest
