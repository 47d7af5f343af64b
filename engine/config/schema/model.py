"""The model and optimisation sections (``backbone``, ``model``, ``rtdetr``,
``LearningRate``, ``OptimizerBuilder``) and their checks. stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.config.loader import KeyPath
from engine.config.schema.base import BACKBONES, doc
from engine.config.schema.validator import Validator


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


def check_rtdetr(r: RTDETRConfig, v: Validator) -> None:
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
