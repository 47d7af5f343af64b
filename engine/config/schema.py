"""The typed config schema: one dataclass per section, a docstring (``doc``) per field.

Validation happens before anything starts (and in the TUI, without torch): unknown keys
get a "did you mean" hint, wrong types name the file, line, key and expected type.
Top-level key names follow PaddleDetection's (``epoch``, ``snapshot_epoch``, ``ssod_method``,
``use_cot``, ``pretrain_weights``...), as do section names (``TrainDataset``, ``TrainReader``,
``LearningRate``, ``OptimizerBuilder``).

stdlib only: the TUI imports this module.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.config.loader import KeyPath, LoadedConfig
from engine.config.ops import DEFAULT_STRONG_AUG, PHOTOMETRIC_OPS, TRANSFORM_OPS
from engine.protocol.errors import ConfigError, ConfigErrors
from engine.trainers.catalogue import (
    SSOD_METHODS,
    closest,
    for_architecture,
    trainer_for,
    trainer_of,
)

ARCHITECTURES = ("FCOS", "RetinaNet", "FasterRCNN", "RTDETR")
BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v3")
# Shape kinds the built-in shapes generator can draw (engine/data/shapes.py draws them); the
# first four are its default classes, the others are drawn only when a config asks for them.
SHAPE_KINDS = ("circle", "square", "triangle", "cross", "ellipse", "ring", "diamond",
               "hexagon", "star", "frame", "x")

MAX_IMAGE_SIDE = 8192
"""The largest image side a config may ask for (``model.min_size``/``max_size``,
``rtdetr.image_size``, ``synthesize.image_size``): 1e5 passed once and failed at
allocation, after the run had started."""
MAX_QUERIES = 10_000
"""The most RT-DETR object or denoising queries (300 and 100 in the paper)."""
MAX_BATCH = 4096
"""The most images in a batch of one process."""
MAX_INT = 2**31 - 1
"""Every integer key is at most this (in magnitude): a 100-digit count fails later, in a
library, with a message that names no key."""

_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def doc(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    """A dataclass field with its documentation in ``metadata['doc']``."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class ShapesSpec:
    """Generate the built-in synthetic shapes dataset here when it is missing."""

    num_images: int = doc("number of images to generate", 400)
    seed: int = doc("random seed; the same seed always gives the same images", 0)
    image_size: int = doc("side of the square images in pixels", 160)
    classes: list[str] | None = doc("shape kinds to draw, in label order (category ids 1..N); "
                                    "null: circle, square, triangle, cross. Kinds: "
                                    + ", ".join(SHAPE_KINDS), None)
    shots: int = doc("few-shot split: keep drawing images (skipping those that would exceed "
                     "it) until every class has exactly this many boxes; num_images is then "
                     "not used. 0: num_images images", 0)


@dataclass
class DatasetConfig:
    """A labeled dataset: a COCO instances json plus its images folder, or PaddleDetection's
    VOCDataSet (a list of image + Pascal VOC XML pairs, converted to COCO when loaded)."""

    name: Literal["COCODataSet", "VOCDataSet"] = doc(
        "COCODataSet: a COCO instances json; VOCDataSet: PaddleDetection's Pascal VOC list "
        "(anno_path lists 'image_path xml_path' lines, label_list names the classes)",
        "COCODataSet")
    dataset_dir: str = doc("root folder; relative paths are relative to the working directory", "")
    image_dir: str = doc("images folder, relative to dataset_dir (COCODataSet; not used for "
                         "absolute file_name entries, as `dettui data import` writes)", "images")
    anno_path: str = doc("COCODataSet: the COCO instances json; VOCDataSet: the list file of "
                         "'image_path xml_path' lines (paths relative to dataset_dir); "
                         "relative to dataset_dir", "annotations.json")
    label_list: str | None = doc("VOCDataSet: class names, one per line, relative to "
                                 "dataset_dir (default: the 20 Pascal VOC classes)", None)
    allow_empty: bool = doc("keep images that have no (valid) boxes", False)
    allow_outside_image_dir: bool = doc(
        "let an image's relative file_name climb out of image_dir with '..' (refused by "
        "default: a downloaded annotation file could make training read any file; absolute "
        "file_names are always allowed)", False)
    synthesize: ShapesSpec | None = doc("generate the shapes dataset here if it is missing", None)
    semi_split: SemiSplitSpec | None = doc("TrainDataset: keep the labeled part of this split "
                                           "of the json (e.g. 10% of the images)", None)


