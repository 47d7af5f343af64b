"""Issue 21 point 1: one run, one engine. Two ``dettui resume RUN`` started at the same
instant both started an engine on the folder (every iteration logged twice, two
``finished``, run.json naming only one pid). The engine holds an exclusive lock on its run
folder for its whole life (``engine.lock``, a dead holder's lock taken over), the launcher
starts it under a launch lock, and the loser exits 2 naming the pid that holds the run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from engine.protocol.ownership import pid_alive
from engine.protocol.rundir import RunDirectory
from engine.protocol.runlock import ENGINE_LOCK
from tests.conftest import DEMO_CONFIG, REPO, train_in_process
from tests.faults.procs import events, overrides, proc_env, wait_until

EPOCH_ITER = 2
ROUNDS = 10


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run that trained epoch 1 of 1 (no eval), then told it has 2 epochs: a resume trains
    iterations 3 and 4. Its lock file names a process that is gone (a stale lock)."""
    tmp = tmp_path_factory.mktemp("one_engine")
    code, run = train_in_process(tmp / "runs", DEMO_CONFIG,
                                 overrides(tmp / "data", epochs=1, epoch_iter=EPOCH_ITER),
                                 no_eval=True)
    assert code == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["epoch"] = 2
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    meta = json.loads((run / "run.json").read_text())
    meta.update(status="interrupted", exit_code=130, eval=False)
    (run / "run.json").write_text(json.dumps(meta))
    (run / ENGINE_LOCK).write_text(f"{_dead_pid()}\n")
    return run


def _wait_ended(run: Path) -> dict:
    """run.json once the attempt has ended and its process is gone."""
    def ended() -> dict | None:
        meta = json.loads((run / "run.json").read_text())
        if meta.get("status") in ("starting", "running") or pid_alive(meta.get("pid")):
            return None
        return meta
    return wait_until(ended, timeout=240, what="the resumed run to end", poll=0.2)


def test_two_simultaneous_resumes_start_one_engine(template: Path, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        runs = tmp_path / f"round{round_}"
        run = runs / template.name
        shutil.copytree(template, run)
        cmd = [sys.executable, "-m", "tui.cli", "resume", run.name, "--force",
               "--runs-dir", str(runs)]
        procs = [subprocess.Popen(cmd, cwd=REPO, env=proc_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for _ in range(2)]
        results = [(p.wait(timeout=120), (p.stdout.read() + p.stderr.read()).decode())
                   for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], (round_, results)
        winner = next(text for code, text in results if code == 0)
        loser = next(text for code, text in results if code == 2)
        meta = _wait_ended(run)
        assert f"pid {meta['pid']}" in winner and f"pid {meta['pid']}" in loser, results
        assert meta["status"] == "finished", (round_, meta)
        starts = events(run, "start")
        assert len(starts) == 2, (round_, starts)  # the first attempt and one resume
        iters = Counter(e["iter"] for e in events(run, "train"))
        assert iters == Counter(range(1, 2 * EPOCH_ITER + 1)), (round_, iters)
        finished = [e for e in events(run, "status") if e.get("status") == "finished"]
        assert len(finished) == 2, (round_, finished)
        if round_ > 1:
            shutil.rmtree(runs)  # keep the first rounds for a look after a failure


def test_a_second_engine_on_a_locked_run_exits_2_naming_the_holder(
        template: Path, tmp_path: Path) -> None:
    """The lock is the engine's own (not only the launcher's): an engine started by hand on
    a run folder that another engine trains writes nothing there and exits 2."""
    run = tmp_path / "runs" / template.name
    shutil.copytree(template, run)
    cmd = [sys.executable, "-m", "engine", "train", str(run / "config.yaml"), "--run-dir",
           str(run), "--no-eval", "--resume", "auto", "--force"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=proc_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    results = [(p.wait(timeout=240), p.stderr.read().decode()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    winner = next(p for p, (code, _) in zip(procs, results, strict=True) if code == 0)
    loser_text = next(text for code, text in results if code == 2)
    assert f"being trained by pid {winner.pid}" in loser_text, loser_text
    assert "Traceback" not in loser_text.split("error:", 1)[1].split("\n", 2)[0]
    meta = RunDirectory(run).read_meta()
    assert meta["status"] == "finished" and meta["exit_code"] == 0, meta
    assert meta.get("error") is None
    assert Counter(e["iter"] for e in events(run, "train")) == Counter(
        range(1, 2 * EPOCH_ITER + 1))
    assert not [e for e in events(run, "error")]
    # the lock ends with its engine: the folder can be trained again
    assert (run / ENGINE_LOCK).read_text() == ""


FORKING_HOLDER = """
import os, sys, time
from engine.protocol.runlock import EngineLock
EngineLock(sys.argv[1]).acquire()
if os.fork() == 0:  # a data-loader worker, forked while the engine holds its lock
    time.sleep(5)
    os._exit(0)
os._exit(0)  # the engine dies at once (as under SIGKILL); its worker lives on
"""


def test_a_dead_engines_forked_workers_do_not_keep_its_run_locked(tmp_path: Path) -> None:
    """The engine's forked data-loader workers outlive a SIGKILLed engine for a while; a
    lock they shared (``flock``) kept the run locked against the resume that follows (seen:
    the exact-resume test with ``worker_num=2`` refused as 'being trained by pid N')."""
    from engine.protocol.runlock import engine_lock_holder

    out = subprocess.run([sys.executable, "-c", FORKING_HOLDER, str(tmp_path)], cwd=REPO,
                         env=proc_env(), timeout=30)
    assert out.returncode == 0
    assert (tmp_path / ENGINE_LOCK).exists()
    assert engine_lock_holder(tmp_path) is None  # the worker (still sleeping) holds nothing
