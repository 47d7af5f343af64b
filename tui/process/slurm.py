"""``dettui run CONFIG --slurm``: write an sbatch script for a multi-node job (no torch).

The script starts one torchrun per node (``srun``, one task per node) with c10d rendezvous
on the job's first node, all writing to one fixed run directory on the shared filesystem,
so a requeued job picks up where it stopped (``--resume auto``; the first start finds no
checkpoint and starts from scratch).

Preemption and time limits, step by step:

1. ``#SBATCH --signal=B:USR1@LEAD``: LEAD seconds before the time limit SLURM sends SIGUSR1
   to the batch shell only.
2. The batch shell's trap sends SIGUSR1 to the job steps (``scancel --signal=USR1``, which
   skips the batch shell), again every 2 s until ``last.pt`` has been replaced (at most
   ``checkpoint_wait_s``: an engine still starting up ignores it), then ``scontrol
   requeue``s the job, unless the training has ended meanwhile.
3. On each node the step's wrapper passes SIGUSR1 on to the engine processes (torchrun's
   children), which checkpoint after the current step and go on. torchrun itself runs with
   SIGUSR1 ignored (set before ``exec``, inherited): its default action would kill it.
4. The requeue (like a preemption or ``scancel``) ends the job with SIGTERM: torchrun
   forwards it to its workers and the wrapper passes it on too (the engine counts
   near-simultaneous copies as one request): they finish the step, checkpoint, and exit
   ``interrupted``. The requeued job runs this script again and resumes.

The script exports ``DETTUI_SLURM_JOB_ID``: the engine records it in ``run.json``
(``slurm_job_id``), so ``dettui runs`` shows the job and ``dettui stop`` cancels the job
(``scancel``, SIGTERM to every rank) instead of signalling a local pid.
"""

from __future__ import annotations

import datetime as _dt
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from engine.protocol.errors import ConfigError, RunError
from engine.protocol.rundir import check_run_id, slugify
from tui.process.launcher import train_argv
from tui.process.spec import LaunchSpec, validate_spec

SIGNAL_LEAD_S = 300  # SIGUSR1 this long before the time limit
CHECKPOINT_WAIT_S = 240  # the trap waits at most this long for the checkpoint
RESUME_VAR = "DETTUI_RESUME"
JOB_VAR = "DETTUI_SLURM_JOB_ID"  # set by the batch script; the engine records it
JOB_ID = re.compile(r"\d+(_\d+)?")  # a job id, or an array job's JOBID_TASK


def time_limit_s(value: str) -> int | None:
    """Seconds in an sbatch ``--time`` value (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM,
    D-HH:MM:SS); ``None`` for UNLIMITED/INFINITE or a value SLURM itself must judge."""
    days, _, rest = value.strip().rpartition("-")
    if days and not days.isdigit():
        return None
    parts = rest.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    nums = [int(p) for p in parts]
    if days:  # D-HH, D-HH:MM, D-HH:MM:SS
        nums += [0] * (3 - len(nums))
        return int(days) * 86400 + nums[0] * 3600 + nums[1] * 60 + nums[2]
    if len(nums) == 1:
        return nums[0] * 60
    if len(nums) == 2:
        return nums[0] * 60 + nums[1]
    return nums[0] * 3600 + nums[1] * 60 + nums[2]


