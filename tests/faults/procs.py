"""Helpers for fault tests: tiny engine commands, waiting on a run directory, processes.

Every fault test runs real processes and sends real signals; these keep them short.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.protocol.events import read_events
from engine.protocol.rundir import RunDirectory
from tests.conftest import DEMO_CONFIG, REPO, engine_env, tiny_overrides

# 64 px images: a step takes a fraction of a second on one CPU core.
SMALL = ["model.min_size=64", "model.max_size=64",
         "TrainReader.sample_transforms=[{RandomFlip: {prob: 0.5}}, {Resize: {target_size: 64}}]",
         "EvalReader.sample_transforms=[{Resize: {target_size: 64}}]",
         "TrainDataset.synthesize.image_size=64", "EvalDataset.synthesize.image_size=64"]


def overrides(data: Path, *, epochs: int = 1, epoch_iter: int = 4, extra: tuple[str, ...] = (),
              train_images: int = 16) -> list[str]:
    """``KEY=VALUE`` overrides of the demo config for a run of ``epochs x epoch_iter`` steps."""
    return [*tiny_overrides(data, epochs=epochs, epoch_iter=epoch_iter,
                            train_images=train_images), *SMALL, *extra]


def as_opts(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        out += ["-o", item]
    return out


def engine_cmd(run: Path, data: Path, *args: str, eval: bool = False, **kw: Any) -> list[str]:
    """``python -m engine train DEMO --run-dir RUN ...`` with the tiny overrides."""
    return [sys.executable, "-m", "engine", "train", str(DEMO_CONFIG), "--run-dir", str(run),
            "--eval" if eval else "--no-eval", *args, *as_opts(overrides(data, **kw))]


def dettui_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", *args]


def proc_env(**extra: str) -> dict[str, str]:
    env = engine_env()
    env["OMP_NUM_THREADS"] = "1"  # two ranks on two cores: no oversubscription
    env.update(extra)
    return env


def start(cmd: list[str], **kw: Any) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    return subprocess.Popen(cmd, cwd=REPO, env=kw.pop("env", proc_env()), **kw)


def new_run(root: Path, name: str) -> Path:
    return RunDirectory.create(root, run_id=name).path


def events(run: Path, kind: str | None = None) -> list[dict]:
    evs = read_events(Path(run) / "events.jsonl")
    return [e for e in evs if kind is None or e.get("type") == kind]


def last_iter(run: Path) -> int:
    return max((e["iter"] for e in events(run, "train")), default=0)


def wait_until(pred: Callable[[], Any], *, timeout: float, what: str,
               proc: subprocess.Popen | None = None, poll: float = 0.05) -> Any:
    """Poll ``pred`` until it is truthy; fail if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            value = pred()
            if value:
                return value
            raise AssertionError(f"process ended (code {proc.returncode}) before {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_iter(run: Path, k: int, proc: subprocess.Popen | None = None,
              timeout: float = 120) -> None:
    wait_until(lambda: last_iter(run) >= k, timeout=timeout, proc=proc,
               what=f"training iteration {k}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out
