"""``dettui run --slurm`` (issue 4.6): the sbatch script, checked by bash, and its time-limit
path run for real on this machine with stand-ins for ``srun``/``scancel``/``scontrol``:
SIGUSR1 -> a checkpoint on every engine process while torchrun survives -> requeue ->
SIGTERM -> checkpoint + ``interrupted``; the requeued job resumes the same run dir.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import DEMO_CONFIG, REPO
from tests.faults.procs import (
    as_opts,
    dettui_cmd,
    events,
    free_port,
    last_iter,
    overrides,
    proc_env,
    wait_iter,
    wait_until,
)

# Stand-ins: one "node" (this machine). srun runs the node script in place and notes its
# pid; scancel/scontrol requeue signal every process of that step, as slurmstepd does.
SHIMS = {
    "srun": """#!/bin/bash
while [[ "$1" == -* ]]; do shift; done
echo $$ > "$SHIM_DIR/step.pid"
exec "$@"
""",
    "scancel": """#!/bin/bash
tree() { echo "$1"; for c in $(pgrep -P "$1"); do tree "$c"; done; }
sig=${1#--signal=}
echo "scancel $sig" >> "$SHIM_DIR/calls"
kill -"$sig" $(tree "$(cat "$SHIM_DIR/step.pid")") 2>/dev/null
exit 0
""",
    "scontrol": """#!/bin/bash
tree() { echo "$1"; for c in $(pgrep -P "$1"); do tree "$c"; done; }
if [ "$1" = show ]; then echo 127.0.0.1; exit 0; fi
step=$(cat "$SHIM_DIR/step.pid")
echo "requeue; step processes alive: $(tree "$step" | wc -l)" >> "$SHIM_DIR/calls"
kill -TERM $(tree "$step") 2>/dev/null
exit 0
""",
}


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


def free_job_id() -> str:
    """A job id whose rendezvous port (20000 + id % 20000, as the script says) is free."""
    while not 20000 <= (port := free_port()) < 40000:
        pass
    return str(100_000 + port - 20000)


def run_job(script: Path, shims: Path, job_id: str) -> subprocess.Popen:
    env = proc_env(SLURM_JOB_ID=job_id, SLURM_NNODES="1", SLURM_JOB_NODELIST="node1",
                   SHIM_DIR=str(shims), PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    # slurmd starts the batch shell with default signal dispositions; bash could not trap a
    # SIGUSR1 it inherited as ignored (from whatever else ran in this test process).
    return subprocess.Popen(["bash", str(script)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGUSR1, signal.SIG_DFL))


def test_slurm_time_limit_checkpoints_requeues_and_the_requeued_job_resumes(
        tmp_path: Path) -> None:
    shims = tmp_path / "shims"
    shims.mkdir()
    for name, body in SHIMS.items():
        (shims / name).write_text(body)
        (shims / name).chmod(0o755)
    script, run_id, _ = write_script(
        tmp_path, "--nproc", "2", "--device", "cpu", "--no-eval",
        *as_opts(overrides(tmp_path / "data", epochs=2, epoch_iter=40)))
    text = script.read_text()
    assert "--gres" not in text and sys.executable in text
    run = tmp_path / "runs" / run_id

    job_id = free_job_id()
    job = run_job(script, shims, job_id)
    wait_iter(run, 3, job)
    job.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@LEAD does before the time limit
    output = job.communicate(timeout=120)[0]
    calls = (shims / "calls").read_text() if (shims / "calls").exists() else ""
    assert "scancel USR1" in calls, (f"exit {job.returncode}\n{output[-5000:]}\n"
                                     + (run / "train.log").read_text()[-2000:])
    # torchrun (and the wrapper) were still there when the requeue came: USR1 killed nobody.
    alive = int(re.search(r"step processes alive: (\d+)", calls).group(1))
    assert alive >= 4, calls  # wrapper, torchrun, two engine ranks
    ckpts = [e for e in events(run, "checkpoint") if e["kind"] == "last"]
    assert len(ckpts) >= 2, ckpts  # SIGUSR1's, then the stop's
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["exit_code"] == 130, output[-3000:]
    # One clean stop, though each rank got SIGTERM three times (slurmstepd, torchrun, wrapper)
    assert events(run, "status")[-1]["message"] == "stopped by a signal after a checkpoint"
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pt")["iter"]
    assert stopped_at == last_iter(run) < 80
    assert "SIGUSR1: checkpoint written" in (run / "train.log").read_text()

    (shims / "calls").unlink()
    requeued = run_job(script, shims, job_id)  # the same job, run again by SLURM
    output = requeued.communicate(timeout=180)[0]
    assert requeued.returncode == 0, output[-3000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "finished" and meta["attempt"] == 2
    start = events(run, "start")[-1]
    assert start["resume_from"].endswith("last.pt") and start["start_iter"] == stopped_at
    assert start["world_size"] == 2
    wait_until(lambda: last_iter(run) == 80, timeout=15, what="all 80 iterations")
