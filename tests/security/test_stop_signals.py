"""Point 1: ``dettui stop``, the TUI's ``s`` and ``resume`` never act on a pid from run.json
alone. A real victim process records every signal it receives; it must receive none unless
it is provably the run's engine (the positive control shows it would have noticed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from engine.protocol.errors import RunError
from engine.protocol.rundir import RunDirectory
from tests.conftest import REPO, engine_env
from tests.security.helpers import HERE, Victim, dettui, out, write_run
from tests.tui.conftest import make_app, run_pilot, wait_for


@pytest.fixture
def victim(tmp_path: Path):
    v = Victim(tmp_path)
    yield v
    v.close()


def _stop(runs: Path, run_id: str) -> subprocess.CompletedProcess:
    return dettui("stop", run_id, "--runs-dir", str(runs))


def test_a_finished_run_naming_a_live_process_signals_nothing(tmp_path: Path, victim) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "done", status="finished", pid=victim.pid)
    proc = _stop(runs, "done")
    assert victim.signals() == []
    assert proc.returncode == 1 and "not running" in out(proc), out(proc)


def test_a_running_run_naming_an_unrelated_process_is_refused(tmp_path: Path, victim) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "live", status="running", pid=victim.pid, ended=None, exit_code=None)
    proc = _stop(runs, "live")
    assert victim.signals() == []
    assert proc.returncode == 2, out(proc)
    assert f"process {victim.pid}" in out(proc) and "is not run live's engine" in out(proc)
    assert "Traceback" not in out(proc)


def test_a_run_on_another_host_is_refused(tmp_path: Path, victim) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "far", status="running", pid=victim.pid, host="gpu-box-17", ended=None)
    proc = _stop(runs, "far")
    assert victim.signals() == []
    assert proc.returncode == 2 and "runs on host 'gpu-box-17'" in out(proc), out(proc)


def test_a_negative_pid_never_signals_a_process_group(tmp_path: Path, victim) -> None:
    runs = tmp_path / "runs"  # the victim leads its own process group: kill(-pgid) hits it
    write_run(runs, "grp", status="running", pid=-victim.pid, ended=None)
    proc = _stop(runs, "grp")
    assert victim.signals() == []
    assert proc.returncode == 2 and "no process this tool started" in out(proc), out(proc)


def test_a_reused_pid_is_refused_by_its_start_time(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = write_run(runs, "reused", status="running", ended=None)
    # Even a process whose command line names the run folder is not signalled when it
    # started long after the engine run.json recorded (the engine died; its pid was reused).
    v = Victim(tmp_path, "--run-dir", str(run))
    try:
        started = psutil.Process(v.pid).create_time()
        meta = json.loads((run / "run.json").read_text())
        meta.update(pid=v.pid, pid_started=started - 3600)
        (run / "run.json").write_text(json.dumps(meta))
        proc = _stop(runs, "reused")
        assert v.signals() == []
        # The engine that run.json names is gone: the run failed without saying so.
        assert proc.returncode == 1 and "not running (failed)" in out(proc), out(proc)
    finally:
        v.close()


def test_the_run_engine_itself_is_stopped(tmp_path: Path) -> None:
    """The positive control: a process proven to be the run's engine gets SIGINT."""
    runs = tmp_path / "runs"
    run = write_run(runs, "mine", status="running", ended=None)
    v = Victim(tmp_path, "--run-dir", str(run))
    try:
        meta = json.loads((run / "run.json").read_text())
        meta.update(pid=v.pid, pid_started=psutil.Process(v.pid).create_time())
        (run / "run.json").write_text(json.dumps(meta))
        proc = _stop(runs, "mine")
        assert proc.returncode == 0 and "asked mine to stop" in out(proc), out(proc)
        assert v.signals() == [2]  # SIGINT, once
    finally:
        v.close()


def _sandbox() -> list[str] | None:
    """``unshare`` into new user + PID namespaces, if this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    cmd = [unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc",
           "--kill-child"]
    probe = subprocess.run([*cmd, "true"], capture_output=True, timeout=30)
    return cmd if probe.returncode == 0 else None


def test_pids_that_mean_every_process_or_init_are_refused(tmp_path: Path) -> None:
    """-1 is kill(-1): every process the user may signal; true and 1 are init; 0 is the
    caller's group. Run in a PID namespace, so that even a regression only hits the
    sandbox's own victim and init (which record what they get)."""
    sandbox = _sandbox()
    if sandbox is None:
        pytest.skip("needs `unshare` into user + PID namespaces to try kill(-1) safely")
    runs, results = tmp_path / "runs", tmp_path / "results"
    results.mkdir()
    write_run(runs, "evil", status="running", ended=None)
    values = [-1, 0, True, 1, "12"]
    subprocess.run([*sandbox, sys.executable, str(HERE / "sandbox_stop.py"), str(runs), "evil",
                    str(results), *map(json.dumps, values)],
                   cwd=REPO, env=engine_env(), check=True, timeout=240)
    for n, value in enumerate(values):
        got = json.loads((results / f"{n}.json").read_text())
        assert got["pid"] == value
        assert got["victim"] == [] and got["init"] == [], got
        assert got["victim_alive"] and got["rc"] == 2, got
        assert "Traceback" not in got["output"], got


def test_tui_stop_key_refuses_an_unrelated_process(tmp_path: Path, victim) -> None:
    from tui.screens.error import ErrorScreen
    from tui.widgets.runs_table import RunsTable

    runs = tmp_path / "runs"
    write_run(runs, "live", status="running", pid=victim.pid, ended=None, exit_code=None)
    app = make_app(runs)

    async def scenario(pilot) -> None:
        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the run in the table")
        await pilot.press("s", "y")  # the key asks first (issue 7), then refuses
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), what="the refusal")
        assert "is not run live's engine" in app.screen.report.message

    run_pilot(app, scenario)
    assert victim.signals() == []


def test_resume_does_not_take_an_unrelated_live_pid_for_the_engine(tmp_path: Path,
                                                                   victim) -> None:
    """A run.json saying "running" with some live process's pid does not block a resume
    (nor is that process taken for the engine): the resume goes on to its next check."""
    from tui.process import launcher

    runs = tmp_path / "runs"
    run = write_run(runs, "stale", status="running", pid=victim.pid, ended=None)
    with pytest.raises(RunError) as info:  # no checkpoint: the next check speaks
        launcher.resume(RunDirectory(run))
    assert "no checkpoint to resume from" in info.value.message
    assert victim.signals() == []
