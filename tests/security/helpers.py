"""Helpers for the security tests: hostile run folders, victim processes, the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO, engine_env

HERE = Path(__file__).resolve().parent
VICTIM = HERE / "victim.py"


def dettui(*args: str, timeout: float = 60, env: dict[str, str] | None = None,
           cwd: Path = REPO) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (stdout and stderr as bytes: raw escapes stay visible)."""
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=cwd,
                          env=env or engine_env(), capture_output=True, timeout=timeout)


def out(proc: subprocess.CompletedProcess) -> str:
    return (proc.stdout + proc.stderr).decode("utf-8", errors="replace")


def write_run(runs: Path, run_id: str, **meta: Any) -> Path:
    """A run folder with a run.json (defaults: a finished run on this host) and files."""
    run = runs / run_id
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    base = {"schema": 1, "id": run_id, "name": run_id, "status": "finished",
            "trainer": "Trainer", "config_path": "configs/demo/x.yml",
            "host": socket.gethostname(), "created": "2025-01-01T10:00:00+00:00",
            "started": "2025-01-01T10:00:01+00:00", "ended": "2025-01-01T10:05:00+00:00",
            "exit_code": 0, "attempt": 1, "eval": True, "world_size": 1, "best": None}
    base.update(meta)
    (run / "run.json").write_text(json.dumps(base), encoding="utf-8")
    for name in ("events.jsonl", "train.log", "stderr.log"):
        (run / name).touch()
    return run


class Victim:
    """A real process (own session) that records the signals it gets."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.record = tmp / f"victim-{time.monotonic_ns()}.signals"
        self.proc = subprocess.Popen([sys.executable, str(VICTIM), str(self.record), *args],
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while not Path(str(self.record) + ".ready").exists():
            assert self.proc.poll() is None, "the victim process died"
            assert time.monotonic() < deadline, "the victim never became ready"
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signals(self, settle: float = 0.3) -> list[int]:
        time.sleep(settle)  # a signal sent just before is handled by now
        if not self.record.exists():
            return []
        return [int(x) for x in self.record.read_text().split()]

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