@dataclass
class SemiSplitSpec:
    """Keep one part of a PaddleDetection-style semi-supervised split of the annotation file
    (the same split ``dettui data split`` writes): TrainDataset keeps the labeled part,
    UnsupTrainDataset the unlabeled one."""

    percent: float = doc("percentage of the images that are labeled, between 0 and 100", 10.0)
    seed: int = doc("seed of the draw; the same file, percent and seed give the same split", 1)


@dataclass
class UnsupDatasetConfig:
    """Unlabeled training images: a COCO json whose annotations are ignored, or a folder."""

    name: Literal["COCODataSet", "ImageFolder"] = doc(
        "COCODataSet: the images a COCO json lists; ImageFolder: every image file in "
        "image_dir, sorted by name", "COCODataSet")
    dataset_dir: str = doc("root folder; relative paths are relative to the working directory", "")
    image_dir: str = doc("images folder, relative to dataset_dir", "images")
    anno_path: str | None = doc("COCODataSet: the json, relative to dataset_dir (its "
                                "annotations, if any, are ignored)", None)
    synthesize: ShapesSpec | None = doc("COCODataSet: generate the shapes dataset here if it "
                                        "is missing", None)
    semi_split: SemiSplitSpec | None = doc("COCODataSet: keep the unlabeled part of this "
                                           "split of the json", None)


@dataclass
class ReaderConfig:
    """How a dataset is turned into batches."""

    batch_size: int = doc("images per batch (per process)", 8)
    shuffle: bool = doc("shuffle every epoch", True)
    drop_last: bool = doc("drop the last incomplete batch", False)
    sample_transforms: list[dict] = doc(
        "per-image transforms, a list of one-key mappings {Op: {args}}; ops: "
        + ", ".join(TRANSFORM_OPS), factory=list)


@dataclass
class SemiReaderConfig:
    """Semi-supervised batches: one labeled and one unlabeled batch per step, each image
    in a weak and a strong view that share all geometry."""

    sup_batch_size: int = doc("labeled images per step (per process)", 4)
    unsup_batch_size: int = doc("unlabeled images per step (per process)", 4)
    shuffle: bool = doc("reshuffle each stream every time it has been drawn through", True)
    drop_last: bool = doc("drop each stream's last incomplete batch", True)
    sample_transforms: list[dict] = doc(
        "transforms applied once per image before the two views are made (geometric ops "
        "belong here); ops: " + ", ".join(TRANSFORM_OPS), factory=list)
    weak_aug: list[dict] = doc("photometric ops of the weak view (the teacher's input); "
                               "ops: " + ", ".join(PHOTOMETRIC_OPS), factory=list)
    strong_aug: list[dict] = doc(
        "photometric ops of the strong view (the student's input); default: "
        "PaddleDetection's StrongAugImage (colour jitter, three random erasings, blur, "
        "grayscale)", factory=lambda: copy.deepcopy(list(DEFAULT_STRONG_AUG)))


@dataclass
class BackboneConfig:
    """The feature extractor under the detection head (an FPN is always on top)."""

    name: str = doc("one of " + ", ".join(BACKBONES), "tiny")
    width: int = doc("base channel width of the 'tiny' backbone", 32)
    trainable_layers: int = doc("torchvision backbones: how many stages to train (0-5)", 3)
    norm: Literal["bn", "frozen_bn"] = doc("normalisation in torchvision backbones", "frozen_bn")


@dataclass
class ModelConfig:
    """Detector hyperparameters shared by the torchvision architectures."""

    min_size: int = doc("images are resized so their short side is this (pixels)", 160)
    max_size: int = doc("... and their long side at most this", 160)
    fpn_channels: int = doc("channels of the FPN levels", 64)
    head_convs: int = doc("conv layers in each branch of the detection head (FCOS, RetinaNet)", 2)
    anchor_sizes: list[int] = doc("one anchor size per FPN level (RetinaNet, Faster R-CNN), "
                                  "or the object-size scale of each level (FCOS)",
                                  factory=lambda: [16, 32, 64, 128])
    aspect_ratios: list[float] = doc("anchor aspect ratios (RetinaNet, Faster R-CNN)",
                                     factory=lambda: [0.5, 1.0, 2.0])
    score_thresh: float = doc("drop detections scoring below this at inference", 0.05)
    nms_thresh: float = doc("IoU threshold of the per-class NMS", 0.6)
    detections_per_img: int = doc("keep at most this many detections per image", 100)


