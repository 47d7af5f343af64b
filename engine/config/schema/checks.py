"""The checks across sections that run after the typed config is built (collecting every
error): names, sizes, ranges, the trainer and each section's own checks. stdlib only."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import TYPE_CHECKING, Any

from engine.config.loader import KeyPath
from engine.config.schema.base import (
    ARCHITECTURES,
    BACKBONES,
    MAX_BATCH,
    MAX_IMAGE_SIDE,
    MAX_QUERIES,
)
from engine.config.schema.cotuning import check_cotuning
from engine.config.schema.data import check_datasets, check_synthesize, check_transforms
from engine.config.schema.model import check_rtdetr
from engine.config.schema.semi import check_arsl, check_detr_ssod, check_semi
from engine.config.schema.validator import Validator
from engine.trainers.catalogue import SSOD_METHODS, closest, for_architecture, trainer_for

if TYPE_CHECKING:
    from engine.config.schema import Config


def check_semantics(cfg: Config, v: Validator) -> None:
    if cfg.architecture not in ARCHITECTURES:
        close = difflib.get_close_matches(cfg.architecture, ARCHITECTURES, n=1)
        v.fail(("architecture",), f"unknown architecture {cfg.architecture!r}; supported: "
               + ", ".join(ARCHITECTURES), hint=f"did you mean {close[0]!r}?" if close else None)
    if cfg.backbone.name not in BACKBONES:
        close = difflib.get_close_matches(cfg.backbone.name, BACKBONES, n=1)
        v.fail(("backbone", "name"), f"unknown backbone {cfg.backbone.name!r}; supported: "
               + ", ".join(BACKBONES), hint=f"did you mean {close[0]!r}?" if close else None)
    _check_trainer(cfg, v)
    check_rtdetr(cfg.rtdetr, v)
    if cfg.num_classes < 1:
        v.fail(("num_classes",), "num_classes must be set to the number of object classes (>= 1)")
    _check_sizes(cfg, v)
    positive = {("epoch",): cfg.epoch, ("snapshot_epoch",): cfg.snapshot_epoch,
                ("log_iter",): cfg.log_iter,
                ("TrainReader", "batch_size"): cfg.TrainReader.batch_size,
                ("EvalReader", "batch_size"): cfg.EvalReader.batch_size,
                ("model", "min_size"): cfg.model.min_size,
                ("model", "max_size"): cfg.model.max_size}
    for keypath, value in positive.items():
        if value < 1:
            v.fail(keypath, f"must be >= 1, got {value}")
    if cfg.preview_images < 0:
        v.fail(("preview_images",), f"must be >= 0, got {cfg.preview_images}")
    if cfg.preview_keep_epochs < 1:
        v.fail(("preview_keep_epochs",), f"must be >= 1, got {cfg.preview_keep_epochs}")
    if not 0.0 <= cfg.preview_score_threshold <= 1.0:
        v.fail(("preview_score_threshold",),
               f"must be between 0 and 1, got {cfg.preview_score_threshold}")
    for keypath, value in {("epoch_iter",): cfg.epoch_iter, ("worker_num",): cfg.worker_num,
                           ("checkpoint_interval",): cfg.checkpoint_interval,
                           ("nonfinite_skip_steps",): cfg.nonfinite_skip_steps,
                           ("LearningRate", "warmup_iters"): cfg.LearningRate.warmup_iters
                           }.items():
        if value < 0:
            v.fail(keypath, f"must be >= 0, got {value}")
    for key in ("semi_start_iters", "ema_start_iters"):
        value = getattr(cfg, key)
        if value < 0 or (value >= 1 and value != int(value)):
            v.fail((key,), f"must be a whole number of iterations >= 0, or a fraction of the "
                   f"schedule between 0 and 1, got {value}")
    ratio = cfg.DenseTeacher.train_cfg.ratio
    if not 0 < ratio <= 1:
        v.fail(("DenseTeacher", "train_cfg", "ratio"), f"must be in (0, 1], got {ratio}")
    check_arsl(cfg, v)
    check_detr_ssod(cfg.DETR_SSOD.train_cfg, v)
    if cfg.LearningRate.base_lr <= 0:
        v.fail(("LearningRate", "base_lr"), "must be > 0")
    if not 0.0 < cfg.ema_decay < 1.0:
        v.fail(("ema_decay",), f"must be between 0 and 1 (exclusive), got {cfg.ema_decay}")
    dev = cfg.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        v.fail(("device",), f"unknown device {dev!r}; allowed: auto, cpu, cuda, cuda:N")
    for section in ("TrainReader", "EvalReader"):
        check_transforms(v, (section, "sample_transforms"),
                          getattr(cfg, section).sample_transforms)
    check_datasets(cfg, v)
    check_semi(cfg, v)
    for section in ("TrainDataset", "EvalDataset"):
        check_synthesize(getattr(cfg, section), section, v)
    check_cotuning(cfg, v)


def _float_keys(obj: Any, prefix: KeyPath) -> typing.Iterator[tuple[KeyPath, float]]:
    """Every float value of a config section, with its key path."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _float_keys(value, (*prefix, f.name))
        elif type(value) is float:
            yield (*prefix, f.name), value


