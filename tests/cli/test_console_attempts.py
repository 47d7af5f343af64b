"""Issue 19.10 (console part) and 19.16 (console/CLI wording): the headless console and
``attach`` replay a run's attempts as they happened. An earlier attempt that was
interrupted says so, where it stood and why; the next attempt's progress line never shows
the last attempt's numbers; counts are singular where they are one; the summary's
checkpoints are both absolute; ``--help`` shows no ``<bool>`` on plain flags; a missing
run names the folder it was looked for in."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from engine.protocol.events import EventWriter
from engine.protocol.rundir import RunDirectory
from tests.conftest import REPO, engine_env
from tui.cli.headless import HeadlessWatcher


def _console() -> Console:
    return Console(file=io.StringIO(), width=200, color_system=None, soft_wrap=True)


def _train(it: int, loss: float) -> dict:
    return {"type": "train", "epoch": 0, "iter": it, "max_iters": 10, "loss": loss,
            "losses": {"cls": loss}, "lr": 0.1, "ips": 5.0, "eta": 60}


ATTEMPT_1 = [{"type": "status", "status": "running", "message": ""},
             {"type": "start", "trainer": "Trainer", "device": "cpu", "epochs": 1,
              "iters_per_epoch": 10, "max_iters": 10, "start_iter": 0, "train_images": 16,
              "eval_images": 1},
             _train(5, 2.5),
             # the stop checkpointed the step in flight, two after the last logged one
             {"type": "checkpoint", "path": "checkpoints/last.pt", "kind": "last",
              "epoch": 0, "iter": 7},
             {"type": "status", "status": "interrupted",
              "message": "stopped by a signal after a checkpoint"}]
ATTEMPT_2 = [{"type": "status", "status": "running", "message": ""},
             {"type": "start", "trainer": "Trainer", "device": "cpu", "epochs": 1,
              "iters_per_epoch": 10, "max_iters": 10, "start_iter": 7, "train_images": 16,
              "eval_images": 1, "resume_from": "checkpoints/last.pt"}]


def _render(watcher: HeadlessWatcher) -> str:
    console = _console()
    console.print(watcher._renderable())
    return console.file.getvalue()


def test_replay_says_an_attempt_was_interrupted_and_drops_its_progress_line(tmp_path: Path
                                                                            ) -> None:
    run = RunDirectory.create(tmp_path, run_id="r")
    watcher = HeadlessWatcher(run, console=_console())
    for ev in ATTEMPT_1:
        watcher.handle(ev, None)
    assert "loss 2.5000" not in _render(watcher)  # the attempt is over
    for ev in ATTEMPT_2:
        watcher.handle(ev, None)
    out = watcher.console.file.getvalue()
    assert ("attempt 1 interrupted at epoch 1 iter 7/10: stopped by a signal after a "
            "checkpoint") in out
    assert "r: Trainer on cpu, 1 epoch x 10 iters, 16 train / 1 eval image, resumed" in out
    live = _render(watcher)
    assert "loss 2.5000" not in live and "7/10" in live and "resumed" in live
    watcher.handle(_train(8, 1.5), None)
    assert "loss 1.5000" in _render(watcher)


def test_attach_replays_the_interrupted_attempt(tmp_path: Path) -> None:
    """Through the real command, on a run folder written by the engine's event writer."""
    runs = tmp_path / "runs"
    run = RunDirectory.create(runs, run_id="twice")
    run.write_meta({"schema": 1, "id": "twice", "status": "finished", "attempt": 2,
                    "exit_code": 0})
    with EventWriter(run.events) as writer:
        for ev in [*ATTEMPT_1, *ATTEMPT_2, _train(10, 1.0),
                   {"type": "status", "status": "finished", "message": "no eval"}]:
            writer.write(**ev)
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "attach", "twice", "--runs-dir",
                           str(runs)], cwd=REPO, env=engine_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "attempt 1 interrupted at epoch 1 iter 7/10" in proc.stdout
    assert "attempt 2 finished at epoch 1 iter 10/10: no eval" in proc.stdout


def test_summary_checkpoints_are_both_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = RunDirectory.create(Path("runs"), run_id="r")
    (run.checkpoints).mkdir(exist_ok=True)
    (run.checkpoints / "last.pt").write_bytes(b"x")
    best = str((run.checkpoints / "best.pt").resolve())
    run.write_meta({"schema": 1, "id": "r", "status": "finished", "exit_code": 0,
                    "best": {"metric": "AP", "value": 0.5, "epoch": 1, "checkpoint": best}})
    watcher = HeadlessWatcher(run, console=_console())
    assert watcher.summary() == 0
    out = watcher.console.file.getvalue()
    assert f"best checkpoint: {best}" in out
    assert f"last checkpoint: {(tmp_path / 'runs/r/checkpoints/last.pt').resolve()}" in out


def _dettui(*args: str) -> subprocess.CompletedProcess:
    env = {**engine_env(), "COLUMNS": "150"}
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_help_shows_no_type_on_plain_flags() -> None:
    for args in (["run", "--help"], ["--help"], ["data", "check", "--help"],
                 ["resume", "--help"]):
        proc = _dettui(*args)
        assert proc.returncode == 0, proc.stderr
        assert "<bool>" not in proc.stdout, proc.stdout
    run_help = _dettui("run", "--help").stdout
    assert "<path>" in run_help and "<str>" in run_help  # options with values keep theirs


def test_missing_run_names_the_folder(tmp_path: Path) -> None:
    proc = _dettui("logs", "nosuchrun", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2
    text = " ".join(proc.stderr.split())
    assert (f"no run 'nosuchrun' in the runs folder {tmp_path / 'runs'} (there is no such "
            "folder)") in text, text
    assert os.path.isdir(tmp_path)