@dataclass
class RTDETRConfig:
    """RT-DETR (``architecture: RTDETR``): transformers' RT-DETR, built from these numbers.

    The defaults are the published RT-DETR-R50 layout (ResNet50-vd, hybrid encoder of width
    256 with one AIFI layer on stride 32, 6 decoder layers, 300 queries, 100 denoising
    queries). RT-DETR has its own backbone: the ``backbone`` and ``model`` sections are not
    used, except ``model.score_thresh`` and ``model.detections_per_img`` at inference.
    """

    image_size: int = doc("side of the square model input: every image is resized to it "
                          "(a multiple of the largest feature stride)", 640)
    keep_ratio: bool = doc("resize keeping the aspect ratio and pad the rest (true), or "
                           "stretch to the square as RT-DETR does (false)", False)
    train_sizes: list[int] = doc("multi-scale training: each training batch is resized to "
                                 "one of these sides, drawn per batch (RT-DETR's "
                                 "BatchRandomResize); empty: always image_size", factory=list)
    backbone_layer_type: Literal["bottleneck", "basic"] = doc(
        "ResNet-vd block: bottleneck (ResNet50/101) or basic (ResNet18/34)", "bottleneck")
    backbone_depths: list[int] = doc("blocks in each of the 4 ResNet-vd stages",
                                     factory=lambda: [3, 4, 6, 3])
    backbone_hidden_sizes: list[int] = doc("output channels of each ResNet-vd stage",
                                           factory=lambda: [256, 512, 1024, 2048])
    backbone_stem_channels: int = doc("channels of the 3-conv ResNet-vd stem", 64)
    freeze_backbone_bn: bool = doc("freeze the backbone's BatchNorm statistics and affine "
                                   "parameters (right for pretrained backbones)", True)
    freeze_backbone_stem: bool = doc("do not train the backbone's stem convolutions "
                                     "(PaddleDetection's freeze_stem_only)", True)
    backbone_lr_mult: float = doc("learning-rate multiplier of the backbone's parameters "
                                  "(PaddleDetection's lr_mult)", 0.1)
    feature_stages: list[int] = doc("ResNet stages (1-4) whose maps feed the encoder; stage s "
                                    "has stride 2^(s+1), so [2, 3, 4] gives strides 8, 16, 32",
                                    factory=lambda: [2, 3, 4])
    encoder_hidden_dim: int = doc("channels of the hybrid encoder (its CCFM pyramid)", 256)
    encoder_layers: int = doc("AIFI transformer layers on the deepest level", 1)
    encoder_heads: int = doc("attention heads of the AIFI layer", 8)
    encoder_ffn_dim: int = doc("feed-forward width of the AIFI layer", 1024)
    hidden_expansion: float = doc("width factor of the encoder's CSP-RepVGG blocks", 1.0)
    d_model: int = doc("width of the decoder queries", 256)
    decoder_layers: int = doc("decoder layers (each refines the boxes)", 6)
    decoder_heads: int = doc("attention heads of each decoder layer", 8)
    decoder_ffn_dim: int = doc("feed-forward width of each decoder layer", 1024)
    decoder_points: int = doc("deformable-attention sampling points per head and level", 4)
    num_queries: int = doc("object queries picked from the encoder (query selection)", 300)
    num_denoising: int = doc("denoising queries per image in training (about twice this many "
                             "are added: a positive and a negative per noised box); 0 disables",
                             100)
    label_noise_ratio: float = doc("fraction of denoising labels flipped to a random class", 0.5)
    box_noise_scale: float = doc("scale of the noise added to denoising boxes", 1.0)
    aux_loss: bool = doc("also supervise every decoder layer and the encoder's top-k queries",
                         True)
    weight_vfl: float = doc("weight of the varifocal classification loss", 1.0)
    weight_bbox: float = doc("weight of the L1 box loss", 5.0)
    weight_giou: float = doc("weight of the GIoU box loss", 2.0)
    focal_alpha: float = doc("varifocal loss: weight of the negatives", 0.75)
    focal_gamma: float = doc("varifocal loss: focusing exponent", 2.0)
    matcher_class_cost: float = doc("Hungarian matcher: weight of the classification cost", 2.0)
    matcher_bbox_cost: float = doc("Hungarian matcher: weight of the L1 box cost", 5.0)
    matcher_giou_cost: float = doc("Hungarian matcher: weight of the GIoU cost", 2.0)
    matcher_alpha: float = doc("Hungarian matcher: focal-cost alpha", 0.25)
    matcher_gamma: float = doc("Hungarian matcher: focal-cost gamma", 2.0)
    prior_prob: float = doc("initial object probability of the classification heads", 0.01)


