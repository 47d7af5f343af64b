"""Detection models: ``build_model(cfg)`` turns a ``Config`` into a torchvision detector.

Label convention: datasets give labels ``1..K`` and ``0`` is background, so every
architecture is built with ``cfg.num_classes + 1`` classes (torchvision's convention; for the
sigmoid heads of FCOS and RetinaNet the extra class-0 output is simply never a target).

All three detectors share the same contract: ``model(images, targets)`` in train mode returns
torchvision's dict of loss terms; ``model(images)`` in eval mode returns one
``{"boxes" (xyxy, in the model's input-image coordinates), "scores", "labels"}`` dict per image.
The model's own transform resizes with ``model.min_size``/``max_size`` (a near no-op: the
data pipeline already resized) and normalises with the ImageNet mean/std.

With ``use_cot`` the Faster R-CNN gets co-tuning's box predictor and RoI heads
(``engine.models.cotuning``); it keeps the same contract and adds the ``loss_cot`` term.

``RTDETR`` (transformers' RT-DETR, ``engine/models/rtdetr.py``) keeps the same contract behind
an adapter; it brings its own backbone and neck (``rtdetr`` config section), has ``K`` sigmoid
class outputs (labels ``1..K`` map to its ``0..K-1``) and its own fixed input size.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import Conv2dNormActivation, MultiScaleRoIAlign

from engine.config.schema import Config
from engine.config.schema.cotuning import cotuning_enabled
from engine.models.backbones import FeaturePyramidBackbone, build_backbone
from engine.protocol.errors import ConfigError


def build_model(cfg: Config) -> nn.Module:
    """The detector named by ``cfg.architecture`` on the backbone named by ``cfg.backbone``
    (RT-DETR: on the ResNet-vd its ``rtdetr`` section describes)."""
    if cfg.architecture == "RTDETR":
        return build_rtdetr(cfg)
    if not cfg.model.aspect_ratios or any(r <= 0 for r in cfg.model.aspect_ratios):
        raise ConfigError("aspect_ratios must be a non-empty list of positive numbers",
                          key="model.aspect_ratios")
    if any(s <= 0 for s in cfg.model.anchor_sizes):
        raise ConfigError("anchor sizes must be positive", key="model.anchor_sizes")
    if cfg.model.head_convs < 0:
        raise ConfigError(f"must be >= 0, got {cfg.model.head_convs}", key="model.head_convs")
    if cfg.model.fpn_channels < 8:
        raise ConfigError(f"must be >= 8, got {cfg.model.fpn_channels}", key="model.fpn_channels")
    backbone = build_backbone(cfg)
    if cotuning_enabled(cfg):
        # Imported here: the co-tuning builder extends this module's Faster R-CNN builder.
        from engine.models.cotuning import build_cotuning_faster_rcnn

        return build_cotuning_faster_rcnn(cfg, backbone)
    return ARCHITECTURE_BUILDERS[cfg.architecture](cfg, backbone)


def build_rtdetr(cfg: Config) -> nn.Module:
    """transformers' RT-DETR behind the torchvision contract (imported here: transformers
    adds seconds to the start of every engine that does not use it)."""
    from engine.models.rtdetr import build_rtdetr as build

    return build(cfg)


def lr_multiplier(cfg: Config, parameter_name: str) -> float:
    """The learning-rate multiplier of a parameter (by its name in the model): RT-DETR's
    backbone trains at ``rtdetr.backbone_lr_mult`` of the base rate (PaddleDetection's
    ``lr_mult``); everything else at 1."""
    if cfg.architecture == "RTDETR" and parameter_name.startswith("model.backbone."):
        return cfg.rtdetr.backbone_lr_mult
    return 1.0


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def head_norm(channels: int) -> Callable[[int], nn.Module]:
    """GroupNorm for the dense heads, as torchvision's FCOS uses, with at most 32 groups.

    torchvision hard-codes 32 groups, which fails for widths that are not multiples of 32; the
    largest divisor of the width up to 32 keeps the standard layout for 64/128/256 channels.
    """
    groups = max(g for g in range(1, 33) if channels % g == 0)
    return partial(nn.GroupNorm, groups)


def _conv_tower(channels: int, num_convs: int,
                norm_layer: Callable[[int], nn.Module] | None) -> nn.Sequential:
    """``num_convs`` x (3x3 conv, norm, ReLU), laid out and initialised like torchvision's heads.

    The layout (conv, norm, relu as flat siblings) keeps state-dict keys identical to
    torchvision's FCOS head (``conv.0.weight``, ``conv.1.weight``...).
    """
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.constant_(conv.bias, 0)
        layers.append(conv)
        if norm_layer is not None:
            layers.append(norm_layer(channels))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _retinanet_tower(channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` x (3x3 conv + ReLU) blocks, as torchvision's RetinaNet head builds them
    (``Conv2dNormActivation`` without norm, so the keys are ``conv.0.0.weight``...)."""
    tower = nn.Sequential(*(Conv2dNormActivation(channels, channels, norm_layer=None)
                            for _ in range(num_convs)))
    for module in tower.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.constant_(module.bias, 0)
    return tower


