"""The typed config schema: one dataclass per section, a docstring (``doc``) per field.

Validation happens before anything starts (and in the TUI, without torch): unknown keys
get a "did you mean" hint, wrong types name the file, line, key and expected type.
Top-level key names follow PaddleDetection's (``epoch``, ``snapshot_epoch``, ``ssod_method``,
``use_cot``, ``pretrain_weights``...), as do section names (``TrainDataset``, ``TrainReader``,
``LearningRate``, ``OptimizerBuilder``).

The sections live in the modules of this package, per part (``data``, ``model``,
``semi``, ``cotuning``), each with its own checks; ``validator`` builds and type-checks,
``checks`` runs the checks across sections. stdlib only: the TUI imports this package.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Literal

from engine.config.loader import LoadedConfig
from engine.config.schema.base import ARCHITECTURES, doc
from engine.config.schema.checks import check_semantics
from engine.config.schema.cotuning import BBoxHeadConfig
from engine.config.schema.data import (
    DatasetConfig,
    ReaderConfig,
    SemiReaderConfig,
    UnsupDatasetConfig,
)
from engine.config.schema.model import (
    BackboneConfig,
    LearningRateConfig,
    ModelConfig,
    OptimizerConfig,
    RTDETRConfig,
)
from engine.config.schema.semi import (
    DenseTeacherConfig,
    DetrSsodConfig,
    FCOSLossCRConfig,
    FCOSLossMILCConfig,
    SemiSupNetConfig,
)
from engine.config.schema.validator import Validator
from engine.trainers.catalogue import SSOD_METHODS, trainer_of


@dataclass
class Config:
    """A complete dettui training config (after ``_BASE_`` and overrides)."""

    architecture: str = doc("detector: " + ", ".join(ARCHITECTURES), "FCOS")
    num_classes: int = doc("number of object classes (background excluded)", 0)
    epoch: int = doc("number of training epochs", 12)
    epoch_iter: int = doc("iterations per epoch; 0 means one full pass over the data", 0)
    snapshot_epoch: int = doc("evaluate and save every this many epochs", 1)
    log_iter: int = doc("write a train event and log line every this many iterations", 20)
    save_epoch_checkpoints: bool = doc("also keep checkpoints/epoch_NNNN.pt for every "
                                       "snapshot epoch", False)
    metric: Literal["COCO"] = doc("evaluation metric", "COCO")
    preview_images: int = doc("at each evaluation, draw the predictions on this many of the "
                              "first eval images into previews/ (0: none)", 4)
    preview_score_threshold: float = doc("previews show predictions scoring at least this",
                                         0.3)
    preview_keep_epochs: int = doc("previews of this many latest evaluations are kept", 3)

    pretrain_weights: str | None = doc(
        "weights-only init (mismatched tensors are skipped): a file (.pt/.pth/.safetensors), "
        "an http(s) URL (optional #sha256=HEX), torchvision:BUILDER[:WEIGHTS], "
        "hf:REPO_ID[@REVISION] or run:RUN_ID[:best|:last]; remote ones download once", None)
    pretrain_teacher_weights: str | None = doc("semi-supervised: teacher init weights (any "
                                               "form pretrain_weights takes)", None)
    pretrain_student_weights: str | None = doc("semi-supervised: student init weights (any "
                                               "form pretrain_weights takes)", None)
    ssod_method: str | None = doc("semi-supervised trainer: " + ", ".join(SSOD_METHODS), None)
    use_cot: bool = doc("use the co-tuning (transfer learning) trainer", False)
    semi_start_iters: float = doc(
        "semi-supervised: iteration at which the unsupervised loss starts (supervised "
        "burn-in before it); a value below 1 is a fraction of the schedule (Semi_RTDETR: "
        "not used, its semi phase starts with the teacher at ema_start_iters)", 5000)
    ema_start_iters: float = doc(
        "semi-supervised: iteration at which the teacher becomes a copy of the student and "
        "starts following it by EMA (decay ema_decay); below 1: a fraction of the "
        "schedule", 0)
    DenseTeacher: DenseTeacherConfig = doc("DenseTeacher settings",
                                           factory=DenseTeacherConfig)
    DETR_SSOD: DetrSsodConfig = doc("Semi_RTDETR settings (its semi phase starts with the "
                                    "teacher, at ema_start_iters)", factory=DetrSsodConfig)
    SEMISUPNET: SemiSupNetConfig = doc("ARSL: burn-in, teacher EMA and pseudo-loss weight "
                                       "(replaces semi_start_iters/ema_start_iters)",
                                       factory=SemiSupNetConfig)
    optimize_rate: int = doc("ARSL: iterations per optimizer step (PaddleDetection's "
                             "gradient accumulation); dettui steps every iteration, so only "
                             "1 is accepted, as in all of PaddleDetection's ARSL configs", 1)
    FCOSLossMILC: FCOSLossMILCConfig = doc("ARSL: the supervised loss",
                                           factory=FCOSLossMILCConfig)
    FCOSLossCR: FCOSLossCRConfig = doc("ARSL: the consistency loss on unlabeled images",
                                       factory=FCOSLossCRConfig)

    use_ema: bool = doc("keep an exponential moving average of the weights; evaluate and "
                        "save it", False)
    ema_decay: float = doc("EMA decay", 0.9998)
    ema_decay_type: Literal["threshold", "exponential", "constant"] = doc(
        "threshold: min(decay, (1+n)/(10+n)); exponential: decay*(1-exp(-n/2000))", "threshold")

    enable_ce: bool = doc("continuous evaluation: seed every RNG with 0 and use deterministic "
                          "algorithms, so two runs give the same numbers", False)
    seed: int = doc("base random seed (ignored under enable_ce, which uses 0)", 42)
    amp: bool = doc("mixed precision on CUDA (ignored on CPU)", False)
    device: str = doc("auto, cpu, cuda or cuda:N", "auto")
    worker_num: int = doc("DataLoader worker processes", 2)
    fleet: bool = doc("multi-node collective training (rendezvous passed to torchrun)", False)
    find_unused_parameters: bool = doc("DDP find_unused_parameters", False)
    norm_type: Literal["bn", "sync_bn"] = doc("sync_bn converts BatchNorm to SyncBatchNorm "
                                              "under multi-process training", "bn")
    checkpoint_interval: int = doc("also save checkpoints/last.pt every this many iterations; "
                                   "0 disables", 0)
    nonfinite_skip_steps: int = doc("a NaN/Inf loss stops training before the optimizer "
                                    "applies it; allow skipping up to this many such steps "
                                    "instead", 0)

    backbone: BackboneConfig = doc("backbone", factory=BackboneConfig)
    model: ModelConfig = doc("detector hyperparameters", factory=ModelConfig)
    rtdetr: RTDETRConfig = doc("RT-DETR layout, denoising and loss (architecture: RTDETR)",
                               factory=RTDETRConfig)
    TrainDataset: DatasetConfig = doc("training data", factory=DatasetConfig)
    EvalDataset: DatasetConfig = doc("evaluation data", factory=DatasetConfig)
    UnsupTrainDataset: UnsupDatasetConfig | None = doc(
        "semi-supervised: the unlabeled training images", None)
    TrainReader: ReaderConfig = doc("training batches", factory=ReaderConfig)
    SemiTrainReader: SemiReaderConfig | None = doc(
        "semi-supervised: labeled + unlabeled batches (replaces TrainReader)", None)
    EvalReader: ReaderConfig = doc("evaluation batches", factory=lambda: ReaderConfig(
        batch_size=8, shuffle=False))
    LearningRate: LearningRateConfig = doc("learning-rate schedule",
                                           factory=LearningRateConfig)
    OptimizerBuilder: OptimizerConfig = doc("optimizer", factory=OptimizerConfig)
    BBoxHead: BBoxHeadConfig = doc("Faster R-CNN box head (co-tuning)", factory=BBoxHeadConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def validate(loaded: LoadedConfig | dict) -> Config:
    """Check a loaded config against the schema and return the typed ``Config``."""
    if isinstance(loaded, dict):
        v, data = Validator(None), loaded
    else:
        v, data = Validator(loaded), loaded.data
    cfg = v.build(Config, data, ())
    v.collecting = True
    try:
        check_semantics(cfg, v)
    except Exception:
        # A check that went on past an error it recorded may trip over the bad value:
        # the errors say what is wrong. Without any, it is a bug in a check.
        if not v.errors:
            raise
    v.raise_errors()
    return cfg


def trainer_name(cfg: Config) -> str:
    """The name of the trainer ``cfg`` trains with, as the engine and every front-end show
    it (and as checkpoints record it)."""
    return trainer_of(cfg).name


def field_docs(cls: type = Config, prefix: str = "") -> dict[str, str]:
    """Every key path of the schema with its documentation (for ``--help`` and the TUI)."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        out[name] = f.metadata.get("doc", "")
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # an optional section
            tp = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), tp)
        if dataclasses.is_dataclass(tp):
            out.update(field_docs(tp, name + "."))
    return out
