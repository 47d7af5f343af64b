"""Start, stop and resume engine processes (no torch: this runs inside the CLI and the TUI).

A launch validates the config and weight paths first (same validator as the engine),
creates the run directory, writes ``run.json`` (status ``starting``), then starts
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
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.config import load_and_validate
from engine.config.loader import load_config, read_yaml_mapping
from engine.config.schema import Config, DatasetConfig, UnsupDatasetConfig, trainer_name
from engine.data.imagefolder import list_image_files
from engine.protocol.errors import ConfigError, DataError, RunError, UserError, WeightsError
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
from engine.sysinfo import cuda_device_count
from engine.trainers.catalogue import CHOICES, TrainerInfo, by_choice, closest, trainer_for
from engine.weightsource import check as check_source

WEIGHT_KEYS = ("pretrain_weights", "pretrain_teacher_weights", "pretrain_student_weights")
DEFAULT_MASTER_PORT = 29500
RESTART_BACKOFF_ENV = "DETTUI_RESTART_BACKOFF"  # first supervisor backoff, seconds
# With ``fleet: true`` and no rendezvous flags, the rendezvous comes from these variables
# (the names PaddlePaddle's and PyTorch's launchers use).
RENDEZVOUS_ENV = {"nnodes": "NNODES", "node_rank": "NODE_RANK", "master_addr": "MASTER_ADDR",
                  "master_port": "MASTER_PORT"}


@dataclass
class LaunchSpec:
    """Everything a user chooses when starting a run (CLI flags or the TUI launch form)."""

    config: Path
    overrides: list[str] = field(default_factory=list)
    runs_dir: Path = Path("runs")
    name: str | None = None
    eval: bool = True
    resume: str | None = None  # a checkpoint path, a run id, or "auto"
    weights: str | None = None  # pretrain_weights
    teacher: str | None = None  # pretrain_teacher_weights
    student: str | None = None  # pretrain_student_weights
    unlabeled: str | None = None  # UnsupTrainDataset.dataset_dir (semi-supervised)
    enable_ce: bool = False
    device: str | None = None
    amp: bool = False
    trainer: str = "config"  # one of engine.trainers.catalogue.CHOICES
    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    force: bool = False
    max_restarts: int = 0  # relaunch a crashed engine from its last checkpoint this often
    tensorboard: str | None = None  # TensorBoard scalars: a folder, "" = RUN/tensorboard
    wandb: bool = False  # Weights & Biases (WANDB_MODE=offline works without network)

    def flag_overrides(self) -> list[str]:
        """CLI flags as ``-o`` overrides; they come before the user's own ``-o`` (which win,
        as in PaddleDetection where ``-o`` beats flags)."""
        out: list[str] = []

        def put(key: str, value: object) -> None:
            out.append(f"{key}={json.dumps(value)}")

        if self.weights:
            put("pretrain_weights", self.weights)
        if self.teacher:
            put("pretrain_teacher_weights", self.teacher)
        if self.student:
            put("pretrain_student_weights", self.student)
        if self.unlabeled:
            put("UnsupTrainDataset.dataset_dir", self.unlabeled)
        if self.enable_ce:
            put("enable_ce", True)
        if self.amp:
            put("amp", True)
        if self.device:
            put("device", self.device)
        if self.trainer not in CHOICES:
            close = closest(self.trainer, CHOICES)
            raise ConfigError(f"unknown trainer {self.trainer!r}; allowed: "
                              + ", ".join(CHOICES), key="trainer",
                              hint=f"did you mean {close!r}?" if close else None)
        chosen = by_choice(self.trainer)
        if chosen is not None:
            out += chosen.overrides()
        return out

    def all_overrides(self) -> list[str]:
        return [*self.flag_overrides(), *self.overrides]


@dataclass(frozen=True)
class ConfigFacts:
    """What the launch form needs to know of a config before it validates: which trainer
    it runs, its unlabeled set and its pretrained weights (read without validating, so the
    form can show the right fields for a config that does not validate yet)."""

    trainer: str
    """As ``engine.config.schema.trainer_name`` names it (the catalogue's name), or an
    unknown ``ssod_method`` as written."""
    info: TrainerInfo | None
    """The catalogue's entry of that trainer (None: an unknown ``ssod_method``)."""
    unlabeled_dir: str | None
    unlabeled_what: str
    """The rest of the unlabeled set: kind, annotation file, image folder."""
    pretrain_weights: str | None

    @property
    def semi(self) -> bool:
        return self.info is not None and self.info.semi

    @property
    def cotuning(self) -> bool:
        return self.info is not None and self.info.use_cot


def check_data(cfg: Config) -> None:
    """The datasets of ``cfg`` are there (or will be generated): a DataError names the
    first one that is not (the config browser's ✗, with validate_spec's own check)."""
    _check_dataset(cfg.TrainDataset, "TrainDataset")
    _check_dataset(cfg.EvalDataset, "EvalDataset")
    if cfg.UnsupTrainDataset is not None:
        _check_dataset(cfg.UnsupTrainDataset, "UnsupTrainDataset")


def config_facts(spec: LaunchSpec) -> ConfigFacts | None:
    """The :class:`ConfigFacts` of ``spec`` (its trainer choice and overrides applied); None
    when the config can't be read (the validation says why)."""
    try:
        data = load_config(spec.config, spec.all_overrides()).data
    except (UserError, OSError):
        return None
    ssod = data.get("ssod_method")
    ssod = ssod if isinstance(ssod, str) else None
    info = trainer_for(ssod, data.get("use_cot") is True)
    trainer = info.name if info is not None else str(ssod)
    unsup = data.get("UnsupTrainDataset")
    unsup = unsup if isinstance(unsup, dict) else {}
    folder = unsup.get("dataset_dir")
    name = unsup.get("name") if isinstance(unsup.get("name"), str) else "COCODataSet"
    parts = [name]
    if isinstance(unsup.get("anno_path"), str):
        parts.append(unsup["anno_path"])
        split = unsup.get("semi_split")
        if isinstance(split, dict) and isinstance(split.get("percent"), (int, float)):
            parts[-1] += f" (its unlabeled {100 - split['percent']:g}%)"
    if isinstance(unsup.get("image_dir"), str):
        parts.append(f"images: {unsup['image_dir']}")
    weights = data.get("pretrain_weights")
    return ConfigFacts(trainer, info, folder if isinstance(folder, str) else None,
                       " · ".join(parts) if unsup else "no UnsupTrainDataset in the config",
                       weights if isinstance(weights, str) and weights else None)


def _check_weights_path(value: str | None, key: str) -> None:
    if not value:
        return
    p = Path(value).expanduser()
    if not p.exists():
        raise WeightsError(f"weights file not found: {p}", key=key)
    if p.is_dir():
        raise WeightsError(f"is a directory, expected a weights file: {p}", key=key)


def _check_dataset(ds: DatasetConfig | UnsupDatasetConfig, section: str,
                   runs_dir: Path | None = None) -> None:
    """A dataset that will not be generated must be there (the engine checks the content);
    one that will be must be generated where the user meant it to be."""
    if isinstance(ds, UnsupDatasetConfig) and ds.name == "ImageFolder":
        list_image_files(Path(ds.dataset_dir).expanduser() / ds.image_dir,
                         key=f"{section}.image_dir")
        return
    if ds.synthesize is not None:
        from engine.data.sources import synthesize_target  # numpy: on use

        synthesize_target(ds, section, runs_dir)
        return
    root = Path(ds.dataset_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root}", key=f"{section}.dataset_dir",
                        hint="fix the path, or add `synthesize:` to generate the shapes "
                             "dataset there")
    anno = root / (ds.anno_path or "")
    if not anno.is_file():
        raise DataError(f"annotation file not found: {anno}", key=f"{section}.anno_path")
    images = root / ds.image_dir
    if not images.is_dir():  # needed only by relative file names: the engine's own rule
        from engine.data.sources import check_image_folder, listed_file_names  # numpy

        check_image_folder(images, listed_file_names(ds, section), section)


