"""An engine started by a dettui that ignores SIGINT still stops on SIGINT.

A shell without job control (a script's ``nohup dettui run ... --headless &``) starts a
background command with SIGINT ignored, and an ignored signal stays ignored across exec; the
engine, torchrun and the supervisor run in their own session, so the SIGINT of ``dettui
stop`` and of the console's Ctrl-C is the only one they get. Found when the suite itself ran
as such a background job: 10 tests that stop a run with SIGINT failed."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.protocol.rundir import RunDirectory
from tui.process.launcher import _spawn

REPORT = ("import os, signal; print(os.getpid(), "
          "signal.getsignal(signal.SIGINT) is signal.default_int_handler)")


@pytest.fixture
def sigint_ignored() -> Iterator[None]:
    """This (pytest) process ignores SIGINT, as under ``cmd &`` in a script."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _spawned(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    run = RunDirectory.create(tmp_path / "runs", "sig")
    proc = _spawn(run, [sys.executable, "-c", REPORT])
    assert proc.wait(timeout=60) == 0
    return proc, run.stderr_log.read_text().strip()


def test_an_engine_started_while_sigint_is_ignored_gets_the_default(
        tmp_path: Path, sigint_ignored: None) -> None:
    proc, out = _spawned(tmp_path)
    pid, default = out.split()
    assert default == "True", "the engine inherited SIGINT ignored: dettui stop would not stop it"
    assert int(pid) == proc.pid  # the recorded pid is the engine's own (exec, not a child)


def test_an_engine_started_normally_is_started_as_it_is(tmp_path: Path) -> None:
    proc, out = _spawned(tmp_path)
    assert out.split() == [str(proc.pid), "True"]
    assert proc.args[:2] == [sys.executable, "-c"]  # no extra process in between