@dataclass
class LearningRateConfig:
    """Learning rate: linear warmup, then a step or cosine schedule, stepped per iteration."""

    base_lr: float = doc("peak learning rate", 0.01)
    schedule: Literal["cosine", "step", "constant"] = doc("decay after warmup", "cosine")
    milestones: list[int] = doc("step schedule: epochs at which lr is multiplied by gamma",
                                factory=list)
    gamma: float = doc("step schedule: decay factor", 0.1)
    min_lr_ratio: float = doc("cosine schedule: final lr as a fraction of base_lr", 0.05)
    warmup_iters: int = doc("iterations of linear warmup", 100)
    warmup_start_factor: float = doc("lr at iteration 0 as a fraction of base_lr", 0.1)


@dataclass
class OptimizerConfig:
    """The optimizer and gradient clipping."""

    type: Literal["SGD", "AdamW"] = doc("optimizer", "SGD")
    momentum: float = doc("SGD momentum", 0.9)
    weight_decay: float = doc("weight decay (L2 for SGD, decoupled for AdamW)", 1e-4)
    clip_grad_norm: float = doc("clip the global gradient norm to this; 0 disables", 10.0)


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
class CotLossConfig:
    """The co-tuning loss (PaddleDetection's ``COTLoss``) on the foreground RoIs."""

    name: Literal["COTLoss"] = doc("loss name (PaddleDetection's; only COTLoss)", "COTLoss")
    cot_lambda: float = doc("weight of the co-tuning loss in the total loss", 1.0)
    cot_scale: float = doc("temperature: the source-head logits are multiplied by this "
                           "before the log-softmax", 1.0)


@dataclass
class BBoxHeadConfig:
    """Faster R-CNN box head options; only co-tuning (``use_cot``) reads them."""

    cot_classes: int = doc("co-tuning: classes of the pretrained detector's classifier "
                           "(background excluded), kept as the source head", 0)
    loss_cot: CotLossConfig = doc("co-tuning loss", factory=CotLossConfig)


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


# --------------------------------------------------------------------------- validation

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "a boolean (true/false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is dict or origin is dict:
        return "a mapping"
    if origin is list:
        return "a list"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "null"
                           for a in typing.get_args(tp))
    return str(tp)