def signal_timing(sbatch_options: list[str]) -> tuple[int, int]:
    """The USR1 lead and the checkpoint wait for a job with these options: 300 s and 240 s,
    scaled down to half and 2/5 of a ``--time`` limit under 10 minutes (a lead as long as
    the limit would signal the job as it starts, and requeue it forever)."""
    limit = None
    for opt in sbatch_options:
        match = re.fullmatch(r"(?:--time[= ]|-t ?)(\S+)", opt.strip())
        if match:
            limit = time_limit_s(match.group(1))
    if limit is None or limit >= 2 * SIGNAL_LEAD_S:
        return SIGNAL_LEAD_S, CHECKPOINT_WAIT_S
    return max(limit // 2, 1), max(limit * 2 // 5, 1)


def _q(value: object) -> str:
    return shlex.quote(str(value))


def _wait_then_exit(var: str) -> str:
    """Shell lines that wait for the background process ``$var`` and exit with its status.
    A trap (USR1, TERM) cuts a ``wait`` short with a status over 128: wait again while it
    runs; once it has ended, take its own status if that cut-short wait did not."""
    return f"""rc=0
while :; do
  wait "${var}"; rc=$?
  kill -0 "${var}" 2>/dev/null && continue
  wait "${var}" 2>/dev/null; last=$?; [ "$last" = 127 ] || rc=$last
  break
done
exit "$rc"
"""


def node_command(spec: LaunchSpec, run_dir: Path, name: str, *, python: str) -> str:
    """The per-node script (run by ``srun`` once per node): torchrun immune to SIGUSR1,
    SIGUSR1 and SIGTERM passed on to the engine processes, torchrun's exit code returned.
    Reads ``SLURM_NNODES``, ``SLURM_JOB_ID``, ``MASTER_ADDR``, ``MASTER_PORT`` and
    ``DETTUI_RESUME`` from the environment."""
    train = train_argv(run_dir, replace(spec, resume=None), resume=None)
    engine_args = " ".join(_q(a) for a in [*train, "--name", name])
    torchrun = (f"{_q(python)} -m torch.distributed.run --nnodes=\"$SLURM_NNODES\" "
                f"--nproc-per-node={spec.nproc} --rdzv-backend=c10d "
                "--rdzv-endpoint=\"$MASTER_ADDR:$MASTER_PORT\" --rdzv-id=\"dettui-$SLURM_JOB_ID\"")
    return f"""\
# One per node. torchrun inherits SIGUSR1 ignored (its default action would kill it);
# the engine installs its own handler for it.
( trap '' USR1; exec {torchrun} \\
    -m engine {engine_args} --resume "${RESUME_VAR}" ) &
torchrun=$!
# Pass SIGUSR1 (checkpoint) and SIGTERM (stop with a checkpoint) on to the engine
# processes, torchrun's children; the handlers also keep this shell alive meanwhile.
trap 'pkill -USR1 -P "$torchrun"' USR1
trap 'pkill -TERM -P "$torchrun"' TERM
{_wait_then_exit('torchrun')}"""


def render_sbatch(spec: LaunchSpec, run_id: str, *, workdir: Path, python: str | None = None,
                  sbatch_options: list[str] | None = None, signal_lead_s: int = SIGNAL_LEAD_S,
                  checkpoint_wait_s: int = CHECKPOINT_WAIT_S, script_path: Path | None = None
                  ) -> str:
    """The sbatch script for ``spec`` (``nnodes`` nodes x ``nproc`` processes) writing to
    ``<runs_dir>/<run_id>``."""
    check_run_id(run_id)
    python = python or sys.executable
    runs_dir = Path(spec.runs_dir).resolve()
    run_dir = runs_dir / run_id
    name = spec.name or Path(spec.config).stem
    spec = replace(spec, config=Path(spec.config).resolve())
    # A requeued job resumes this run's newest good checkpoint; the first start finds none
    # and starts from scratch, or from the checkpoint --resume named.
    resume_block = f"export {RESUME_VAR}=auto\n"
    if spec.resume and spec.resume != "auto":
        resume_block = (f'if compgen -G "$RUN_DIR/checkpoints/*.pt" > /dev/null; then\n'
                        f"  export {RESUME_VAR}=auto  # requeued: this run's own checkpoint\n"
                        f"else\n  export {RESUME_VAR}={_q(spec.resume)}  # first start\nfi\n")
    gres = "" if spec.device == "cpu" else f"#SBATCH --gres=gpu:{spec.nproc}\n"
    extra = "".join(f"#SBATCH {opt}\n" for opt in sbatch_options or [])
    submit = f"sbatch {_q(script_path)}" if script_path else "sbatch THIS_FILE"
    created = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"""\
#!/bin/bash
# dettui SLURM job, run {run_id}: {spec.nnodes} node(s) x {spec.nproc} process(es).
# Written by `dettui run --slurm` on {created}. Submit: {submit}
# Follow it from a login node: dettui attach {run_id} --runs-dir {_q(runs_dir)}
# Requeued (time limit, preemption) it resumes the same run directory.
#SBATCH --job-name={_q(name)}
#SBATCH --nodes={spec.nnodes}
#SBATCH --ntasks-per-node=1
{gres}#SBATCH --signal=B:USR1@{signal_lead_s}
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output={runs_dir}/{run_id}.slurm-%j.out
{extra}
set -u
cd {_q(workdir.resolve())}
export RUN_DIR={_q(run_dir)}
mkdir -p "$RUN_DIR"
# The rendezvous host: the first node's address as SLURM knows it (NodeAddr; a node's
# name need not resolve).
first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_ADDR=$(scontrol show node "$first_node" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
export MASTER_ADDR=${{MASTER_ADDR:-$first_node}}
export {JOB_VAR}=$SLURM_JOB_ID
export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export PYTHONUNBUFFERED=1
{resume_block}
NODE_SCRIPT=$(cat <<'DETTUI_NODE'
{node_command(spec, run_dir, name, python=python)}DETTUI_NODE
)

# SIGUSR1 ({signal_lead_s}s before the time limit): checkpoint on every node, then requeue.
# A checkpoint write replaces last.pt: a new inode says it is there.
last_inode() {{ stat -c %i "$RUN_DIR/checkpoints/last.pt" 2>/dev/null || echo none; }}
step_running() {{ [ -z "${{step:-}}" ] || kill -0 "$step" 2>/dev/null; }}
run_finished() {{ grep -q '"status": "finished"' "$RUN_DIR/run.json" 2>/dev/null; }}
checkpoint_and_requeue() {{
  echo "dettui: $(date -Is): time limit near: checkpoint, then requeue"
  local before i
  before=$(last_inode)
  # USR1 to the job steps (not this shell), again every 2 s until the checkpoint is there:
  # an engine still starting up ignores it until its training runs.
  for i in $(seq 0 {checkpoint_wait_s * 5}); do
    [ $((i % 10)) = 0 ] && scancel --signal=USR1 "$SLURM_JOB_ID"
    sleep 0.2
    [ "$(last_inode)" != "$before" ] && break
    step_running || break
  done
  if ! step_running || run_finished; then
    echo "dettui: $(date -Is): the training has ended: no requeue"
    return
  fi
  scontrol requeue "$SLURM_JOB_ID"
}}
trap checkpoint_and_requeue USR1

srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "$NODE_SCRIPT" &
step=$!
{_wait_then_exit('step')}"""


def write_sbatch(spec: LaunchSpec, *, sbatch_options: list[str] | None = None,
                 workdir: Path | None = None) -> tuple[Path, str]:
    """Validate ``spec``, write ``<runs_dir>/<run-id>.sbatch``; return its path and run id.

    The run id (``YYYYmmdd-HHMMSS-name``) is fixed here, so every requeue of the job
    writes to the same run directory; the folder itself is made when the job starts."""
    validate_spec(spec, rendezvous=False)
    if spec.nnodes < 1:
        raise ConfigError(f"--nnodes must be >= 1, got {spec.nnodes}", key="nnodes")
    if spec.max_restarts:
        raise ConfigError("--max-restarts does not apply to a SLURM job: it is requeued "
                          "and resumes instead", key="max_restarts",
                          hint="leave --max-restarts out with --slurm")
    for opt in sbatch_options or []:
        if "\n" in opt or not opt.startswith("-"):
            raise ConfigError(f"--sbatch {opt!r}: expected one sbatch option such as "
                              "--time=24:00:00 or --partition=gpu", key="sbatch")
    runs_dir = Path(spec.runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{slugify(spec.name or Path(spec.config).stem)}"
    run_id, n = base, 1
    while (runs_dir / run_id).exists() or (runs_dir / f"{run_id}.sbatch").exists():
        n += 1
        run_id = f"{base}-{n}"
    path = runs_dir / f"{run_id}.sbatch"
    lead, wait = signal_timing(list(sbatch_options or []))
    path.write_text(render_sbatch(spec, run_id, workdir=workdir or Path.cwd(),
                                  sbatch_options=sbatch_options, script_path=path.resolve(),
                                  signal_lead_s=lead, checkpoint_wait_s=wait),
                    encoding="utf-8")
    path.chmod(0o755)
    return path, run_id


def _slurm(name: str, args: list[str], why: str) -> subprocess.CompletedProcess:
    """Run SLURM's ``name`` command; a ``RunError`` saying ``why`` it was needed when it
    is not here or does not answer within a minute (slurmctld down)."""
    exe = shutil.which(name)
    if exe is None:
        raise RunError(f"{name} is not found on this machine's PATH: {why}",
                       hint="run it on a login node of the SLURM cluster")
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise RunError(f"{name} did not answer within 60 s (is slurmctld up?): {why}")\
            from None


def submit(script: Path) -> str:
    """``sbatch --parsable SCRIPT``; the job id. A refusal is a ``RunError`` with sbatch's
    own message."""
    out = _slurm("sbatch", ["--parsable", str(script.resolve())],
                 f"{script} is written but not submitted")
    job = out.stdout.strip().split(";")[0]  # JOBID[;CLUSTER]
    if out.returncode != 0 or not JOB_ID.fullmatch(job):
        raise RunError(f"sbatch refused {script}: {(out.stderr or out.stdout).strip()}")
    return job


def cancel(run_dir: Path, job: object) -> bool:
    """``scancel JOB`` for the run in ``run_dir``: SLURM sends SIGTERM to every process of
    the job (then SIGKILL after its KillWait, 30 s by default); each rank finishes its
    step, checkpoints, and the run ends ``interrupted``. False when the job is no longer
    in SLURM's queue (it ended without the run saying so).

    ``job`` comes from run.json, which anyone may have written (a copied or planted run
    folder): only a plain job id is used, and only a job whose batch script is this run's
    ``<runs_dir>/<run-id>.sbatch`` is cancelled; anything else is a ``RunError``."""
    run_id = run_dir.name
    if not isinstance(job, str) or not JOB_ID.fullmatch(job):
        raise RunError(f"run {run_id}'s run.json holds SLURM job id {job!r}, which is no job "
                       "id (digits, or JOBID_TASK); nothing was cancelled")
    how = f"run {run_id} is SLURM job {job}; stop it with `scancel {job}` where SLURM is"
    squeue = _slurm("squeue", ["-h", "-j", job, "-o", "%o"], how)
    command = squeue.stdout.strip()
    if squeue.returncode != 0 or not command:
        return False  # finished, cancelled or forgotten by SLURM
    script = run_dir.resolve().parent / f"{run_id}.sbatch"
    if Path(command).resolve() != script:
        raise RunError(f"SLURM job {job} runs {command}, not run {run_id}'s script {script}: "
                       "it is not this run's job; nothing was cancelled")
    out = _slurm("scancel", [job], how)
    if out.returncode != 0:
        raise RunError(f"scancel {job} (run {run_id}) failed: "
                       f"{(out.stderr or out.stdout).strip()}")
    return True
