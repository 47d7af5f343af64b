"""``dettui run CONFIG --slurm``: write an sbatch script for a multi-node job (no torch).

The script starts one torchrun per node (``srun``, one task per node) with c10d rendezvous
on the job's first node, all writing to one fixed run directory on the shared filesystem,
so a requeued job picks up where it stopped (``--resume auto``; the first start finds no
checkpoint and starts from scratch).

Preemption and time limits, step by step:

1. ``#SBATCH --signal=B:USR1@LEAD``: LEAD seconds before the time limit SLURM sends SIGUSR1
   to the batch shell only.
2. The batch shell's trap sends SIGUSR1 to the job steps (``scancel --signal=USR1``, which
   skips the batch shell), waits until ``last.pt`` has been replaced (at most
   ``checkpoint_wait_s``), then ``scontrol requeue``s the job.
3. On each node the step's wrapper passes SIGUSR1 on to the engine processes (torchrun's
   children), which checkpoint after the current step and go on. torchrun itself runs with
   SIGUSR1 ignored (set before ``exec``, inherited): its default action would kill it.
4. The requeue (like a preemption or ``scancel``) ends the job with SIGTERM: torchrun
   forwards it to its workers and the wrapper passes it on too (the engine counts
   near-simultaneous copies as one request): they finish the step, checkpoint, and exit
   ``interrupted``. The requeued job runs this script again and resumes.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from engine.errors import ConfigError
from engine.rundir import check_run_id, slugify
from tui.launcher import LaunchSpec, train_argv, validate_spec

SIGNAL_LEAD_S = 300  # SIGUSR1 this long before the time limit
CHECKPOINT_WAIT_S = 240  # the trap waits at most this long for the checkpoint
RESUME_VAR = "DETTUI_RESUME"


def _q(value: object) -> str:
    return shlex.quote(str(value))


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
rc=0
while :; do
  wait "$torchrun"; rc=$?
  kill -0 "$torchrun" 2>/dev/null || break
done
exit "$rc"
"""


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
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_ADDR
export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export PYTHONUNBUFFERED=1
{resume_block}
NODE_SCRIPT=$(cat <<'DETTUI_NODE'
{node_command(spec, run_dir, name, python=python)}DETTUI_NODE
)

# SIGUSR1 ({signal_lead_s}s before the time limit): checkpoint on every node, then requeue.
# A checkpoint write replaces last.pt: a new inode says it is there.
last_inode() {{ stat -c %i "$RUN_DIR/checkpoints/last.pt" 2>/dev/null || echo none; }}
checkpoint_and_requeue() {{
  echo "dettui: $(date -Is): time limit near: checkpoint, then requeue"
  local before
  before=$(last_inode)
  scancel --signal=USR1 "$SLURM_JOB_ID"  # the job steps, not this shell
  for _ in $(seq 1 {checkpoint_wait_s * 5}); do
    [ "$(last_inode)" != "$before" ] && break
    sleep 0.2
  done
  scontrol requeue "$SLURM_JOB_ID"
}}
trap checkpoint_and_requeue USR1

srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "$NODE_SCRIPT" &
step=$!
rc=0
while :; do
  wait "$step"; rc=$?
  kill -0 "$step" 2>/dev/null || break
done
exit "$rc"
"""


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
    path.write_text(render_sbatch(spec, run_id, workdir=workdir or Path.cwd(),
                                  sbatch_options=sbatch_options, script_path=path.resolve()),
                    encoding="utf-8")
    path.chmod(0o755)
    return path, run_id
