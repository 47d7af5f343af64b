"""Start, stop and resume engine processes (no torch: this runs inside the CLI and the TUI).

A launch validates the config and weight paths first (:mod:`tui.process.spec`, the same
validator as the engine), creates the run directory, writes ``run.json`` (status
``starting``), then starts
``python -m engine train ...`` (or ``torchrun ... -m engine train ...``) as a detached
process in its own session, so it outlives the front-end. Its stdout and stderr go to the
run's ``stderr.log``; everything else reaches front-ends through the run directory.

Multi-node: node 0 (global rank 0 lives there) launches as above and owns the run
directory. Every other node only joins the job (``run_worker_node``): torchrun in the
foreground, no run directory, the engine told no run folder at all: rank 0 records the
run and hands the resume checkpoint to the other ranks.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import load_and_validate
from engine.config.loader import read_yaml_mapping
from engine.config.schema import Config, trainer_name
from engine.protocol.errors import RunError, UserError
from engine.protocol.ownership import engine_pid, plausible_pid, process_start_time
from engine.protocol.rundir import (
    ACTIVE,
    RUN_SCHEMA_VERSION,
    RunDirectory,
    fs_error,
    now_iso,
    open_run_file,
)
from engine.protocol.runlock import check_not_locked, launching
from tui.process.spec import (
    DEFAULT_MASTER_PORT,
    LaunchSpec,
    check_device,
    check_trackers,
    resolve_rendezvous,
    restart_backoff,
    validate_spec,
)


def train_argv(run_dir: Path | None, spec: LaunchSpec, *,
               resume: str | None = None) -> list[str]:
    """``train CONFIG ...``: the engine's arguments after ``-m engine``."""
    args = ["train", str(spec.config)]
    if run_dir is not None:
        args += ["--run-dir", str(run_dir)]
    args.append("--eval" if spec.eval else "--no-eval")
    if resume or spec.resume:
        args += ["--resume", resume or spec.resume]
    if spec.force:
        args.append("--force")
    args += tracker_args(spec)
    for ov in spec.all_overrides():
        args += ["-o", ov]
    return args


def tracker_args(spec: LaunchSpec) -> list[str]:
    """The engine's ``--tensorboard [DIR]`` / ``--wandb`` (a DIR made absolute: the
    engine may resume from another working directory)."""
    args = []
    if spec.tensorboard is not None:
        args += (["--tensorboard", str(Path(spec.tensorboard).expanduser().resolve())]
                 if spec.tensorboard else ["--tensorboard"])
    if spec.wandb:
        args.append("--wandb")
    return args




def engine_argv(run_dir: Path | None, spec: LaunchSpec, *,
                resume: str | None = None) -> list[str]:
    """The command line that starts the engine for ``run_dir`` (None on a node other than
    node 0 of a multi-node job: its ranks write nothing and get the resume checkpoint
    from rank 0)."""
    train_args = train_argv(run_dir, spec, resume=resume)
    if spec.nproc == 1 and spec.nnodes == 1:
        return [sys.executable, "-m", "engine", *train_args]
    torchrun = [sys.executable, "-m", "torch.distributed.run",
                f"--nproc-per-node={spec.nproc}", f"--nnodes={spec.nnodes}"]
    if spec.nnodes > 1:
        torchrun += [f"--node-rank={spec.node_rank}", f"--master-addr={spec.master_addr}",
                     f"--master-port={spec.master_port or DEFAULT_MASTER_PORT}"]
    else:
        torchrun += ["--standalone"]
    return [*torchrun, "-m", "engine", *train_args]


def supervised(run_dir: Path, argv: list[str], max_restarts: int) -> list[str]:
    """Wrap the engine command in ``engine.supervisor`` when restarts are allowed (its
    first backoff from ``DETTUI_RESTART_BACKOFF`` when set)."""
    if max_restarts <= 0:
        return argv
    backoff = restart_backoff()
    extra = ["--backoff", f"{backoff:g}"] if backoff is not None else []
    return [sys.executable, "-m", "engine.supervisor", "--run-dir", str(run_dir),
            "--max-restarts", str(max_restarts), *extra, "--", *argv]


# Runs in the child between fork and the engine's exec (same pid, so the recorded pid and
# start time are the engine's): SIGINT back to its default, then the engine command.
_DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execvp(sys.argv[1], sys.argv[1:])")


def with_default_sigint(argv: list[str]) -> list[str]:
    """``argv`` so that it starts with SIGINT at its default even when this process ignores
    it. A shell without job control starts a background command (``nohup dettui run ... &``
    in a script) with SIGINT ignored, and an ignored signal stays ignored across exec: the
    engine, torchrun or the supervisor would then ignore the SIGINT that ``dettui stop`` and
    a Ctrl-C in the console send as "checkpoint and stop" (the engine runs in its own
    session, so a terminal's Ctrl-C never reaches it directly)."""
    if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        return argv  # a Python handler or the default: the child starts with the default
    return [sys.executable, "-I", "-S", "-c", _DEFAULT_SIGINT, *argv]