def generation_notes(cfg: Config, runs_dir: Path | None) -> list[str]:
    """What the engine will generate before it trains, and where (``synthesize``): said
    by the console before the run starts (it takes a while, and writes to disk)."""
    from engine.data.sources import synthesize_target

    notes, seen = [], set()
    for section in ("TrainDataset", "EvalDataset", "UnsupTrainDataset"):
        ds = getattr(cfg, section)
        target = synthesize_target(ds, section, runs_dir) if ds is not None else None
        if target is not None and (target, ds.anno_path) not in seen:
            seen.add((target, ds.anno_path))
            spec = ds.synthesize
            amount = (f"{spec.shots} boxes per class" if spec.shots
                      else f"{spec.num_images} images")
            notes.append(f"{section}: generating the shapes dataset ({amount}) in {target}")
    return notes


def validate_spec(spec: LaunchSpec, *, rendezvous: bool = True) -> Config:
    """Everything we can check without torch: config, overrides, weight and data paths,
    and (unless ``rendezvous`` is off: a SLURM job brings its own) the multi-node flags."""
    _, cfg = load_and_validate(spec.config, spec.all_overrides())
    _check_dataset(cfg.TrainDataset, "TrainDataset", spec.runs_dir)
    _check_dataset(cfg.EvalDataset, "EvalDataset", spec.runs_dir)
    if cfg.UnsupTrainDataset is not None:
        _check_dataset(cfg.UnsupTrainDataset, "UnsupTrainDataset", spec.runs_dir)
    for key in WEIGHT_KEYS:  # a file, URL, torchvision:, hf: or run: (engine.weightsource)
        if getattr(cfg, key):
            check_source(getattr(cfg, key), runs_dir=spec.runs_dir, key=key)
    if spec.resume and spec.resume != "auto" and ("/" in spec.resume or
                                                   spec.resume.endswith(".pt")):
        _check_weights_path(spec.resume, "--resume")
    if spec.max_restarts < 0:
        raise ConfigError(f"--max-restarts must be >= 0, got {spec.max_restarts}",
                          key="max_restarts")
    if spec.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {spec.nproc}", key="nproc")
    if rendezvous:
        resolve_rendezvous(spec, cfg)
        check_device(cfg.device, spec.nproc)
    restart_backoff()
    check_trackers(spec)
    return cfg