class _Validator:
    """Builds the typed config and collects every error on the way (``errors``): a key
    that does not convert is reported and left at its default, so the keys after it are
    checked too; then the semantic checks run with ``collecting`` on, where ``fail``
    records an error and returns (a check must not rely on ``fail`` to stop it)."""

    def __init__(self, loaded: LoadedConfig | None):
        self.loaded = loaded
        self.errors: list[ConfigError] = []
        self.collecting = False

    def fail(self, keypath: KeyPath, message: str, hint: str | None = None) -> None:
        # a list item (``sample_transforms[2]``) is where its list is
        where = tuple(re.sub(r"\[\d+\]$", "", part) for part in keypath)
        src = self.loaded.source_of(where) if self.loaded else None
        file = line = None
        if src is not None:
            file = src.file if src.override is None else f"-o {src.override}"
            line = src.line
        elif self.loaded is not None:
            file = str(self.loaded.path)
        error = ConfigError(message, file=file, line=line, key=".".join(keypath), hint=hint)
        if not self.collecting:
            raise error
        self.errors.append(error)

    def raise_errors(self) -> None:
        """Raise what was found: one error as it is, several as ``ConfigErrors`` in file
        order (the top file first, then its bases, then the ``-o`` overrides)."""
        if not self.errors:
            return
        files = [str(f) for f in self.loaded.files] if self.loaded else []

        def position(e: ConfigError) -> tuple[int, float]:
            rank = files.index(e.file) if e.file in files else len(files)
            return rank, e.line if e.line is not None else math.inf

        first: dict[str | None, ConfigError] = {}
        for error in self.errors:  # one error per key: the first found says it
            first.setdefault(error.key, error)
        errors = sorted(first.values(), key=position)  # stable: -o overrides in given order
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)

    def convert(self, tp: Any, value: Any, keypath: KeyPath) -> Any:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            non_null = [a for a in args if a is not type(None)]
            if len(non_null) == 1:
                return self.convert(non_null[0], value, keypath)
            for arg in args:
                if arg is type(None):
                    continue
                found = len(self.errors)
                try:
                    converted = self.convert(arg, value, keypath)
                except ConfigError:
                    continue
                if len(self.errors) == found:
                    return converted
                del self.errors[found:]  # this arm did not fit: try the next one
            self._type_error(tp, value, keypath)
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                self._type_error(tp, value, keypath)
            return self.build(tp, value, keypath)
        if origin is Literal:
            allowed = typing.get_args(tp)
            if value not in allowed:
                close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
                self.fail(keypath, f"{value!r} is not allowed; expected {_type_name(tp)}",
                          hint=f"did you mean {close[0]!r}?" if close else None)
            return value
        if tp is bool:
            if not isinstance(value, bool):
                self._type_error(tp, value, keypath)
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self._type_error(tp, value, keypath)
            if not -MAX_INT <= value <= MAX_INT:
                self.fail(keypath, f"must be at most {MAX_INT} in magnitude, got a "
                          f"{len(str(abs(value)))}-digit number")
            return value
        if tp is float:
            if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
                value = float(value)  # PyYAML reads `1e-3` (no dot) as a string
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self._type_error(tp, value, keypath)
            try:
                number = float(value)
            except OverflowError:  # an int of 309+ digits
                number = math.inf
            if not math.isfinite(number):  # NaN passes every `x < 0` check after this
                self.fail(keypath, f"must be a finite number, got {value!r}")
            return number
        if tp is str:
            if not isinstance(value, str):
                self._type_error(tp, value, keypath)
            return value
        if tp is dict:
            if not isinstance(value, dict):
                self._type_error(tp, value, keypath)
            return value
        if origin is list:
            if not isinstance(value, list):
                self._type_error(tp, value, keypath)
            (item_tp,) = typing.get_args(tp)
            items = []
            for i, v in enumerate(value):  # a bad item is reported; the others are checked
                try:
                    v = self.convert(item_tp, v, (*keypath[:-1], f"{keypath[-1]}[{i}]"))
                except ConfigError as exc:
                    self.errors.append(exc)  # kept as it is, so the items keep their index
                items.append(v)
            return items
        raise TypeError(f"schema type {tp!r} is not supported")  # a bug in the schema

    def _type_error(self, tp: Any, value: Any, keypath: KeyPath) -> typing.NoReturn:
        got = "null" if value is None else f"{value!r} ({type(value).__name__})"
        self.fail(keypath, f"expected {_type_name(tp)}, got {got}")
        raise AssertionError("fail raises while converting")  # collecting is off here

    def build(self, cls: type, data: dict, prefix: KeyPath) -> Any:
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in data.items():
            keypath = (*prefix, str(key))
            try:  # a bad key is reported and left at its default: the next ones count too
                if key not in hints:
                    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                    where = f"section '{'.'.join(prefix)}'" if prefix else "the top level"
                    self.fail(keypath, f"unknown key in {where}",
                              hint=(f"did you mean '{close[0]}'?" if close else
                                    "allowed keys: " + ", ".join(names)))
                kwargs[key] = self.convert(hints[key], value, keypath)
            except ConfigError as exc:
                self.errors.append(exc)
        try:
            return cls(**kwargs)
        except TypeError:  # a required key was left out because it was wrong
            self.raise_errors()
            raise


def _check_semantics(cfg: Config, v: _Validator) -> None:
    if cfg.architecture not in ARCHITECTURES:
        close = difflib.get_close_matches(cfg.architecture, ARCHITECTURES, n=1)
        v.fail(("architecture",), f"unknown architecture {cfg.architecture!r}; supported: "
               + ", ".join(ARCHITECTURES), hint=f"did you mean {close[0]!r}?" if close else None)
    if cfg.backbone.name not in BACKBONES:
        close = difflib.get_close_matches(cfg.backbone.name, BACKBONES, n=1)
        v.fail(("backbone", "name"), f"unknown backbone {cfg.backbone.name!r}; supported: "
               + ", ".join(BACKBONES), hint=f"did you mean {close[0]!r}?" if close else None)
    _check_trainer(cfg, v)
    _check_rtdetr(cfg.rtdetr, v)
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
    _check_arsl(cfg, v)
    _check_detr_ssod(cfg.DETR_SSOD.train_cfg, v)
    if cfg.LearningRate.base_lr <= 0:
        v.fail(("LearningRate", "base_lr"), "must be > 0")
    if not 0.0 < cfg.ema_decay < 1.0:
        v.fail(("ema_decay",), f"must be between 0 and 1 (exclusive), got {cfg.ema_decay}")
    dev = cfg.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        v.fail(("device",), f"unknown device {dev!r}; allowed: auto, cpu, cuda, cuda:N")
    for section in ("TrainReader", "EvalReader"):
        _check_transforms(v, (section, "sample_transforms"),
                          getattr(cfg, section).sample_transforms)
    _check_datasets(cfg, v)
    _check_semi(cfg, v)
    for section in ("TrainDataset", "EvalDataset"):
        _check_synthesize(getattr(cfg, section), section, v)
    _check_cotuning(cfg, v)


