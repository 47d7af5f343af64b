"""``dettui run --slurm`` without a cluster: the sbatch script checked by bash, the USR1 lead
for short time limits, and what ``--submit`` and ``dettui stop`` refuse. The script's real
runs are in ``tests/slurm/`` (a real SLURM cluster; stand-ins where none can be started).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.conftest import DEMO_CONFIG, REPO
from tests.faults.procs import dettui_cmd, proc_env
from tests.security.helpers import write_run
from tui.process.slurm import signal_timing, time_limit_s


def write_script(tmp_path: Path, *args: str) -> tuple[Path, str, str]:
    out = subprocess.run(dettui_cmd("run", str(DEMO_CONFIG), "--slurm", "--runs-dir",
                                    str(tmp_path / "runs"), *args),
                         cwd=REPO, env=proc_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    path = Path(re.search(r"wrote (\S+\.sbatch)", out.stdout).group(1))
    run_id = path.name.removesuffix(".sbatch")
    return path, run_id, out.stdout


def test_slurm_script_renders_and_passes_bash_n(tmp_path: Path) -> None:
    path, run_id, printed = write_script(tmp_path, "--nnodes", "4", "--nproc", "8", "--name",
                                         "big job", "--sbatch", "--time=24:00:00",
                                         "--sbatch", "--partition=gpu")
    assert f"sbatch {path}" in printed and f"dettui attach {run_id}" in printed
    assert path.parent == tmp_path / "runs" and run_id.endswith("-big-job")
    text = path.read_text()
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:8",
                 "#SBATCH --signal=B:USR1@", "#SBATCH --requeue", "#SBATCH --time=24:00:00",
                 "#SBATCH --partition=gpu", 'scontrol requeue "$SLURM_JOB_ID"',
                 'scancel --signal=USR1 "$SLURM_JOB_ID"', "trap checkpoint_and_requeue USR1",
                 "--nproc-per-node=8", "--rdzv-backend=c10d", "trap '' USR1",
                 f"--run-dir {tmp_path / 'runs' / run_id}", '--resume "$DETTUI_RESUME"'):
        assert line in text, line
    # The node script alone is valid bash too.
    node = text.split("<<'DETTUI_NODE'\n", 1)[1].split("DETTUI_NODE\n", 1)[0]
    assert subprocess.run(["bash", "-n"], input=node, text=True).returncode == 0
    assert not (tmp_path / "runs" / run_id).exists()  # made by the job when it starts


def test_slurm_refuses_max_restarts(tmp_path: Path) -> None:
    out = subprocess.run(dettui_cmd("run", str(DEMO_CONFIG), "--slurm", "--max-restarts", "2",
                                    "--runs-dir", str(tmp_path)),
                         cwd=REPO, env=proc_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "max_restarts" in out.stderr
    assert not list(tmp_path.glob("*.sbatch"))


def test_the_usr1_lead_scales_with_a_short_time_limit(tmp_path: Path) -> None:
    assert time_limit_s("1") == 60 and time_limit_s("1:30") == 90
    assert time_limit_s("2-03") == 2 * 86400 + 3 * 3600
    assert time_limit_s("1-00:00:05") == 86405 and time_limit_s("UNLIMITED") is None
    assert signal_timing(["--partition=gpu"]) == (300, 240)
    assert signal_timing(["--time=24:00:00"]) == (300, 240)
    assert signal_timing(["--time=1"]) == (30, 24)  # not 300 s before a 60-s limit
    assert signal_timing(["-t 4"]) == (120, 96)
    path, _, _ = write_script(tmp_path, "--sbatch", "--time=1")
    text = path.read_text()
    assert "#SBATCH --signal=B:USR1@30\n" in text and "seq 0 120)" in text  # 24 s of 0.2


def test_submit_goes_with_slurm(tmp_path: Path) -> None:
    out = subprocess.run(dettui_cmd("run", str(DEMO_CONFIG), "--submit", "--runs-dir",
                                    str(tmp_path)),
                         cwd=REPO, env=proc_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--submit goes with --slurm" in out.stderr
    assert not list(tmp_path.iterdir())


def stop_slurm_run(tmp_path: Path, job: object, path: str) -> subprocess.CompletedProcess:
    runs = tmp_path / "runs"
    write_run(runs, "20250101-000000-job", status="running", pid=None, slurm_job_id=job)
    return subprocess.run(dettui_cmd("stop", "20250101-000000-job", "--runs-dir", str(runs)),
                          cwd=REPO, env=proc_env(PATH=path), capture_output=True, text=True,
                          timeout=60)


def test_stop_of_a_slurm_run_never_passes_a_planted_job_id_to_scancel(tmp_path: Path) -> None:
    # "--user=root" given to scancel would cancel every job of the user.
    out = stop_slurm_run(tmp_path, "--user=root", os.environ["PATH"])
    assert out.returncode == 2, out.stdout + out.stderr
    assert "which is no job id" in out.stderr and "nothing was cancelled" in out.stderr


def test_stop_of_a_slurm_run_without_slurm_here_says_how(tmp_path: Path) -> None:
    out = stop_slurm_run(tmp_path, "4242", str(tmp_path / "no-slurm-here"))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "is not found on this machine's PATH" in out.stderr
    assert "scancel 4242" in out.stderr and "Traceback" not in out.stderr


def test_runs_lists_an_active_slurm_run_with_its_job_id(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs, "20250101-000000-on-a-node", status="running", host="node-17",
              slurm_job_id="4242")
    write_run(runs, "20250101-000001-done", slurm_job_id="4243")  # finished: no job shown
    out = subprocess.run(dettui_cmd("runs", "--runs-dir", str(runs)), cwd=REPO,
                         env=proc_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[2:]}
    assert "running (job 4242)" in lines["20250101-000000-on-a-node"]
    assert "job" not in lines["20250101-000001-done"]


def test_the_tui_runs_table_and_monitor_header_name_the_job() -> None:
    from tui.runs.index import RunRow
    from tui.widgets.runs_table import row_cells

    meta = {"id": "r", "status": "running", "slurm_job_id": "4242"}
    row = RunRow(id="r", name="r", status="running", trainer="Trainer", config="c.yml",
                 path=Path("r"), meta=meta)
    assert row_cells(row, False, 0.0)[1].plain.endswith("running (job 4242)")
    assert "job" not in row_cells(row, False, 0.0, compact_status=True)[1].plain
    done = RunRow(id="r", name="r", status="finished", trainer="Trainer", config="c.yml",
                  path=Path("r"), meta={**meta, "status": "finished"})
    assert "job" not in row_cells(done, False, 0.0)[1].plain
    from types import SimpleNamespace

    from tui.widgets.run_header import RunHeader

    snap = SimpleNamespace(meta=meta, status="running", run_id="r")
    assert "SLURM job 4242" in RunHeader("r")._title(snap)
    assert "SLURM job" not in RunHeader("r")._title(
        SimpleNamespace(meta={"status": "running"}, status="running", run_id="r"))
