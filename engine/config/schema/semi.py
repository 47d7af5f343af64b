"""The semi-supervised methods' sections (DenseTeacher, Semi-RT-DETR's ``DETR_SSOD``,
ARSL's ``SEMISUPNET``/``FCOSLossMILC``/``FCOSLossCR``) and their checks. stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from engine.config.loader import KeyPath
from engine.config.ops import PHOTOMETRIC_OPS
from engine.config.schema.base import doc
from engine.config.schema.data import check_transforms
from engine.config.schema.validator import Validator

if TYPE_CHECKING:
    from engine.config.schema import Config


@dataclass
class DenseTeacherLossWeights:
    """Weights of the DenseTeacher distillation terms (PaddleDetection's ``loss_weight``)."""

    distill_loss_cls: float = doc("dense soft-label classification (QFLv2)", 4.0)
    distill_loss_box: float = doc("GIoU between student and teacher boxes", 1.0)
    distill_loss_quality: float = doc("BCE between student and teacher quality", 1.0)


@dataclass
class DenseTeacherTrainConfig:
    """How DenseTeacher trains (PaddleDetection's ``DenseTeacher.train_cfg``)."""

    sup_weight: float = doc("weight of the supervised loss", 1.0)
    unsup_weight: float = doc("weight of the distillation loss once fully ramped up", 1.0)
    loss_weight: DenseTeacherLossWeights = doc("weight of each distillation term",
                                               factory=DenseTeacherLossWeights)
    concat_sup_data: bool = doc("train the labeled weak and strong views as one double "
                                "batch (else their losses are averaged)", True)
    suppress: Literal["linear", "exp", "step", "none"] = doc(
        "ramp of the unsupervised weight after semi_start_iters: linear 0->1 over "
        "semi_start_iters, exp over 2000 iterations, step 0.25 until 2x semi_start_iters",
        "linear")
    ratio: float = doc("fraction of all points of a batch taken as foreground (top teacher "
                       "scores)", 0.01)
    gamma: float = doc("exponent of the quality-focal weights (PaddleDetection reads it but "
                       "uses 2)", 2.0)
    quality: Literal["centerness", "iou"] = doc(
        "what the student's FCOS quality branch learns on labeled images: centerness "
        "(torchvision's FCOS) or iou, the IoU of each positive point's box "
        "(PaddleDetection's FCOSLoss quality: iou, the DenseTeacher paper's configuration)",
        "centerness")


@dataclass
class DenseTeacherTestConfig:
    """Which model DenseTeacher evaluates (PaddleDetection's ``DenseTeacher.test_cfg``)."""

    inference_on: Literal["teacher", "student"] = doc(
        "the model evaluated first, kept as best.pt (the other is evaluated too)", "teacher")


@dataclass
class DenseTeacherConfig:
    """DenseTeacher settings (``ssod_method: DenseTeacher``)."""

    train_cfg: DenseTeacherTrainConfig = doc("training", factory=DenseTeacherTrainConfig)
    test_cfg: DenseTeacherTestConfig = doc("evaluation", factory=DenseTeacherTestConfig)


@dataclass
class DetrSsodTrainConfig:
    """How Semi-RT-DETR trains (PaddleDetection's ``DETR_SSOD.train_cfg``)."""

    sup_weight: float = doc("weight of the supervised loss (PaddleDetection reads it but "
                            "does not apply it; both are 1.0 in its configs)", 1.0)
    unsup_weight: float = doc("weight of the pseudo-label loss (applied, unlike "
                              "PaddleDetection; 1.0 there)", 1.0)
    ema_decay: float = doc(
        "EMA decay of the teacher (PaddleDetection hard-codes 0.9996 and ignores the "
        "top-level ema_decay, which stays the use_ema decay here)", 0.9996)
    score_fn: Literal["softmax", "sigmoid"] = doc(
        "how the teacher scores a query for pseudo-labelling: softmax over the classes "
        "(PaddleDetection's DETRBBoxSemiPostProcess, for which its 0.7 threshold is set) or "
        "sigmoid (the score RT-DETR is trained and evaluated with, IoU-aware and lower)",
        "softmax")
    pseudo_label_initial_score_thr: float = doc(
        "a teacher query becomes a pseudo-box when its best class scores at least this "
        "(by score_fn; no NMS: DETR's queries are one-to-one)", 0.7)
    min_pseduo_box_size: float = doc(
        "pseudo-boxes must be wider and taller than this many pixels (PaddleDetection's "
        "spelling of the key)", 0.0)


@dataclass
class DetrSsodTestConfig:
    """Which model Semi-RT-DETR evaluates first (PaddleDetection's ``DETR_SSOD.test_cfg``)."""

    inference_on: Literal["teacher", "student"] = doc(
        "the model evaluated first, kept as best.pt (the other is evaluated too)", "teacher")


@dataclass
class DetrSsodConfig:
    """Semi-RT-DETR settings (``ssod_method: Semi_RTDETR``); its schedule is
    ``ema_start_iters``: supervised only until then, then teacher and pseudo-labels."""

    train_cfg: DetrSsodTrainConfig = doc("training", factory=DetrSsodTrainConfig)
    test_cfg: DetrSsodTestConfig = doc("evaluation", factory=DetrSsodTestConfig)


@dataclass
class SemiSupNetConfig:
    """ARSL's schedule (PaddleDetection's ``SEMISUPNET``, ``ssod_method: ARSL``)."""

    BURN_UP_STEP: float = doc(
        "iterations of supervised-only burn-in; at this iteration the teacher becomes a copy "
        "of the student and the pseudo loss starts; below 1: a fraction of the schedule",
        30000)
    EMA_KEEP_RATE: float = doc("EMA decay of the teacher after the copy", 0.9996)
    UNSUP_LOSS_WEIGHT: float = doc("weight of the pseudo (unsupervised) loss once ramped up",
                                   1.0)
    PSEUDO_WARM_UP_STEPS: float = doc(
        "iterations over which the pseudo-loss weight rises linearly from 0 after "
        "BURN_UP_STEP; below 1: a fraction of the schedule", 2000)


@dataclass
class FCOSLossMILCConfig:
    """ARSL's supervised FCOS loss (PaddleDetection's ``FCOSLossMILC``): quality-focal BCE
    on the joint score classification x IoU branch with the IoU of the predicted box as the
    soft label, GIoU regression weighted by centerness targets, BCE on the IoU branch.
    (PaddleDetection lists ``loss_alpha``/``loss_gamma``/``reg_weights`` but its loss uses
    the fixed 0.75, 2 and 1 below; these are the values it actually trains with.)"""

    iou_loss_type: Literal["giou", "iou", "linear_iou"] = doc(
        "box regression loss: 1 - GIoU, -log IoU or 1 - IoU", "giou")
    neg_weight: float = doc("focal weight factor of the negative entries (target 0)", 0.75)
    gamma: float = doc("exponent of |score - target| in the focal weight", 2.0)
    iou_weight: float = doc("weight of the IoU-branch BCE", 0.5)


@dataclass
class FCOSLossCRConfig:
    """ARSL's consistency loss on unlabeled images (PaddleDetection's ``FCOSLossCR``)."""

    iou_loss_type: Literal["giou", "iou", "linear_iou"] = doc(
        "box loss between student and pseudo boxes: 1 - GIoU, -log IoU or 1 - IoU", "giou")
    cls_weight: float = doc("weight of the classification term", 2.0)
    reg_weight: float = doc("weight of the box term", 2.0)
    iou_weight: float = doc("weight of the IoU-branch term", 0.5)
    hard_neg_mining_flag: bool = doc(
        "mine potential positives among the ambiguous points for the box and IoU terms", True)
    candidate_thresh: float = doc(
        "teacher joint scores >= this are candidates; the candidates' mean + std is the "
        "positive threshold, ambiguous points lie between the two", 0.1)
    max_pos_thresh: float = doc("the positive threshold is capped at this", 0.4)
    fallback_topk: int = doc("an image without positives takes its top-k points", 10)
    mining_iou_thresh: float = doc(
        "a potential positive's box must overlap a positive's box of the same class by at "
        "least this IoU (its point inside that box)", 0.6)
    mining_level_diff: int = doc("... and lie at most this many pyramid levels away", 1)


def check_semi(cfg: Config, v: Validator) -> None:
    if cfg.ssod_method is not None:
        for key, what in (("UnsupTrainDataset", "the unlabeled images (a COCO json, or "
                           "name: ImageFolder for a folder of images)"),
                          ("SemiTrainReader", "how labeled and unlabeled batches are made "
                           "(sup_batch_size, unsup_batch_size, sample_transforms, weak_aug, "
                           "strong_aug)")):
            if getattr(cfg, key) is None:
                v.fail((key,), f"ssod_method {cfg.ssod_method} trains on labeled and "
                       f"unlabeled images and needs a {key} section: {what}",
                       hint="see configs/semi_det/_base_/ for an example")
    reader = cfg.SemiTrainReader
    if reader is None:
        return
    for key in ("sup_batch_size", "unsup_batch_size"):
        if getattr(reader, key) < 1:
            v.fail(("SemiTrainReader", key), f"must be >= 1, got {getattr(reader, key)}")
    check_transforms(v, ("SemiTrainReader", "sample_transforms"), reader.sample_transforms)
    for key in ("weak_aug", "strong_aug"):
        check_transforms(v, ("SemiTrainReader", key), getattr(reader, key), PHOTOMETRIC_OPS)


def check_arsl(cfg: Config, v: Validator) -> None:
    ssn = cfg.SEMISUPNET
    for key in ("BURN_UP_STEP", "PSEUDO_WARM_UP_STEPS"):
        value = getattr(ssn, key)
        if value < 0 or (value >= 1 and value != int(value)):
            v.fail(("SEMISUPNET", key), f"must be a whole number of iterations >= 0, or a "
                   f"fraction of the schedule between 0 and 1, got {value}")
    if not 0.0 <= ssn.EMA_KEEP_RATE < 1.0:
        v.fail(("SEMISUPNET", "EMA_KEEP_RATE"), f"must be in [0, 1), got {ssn.EMA_KEEP_RATE}")
    if ssn.UNSUP_LOSS_WEIGHT < 0:
        v.fail(("SEMISUPNET", "UNSUP_LOSS_WEIGHT"), "must be >= 0")
    if cfg.optimize_rate != 1:
        v.fail(("optimize_rate",), f"only 1 is supported, got {cfg.optimize_rate}: dettui "
               "takes an optimizer step every iteration (no gradient accumulation)",
               hint="raise SemiTrainReader's batch sizes (or the number of processes) instead")
    cr = cfg.FCOSLossCR
    if not 0.0 <= cr.candidate_thresh <= cr.max_pos_thresh <= 1.0:
        v.fail(("FCOSLossCR", "max_pos_thresh"), "need 0 <= candidate_thresh <= "
               f"max_pos_thresh <= 1, got {cr.candidate_thresh} and {cr.max_pos_thresh}")
    if cr.fallback_topk < 1:
        v.fail(("FCOSLossCR", "fallback_topk"), f"must be >= 1, got {cr.fallback_topk}")
    if not 0.0 < cr.mining_iou_thresh <= 1.0:
        v.fail(("FCOSLossCR", "mining_iou_thresh"), f"must be in (0, 1], got "
               f"{cr.mining_iou_thresh}")
    if cr.mining_level_diff < 0:
        v.fail(("FCOSLossCR", "mining_level_diff"), "must be >= 0")


def check_detr_ssod(tc: DetrSsodTrainConfig, v: Validator) -> None:
    def key(name: str) -> KeyPath:
        return ("DETR_SSOD", "train_cfg", name)

    if not 0.0 <= tc.ema_decay < 1.0:
        v.fail(key("ema_decay"), f"must be in [0, 1), got {tc.ema_decay}")
    if not 0.0 <= tc.pseudo_label_initial_score_thr <= 1.0:
        v.fail(key("pseudo_label_initial_score_thr"),
               f"must be between 0 and 1, got {tc.pseudo_label_initial_score_thr}")
    for name in ("sup_weight", "unsup_weight", "min_pseduo_box_size"):
        if getattr(tc, name) < 0:
            v.fail(key(name), f"must be >= 0, got {getattr(tc, name)}")
