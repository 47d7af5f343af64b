"""What a launch is and everything checked before one starts (no torch: this runs inside
the CLI and the TUI): the :class:`LaunchSpec` a front-end fills in, the facts a launch form
shows about its config, and the checks of config, data, weights, device and rendezvous that
:mod:`tui.process.launcher` runs before it creates a run folder.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.config import load_and_validate
from engine.config.loader import load_config
from engine.config.schema import Config, DatasetConfig, UnsupDatasetConfig
from engine.data.imagefolder import list_image_files
from engine.protocol.errors import ConfigError, DataError, UserError, WeightsError
from engine.sysinfo import cuda_device_count
from engine.trainers.catalogue import CHOICES, TrainerInfo, by_choice, closest, trainer_for
from engine.weightsource import check as check_source

RESTART_BACKOFF_ENV = "DETTUI_RESTART_BACKOFF"  # first supervisor backoff, seconds
WEIGHT_KEYS = ("pretrain_weights", "pretrain_teacher_weights", "pretrain_student_weights")
DEFAULT_MASTER_PORT = 29500
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


def check_trackers(spec: LaunchSpec) -> None:
    """The packages of the chosen trackers are installed (else exit 2 with the command
    that installs them, before anything starts)."""
    from engine.trackers import require

    if spec.tensorboard is not None:
        require("tensorboard")
    if spec.wandb:
        require("wandb")
