"""Graceful stop (issue 4.3): SIGINT/SIGTERM finish the step, write a checkpoint, mark the run
``interrupted`` and exit 130 within 30 s; ``dettui stop RUN`` does it from another shell;
SIGUSR1 writes a checkpoint and training goes on.

Real engine processes, real signals; the stop latency is measured and printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.protocol.rundir import RunDirectory
from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import DEMO_CONFIG, REPO
from tests.faults.procs import (
    dettui_cmd,
    engine_cmd,
    events,
    last_iter,
    new_run,
    overrides,
    proc_env,
    start,
    wait_iter,
)

STOP_LIMIT_S = 30.0
LONG = {"epochs": 1, "epoch_iter": 10_000}  # never ends by itself within the test


def assert_interrupted_with_checkpoint(run: Path, signalled_at_iter: int) -> None:
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["exit_code"] == 130, meta
    ckpt = [e for e in events(run, "checkpoint") if e["kind"] == "last"]
    assert ckpt, "no checkpoint written on the way out"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    # The step in flight when the signal came was finished and saved, nothing after it.
    assert state["iter"] == ckpt[-1]["iter"] == last_iter(run) >= signalled_at_iter
    last_status = events(run, "status")[-1]
    assert last_status["status"] == "interrupted"
    assert last_status["message"] == "stopped by a signal after a checkpoint"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_after_the_step_with_a_checkpoint(tmp_path: Path,
                                                        sig: signal.Signals) -> None:
    run = new_run(tmp_path / "runs", "run")
    proc = start(engine_cmd(run, tmp_path / "data", **LONG))
    wait_iter(run, 2, proc)
    at = last_iter(run)
    t0 = time.monotonic()
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    latency = time.monotonic() - t0
    print(f"{sig.name}: exit {code} after {latency:.2f}s")
    assert code == 130
    assert latency < STOP_LIMIT_S
    assert_interrupted_with_checkpoint(run, at)


def test_dettui_stop_stops_a_detached_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    from tui.process.launcher import launch
    from tui.process.spec import LaunchSpec

    monkeypatch.chdir(REPO)
    for key, value in proc_env().items():
        monkeypatch.setenv(key, value)
    runs = tmp_path / "runs"
    run, proc = launch(LaunchSpec(config=DEMO_CONFIG, runs_dir=runs, eval=False,
                                  overrides=overrides(tmp_path / "data", **LONG)))
    wait_iter(run.path, 2, proc)
    at = last_iter(run.path)
    t0 = time.monotonic()
    out = subprocess.run(dettui_cmd("stop", run.id, "--runs-dir", str(runs)), cwd=REPO,
                         env=proc_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"asked {run.id} to stop" in out.stdout
    code = proc.wait(timeout=60)
    latency = time.monotonic() - t0
    print(f"dettui stop: engine exit {code} after {latency:.2f}s (CLI start included)")
    assert code == 130 and latency < STOP_LIMIT_S
    assert_interrupted_with_checkpoint(run.path, at)
    assert RunDirectory(run.path).effective_status() == "interrupted"
    again = subprocess.run(dettui_cmd("stop", run.id, "--runs-dir", str(runs)), cwd=REPO,
                           env=proc_env(), capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "not running" in again.stdout


def test_sigusr1_checkpoints_and_training_goes_on(tmp_path: Path) -> None:
    run = new_run(tmp_path / "runs", "run")
    proc = start(engine_cmd(run, tmp_path / "data", epochs=1, epoch_iter=12))
    wait_iter(run, 2, proc)
    os.kill(proc.pid, signal.SIGUSR1)
    assert proc.wait(timeout=120) == 0
    ckpts = events(run, "checkpoint")
    mid = [e for e in ckpts if e["kind"] == "last" and e["iter"] < 12]
    assert mid, f"no checkpoint after SIGUSR1: {ckpts}"
    trained_after = [e for e in events(run, "train") if e["iter"] > mid[0]["iter"]]
    assert trained_after and trained_after[-1]["iter"] == 12
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iter"] == 12


def test_engine_main_puts_signal_handlers_back(tmp_path: Path) -> None:
    """In-process callers (tests, tools) must not inherit an ignored SIGUSR1: every child
    they start later would inherit it too, and bash cannot trap an inherited-ignored one."""
    from engine.main import main

    before = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)
    assert main(["shapes", str(tmp_path / "shapes"), "--train", "1", "--val", "1",
                 "--image-size", "64"]) == 0
    assert (signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGTERM)) == before