def _common_kwargs(cfg: Config) -> dict:
    return {"min_size": cfg.model.min_size, "max_size": cfg.model.max_size}


def _build_fcos(cfg: Config, backbone: FeaturePyramidBackbone) -> nn.Module:
    channels, num_classes = backbone.out_channels, cfg.num_classes + 1
    # One point per location: the "anchor size" of a level is its object-size scale (FCOS
    # assigns a box to the level whose [4, 8] x size range holds its largest side distance).
    sizes = tuple((float(s),) for s in cfg.model.anchor_sizes)
    anchor_generator = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    # Built with empty towers (torchvision's towers hard-code GroupNorm(32, ...)), then ours.
    head = FCOSHead(channels, 1, num_classes, num_convs=0)
    norm = head_norm(channels)
    head.classification_head.conv = _conv_tower(channels, cfg.model.head_convs, norm)
    head.regression_head.conv = _conv_tower(channels, cfg.model.head_convs, norm)
    return FCOS(backbone, num_classes, anchor_generator=anchor_generator, head=head,
                score_thresh=cfg.model.score_thresh, nms_thresh=cfg.model.nms_thresh,
                detections_per_img=cfg.model.detections_per_img, **_common_kwargs(cfg))


def _build_retinanet(cfg: Config, backbone: FeaturePyramidBackbone) -> nn.Module:
    channels, num_classes = backbone.out_channels, cfg.num_classes + 1
    # Three octave scales per level, as in the RetinaNet paper and torchvision's default.
    sizes = tuple(tuple(s * 2 ** (k / 3) for k in range(3)) for s in cfg.model.anchor_sizes)
    ratios = (tuple(cfg.model.aspect_ratios),) * len(sizes)
    anchor_generator = AnchorGenerator(sizes, ratios)
    head = RetinaNetHead(channels, anchor_generator.num_anchors_per_location()[0], num_classes)
    # torchvision's RetinaNet (v1) head: no norm and always 4 convs; head_convs sets the depth.
    head.classification_head.conv = _retinanet_tower(channels, cfg.model.head_convs)
    head.regression_head.conv = _retinanet_tower(channels, cfg.model.head_convs)
    return RetinaNet(backbone, num_classes, anchor_generator=anchor_generator, head=head,
                     score_thresh=cfg.model.score_thresh, nms_thresh=cfg.model.nms_thresh,
                     detections_per_img=cfg.model.detections_per_img, **_common_kwargs(cfg))


def _build_faster_rcnn(cfg: Config, backbone: FeaturePyramidBackbone) -> nn.Module:
    channels, num_classes = backbone.out_channels, cfg.num_classes + 1
    sizes = tuple((float(s),) for s in cfg.model.anchor_sizes)
    ratios = (tuple(cfg.model.aspect_ratios),) * len(sizes)
    anchor_generator = AnchorGenerator(sizes, ratios)
    # RoIs are pooled from the body's levels only (not the max-pooled extras), as torchvision does.
    roi_pool = MultiScaleRoIAlign(featmap_names=backbone.body_level_names, output_size=7,
                                  sampling_ratio=2)
    # torchvision's 1024-wide box head for 256 FPN channels; narrower pyramids get a narrower head.
    representation = min(1024, 4 * channels)
    box_head = TwoMLPHead(channels * 7 * 7, representation)
    box_predictor = FastRCNNPredictor(representation, num_classes)
    # torchvision's proposal and RoI-sampling budgets are sized for 800-px COCO images; scale
    # them with the image area (never below 1/8). At 160 px the full budget is 8192 sampled
    # RoIs per batch of 16, and RoIAlign's (single-threaded) CPU backward then takes over 80%
    # of a training step: 64 RoIs per image make Faster R-CNN train several times faster.
    budget = min(1.0, max(0.125, (cfg.model.min_size / 800) ** 2))
    # num_classes=None: torchvision requires it unset when box_predictor is given.
    return FasterRCNN(backbone, None, rpn_anchor_generator=anchor_generator,
                      box_roi_pool=roi_pool, box_head=box_head, box_predictor=box_predictor,
                      rpn_pre_nms_top_n_train=round(2000 * budget),
                      rpn_post_nms_top_n_train=round(2000 * budget),
                      rpn_pre_nms_top_n_test=round(1000 * budget),
                      rpn_post_nms_top_n_test=round(1000 * budget),
                      box_batch_size_per_image=round(512 * budget),
                      box_score_thresh=cfg.model.score_thresh,
                      box_nms_thresh=cfg.model.nms_thresh,
                      box_detections_per_img=cfg.model.detections_per_img,
                      **_common_kwargs(cfg))


# The torchvision detectors, each on an FPN backbone (RTDETR is built by build_rtdetr).
ARCHITECTURE_BUILDERS: dict[str, Callable[[Config, FeaturePyramidBackbone], nn.Module]] = {
    "FCOS": _build_fcos,
    "RetinaNet": _build_retinanet,
    "FasterRCNN": _build_faster_rcnn,
}

__all__ = ["ARCHITECTURE_BUILDERS", "build_model", "build_rtdetr", "count_parameters", "head_norm",
           "lr_multiplier"]