def check_device(device: str, nproc: int = 1,
                 count: Callable[[], int | None] = cuda_device_count) -> None:
    """Refuse a CUDA device this machine does not have, before anything starts (the engine
    would find out only after seconds of imports, leaving a failed run behind). Asks NVML,
    never torch; skipped on a machine that prepares a job for others (SLURM)."""
    if not device.startswith("cuda"):
        return
    found = count()
    if found is None:  # can't tell without torch: the engine checks it
        return
    if found == 0:
        raise ConfigError(f"device {device!r} asked for, but this machine has no usable "
                          "NVIDIA GPU (NVML finds none, or CUDA_VISIBLE_DEVICES hides them)",
                          key="device", hint="use --device cpu (or auto), or -o device=cpu")
    if ":" in device:
        index = int(device.split(":", 1)[1])
        if index >= found:
            raise ConfigError(f"device {device!r}: this machine has {found} CUDA device(s), "
                              f"numbered 0..{found - 1}", key="device")
        if nproc > 1:
            raise ConfigError(f"device {device!r} names one GPU, but --nproc {nproc} starts "
                              f"{nproc} processes (one GPU each)", key="device",
                              hint="use --device cuda with --nproc")
    elif nproc > found:
        raise ConfigError(f"--nproc {nproc} processes need {nproc} GPUs with device "
                          f"{device!r}; this machine has {found}", key="nproc")