def _float_keys(obj: Any, prefix: KeyPath) -> typing.Iterator[tuple[KeyPath, float]]:
    """Every float value of a config section, with its key path."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _float_keys(value, (*prefix, f.name))
        elif type(value) is float:
            yield (*prefix, f.name), value


def _check_sizes(cfg: Config, v: _Validator) -> None:
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


def _check_transforms(v: _Validator, keypath: KeyPath, ops: list[dict],
                      allowed: tuple[str, ...] | None = None) -> None:
    """Each op is a known one-key mapping with known arguments; with ``allowed``, only
    those ops (the weak/strong views take photometric ops only)."""
    *parent, leaf = keypath
    for i, op in enumerate(ops):
        where = (*parent, f"{leaf}[{i}]")
        if not isinstance(op, dict) or len(op) != 1:
            v.fail(where, "each transform is a one-key mapping like {RandomFlip: {prob: 0.5}}")
            continue
        (name, args), = op.items()
        if name not in TRANSFORM_OPS:
            close = difflib.get_close_matches(str(name), TRANSFORM_OPS, n=1)
            v.fail(where, f"unknown transform {name!r}; allowed: " + ", ".join(TRANSFORM_OPS),
                   hint=f"did you mean {close[0]!r}?" if close else None)
            continue
        if allowed is not None and name not in allowed:
            v.fail(where, f"{name} changes the geometry of the image, and the weak and strong "
                   f"views must share theirs point by point; {leaf} takes photometric ops "
                   "only: " + ", ".join(allowed),
                   hint=f"put {name} in {'.'.join(parent)}.sample_transforms, which runs "
                        "once before the two views are made")
        if args is None:
            continue
        if not isinstance(args, dict):
            v.fail(where, f"the arguments of {name} must be a mapping")
            continue
        for arg in args:
            if arg not in TRANSFORM_OPS[name]:
                v.fail(where, f"{name} has no argument {arg!r}; allowed: "
                       + ", ".join(TRANSFORM_OPS[name]))


def _check_split(v: _Validator, keypath: KeyPath, spec: SemiSplitSpec | None) -> None:
    if spec is not None and not 0.0 < spec.percent < 100.0:
        v.fail((*keypath, "percent"), f"must be between 0 and 100 (exclusive), got "
               f"{spec.percent:g}")


def _check_datasets(cfg: Config, v: _Validator) -> None:
    for section in ("TrainDataset", "EvalDataset"):
        ds: DatasetConfig = getattr(cfg, section)
        if ds.name == "VOCDataSet" and ds.synthesize is not None:
            v.fail((section, "synthesize"), "synthesize writes the shapes dataset as a COCO "
                   "json; it does not go with name: VOCDataSet")
        if ds.name == "COCODataSet" and ds.label_list is not None:
            v.fail((section, "label_list"), "label_list is for name: VOCDataSet; a COCO json "
                   "names its classes in 'categories'")
    if cfg.EvalDataset.semi_split is not None:
        v.fail(("EvalDataset", "semi_split"), "a semi-supervised split is for training data "
               "(TrainDataset keeps the labeled part, UnsupTrainDataset the unlabeled one); "
               "evaluation uses the whole EvalDataset")
    _check_split(v, ("TrainDataset", "semi_split"), cfg.TrainDataset.semi_split)
    unsup = cfg.UnsupTrainDataset
    if unsup is None:
        return
    _check_split(v, ("UnsupTrainDataset", "semi_split"), unsup.semi_split)
    if unsup.name == "ImageFolder":
        for key in ("anno_path", "synthesize", "semi_split"):
            if getattr(unsup, key) is not None:
                v.fail(("UnsupTrainDataset", key), f"{key} is for name: COCODataSet; an "
                       "ImageFolder reads every image file in dataset_dir/image_dir")
    elif unsup.anno_path is None:
        v.fail(("UnsupTrainDataset", "anno_path"), "a COCODataSet needs anno_path (a COCO "
               "json listing the images; its annotations are ignored)",
               hint="or set name: ImageFolder to use every image file in image_dir")
    labeled = cfg.TrainDataset
    same_file = (unsup.name == "COCODataSet" and unsup.dataset_dir == labeled.dataset_dir
                 and unsup.anno_path == labeled.anno_path)
    if (same_file and labeled.synthesize is not None and unsup.synthesize is not None
            and labeled.synthesize != unsup.synthesize):
        v.fail(("UnsupTrainDataset", "synthesize"), "generates the same json as "
               "TrainDataset.synthesize with other settings; whichever runs first would "
               "win; give both the same num_images, seed and image_size")
    if same_file and labeled.semi_split is not None and unsup.semi_split is not None:
        a, b = labeled.semi_split, unsup.semi_split
        if (a.percent, a.seed) != (b.percent, b.seed):
            v.fail(("UnsupTrainDataset", "semi_split"), f"splits the same json as "
                   f"TrainDataset.semi_split but differently (percent {b.percent:g} seed "
                   f"{b.seed} vs percent {a.percent:g} seed {a.seed}), so labeled images "
                   "would also be drawn as unlabeled ones; use the same percent and seed")


def _check_semi(cfg: Config, v: _Validator) -> None:
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
    _check_transforms(v, ("SemiTrainReader", "sample_transforms"), reader.sample_transforms)
    for key in ("weak_aug", "strong_aug"):
        _check_transforms(v, ("SemiTrainReader", key), getattr(reader, key), PHOTOMETRIC_OPS)


def _check_trainer(cfg: Config, v: _Validator) -> None:
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


def cotuning_enabled(cfg: Config) -> bool:
    """Whether the co-tuning trainer (and model) runs: ``use_cot`` without ``ssod_method``,
    which the seed's dispatch checks first."""
    info = trainer_for(cfg.ssod_method, cfg.use_cot)
    return info is not None and info.use_cot


