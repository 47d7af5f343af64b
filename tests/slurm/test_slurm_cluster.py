"""``dettui run --slurm`` on a real SLURM cluster (issue 23): real sbatch, squeue, scancel,
scontrol, slurmctld and slurmd (``tests/slurm/cluster.sh``, one node: this machine).

- A job submitted with ``--submit`` runs torchrun with 2 processes; ``dettui runs`` shows it
  running with its job id. With ``--time=1`` (USR1 lead scaled down to 30 s) SLURM's USR1
  reaches the batch shell, every rank checkpoints, the job requeues itself and the requeued
  job resumes the same run folder; the run finishes with the AP and the bit-identical
  weights (``--ce``) of a plain local 2-process run of the same config.
- ``dettui stop`` of a SLURM run cancels the job (``scancel``): every rank checkpoints, the
  run ends ``interrupted``, and ``dettui resume`` continues it here, without SLURM.

The two jobs and the plain run overlap (the cluster has 2 CPUs), so the module takes about
as long as the requeued job. SLURM checks time limits only every 30 s: the requeue test
holds the two ranks with SIGSTOP until the USR1 has reached the batch shell, so that it does
not depend on how fast this machine trains (the job must still be training then).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch

from engine.trainers.checkpoint import load_checkpoint
from tests.cli.test_distributed_slurm import write_script
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
from tests.security.helpers import write_run
from tests.slurm.conftest import Cluster

pytestmark = pytest.mark.slow


def submit(cluster: Cluster, runs: Path, name: str, *args: str) -> tuple[str, Path]:
    """``dettui run DEMO --slurm --submit ...``: the job id and the run folder."""
    out = subprocess.run(
        dettui_cmd("run", str(DEMO_CONFIG), "--slurm", "--submit", "--nnodes", "1",
                   "--nproc", "2", "--device", "cpu", "--name", name, "--runs-dir", str(runs),
                   *args),
        cwd=REPO, env=cluster.env(proc_env()), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = re.search(r"submitted SLURM job (\d+): run (\S+),", out.stdout)
    assert found, out.stdout
    print(f"\n{name}: {out.stdout.strip()}")
    return found.group(1), runs / found.group(2)


def meta(run: Path) -> dict[str, Any]:
    return json.loads((run / "run.json").read_text())


def job_output(run: Path, job: str) -> str:
    out = run.parent / f"{run.name}.slurm-{job}.out"
    return out.read_text(errors="replace") if out.exists() else ""


def job_records(cluster: Cluster, job: str) -> list[str]:
    """The job completion log's records of ``job`` (jobcomp/filetxt: one per end of an
    attempt, a requeue included; without an accounting database ``sacct -c`` shows only
    the last)."""
    comp = cluster.folder / "jobcomp.txt"
    lines = comp.read_text().splitlines() if comp.exists() else []
    return [line for line in lines if line.startswith(f"JobId={job} ")]


def in_queue(cluster: Cluster, job: str) -> bool:
    return bool(cluster.run("squeue", "-h", "-j", job, "-o", "%i", check=False).strip())


def dettui_runs(cluster: Cluster, runs: Path) -> str:
    out = subprocess.run(dettui_cmd("runs", "--runs-dir", str(runs)), cwd=REPO,
                         env=cluster.env(proc_env()), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def wait_running_job(cluster: Cluster, run: Path, job: str) -> None:
    """The job's engine has written run.json (running, this job) and ``dettui runs`` shows
    it as running with its job id."""
    wait_until(lambda: (run / "run.json").exists() and meta(run).get("status") == "running"
               and meta(run).get("slurm_job_id") == job, timeout=180,
               what=f"job {job} to start its run")
    line = next(x for x in dettui_runs(cluster, run.parent).splitlines() if run.name in x)
    print(f"dettui runs: {line}")
    assert f"running (job {job})" in line, line


def config_opts(data: Path) -> list[str]:
    return as_opts(overrides(data, epochs=2, epoch_iter=20))


def rank_processes(run: Path) -> list[psutil.Process]:
    """The engine processes of the job: rank 0 (run.json's engine_pid) and its siblings
    under torchrun."""
    rank0 = psutil.Process(meta(run)["engine_pid"])
    ranks = [p for p in rank0.parent().children()
             if "engine" in p.cmdline() and "train" in p.cmdline()]
    assert len(ranks) == 2, [p.cmdline() for p in ranks]
    return ranks


class TimeLimitDriver(threading.Thread):
    """The first attempt of the time-limited job, watched from a thread (the other test of
    this module runs meanwhile): running with its job id, training; SLURM's USR1 reaches
    the batch shell; the job requeues itself."""

    def __init__(self, cluster: Cluster, run: Path, job: str):
        super().__init__(daemon=True)
        self.cluster, self.run_dir, self.job = cluster, run, job
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.drive()
        except BaseException as exc:  # raised again by the test that joins this thread
            self.error = exc

    def drive(self) -> None:
        cluster, run, job = self.cluster, self.run_dir, self.job
        wait_running_job(cluster, run, job)
        wait_iter(run, 3, timeout=180)
        # SLURM sends the USR1 (30 s before the 1-minute limit) at one of its 30-s checks:
        # hold the ranks until it has reached the batch shell, so that the job is still
        # training then however fast this machine is.
        ranks = rank_processes(run)
        for p in ranks:
            p.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: "time limit near" in job_output(run, job), timeout=120,
                       what="SLURM's USR1 before the time limit")
        finally:
            for p in ranks:
                p.send_signal(signal.SIGCONT)
        wait_until(lambda: "Restarts=1" in cluster.run("scontrol", "show", "job", job),
                   timeout=120, what=f"job {job} to requeue itself")
        # Requeued with the same 1-minute limit, each next attempt would be cut short again
        # (and resume again): give the requeued job the time to finish.
        cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=10")


@pytest.fixture(scope="module")
def requeued_job(slurm_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[dict[str, Any]]:
    """A job with a 1-minute limit (the run of the requeue test), its first attempt driven
    by a thread, and beside it a plain local 2-process run of the same config: started
    before the other test of this module, which runs meanwhile."""
    root = tmp_path_factory.mktemp("requeue")
    job, run = submit(slurm_cluster, root / "runs", "requeued", "--ce", "--sbatch",
                      "--time=1", *config_opts(root / "data-slurm"))
    driver = TimeLimitDriver(slurm_cluster, run, job)
    driver.start()
    log = (root / "plain.out").open("w")
    plain = subprocess.Popen(
        dettui_cmd("run", str(DEMO_CONFIG), "--headless", "--nproc", "2", "--device", "cpu",
                   "--ce", "--name", "plain", "--runs-dir", str(root / "plain"),
                   *config_opts(root / "data-plain")),
        cwd=REPO, env=proc_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        yield {"job": job, "run": run, "driver": driver, "plain": plain,
               "plain_runs": root / "plain", "plain_out": root / "plain.out"}
    finally:
        if plain.poll() is None:
            plain.send_signal(signal.SIGINT)
            plain.wait(timeout=60)
        log.close()
        driver.join(timeout=300)


def test_dettui_stop_cancels_the_slurm_job_and_resume_continues_here(
        slurm_cluster: Cluster, requeued_job: dict[str, Any], tmp_path: Path) -> None:
    # 80 steps: enough that the job is still training when `dettui stop` reaches it (with
    # 30, a quiet machine once finished the job between iteration 3 and the stop)
    job, run = submit(slurm_cluster, tmp_path / "runs", "cancelled", "--no-eval",
                      *as_opts(overrides(tmp_path / "data", epochs=2, epoch_iter=40)))
    wait_running_job(slurm_cluster, run, job)
    wait_iter(run, 3, timeout=180)

    stop = subprocess.run(dettui_cmd("stop", run.name, "--runs-dir", str(run.parent)),
                          cwd=REPO, env=slurm_cluster.env(proc_env()), capture_output=True,
                          text=True, timeout=60)
    print(f"dettui stop: {stop.stdout.strip()}")
    assert stop.returncode == 0, stop.stderr
    assert f"cancelled SLURM job {job}" in stop.stdout and f"scancel {job}" in stop.stdout
    wait_until(lambda: not in_queue(slurm_cluster, job), timeout=120,
               what=f"job {job} to leave the queue")

    # SLURM (not a local kill) ended it: its step daemon says so, and the job is CANCELLED.
    assert f"JOB {job} ON dettui-node CANCELLED AT" in job_output(run, job)
    records = job_records(slurm_cluster, job)
    print("job records:\n" + "\n".join(r[:150] for r in records))
    assert len(records) == 1 and "JobState=CANCELLED" in records[0], records
    # Every rank got SIGTERM, finished its step and checkpointed: interrupted, and a good
    # checkpoint at the last step trained.
    m = meta(run)
    assert m["status"] == "interrupted" and m["exit_code"] == 130, m
    assert events(run, "status")[-1]["message"] == "stopped by a signal after a checkpoint"
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pt")["iter"]
    assert stopped_at == last_iter(run) < 80

    resumed = subprocess.run(dettui_cmd("resume", run.name, "--headless", "--runs-dir",
                                        str(run.parent)),
                             cwd=REPO, env=proc_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    m = meta(run)
    assert m["status"] == "finished" and m["attempt"] == 2 and m["world_size"] == 2, m
    assert m["slurm_job_id"] is None  # resumed here: `dettui stop` now signals locally
    start = events(run, "start")[-1]
    assert start["resume_from"] == str(run / "checkpoints" / "last.pt")
    assert start["start_iter"] == stopped_at and last_iter(run) == 80


def test_time_limit_usr1_checkpoint_requeue_resume_equal_to_a_plain_run(
        slurm_cluster: Cluster, requeued_job: dict[str, Any]) -> None:
    job, run, driver = requeued_job["job"], requeued_job["run"], requeued_job["driver"]
    driver.join(timeout=600)
    assert not driver.is_alive(), "the first attempt is still being driven after 10 min"
    if driver.error is not None:
        raise driver.error
    wait_until(lambda: not in_queue(slurm_cluster, job), timeout=300,
               what=f"job {job} to finish")
    assert requeued_job["plain"].wait(timeout=300) == 0, \
        requeued_job["plain_out"].read_text()[-3000:]

    output = job_output(run, job)
    show = slurm_cluster.run("scontrol", "show", "job", job)
    records = job_records(slurm_cluster, job)
    print("\n".join(x for x in output.splitlines() if x.startswith("dettui:")
                    or "CANCELLED AT" in x))
    print(" ".join(x.strip() for x in show.splitlines() if "JobState" in x or "Restarts" in x))
    print("job records:\n" + "\n".join(r[:150] for r in records))
    print("\n".join(x for x in (run / "train.log").read_text().splitlines()
                    if "SIGUSR1" in x or "resumed from" in x or "interrupted:" in x))
    # The time limit's USR1 reached the batch shell; every rank checkpointed; the job
    # requeued itself (SLURM's own record) and the requeued job ran to the end.
    assert "time limit near: checkpoint, then requeue" in output
    assert f"JOB {job} ON dettui-node CANCELLED AT" in output and "DUE TO JOB REQUEUE" in output
    assert "SIGUSR1: checkpoint written at iteration" in (run / "train.log").read_text()
    assert "Restarts=1" in show and "JobState=COMPLETED" in show
    assert len(records) == 2 and "JobState=COMPLETED" in records[-1], records
    # ... in the same run folder, resumed from the checkpoint of the first attempt.
    m = meta(run)
    assert m["status"] == "finished" and m["attempt"] == 2 and m["world_size"] == 2, m
    first, second = events(run, "start")
    assert first["resume_from"] is None and second["world_size"] == 2
    assert second["resume_from"] == str(run / "checkpoints" / "last.pt")
    assert 3 <= second["start_iter"] < 40 and last_iter(run) == 40

    # The same AP and bit-identical weights as an uninterrupted plain 2-process run.
    (plain,) = [p for p in requeued_job["plain_runs"].iterdir() if p.is_dir()]
    mp = meta(plain)
    assert mp["status"] == "finished" and mp["world_size"] == 2
    print(f"best AP: SLURM requeued {m['best']['value']}, plain {mp['best']['value']}")
    assert m["best"]["value"] == mp["best"]["value"] and m["best"]["epoch"] == mp["best"]["epoch"]
    assert events(run, "eval")[-1]["metrics"] == events(plain, "eval")[-1]["metrics"]
    a = load_checkpoint(run / "checkpoints" / "last.pt")
    b = load_checkpoint(plain / "checkpoints" / "last.pt")
    assert a["iter"] == b["iter"] == 40
    different = [n for n in a["model"] if not torch.equal(a["model"][n], b["model"][n])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    print(f"final weights: {len(a['model'])} tensors, all equal (torch.equal)")


def test_stop_refuses_a_job_that_is_not_the_runs(slurm_cluster: Cluster,
                                                 tmp_path: Path) -> None:
    """A copied or planted run.json naming someone's other job: nothing is cancelled."""
    other = tmp_path / "other.sh"
    other.write_text("#!/bin/bash\nsleep 300\n")
    job = slurm_cluster.run("sbatch", "--parsable", "-o", "/dev/null", str(other)).strip()
    try:
        runs = tmp_path / "runs"
        write_run(runs, "20250101-000000-planted", status="running", pid=None,
                  slurm_job_id=job)
        out = subprocess.run(dettui_cmd("stop", "20250101-000000-planted", "--runs-dir",
                                        str(runs)),
                             cwd=REPO, env=slurm_cluster.env(proc_env()), capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"SLURM job {job} runs {other}" in out.stderr
        assert "nothing was cancelled" in out.stderr and in_queue(slurm_cluster, job)
    finally:
        slurm_cluster.run("scancel", job, check=False)


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


def test_time_limit_path_with_stand_ins_where_no_slurm_can_be_started(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Where no real SLURM can be started (the cluster tests skip), the script's time-limit
    path still runs for real on this machine, with stand-ins for srun/scancel/scontrol:
    SIGUSR1 -> a checkpoint on every engine process while torchrun survives -> requeue ->
    SIGTERM -> checkpoint + ``interrupted``; the requeued job resumes the same run dir."""
    try:
        request.getfixturevalue("slurm_cluster")
    except pytest.skip.Exception:
        pass  # no SLURM here: the stand-ins below are what runs the script
    else:
        pytest.skip("a real SLURM cluster runs this path (the requeue test above)")
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
