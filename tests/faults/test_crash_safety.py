"""Crash safety (issue 4.2): SIGKILL at any moment, even mid-write, never leaves an unreadable
``last.pt``; a corrupt checkpoint gives a clear error naming the file, and ``--resume auto``
falls back to the previous good one and finishes.

Real processes, real SIGKILL.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.protocol.errors import WeightsError
from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import REPO
from tests.faults.procs import engine_cmd, events, last_iter, new_run, proc_env, wait_until

# Writes last.pt over and over: 32 MB of one value per write, the write number beside it.
WRITER = """
import sys, time, torch
from engine.trainers.checkpoint import save_checkpoint
big = torch.empty(8_000_000)
i = 0
while True:
    i += 1
    big.fill_(float(i))
    t = time.perf_counter()
    save_checkpoint({"model": {"w": big}, "iter": i}, sys.argv[1])
    print(i, time.perf_counter() - t, flush=True)
"""


def test_sigkill_during_checkpoint_writes_never_leaves_an_unreadable_last_pt(
        tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    rng = random.Random(4)
    torn_writes = 0
    for kill in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO,
                                env=proc_env(), stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        done, seconds = proc.stdout.readline().split()  # one complete write first
        # Writes follow each other back to back, so a random moment within the next few
        # write times is almost always inside one (temp file written, fsync or rename).
        time.sleep(rng.uniform(0.0, 3 * float(seconds)))
        proc.send_signal(signal.SIGKILL)
        rest = proc.communicate()[0].split()
        completed = int(rest[-2]) if len(rest) >= 2 else int(done)

        state = load_checkpoint(path)  # must never raise
        w = state["model"]["w"]
        assert state["iter"] >= completed, f"kill {kill}: a completed write was lost"
        assert torch.equal(w, torch.full_like(w, float(state["iter"]))), \
            f"kill {kill}: last.pt mixes two writes"
        leftovers = list(path.parent.glob(".*.tmp"))
        torn_writes += bool(leftovers)
        for tmp in leftovers:  # what the engine removes when it next starts (see below)
            tmp.unlink()
    # The test is only worth something if kills did land inside writes.
    print(f"kills inside a write: {torn_writes}/4")
    assert torn_writes >= 1, "no kill landed during a write; make the state larger"


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run killed at iteration 6 of 2 x 4, with epoch_0001.pt (iter 4) kept and last.pt
    an interval checkpoint (iter 6)."""
    root = tmp_path_factory.mktemp("corrupt")
    data, run = root / "data", new_run(root / "runs", "run")
    cmd = engine_cmd(run, data, epochs=2, epoch_iter=4,
                     extra=("checkpoint_interval=2", "save_epoch_checkpoints=true"))
    proc = subprocess.Popen(cmd, cwd=REPO, env=proc_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: any(e["kind"] == "interval" and e["iter"] >= 6
                               for e in events(run, "checkpoint")),
                   timeout=120, proc=proc, what="the interval checkpoint at iteration 6")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return run, data


def test_corrupt_last_pt_is_a_clear_error_and_auto_resume_falls_back(
        killed_run: tuple[Path, Path]) -> None:
    run, data = killed_run
    last, epoch1 = run / "checkpoints" / "last.pt", run / "checkpoints" / "epoch_0001.pt"
    assert load_checkpoint(epoch1)["iter"] == 4
    # A stray temp file, as a kill during a write leaves it: removed on the next start.
    (run / "checkpoints" / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    size = last.stat().st_size
    with open(last, "r+b") as f:  # torn in place, as a disk or a careless copy would
        f.truncate(size // 2)

    with pytest.raises(WeightsError) as info:
        load_checkpoint(last)
    assert str(last) in info.value.render() and "not a readable checkpoint" in str(info.value)

    code = subprocess.run(
        engine_cmd(run, data, "--resume", "auto", epochs=2, epoch_iter=4,
                   extra=("checkpoint_interval=2", "save_epoch_checkpoints=true")),
        cwd=REPO, env=proc_env(), capture_output=True, text=True, timeout=180)
    assert code.returncode == 0, code.stderr[-3000:]
    warnings = [e["message"] for e in events(run, "log") if e.get("level") == "warning"]
    assert any(str(last) in m for m in warnings), warnings
    start = events(run, "start")[-1]
    assert start["resume_from"] == str(epoch1) and start["start_iter"] == 4
    assert last_iter(run) == 8 and load_checkpoint(last)["iter"] == 8
    assert events(run, "status")[-1]["status"] == "finished"
    assert not list((run / "checkpoints").glob(".*.tmp"))
