"""Point 5: nothing writes through a symbolic link in a run folder. A run folder whose
``train.log`` (or ``events.jsonl``, ``checkpoints``...) was replaced by a link to a file
outside is refused with a clear message, and the file outside is left as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.protocol.errors import RunError
from engine.protocol.events import EventWriter
from engine.protocol.rundir import RunDirectory
from engine.recorder import setup_logging
from tests.conftest import DEMO_CONFIG, REPO, engine_env, tiny_overrides
from tests.security.helpers import dettui, out, write_run

PRECIOUS = "someone else's file\n"


def _outside(tmp_path: Path) -> Path:
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir()
    target.write_text(PRECIOUS)
    return target


def test_resume_refuses_a_run_folder_whose_log_is_a_link(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = write_run(runs, "r1", status="interrupted", exit_code=130)
    (run / "config.yaml").write_text("num_classes: 1\n")
    (run / "checkpoints" / "last.pt").write_bytes(b"a checkpoint")
    target = _outside(tmp_path)
    (run / "train.log").unlink()
    (run / "train.log").symlink_to(target)
    proc = dettui("resume", "r1", "--headless", "--runs-dir", str(runs), timeout=120)
    assert target.read_text() == PRECIOUS, "the engine's log went through the link"
    assert proc.returncode == 2, out(proc)
    assert "train.log is a symbolic link" in out(proc) and "Traceback" not in out(proc)


def test_engine_refuses_a_run_folder_whose_events_are_a_link(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="r1")
    target = _outside(tmp_path)
    run.events.symlink_to(target)
    cmd = [sys.executable, "-m", "engine", "train", str(DEMO_CONFIG), "--run-dir",
           str(run.path), "--no-eval"]
    for item in tiny_overrides(tmp_path / "data", epoch_iter=1, train_images=4, val_images=2):
        cmd += ["-o", item]
    proc = subprocess.run(cmd, cwd=REPO, env=engine_env(), capture_output=True, text=True,
                          timeout=240)
    assert target.read_text() == PRECIOUS, "the events went through the link"
    assert proc.returncode == 2, proc.stderr
    assert "events.jsonl is a symbolic link" in proc.stderr


@pytest.mark.parametrize("name", ["run.json", "config.yaml", "stderr.log", "checkpoints"])
def test_every_fixed_entry_is_checked(tmp_path: Path, name: str) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="r1")
    target = _outside(tmp_path)
    entry = run.path / name
    if entry.is_dir():
        entry.rmdir()
        target = target.parent
    entry.symlink_to(target)
    with pytest.raises(RunError) as info:
        run.check_writable()
    assert f"{name} is a symbolic link" in info.value.message


def test_writers_never_follow_a_link_even_unchecked(tmp_path: Path) -> None:
    """The event writer and the log handler open with O_NOFOLLOW themselves."""
    run = RunDirectory.create(tmp_path / "runs", run_id="r1")
    target = _outside(tmp_path)
    run.events.symlink_to(target)
    run.train_log.symlink_to(target)
    with pytest.raises(RunError, match="symbolic link"):
        EventWriter(run.events)
    with pytest.raises(RunError, match="symbolic link"):
        setup_logging(run.train_log)
    assert target.read_text() == PRECIOUS
