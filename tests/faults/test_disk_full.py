"""A full disk loses nothing (issue 11): a write that does not fit ends the run ``failed``
with a "disk full" message naming the file, leaves the last good checkpoint and no
half-written file, and ``dettui resume`` goes on exactly once there is room again.

The disk is filled for real, the way ``ulimit -f`` does it: the engine (or a small
writer) runs in a subprocess with a small ``RLIMIT_FSIZE``, so a write past it fails with
EFBIG, as on a full disk with ENOSPC. Nothing stands in for ``open`` or ``write``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from engine.protocol.events import decode
from engine.protocol.rundir import RunDirectory
from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import REPO
from tests.faults.procs import dettui_cmd, proc_env
from tests.faults.test_exact_resume import EPOCH_ITER, EPOCHS, engine_cmd, new_run, wait_for_iter


def limited(max_bytes: int):  # noqa: ANN201 - a preexec_fn
    """A ``preexec_fn``: the child may write no file past ``max_bytes`` (``ulimit -f``)."""
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return set_limit


WRITERS = textwrap.dedent('''
    import json, logging, sys
    from pathlib import Path
    from engine.protocol.errors import DiskFull
    from engine.protocol.events import EventWriter
    from engine.recorder import setup_logging
    from engine.protocol.rundir import atomic_write_bytes
    from engine.trainers.checkpoint import save_checkpoint
    import torch

    folder = Path(sys.argv[1])
    out = {}
    def attempt(name, write):
        try:
            for _ in range(1000):
                write()
        except DiskFull as exc:
            out[name] = {"path": exc.path, "message": str(exc)}
        else:
            out[name] = None

    writer = EventWriter(folder / "events.jsonl")
    attempt("events", lambda: writer.write("log", level="info", message="x" * 300))
    logger = setup_logging(folder / "train.log")
    attempt("log", lambda: logger.info("y" * 300))
    attempt("json", lambda: atomic_write_bytes(folder / "run.json", b"z" * 9000))
    attempt("checkpoint", lambda: save_checkpoint({"model": {"w": torch.zeros(5000)},
                                                   "iter": 1}, folder / "last.pt"))
    print(json.dumps(out))
''')


@contextlib.contextmanager
def full_folder(tmp_path: Path, how: str) -> Iterator[tuple[Path, Callable | None, int]]:
    """``(folder, preexec_fn, bytes that fit)``: a folder whose writes run out of room,
    by ``ulimit -f`` (EFBIG) or as a tmpfs of 64 KiB (ENOSPC: root only)."""
    if how == "file size limit":
        yield tmp_path, limited(4096), 4096
        return
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
            capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN)")
    try:
        yield folder, None, 64 * 1024
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("how", ["file size limit", "full tmpfs"])
def test_each_writer_fails_whole_and_names_the_file(tmp_path: Path, how: str) -> None:
    """Events and log lines are whole or absent; run.json and checkpoints keep their old
    content and leave no temp file; each failure is a DiskFull naming the file."""
    with full_folder(tmp_path, how) as (folder, preexec, room):
        _check_writers(folder, preexec, room, how)


def _check_writers(folder: Path, preexec: Callable | None, limit: int, how: str) -> None:
    (folder / "run.json").write_text('{"old": true}\n')
    (folder / "last.pt").write_bytes(b"old checkpoint")
    proc = subprocess.run([sys.executable, "-c", WRITERS, str(folder)], cwd=REPO,
                          env=proc_env(), capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec)
    assert proc.returncode == 0, proc.stderr  # not killed by SIGXFSZ
    out = json.loads(proc.stdout)
    reason = "File too large" if how == "file size limit" else "No space left on device"
    for name, file in (("events", "events.jsonl"), ("log", "train.log"),
                       ("json", "run.json"), ("checkpoint", "last.pt")):
        assert out[name] is not None, f"{name}: no write failed"
        assert out[name]["path"] == str(folder / file)
        assert out[name]["message"] == f"disk full: cannot write {folder / file} ({reason})"
    events = (folder / "events.jsonl").read_bytes()
    assert 0 < len(events) <= limit and events.endswith(b"\n")  # no half line
    log = (folder / "train.log").read_bytes()  # on the full tmpfs: not one line fits
    assert len(log) <= limit and (log.endswith(b"\n") or not log)
    lines = (folder / "events.jsonl").read_text().splitlines()
    assert lines and all(decode(line) is not None for line in lines)
    assert all(line.endswith("y" * 300) for line in log.decode().splitlines())
    assert (folder / "run.json").read_text() == '{"old": true}\n'
    assert (folder / "last.pt").read_bytes() == b"old checkpoint"
    assert not list(folder.glob(".*.tmp"))


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iter"] == EPOCHS * EPOCH_ITER
    return state["model"]


def _failed_disk_full(run: Path, file: str) -> dict:
    """run.json says the attempt failed because ``file`` did not fit; returns it."""
    meta = RunDirectory(run).read_meta()
    assert meta["status"] == "failed" and meta["exit_code"] == 1
    assert meta["error"]["type"] == "DiskFull"
    assert meta["error"]["message"].startswith(f"disk full: cannot write {run / file}")
    assert f"dettui resume {run.name}" in meta["error"]["message"]
    return meta


def _no_half_written_file(run: Path) -> None:
    assert not list((run / "checkpoints").glob(".*.tmp"))
    for name in ("events.jsonl", "train.log"):
        assert (run / name).read_bytes().endswith(b"\n"), f"{name} ends mid-line"
    assert all(decode(line) is not None for line in (run / "events.jsonl").read_text()
               .splitlines())


def test_disk_full_fails_clearly_keeps_the_checkpoint_and_resumes_exactly(
        tmp_path: Path) -> None:
    data, runs = tmp_path / "data", tmp_path / "runs"
    # The reference: a run never stopped, beside the rest (the engines share the data,
    # generated once under a lock).
    straight = new_run(runs, "straight")
    reference = subprocess.Popen(engine_cmd(straight, data), cwd=REPO, env=proc_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # A first attempt dies after a checkpoint (SIGKILL), leaving last.pt mid-run.
    full = new_run(runs, "full")
    proc = subprocess.Popen(engine_cmd(full, data), cwd=REPO, env=proc_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_iter(full, proc, random.Random(11).choice([3, 5]))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    good = load_checkpoint(full / "checkpoints" / "last.pt")["iter"]
    assert 0 < good < EPOCHS * EPOCH_ITER

    # 1. The next checkpoint (18 MB) does not fit: its write fails, under the supervisor,
    # which does not restart (restarting cannot free space).
    supervised = [sys.executable, "-m", "engine.supervisor", "--run-dir", str(full),
                  "--max-restarts", "3", "--backoff", "0.1", "--",
                  *engine_cmd(full, data, "--resume", "auto")]
    proc = subprocess.run(supervised, cwd=REPO, env=proc_env(), capture_output=True,
                          text=True, timeout=300, preexec_fn=limited(1 << 20))
    assert proc.returncode == 1, proc.stderr
    meta = _failed_disk_full(full, "checkpoints/last.pt")
    assert meta["attempt"] == 2  # the kill, then this one: no restart
    errors = [e for e in _events(full) if e["type"] == "error"]
    assert errors[-1]["error_type"] == "DiskFull"
    assert errors[-1]["path"] == str(full / "checkpoints" / "last.pt")
    assert "not restarting" in (full / "train.log").read_text()
    _no_half_written_file(full)
    assert load_checkpoint(full / "checkpoints" / "last.pt")["iter"] == good

    # 2. events.jsonl itself is full: no error event fits, run.json (rewritten whole)
    # still says why, and the console shows that message, not a traceback.
    limit = (full / "events.jsonl").stat().st_size + 450
    proc = subprocess.run(engine_cmd(full, data, "--resume", "auto"), cwd=REPO,
                          env=proc_env(), capture_output=True, text=True, timeout=300,
                          preexec_fn=limited(limit))
    assert proc.returncode == 1, proc.stderr
    _failed_disk_full(full, "events.jsonl")
    assert (full / "events.jsonl").stat().st_size <= limit
    _no_half_written_file(full)
    assert load_checkpoint(full / "checkpoints" / "last.pt")["iter"] == good
    shown = subprocess.run(dettui_cmd("attach", full.name, "--runs-dir", str(runs)),
                           cwd=REPO, env=proc_env(), capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 1
    assert f"disk full: cannot write {full / 'events.jsonl'}" in shown.stdout
    assert f"dettui resume {full.name}" in shown.stdout
    assert "Traceback" not in shown.stdout + shown.stderr
    from tui.screens.error import ErrorReport  # what the TUI's error modal shows

    report = ErrorReport.from_run(full)
    assert report.message.startswith(f"disk full: cannot write {full / 'events.jsonl'}")

    # 3. Room again: `dettui resume` finishes, with the weights of a run never stopped.
    proc = subprocess.run(dettui_cmd("resume", full.name, "--headless", "--runs-dir",
                                     str(runs)), cwd=REPO, env=proc_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = RunDirectory(full).read_meta()
    assert meta["status"] == "finished" and meta["error"] is None
    assert reference.wait(timeout=300) == 0
    a, b = _final_weights(straight), _final_weights(full)
    assert a.keys() == b.keys()
    assert not [name for name in a if not torch.equal(a[name], b[name])]


def _events(run: Path) -> list[dict]:
    lines = (run / "events.jsonl").read_text().splitlines()
    return [e for e in map(decode, lines) if e is not None]
