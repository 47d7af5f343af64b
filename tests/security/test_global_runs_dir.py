"""Issue 21 point 9: ``dettui --runs-dir X COMMAND`` is honoured by every command. Each
command had its own ``--runs-dir`` defaulting to ``runs``: ``dettui --runs-dir OTHER runs``
listed ``./runs`` and a run was created in ``./runs``. A different ``--runs-dir`` after the
command as well is refused."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DEMO_CONFIG
from tests.faults.procs import as_opts, overrides, proc_env
from tests.security.helpers import dettui, out, write_run


def test_runs_logs_and_run_use_the_global_runs_dir(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "in-default")
    other = tmp_path / "other"
    write_run(other, "in-other")
    listed = dettui("--runs-dir", str(other), "runs", "--json", cwd=tmp_path)
    assert listed.returncode == 0, out(listed)
    assert [m["id"] for m in json.loads(listed.stdout)] == ["in-other"]
    logs = dettui("--runs-dir", str(other), "logs", "in-other", cwd=tmp_path)
    assert logs.returncode == 0, out(logs)
    missing = dettui("--runs-dir", str(other), "logs", "in-default", cwd=tmp_path)
    assert missing.returncode == 2 and str(other) in out(missing), out(missing)

    launched = dettui("--runs-dir", str(other), "run", str(DEMO_CONFIG), "--headless",
                      "--name", "g", "--no-eval",
                      *as_opts(overrides(tmp_path / "data", epoch_iter=1)),
                      cwd=tmp_path, env=proc_env(), timeout=240)
    assert launched.returncode == 0, out(launched)
    made = [p for p in other.iterdir() if p.name.endswith("-g")]
    assert len(made) == 1 and not any(p.name.endswith("-g")
                                      for p in (tmp_path / "runs").iterdir())
    assert json.loads((made[0] / "run.json").read_text())["status"] == "finished"


def test_two_different_runs_dirs_are_refused(tmp_path: Path) -> None:
    proc = dettui("--runs-dir", str(tmp_path / "a"), "runs", "--runs-dir",
                  str(tmp_path / "b"), cwd=tmp_path)
    assert proc.returncode == 2, out(proc)
    assert "--runs-dir given twice" in out(proc)
    same = dettui("--runs-dir", str(tmp_path / "a"), "runs", "--runs-dir",
                  str(tmp_path / "a"), cwd=tmp_path)
    assert same.returncode == 0, out(same)