def _check_sizes(cfg: Config, v: Validator) -> None:
    """Float keys are weights, rates, thresholds and fractions: none may be negative (a
    negative weight_decay or loss weight trains towards worse). Sizes have upper bounds: an
    absurd one would be allocated (10-20 GB) after the run started, or fail there."""
    for keypath, value in _float_keys(cfg, ()):
        if value < 0:
            v.fail(keypath, f"must be >= 0, got {value}")
    sides = {("model", "min_size"): cfg.model.min_size,
             ("model", "max_size"): cfg.model.max_size,
             ("rtdetr", "image_size"): cfg.rtdetr.image_size}
    for section in ("TrainDataset", "EvalDataset"):
        spec = getattr(cfg, section).synthesize
        if spec is not None:
            sides[(section, "synthesize", "image_size")] = spec.image_size
    for i, size in enumerate(cfg.rtdetr.train_sizes):
        sides[("rtdetr", f"train_sizes[{i}]")] = size
    bounds = [(sides, MAX_IMAGE_SIDE, "pixels"),
              ({("rtdetr", "num_queries"): cfg.rtdetr.num_queries,
                ("rtdetr", "num_denoising"): cfg.rtdetr.num_denoising}, MAX_QUERIES,
               "queries"),
              ({("TrainReader", "batch_size"): cfg.TrainReader.batch_size,
                ("EvalReader", "batch_size"): cfg.EvalReader.batch_size}, MAX_BATCH, "images")]
    reader = cfg.SemiTrainReader
    if reader is not None:
        bounds.append(({("SemiTrainReader", "sup_batch_size"): reader.sup_batch_size,
                        ("SemiTrainReader", "unsup_batch_size"): reader.unsup_batch_size},
                       MAX_BATCH, "images"))
    for keys, limit, unit in bounds:
        for keypath, value in keys.items():
            if value > limit:
                v.fail(keypath, f"must be at most {limit} {unit}, got {value}")


def _check_trainer(cfg: Config, v: Validator) -> None:
    """The trainer the config selects exists, trains its architecture and takes its weights
    keys (the catalogue says which): refused here, before any run folder exists, not by the
    engine once it has built the model."""
    info = trainer_for(cfg.ssod_method, cfg.use_cot)
    if info is None:
        close = closest(str(cfg.ssod_method), SSOD_METHODS)
        v.fail(("ssod_method",), f"unsupported ssod_method {cfg.ssod_method!r}; supported: "
               + ", ".join(SSOD_METHODS), hint=f"did you mean {close!r}?" if close else None)
        return
    chosen_by = ("ssod_method",) if info.semi else ("use_cot",)
    if not info.supports(cfg.architecture) and cfg.architecture in ARCHITECTURES:
        others = ", ".join(t.choice for t in for_architecture(cfg.architecture))
        needed = " or ".join(info.architectures or ())
        v.fail(chosen_by, f"{info.choice} {info.why}, so it needs architecture {needed}; "
               f"this config has architecture {cfg.architecture}",
               hint=f"use a config of architecture {needed}, or a trainer for "
                    f"{cfg.architecture}: {others}")
    for key in ("pretrain_teacher_weights", "pretrain_student_weights"):
        if getattr(cfg, key) and key not in info.weights:
            v.fail((key,), f"{key} is for a semi-supervised trainer (ssod_method: "
                   f"{', '.join(SSOD_METHODS)}); this config trains with {info.label}, "
                   f"which takes {', '.join(info.weights)}",
                   hint="use pretrain_weights (--weights), or a semi-supervised trainer")
