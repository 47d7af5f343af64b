"""Issue 19.2: a headless console that gets SIGTERM (``timeout``, a job runner) or SIGHUP
(its terminal closed) stops its run as Ctrl-C does: the engine finishes its step, writes a
checkpoint and ends ``interrupted``, and the console exits 143 / 129 instead of dying and
leaving the training running unwatched. ``--detach`` starts a run and returns at once.

Real ``dettui run --headless`` processes, real signals, a real engine under them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from engine.protocol.ownership import process_start_time
from engine.protocol.rundir import RunDirectory, pid_alive
from tests.conftest import DEMO_CONFIG
from tests.faults.procs import (
    as_opts,
    dettui_cmd,
    events,
    last_iter,
    overrides,
    proc_env,
    start,
    wait_until,
)

LONG = {"epochs": 1, "epoch_iter": 10_000}  # never ends by itself within the test


def only_run(runs: Path) -> Path:
    found = [p for p in runs.iterdir() if (p / "run.json").exists()] if runs.is_dir() else []
    return found[0] if len(found) == 1 else None  # type: ignore[return-value]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_to_headless_console_stops_the_run_cleanly(tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    runs = tmp_path / "runs"
    out = (tmp_path / "console.out").open("w")
    console = start(dettui_cmd("run", str(DEMO_CONFIG), "--headless", "--no-eval",
                               "--runs-dir", str(runs),
                               *as_opts(overrides(tmp_path / "data", **LONG))),
                    stdout=out, stderr=subprocess.STDOUT)
    engine = None
    try:
        run = wait_until(lambda: only_run(runs), timeout=60, what="the run folder",
                         proc=console)
        wait_until(lambda: last_iter(run) >= 2, timeout=120, what="iteration 2", proc=console)
        engine = json.loads((run / "run.json").read_text())["pid"]
        at = last_iter(run)
        console.send_signal(sig)
        code = console.wait(timeout=60)
        engine_left = pid_alive(engine, process_start_time(engine))
    finally:
        if console.poll() is None:
            console.kill()
        out.close()
        if engine is not None and pid_alive(engine, process_start_time(engine)):
            os.kill(engine, signal.SIGKILL)  # never leave a failed test's engine training
    text = (tmp_path / "console.out").read_text()
    assert not engine_left, "the engine trains on, unwatched"
    assert code == 128 + sig, text
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted", meta
    assert RunDirectory(run).effective_status() == "interrupted"
    ckpt = [e for e in events(run, "checkpoint") if e["kind"] == "last"]
    assert ckpt and ckpt[-1]["iter"] == last_iter(run) >= at  # the step finished, then saved
    if sig == signal.SIGTERM:  # the console's summary is written to the end
        assert "SIGTERM: stopping after this step" in text and "resume with" in text
    else:  # its terminal is gone: nothing more is written to it
        assert "stopping after this step" not in text


def test_detach_starts_the_run_and_returns(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.run(dettui_cmd("run", str(DEMO_CONFIG), "--detach", "--no-eval",
                                     "--runs-dir", str(runs),
                                     *as_opts(overrides(tmp_path / "data", **LONG))),
                          env=proc_env(), capture_output=True, text=True, timeout=120)
    run = only_run(runs)
    assert run is not None, proc.stdout + proc.stderr
    try:
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].startswith("TrainDataset: generating the shapes dataset")  # 19.7
        assert any(line.startswith(f"started {run.name} (pid ") for line in lines), lines
        assert f"dettui attach {run.name} --runs-dir {runs}" in proc.stdout
        # It trains on after the command returned
        wait_until(lambda: last_iter(run) >= 1, timeout=120, what="iteration 1")
        assert RunDirectory(run).effective_status() == "running"
    finally:
        stop = subprocess.run(dettui_cmd("stop", run.name, "--runs-dir", str(runs)),
                              env=proc_env(), capture_output=True, text=True, timeout=60)
        wait_until(lambda: RunDirectory(run).effective_status() == "interrupted",
                   timeout=60, what="the stop")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    both = subprocess.run(dettui_cmd("run", str(DEMO_CONFIG), "--detach", "--headless",
                                     "--runs-dir", str(runs)),
                          env=proc_env(), capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "choose one" in both.stderr, both.stderr
