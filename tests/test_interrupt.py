"""Interruption: SIGKILL at random points loses no finished work and changes no result.

``pathnet train`` and ``pathnet sweep`` run in subprocesses that are killed after random
delays (drawn from a seeded generator), then resumed; the final weights and metrics must
be bitwise those of a run that was never interrupted (training on the CPU is bitwise
reproducible under resume), no finished epoch or trial may be redone or lost, and after
every kill every file present must parse (writes are atomic: only hidden ``*.tmp`` files
of a write in progress may be left behind).

Both use a small synthetic Fashion-MNIST written as IDX files, so nothing needs the real
data set.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pathnet import Mask
from pathnet.train.fit import CHECKPOINT_NAME, fit, load_checkpoint
from tests.strategies import write_fashion

ROOT = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    """One thread everywhere: the runs compared must share the thread count."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env.pop("PATHNET_DATA", None)
    return env


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run in this process as the children do: one torch (and numba) thread."""
    import numba

    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)


def reference_run(argv: list[str]) -> float:
    """``pathnet ARGV`` run to the end in this process, with one thread; its wall time."""
    from pathnet.cli import main

    t0 = time.monotonic()
    sink = io.StringIO()
    with one_thread(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        assert main(argv) == 0
    return time.monotonic() - t0


#: Roughly how long a child process takes to import torch and pathnet.
STARTUP_S = 3.0


def run_to_end(cmd: list[str], timeout: float = 300) -> float:
    """Run ``cmd`` to completion; returns its wall time."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.monotonic() - t0


def run_and_kill(cmd: list[str], ready: Callable[[], bool], delay: float) -> bool:
    """Start ``cmd``; once ``ready()`` holds, SIGKILL its process group after ``delay`` s.

    Returns True if it was killed, False if it finished first.
    """
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 300
    while proc.poll() is None and not ready():
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.01)
    try:
        _, err = proc.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        return True
    assert proc.returncode == 0, err.decode()[-3000:]
    return False


# ------------------------------------------------------------------ whole files
def check_files_whole(folder: Path) -> list[str]:
    """Every file under ``folder`` parses; returns the names of leftover temporary files."""
    temps = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.name
        if name.endswith(".tmp"):
            assert name.startswith("."), path  # atomic_write_bytes' hidden temporaries
            temps.append(str(path.relative_to(folder)))
            continue
        if name.endswith(".lock") or "submitit" in path.parts:
            continue
        if path.suffix == ".json":
            assert isinstance(json.loads(path.read_text()), dict), path
        elif path.suffix == ".jsonl":
            lines = path.read_text().splitlines()
            assert all(isinstance(json.loads(line), dict) for line in lines), path
        elif path.suffix == ".csv":
            with path.open(newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path
        elif path.suffix == ".npz":
            Mask.load(path)
        elif path.suffix == ".pt":
            load_checkpoint(path)
        elif path.suffix == ".txt":
            path.read_text()
        else:
            raise AssertionError(f"unexpected file {path}")
    return temps


def epochs_done(run: Path) -> int:
    path = run / CHECKPOINT_NAME
    return int(load_checkpoint(path)["epoch"]) if path.exists() else 0


def strip_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def metrics_rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as fh:
        return strip_time(list(csv.DictReader(fh)))


# ------------------------------------------------------------------ pathnet train
def train_argv(data: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "mlp", "--data-root", str(data), "--epochs", str(epochs),
            "--batch-size", "50", "--lr", "0.05", "--seed", "3", "--device", "cpu",
            "--out", str(out), "--resume"]  # fmt: skip


def train_cmd(data: Path, out: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "pathnet.cli", *train_argv(data, out, epochs)]


def check_train_kills(tmp_path: Path, *, kills: int, seed: int, n: int, epochs: int) -> None:
    """Kill at random points: the first any time after the start, the others at a random
    epoch (drawn) plus a random fraction of an epoch (checkpoint writes included)."""
    data = write_fashion(tmp_path / "data" / "fashion-mnist", n, gz=False).parent
    ref = tmp_path / "reference"
    total = STARTUP_S + reference_run(train_argv(data, ref, epochs))
    epoch_s = max(r["time_s"] for r in json.loads((ref / "metrics.json").read_text())["history"])
    run = tmp_path / "killed"
    rng = np.random.default_rng(seed)
    done, killed = 0, 0
    for k in range(kills):
        if k == 0:
            ready, delay = (lambda: True), rng.uniform(0.2, 1.0) * total
        elif done >= epochs:
            break
        else:  # during the epoch after a drawn one, or while its checkpoint is written
            target = int(rng.integers(done + 1, epochs + 1))
            ready, delay = (lambda t=target: epochs_done(run) >= t), rng.uniform(0, 1.2) * epoch_s
        was_killed = run_and_kill(train_cmd(data, run, epochs), ready, delay)
        killed += was_killed
        temps = check_files_whole(run) if run.exists() else []
        now = epochs_done(run)
        assert now >= done  # a finished epoch is never lost
        print(f"kill {k}: delay {delay:.2f} s, killed {was_killed}, epochs {done} -> {now}, "
              f"temporary files left {temps}")  # fmt: skip
        done = now
    run_to_end(train_cmd(data, run, epochs))
    assert killed >= 1
    assert epochs_done(run) == epochs
    assert_same_weights(run / CHECKPOINT_NAME, ref / CHECKPOINT_NAME)
    assert metrics_rows(run) == metrics_rows(ref)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (run, ref))
    assert a["completed"] and a["epochs_completed"] == epochs
    assert strip_time(a["history"]) == strip_time(b["history"])