def _check_cotuning(cfg: Config, v: _Validator) -> None:
    head = cfg.BBoxHead
    if head.loss_cot.cot_lambda < 0:
        v.fail(("BBoxHead", "loss_cot", "cot_lambda"), f"must be >= 0, got "
               f"{head.loss_cot.cot_lambda}")
    if head.loss_cot.cot_scale <= 0:
        v.fail(("BBoxHead", "loss_cot", "cot_scale"), f"must be > 0, got "
               f"{head.loss_cot.cot_scale}")
    if not cotuning_enabled(cfg):  # its architecture: _check_trainer
        return
    if head.cot_classes < 1:
        v.fail(("BBoxHead", "cot_classes"), "use_cot needs BBoxHead.cot_classes: the number of "
               "classes of the pretrained detector's classifier, background excluded (80 for "
               f"a COCO detector), got {head.cot_classes}")
    if not cfg.pretrain_weights:
        v.fail(("pretrain_weights",), "co-tuning (use_cot: true) needs pretrain_weights: the "
               "detector trained on the source classes, whose classifier it keeps",
               hint="set pretrain_weights: PATH in the config, or -o pretrain_weights=PATH "
                    "(the launch form's weights field)")


def _check_synthesize(ds: DatasetConfig, section: str, v: _Validator) -> None:
    spec = ds.synthesize
    if spec is None:
        return
    if spec.shots < 0:
        v.fail((section, "synthesize", "shots"), f"must be >= 0, got {spec.shots}")
    if spec.classes is None:
        return
    keypath = (section, "synthesize", "classes")
    if not spec.classes:
        v.fail(keypath, "must name at least one shape kind (or be null for the default four)")
    for name in spec.classes:
        if name not in SHAPE_KINDS:
            close = difflib.get_close_matches(name, SHAPE_KINDS, n=1)
            v.fail(keypath, f"unknown shape kind {name!r}; allowed: " + ", ".join(SHAPE_KINDS),
                   hint=f"did you mean {close[0]!r}?" if close else None)
    repeated = sorted({name for name in spec.classes if spec.classes.count(name) > 1})
    if repeated:
        v.fail(keypath, f"each shape kind may appear once; repeated: {', '.join(repeated)}")


def _check_arsl(cfg: Config, v: _Validator) -> None:
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


def _check_detr_ssod(tc: DetrSsodTrainConfig, v: _Validator) -> None:
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