def _spawn(run: RunDirectory, argv: list[str]) -> subprocess.Popen:
    log = open_run_file(run.stderr_log, "ab")  # handed to the child, closed below
    try:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        proc = subprocess.Popen(with_default_sigint(argv), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, env=env,
                                cwd=os.getcwd())
    finally:
        log.close()
    return proc


def launch(spec: LaunchSpec) -> tuple[RunDirectory, subprocess.Popen]:
    """Validate, create the run directory, start the engine detached; return both."""
    cfg = validate_spec(spec)
    spec = resolve_rendezvous(spec, cfg)
    if spec.node_rank > 0:
        raise RunError(f"node {spec.node_rank} of {spec.nnodes} does not own a run "
                       "directory: node 0 records the run; this node only joins it",
                       hint="`dettui run ... --node-rank R` joins from the command line")
    name = spec.name or Path(spec.config).stem
    run = RunDirectory.create(spec.runs_dir, name)
    argv = supervised(run.path.resolve(), engine_argv(run.path.resolve(), spec),
                      spec.max_restarts)
    meta = {
        "schema": RUN_SCHEMA_VERSION,
        "id": run.id,
        "name": name,
        "config_path": str(spec.config),
        "overrides": spec.all_overrides(),
        "trainer": trainer_name(cfg),
        "architecture": cfg.architecture,
        "weights": weights_meta(cfg, spec.resume),
        "command": argv,
        "status": "starting",
        "host": socket.gethostname(),
        "created": now_iso(),
        "attempt": 1,
        "eval": spec.eval,
        "world_size": spec.nproc * spec.nnodes,
        "max_restarts": spec.max_restarts,
        "best": None,
    }
    try:
        return run, _start(run, argv, meta)
    except RunError:
        _remove_unstarted(run)
        raise


def _start(run: RunDirectory, argv: list[str], meta: dict) -> subprocess.Popen:
    """Write run.json, start the engine and record its pid; an OS error on the way (no
    permission, a full disk) becomes a RunError that names the run folder."""
    try:
        run.write_meta(meta)
        proc = _spawn(run, argv)
    except OSError as exc:
        raise fs_error(exc, run.path, "cannot write the run folder") from None
    try:
        _record_pid(run, proc)
    except OSError as exc:  # the engine runs already: stop it, it can't be followed
        os.kill(proc.pid, signal.SIGTERM)
        raise fs_error(exc, run.path, "cannot write the run folder") from None
    return proc


def _remove_unstarted(run: RunDirectory) -> None:
    """A launch refused before its engine started leaves no run folder behind."""
    with contextlib.suppress(OSError):
        shutil.rmtree(run.path)


def _record_pid(run: RunDirectory, proc: subprocess.Popen) -> None:
    """The engine's pid, and what proves it later (its start time): ``stop`` and ``resume``
    never trust a bare pid from run.json (see engine.protocol.ownership)."""
    run.update_meta(pid=proc.pid, pgid=proc.pid, pid_started=process_start_time(proc.pid))


def worker_node_argv(spec: LaunchSpec) -> list[str]:
    """The torchrun command a node other than node 0 runs (validated, rendezvous resolved)."""
    cfg = validate_spec(spec)
    spec = resolve_rendezvous(spec, cfg)
    if spec.node_rank == 0:
        raise RunError("node 0 owns the run directory: launch it with `launch`")
    return engine_argv(None, spec)