def test_killed_train_resumes_to_the_same_weights(tmp_path):
    check_train_kills(tmp_path, kills=3, seed=0, n=2000, epochs=4)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_train_resumes_to_the_same_weights_many(tmp_path, seed):
    check_train_kills(tmp_path, kills=8, seed=seed, n=6000, epochs=6)


def test_metrics_behind_the_checkpoint_are_rewritten_on_resume(tmp_path):
    """A kill between the checkpoint and the metrics files leaves them an epoch behind."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long()
    opts = {"epochs": 3, "batch_size": 16, "seed": 0, "progress": False, "device": "cpu"}

    def model():
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))

    full = fit(model(), None, (x, y), out_dir=tmp_path / "a", **opts)
    fit(model(), None, (x, y), out_dir=tmp_path / "b", stop_after=2, **opts)
    for name in ("metrics.csv", "metrics.json"):  # the last epoch's metrics never written
        (tmp_path / "a" / name).write_bytes((tmp_path / "b" / name).read_bytes())
    again = fit(model(), None, (x, y), out_dir=tmp_path / "a", resume=True, **opts)
    assert again.epochs_run == 0 and again.completed
    doc = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert doc["completed"] and doc["epochs_completed"] == 3
    assert strip_time(doc["history"]) == strip_time(full.history)
    assert [int(r["epoch"]) for r in metrics_rows(tmp_path / "a")] == [1, 2, 3]


def tiny_fit(out: Path) -> None:
    """Three epochs of a small MLP on synthetic tensors, checkpointed in ``out``."""
    with torch.random.fork_rng(devices=[]), one_thread():
        torch.manual_seed(0)  # the model's initial weights
        g = torch.Generator().manual_seed(0)
        x = torch.randn(256, 8, generator=g)
        y = (x[:, 0] > 0).long()
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        fit(model, None, (x, y), epochs=3, batch_size=32, seed=0, device="cpu", progress=False,
            out_dir=out, resume=True)  # fmt: skip


_SLOW_DISK = """
import os, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.test_interrupt import tiny_fit

calls = []
real_fsync = os.fsync

def fsync(fd):  # a slow disk from the 4th write on: epoch 2's checkpoint
    calls.append(fd)
    if len(calls) >= 4:
        time.sleep(60)  # killed here, its data written, before os.replace
    real_fsync(fd)

os.fsync = fsync
tiny_fit(Path({out!r}))
"""


def test_kill_in_the_middle_of_a_write_keeps_the_last_whole_file(tmp_path):
    """A kill between writing a checkpoint's temporary file and renaming it into place."""
    out = tmp_path / "run"
    code = _SLOW_DISK.format(root=str(ROOT), out=str(out))

    def temp_written() -> bool:
        return any(out.glob(".checkpoint.pt.*.tmp"))

    assert run_and_kill([sys.executable, "-c", code], temp_written, 0.2)
    temps = check_files_whole(out)  # the previous checkpoint and metrics, whole
    assert len(temps) == 1 and temps[0].startswith(".checkpoint.pt.")
    assert epochs_done(out) == 1
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] == 1

    tiny_fit(out)  # resume here
    tiny_fit(tmp_path / "reference")
    assert epochs_done(out) == 3
    assert_same_weights(out / CHECKPOINT_NAME, tmp_path / "reference" / CHECKPOINT_NAME)
    assert metrics_rows(out) == metrics_rows(tmp_path / "reference")