def _check_rtdetr(r: RTDETRConfig, v: _Validator) -> None:
    """The RT-DETR numbers transformers would reject later, named by key now."""
    def key(name: str) -> KeyPath:
        return ("rtdetr", name)

    positive = ("image_size", "backbone_stem_channels", "encoder_hidden_dim", "encoder_heads",
                "encoder_ffn_dim", "d_model", "decoder_layers", "decoder_heads",
                "decoder_ffn_dim", "decoder_points", "num_queries")
    for name in positive:
        if getattr(r, name) < 1:
            v.fail(key(name), f"must be >= 1, got {getattr(r, name)}")
    for name in ("encoder_layers", "num_denoising"):
        if getattr(r, name) < 0:
            v.fail(key(name), f"must be >= 0, got {getattr(r, name)}")
    for name in ("backbone_lr_mult", "box_noise_scale", "weight_vfl", "weight_bbox",
                 "weight_giou", "focal_gamma", "matcher_class_cost", "matcher_bbox_cost",
                 "matcher_giou_cost", "matcher_gamma", "hidden_expansion"):
        if getattr(r, name) < 0:
            v.fail(key(name), f"must be >= 0, got {getattr(r, name)}")
    for name in ("label_noise_ratio", "focal_alpha", "matcher_alpha"):
        if not 0.0 <= getattr(r, name) <= 1.0:
            v.fail(key(name), f"must be between 0 and 1, got {getattr(r, name)}")
    if not 0.0 < r.prior_prob < 1.0:
        v.fail(key("prior_prob"), f"must be between 0 and 1 (exclusive), got {r.prior_prob}")
    if r.matcher_class_cost == r.matcher_bbox_cost == r.matcher_giou_cost == 0:
        v.fail(key("matcher_class_cost"), "the three matcher costs cannot all be 0")
    if len(r.backbone_depths) != 4 or any(d < 1 for d in r.backbone_depths):
        v.fail(key("backbone_depths"), f"must be 4 stage depths >= 1, got {r.backbone_depths}")
    if len(r.backbone_hidden_sizes) != 4 or any(c < 1 for c in r.backbone_hidden_sizes):
        v.fail(key("backbone_hidden_sizes"),
               f"must be 4 stage widths >= 1, got {r.backbone_hidden_sizes}")
    if (r.backbone_layer_type == "basic" and r.backbone_hidden_sizes
            and r.backbone_stem_channels != r.backbone_hidden_sizes[0]):
        # transformers' basic ResNet-vd block downsamples whenever its width changes, and the
        # first stage keeps the stem's resolution: the widths must match there.
        v.fail(key("backbone_stem_channels"), f"must equal backbone_hidden_sizes[0] "
               f"({r.backbone_hidden_sizes[0]}) with basic blocks, got {r.backbone_stem_channels}")
    stages = r.feature_stages
    if not stages or any(s not in (1, 2, 3, 4) for s in stages) or sorted(set(stages)) != stages:
        v.fail(key("feature_stages"), f"must be increasing stage numbers from 1-4, got {stages}")
        return
    largest_stride = 2 ** (stages[-1] + 1)
    if r.image_size % largest_stride:
        v.fail(key("image_size"), f"must be a multiple of the largest feature stride "
               f"{largest_stride} (stage {stages[-1]}), got {r.image_size}")
    bad = [size for size in r.train_sizes if size < 1 or size % largest_stride]
    if bad:
        v.fail(key("train_sizes"), f"every size must be a positive multiple of the largest "
               f"feature stride {largest_stride}, got {bad}")
    for dim, heads in (("encoder_hidden_dim", "encoder_heads"), ("d_model", "decoder_heads")):
        if getattr(r, heads) >= 1 and getattr(r, dim) % getattr(r, heads):
            v.fail(key(dim), f"{getattr(r, dim)} is not divisible by {heads} "
                   f"{getattr(r, heads)}")
    if r.encoder_hidden_dim % 4:  # the 2-D sine position embedding splits it in 4
        v.fail(key("encoder_hidden_dim"), f"must be a multiple of 4, got {r.encoder_hidden_dim}")
    if int(r.encoder_hidden_dim * r.hidden_expansion) < 1:
        v.fail(key("hidden_expansion"), "leaves the encoder's CSP blocks with no channels")


def validate(loaded: LoadedConfig | dict) -> Config:
    """Check a loaded config against the schema and return the typed ``Config``."""
    if isinstance(loaded, dict):
        v, data = _Validator(None), loaded
    else:
        v, data = _Validator(loaded), loaded.data
    cfg = v.build(Config, data, ())
    v.collecting = True
    try:
        _check_semantics(cfg, v)
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