def resolve_rendezvous(spec: LaunchSpec, cfg: Config,
                       environ: dict[str, str] | None = None) -> LaunchSpec:
    """``spec`` with its multi-node rendezvous complete and checked.

    ``fleet: true`` (multi-node collective training) takes the rendezvous from the flags,
    or, for each flag left at its default, from ``NNODES``/``NODE_RANK``/``MASTER_ADDR``/
    ``MASTER_PORT``; it is refused when that gives no multi-node rendezvous. Without
    ``fleet`` only the flags count (a stray ``MASTER_ADDR`` must not turn a one-machine
    run into one that waits for other nodes)."""
    environ = os.environ if environ is None else environ
    if cfg.fleet:
        given: dict[str, object] = {}
        for name, var in RENDEZVOUS_ENV.items():
            if getattr(spec, name) in (None, 1 if name == "nnodes" else 0) and environ.get(var):
                raw = environ[var]
                if name in ("nnodes", "node_rank", "master_port"):
                    if not raw.strip().isdigit():
                        raise ConfigError(f"environment variable {var}={raw!r} is not a whole "
                                          "number", key="fleet")
                    given[name] = int(raw)
                else:
                    given[name] = raw.strip()
        spec = replace(spec, **given)
        missing = [f"--nnodes M (> 1) or {RENDEZVOUS_ENV['nnodes']}" if spec.nnodes < 2 else "",
                   f"--master-addr HOST or {RENDEZVOUS_ENV['master_addr']}"
                   if not spec.master_addr else ""]
        missing = [m for m in missing if m]
        if missing:
            raise ConfigError(
                "fleet: true means multi-node collective training, but no multi-node "
                "rendezvous was given: missing " + "; ".join(missing), key="fleet",
                hint="pass --nnodes M --node-rank R --master-addr HOST [--master-port P] "
                     "(or set NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT) on every node, "
                     "or set fleet: false to train on this machine (--nproc N for its GPUs)")
    if spec.nnodes < 1:
        raise ConfigError(f"--nnodes must be >= 1, got {spec.nnodes}", key="nnodes")
    if spec.nnodes > 1 and not spec.master_addr:
        raise ConfigError(f"--nnodes {spec.nnodes} needs --master-addr: the address of node "
                          "0, which every node must reach", key="master_addr")
    if not 0 <= spec.node_rank < spec.nnodes:
        raise ConfigError(f"--node-rank must be in 0..{spec.nnodes - 1}, got {spec.node_rank}",
                          key="node_rank")
    if spec.nnodes > 1 and spec.max_restarts > 0:
        raise ConfigError("--max-restarts restarts the job of one machine; a multi-node job "
                          "must be restarted on every node together", key="max_restarts",
                          hint="under SLURM use --slurm (a requeued job resumes itself)")
    if spec.master_port is not None and not 0 < spec.master_port < 65536:
        raise ConfigError(f"--master-port must be in 1..65535, got {spec.master_port}",
                          key="master_port")
    return spec


def restart_backoff() -> float | None:
    """The supervisor's first backoff from ``DETTUI_RESTART_BACKOFF`` (None: its default)."""
    raw = os.environ.get(RESTART_BACKOFF_ENV)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"{RESTART_BACKOFF_ENV}={raw!r}: expected seconds >= 0",
                          key=RESTART_BACKOFF_ENV)
    return value


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


def check_trackers(spec: LaunchSpec) -> None:
    """The packages of the chosen trackers are installed (else exit 2 with the command
    that installs them, before anything starts)."""
    from engine.trackers import require

    if spec.tensorboard is not None:
        require("tensorboard")
    if spec.wandb:
        require("wandb")


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


def _spawn(run: RunDirectory, argv: list[str]) -> subprocess.Popen:
    log = open_run_file(run.stderr_log, "ab")  # handed to the child, closed below
    try:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, env=env, cwd=os.getcwd())
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