# ------------------------------------------------------------------ pathnet sweep
def sweep_file(path: Path, epochs: int, methods: list[str]) -> Path:
    path.write_text(
        "\n".join(
            [
                "[grid]",
                f"method = {json.dumps(methods)}",
                "density = [0.1]",
                "seed = [0, 1]",
                "[fixed]",
                'model = "mlp"',
                'dataset = "fashion-mnist"',
                f"epochs = {epochs}",
                "batch_size = 50",
                "lr = 0.05",
                "train_subset = 1000",
                "test_subset = 200",
                "[method_options.synflow_l2]",
                "iterations = 5",
            ]
        )
        + "\n"
    )
    return path


def sweep_argv(cfg: Path, out: Path, data: Path) -> list[str]:
    return ["sweep", str(cfg), "--out", str(out), "--data-root", str(data), "--threads", "1",
            "--device", "cpu"]  # fmt: skip


def sweep_cmd(cfg: Path, out: Path, data: Path) -> list[str]:
    return [sys.executable, "-m", "pathnet.cli", *sweep_argv(cfg, out, data)]


def finished(sweep: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.parent.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in (sweep / "trials").glob("*/result.json")
    }


def check_sweep_kills(tmp_path: Path, *, kills: int, seed: int, epochs: int) -> None:
    """Kill at random points: the first any time after the start, the others once a drawn
    number of trials has finished, after a random fraction of a trial's time."""
    from pathnet.select.registry import METHODS, _load_builtin_methods

    _load_builtin_methods()
    methods = [m for m in ("phew", "synflow_l2", "random") if m in METHODS][:2]
    data = write_fashion(tmp_path / "data" / "fashion-mnist", 1200, gz=False).parent
    cfg = sweep_file(tmp_path / "s.toml", epochs, methods)
    ref = tmp_path / "reference"
    total = STARTUP_S + reference_run(sweep_argv(cfg, ref, data))
    expected = {p.parent.name: json.loads(p.read_text()) for p in ref.glob("trials/*/result.json")}
    trial_s = max(doc["seconds"] for doc in expected.values())
    out = tmp_path / "killed"
    rng = np.random.default_rng(seed)
    seen: dict[str, tuple[bytes, int]] = {}
    killed = 0
    for k in range(kills):
        if k == 0:
            ready, delay = (lambda: True), rng.uniform(0.2, 1.0) * total
        elif len(seen) >= len(expected):
            break
        else:  # during the trial after a drawn number of finished ones
            target = int(rng.integers(len(seen), len(expected)))
            ready, delay = (lambda t=target: len(finished(out)) >= t), rng.uniform(0, 1.2) * trial_s
        was_killed = run_and_kill(sweep_cmd(cfg, out, data), ready, delay)
        killed += was_killed
        temps = check_files_whole(out) if out.exists() else []
        now = finished(out)
        for name, stamp in seen.items():  # a finished trial is never redone or lost
            assert now.get(name) == stamp, name
        print(f"kill {k}: delay {delay:.2f} s, killed {was_killed}, finished trials "
              f"{len(seen)} -> {len(now)}, temporary files left {temps}")  # fmt: skip
        seen = now
    run_to_end(sweep_cmd(cfg, out, data))
    assert killed >= 1
    for name, stamp in seen.items():
        assert finished(out)[name] == stamp, name
    check_files_whole(out)

    results = {p.parent.name: json.loads(p.read_text()) for p in out.glob("trials/*/result.json")}
    assert set(results) == set(expected) and len(results) == 2 * len(methods)
    for name, doc in results.items():
        want = expected[name]
        assert doc["epochs_completed"] == want["epochs_completed"] == epochs
        assert strip_time(doc["history"]) == strip_time(want["history"]), name
        assert {k: v for k, v in doc["final"].items() if k != "time_s"} == {
            k: v for k, v in want["final"].items() if k != "time_s"
        }
        assert doc["mask"] == want["mask"]
        assert_same_weights(out / "trials" / name / CHECKPOINT_NAME,
                            ref / "trials" / name / CHECKPOINT_NAME)  # fmt: skip
    for mask in ref.glob("masks/*.npz"):
        assert Mask.load(out / "masks" / mask.name) == Mask.load(mask)


def test_killed_sweep_resumes_to_the_same_results(tmp_path):
    check_sweep_kills(tmp_path, kills=3, seed=0, epochs=3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_sweep_resumes_to_the_same_results_many(tmp_path, seed):
    check_sweep_kills(tmp_path, kills=8, seed=seed, epochs=4)