def run_worker_node(spec: LaunchSpec) -> int:
    """Join a multi-node job as node ``spec.node_rank`` > 0: torchrun in the foreground (its
    output on this terminal), no run directory here. Returns torchrun's exit code.

    A Ctrl-C in the terminal reaches torchrun directly (same process group), which stops
    its workers gracefully; SIGTERM sent to this process is passed on to torchrun."""
    argv = worker_node_argv(spec)
    proc = subprocess.Popen(argv)

    def forward(signum: int, frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                continue  # torchrun got the same SIGINT; wait for its clean stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def weights_meta(cfg: Config, resume: str | None) -> dict:
    if resume:
        return {"mode": "resume", "resume": resume}
    if cfg.pretrain_teacher_weights and cfg.pretrain_student_weights:
        return {"mode": "teacher_student", "teacher": cfg.pretrain_teacher_weights,
                "student": cfg.pretrain_student_weights}
    if cfg.pretrain_weights:
        return {"mode": "pretrained", "pretrained": cfg.pretrain_weights}
    return {"mode": "none"}


def one_start_at_a_time(start: Callable[..., subprocess.Popen]
                        ) -> Callable[..., subprocess.Popen]:
    """Run ``start(run, ...)`` under the run's launch lock (:mod:`engine.protocol.runlock`),
    refusing a run whose engine lock is held (an engine works on it, maybe one started by hand): of
    two resumes started at the same instant, the second waits until the first has started
    its engine and recorded its pid, then refuses, naming it."""

    @functools.wraps(start)
    def locked(run: RunDirectory, *args: Any, **kwargs: Any) -> subprocess.Popen:
        with launching(run.path):
            check_not_locked(run.path)
            return start(run, *args, **kwargs)

    return locked


@one_start_at_a_time
def resume(run: RunDirectory, *, eval: bool | None = None, force: bool = False,
           overrides: list[str] | None = None) -> subprocess.Popen:
    """Resume ``run`` in place: same id, same resolved config, newest good checkpoint.

    ``overrides`` (``-o epoch=N`` to train a finished run longer) change the run's config
    from here on: they are the intended difference from the checkpoint's config, so they
    need no ``force``. Ask ``engine.resumable.training_left`` first whether anything is
    left to train: a finished run resumed as it is trains nothing."""
    meta = run.read_meta()
    status = run.effective_status(meta)
    if status in ACTIVE and meta.get("host") != socket.gethostname():
        raise RunError(f"run {run.id} is {status} on host {meta.get('host')!r}")
    if status in ACTIVE and _is_engine(run, meta):
        raise RunError(f"run {run.id} is still running (pid {meta.get('pid')})")
    run.check_writable()
    if run.last_checkpoint() is None and not any(run.checkpoints.glob("*.pt")):
        raise RunError(f"run {run.id} has no checkpoint to resume from",
                       hint="start it again with `dettui run`")
    trackers = meta.get("trackers") if isinstance(meta.get("trackers"), dict) else {}
    tensorboard = trackers.get("tensorboard")  # the same folder as before (absolute)
    overrides = list(overrides or [])
    if overrides:  # bad input is refused here, before anything starts
        load_and_validate(run.config_yaml, overrides)
    spec = LaunchSpec(config=run.config_yaml, overrides=overrides,
                      eval=meta.get("eval", True) if eval is None else eval,
                      force=force or bool(overrides),
                      nproc=max(1, int(meta.get("world_size", 1))),
                      tensorboard=tensorboard if isinstance(tensorboard, str) else None,
                      wandb=trackers.get("wandb") is True)
    check_trackers(spec)
    check_device(_resolved_device(run), spec.nproc)  # resumed on a machine without its GPU
    argv = supervised(run.path.resolve(), engine_argv(run.path.resolve(), spec, resume="auto"),
                      int(meta.get("max_restarts", 0)))
    attempt = int(meta.get("attempt", 1)) + 1
    started = meta.get("weights") if isinstance(meta.get("weights"), dict) else {}
    return _start(run, argv, {**meta, "status": "starting", "command": argv,
                              "attempt": attempt, "ended": None, "exit_code": None,
                              "slurm_job_id": None,  # resumed here, not in that job
                              # what the run started from stays (source, file, sha256)
                              "weights": {**started, "mode": "resume", "resume": "auto"}})


def _resolved_device(run: RunDirectory) -> str:
    """The ``device`` of a run's resolved config (``auto`` when it can't be read: the
    engine then reports the config itself)."""
    try:  # with a config's checks: a run folder may hold a FIFO or a bomb (issue 12)
        config = read_yaml_mapping(run.config_yaml)
    except (OSError, UserError):
        return "auto"
    device = config.get("device") if isinstance(config, dict) else None
    return device if isinstance(device, str) else "auto"


def _is_engine(run: RunDirectory, meta: dict) -> bool:
    """Whether the process run.json names is provably this run's engine (a live process
    that is something else does not keep the run from being resumed)."""
    try:
        engine_pid(run.path, meta)
    except RunError:
        return False
    return True


def stop(run: RunDirectory, sig: int = signal.SIGINT) -> bool:
    """Ask a running engine to stop gracefully (checkpoint, then exit).

    False when the run is not running: its status says it ended, or the process it names
    is gone. Only a process proven to be this run's engine is signalled (status active,
    this host, a pid > 1 started when the run recorded, whose command line names this run
    folder: see engine.protocol.ownership); anything else is refused with a ``RunError`` saying why
    (run.json may have been copied from elsewhere, left stale, or planted). A job of
    ``dettui run --slurm`` (``slurm_job_id``) is cancelled with scancel instead, never
    signalled by pid: :func:`tui.process.slurm.cancel`."""
    meta = run.read_meta()
    if meta.get("status") not in ACTIVE:
        return False  # it ended (whatever process its pid may name now)
    if plausible_pid(meta.get("pid")) and run.effective_status(meta) not in ACTIVE:
        return False  # its process is gone: it died without saying so
    if meta.get("slurm_job_id") is not None:  # a SLURM job: SLURM signals every rank
        from tui.process.slurm import cancel

        return cancel(run.path, meta["slurm_job_id"])
    os.kill(engine_pid(run.path, meta), sig)
    return True


def which_torchrun() -> str | None:
    return shutil.which("torchrun")
