"""The crash supervisor (issue 4.4), through the real launcher: ``--max-restarts`` relaunches
a SIGKILLed engine from its last checkpoint (same run id, same events.jsonl, attempts
counted), but not after bad input (exit 2) nor after a crash that repeats at the same
iteration.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import DEMO_CONFIG, REPO
from tests.faults.procs import events, last_iter, overrides, proc_env, wait_until


@pytest.fixture
def launch_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launcher spawns from this process: give it the test environment, a short
    restart backoff (DETTUI_RESTART_BACKOFF) and the repo as working directory."""
    monkeypatch.chdir(REPO)
    for key, value in proc_env(DETTUI_RESTART_BACKOFF="0.2").items():
        monkeypatch.setenv(key, value)


def launch(tmp_path: Path, max_restarts: int, *, weights: str | None = None, **kw):
    from tui.process.launcher import launch
    from tui.process.spec import LaunchSpec

    return launch(LaunchSpec(config=DEMO_CONFIG, runs_dir=tmp_path / "runs", eval=False,
                             max_restarts=max_restarts, weights=weights,
                             overrides=overrides(tmp_path / "data", **kw)))


def meta(run) -> dict:
    return json.loads(run.run_json.read_text())


def supervisor_lines(run) -> list[str]:
    return [e["message"] for e in events(run.path, "log")
            if e["message"].startswith("supervisor:")]


def test_killed_engine_is_restarted_from_its_checkpoint(tmp_path: Path, launch_env: None
                                                        ) -> None:
    run, proc = launch(tmp_path, 2, epochs=2, epoch_iter=5,
                       extra=("checkpoint_interval=2",))
    assert "--backoff" in meta(run)["command"]
    wait_until(lambda: any(e["iter"] >= 4 for e in events(run.path, "checkpoint")),
               timeout=120, proc=proc, what="a checkpoint at iteration 4")
    first_pid = meta(run)["engine_pid"]
    assert first_pid != proc.pid  # the supervisor's child, not the supervisor
    os.kill(first_pid, signal.SIGKILL)
    assert proc.wait(timeout=180) == 0

    m = meta(run)
    assert m["status"] == "finished" and m["exit_code"] == 0
    assert m["attempt"] == 2 and m["restarts"] == 1 and m["engine_pid"] != first_pid
    assert [p.name for p in run.path.parent.iterdir()] == [run.id]  # one run, same id
    starts = events(run.path, "start")  # both attempts in the one events.jsonl
    assert len(starts) == 2 and starts[0]["resume_from"] is None
    assert starts[1]["resume_from"].endswith("last.pt") and starts[1]["start_iter"] >= 4
    assert any("killed by SIGKILL; restart 1/2" in line for line in supervisor_lines(run))
    assert last_iter(run.path) == 10
    assert load_checkpoint(run.path / "checkpoints" / "last.pt")["iter"] == 10
    assert "resumed from" in (run.path / "train.log").read_text()


def test_bad_input_is_not_restarted(tmp_path: Path, launch_env: None) -> None:
    weights = tmp_path / "corrupt.pt"
    weights.write_bytes(b"PK\x03\x04 not a checkpoint at all")  # passes the front-end sniff
    run, proc = launch(tmp_path, 2, weights=str(weights))
    assert proc.wait(timeout=120) == 2
    m = meta(run)
    assert m["status"] == "failed" and m["exit_code"] == 2 and m["attempt"] == 1
    errors = events(run.path, "error")
    assert len(errors) == 1 and errors[0]["user_error"] and str(weights) in errors[0]["message"]
    assert not supervisor_lines(run)


def test_crash_at_the_same_iteration_again_is_not_restarted(tmp_path: Path,
                                                            launch_env: None) -> None:
    # enable_ce makes the resumed run repeat the first exactly, and an absurd learning
    # rate without clipping makes the loss non-finite within a few steps: the same step.
    run, proc = launch(tmp_path, 3, epoch_iter=30, extra=(
        "enable_ce=true", "OptimizerBuilder.type=SGD", "LearningRate.base_lr=1e12",
        "LearningRate.warmup_iters=0", "OptimizerBuilder.clip_grad_norm=0",
        "checkpoint_interval=1"))
    assert proc.wait(timeout=180) == 1
    errors = events(run.path, "error")
    assert [e["error_type"] for e in errors] == ["NonFiniteLoss", "NonFiniteLoss"]
    assert errors[0]["iter"] == errors[1]["iter"]
    m = meta(run)
    assert m["status"] == "failed" and m["attempt"] == 2 and m["restarts"] == 1  # not 3
    lines = supervisor_lines(run)
    assert any("restart 1/3" in line for line in lines)
    assert any(f"at iteration {errors[0]['iter']} again: a deterministic crash" in line
               for line in lines), lines
