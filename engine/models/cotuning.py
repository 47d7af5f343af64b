"""Co-tuning (You et al., "Co-Tuning for Transfer Learning", NeurIPS 2020) on torchvision's
Faster R-CNN, as PaddleDetection does it (``use_cot: true``; notes section 7).

A detector pretrained on *source* classes is fine-tuned to new *target* classes. Its box
predictor keeps two classifiers on the RoI feature:

* ``cls_score``: the source classifier (``cot_classes`` + background). It keeps torchvision's
  name, so a torchvision/COCO-style Faster R-CNN checkpoint
  (``roi_heads.box_predictor.cls_score.*``) fills it by name;
* ``target_cls_score``: the new target classifier (``num_classes`` + background; PaddleDetection's
  ``cot_bbox_score``), trained with the usual cross-entropy and used for inference;
* ``bbox_pred``: box regression for the target classes. The source checkpoint's differs in
  shape, so the partial loader skips and reports it and it trains from its init.

In training, ``CoTuningRoIHeads`` adds ``loss_cot``: on the foreground sampled RoIs, the soft
cross-entropy of the source head's logits (background column removed, times ``cot_scale``)
against the relationship row of each RoI's target label, times ``cot_lambda``. The
relationship (``[num_classes, cot_classes]``, learned once before training by
``engine.models.relationship.learn_relationship``) is a buffer of the RoI heads, so it is in
the state dict: a resumed run continues with the same matrix and does not recompute it.

In eval mode the model is a plain torchvision Faster R-CNN predicting the target classes
(``boxes``/``scores``/``labels``), so ``dettui eval``/``infer`` work with a co-tuning config.

Label convention (torchvision's): column 0 of both classifiers is the background; target label
``y`` in ``1..K`` uses relationship row ``y - 1``; source class ``j`` in ``1..S`` is column
``j - 1`` of the relationship.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss

from engine.config.schema import Config
from engine.models import _build_faster_rcnn
from engine.models.backbones import FeaturePyramidBackbone
from engine.models.weights import LoadReport, load_pretrained
from engine.protocol.errors import ConfigError, WeightsError

# The source classifier's weight in the model (and in torchvision's Faster R-CNN checkpoints).
SOURCE_CLASSIFIER = "roi_heads.box_predictor.cls_score.weight"


class CoTuningPredictor(nn.Module):
    """Faster R-CNN's box predictor with a second (source) classifier.

    ``forward`` keeps torchvision's ``FastRCNNPredictor`` contract, ``(target class logits,
    box deltas)``, so torchvision's inference path uses the target head unchanged;
    ``source_logits`` gives the source head's logits for the co-tuning loss and for
    relationship learning.
    """

    def __init__(self, in_channels: int, num_classes: int, cot_classes: int):
        super().__init__()
        self.num_classes = num_classes  # target classes, background excluded
        self.cot_classes = cot_classes  # source classes, background excluded
        self.cls_score = nn.Linear(in_channels, cot_classes + 1)
        self.target_cls_score = nn.Linear(in_channels, num_classes + 1)
        # torchvision's layout: one box per class, the background's included (never used).
        self.bbox_pred = nn.Linear(in_channels, 4 * (num_classes + 1))
        # The new layers keep torchvision's FastRCNNPredictor init (nn.Linear's default), as
        # plain fine-tuning (use_cot: false) gets: the two then differ only by co-tuning.

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.target_cls_score(x), self.bbox_pred(x)

    def source_logits(self, x: Tensor) -> Tensor:
        """Logits of the source classifier, ``[N, cot_classes + 1]`` (column 0: background)."""
        return self.cls_score(x.flatten(start_dim=1))


def cotuning_loss(source_logits: Tensor, labels: Tensor, relationship: Tensor,
                  cot_lambda: float = 1.0, cot_scale: float = 1.0) -> Tensor:
    """PaddleDetection's ``COTLoss`` in torchvision's label convention.

    ``source_logits`` ``[N, S + 1]`` (column 0: background), ``labels`` ``[N]`` the sampled
    RoIs' target labels (0: background), ``relationship`` ``[K, S]``. Returns
    ``cot_lambda * mean over RoIs with label > 0 of -sum_j r[label - 1, j] *
    log_softmax(cot_scale * source_logits[:, 1:])_j``, and 0 when there is no foreground RoI.
    Computed on every RoI and masked (no host sync); with no foreground it is still a
    function of the logits, so every rank's backward reaches the source head under DDP.
    """
    foreground = labels > 0
    rows = relationship[(labels - 1).clamp(min=0)].to(source_logits.dtype)
    log_probs = F.log_softmax(cot_scale * source_logits[:, 1:], dim=-1)
    per_roi = -(rows * log_probs).sum(dim=-1)
    count = foreground.sum().clamp(min=1)
    return cot_lambda * (per_roi * foreground).sum() / count


class CoTuningRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` plus the co-tuning loss in training.

    Buffers (in the state dict; a checkpoint restores them exactly):
        relationship: float ``[num_classes, cot_classes]``, row ``y - 1`` is the source-class
            distribution of target label ``y`` (uniform until learned).
        relationship_counts: int64 ``[num_classes]``, ground-truth boxes per target class that
            went into it.
        relationship_learned: uint8 scalar, 1 once ``set_relationship`` stored a learned matrix.
    """

    def __init__(self, *args, num_classes: int, cot_classes: int, cot_lambda: float = 1.0,
                 cot_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_classes = num_classes
        self.cot_classes = cot_classes
        self.cot_lambda = cot_lambda
        self.cot_scale = cot_scale
        self.register_buffer("relationship", torch.empty(num_classes, cot_classes))
        self.register_buffer("relationship_counts", torch.zeros(num_classes, dtype=torch.int64))
        # uint8, not bool: every process-group backend broadcasts it (DDP's buffer sync).
        self.register_buffer("relationship_learned", torch.zeros((), dtype=torch.uint8))
        self.reset_relationship()

    @property
    def is_learned(self) -> bool:
        return bool(self.relationship_learned)

    @torch.no_grad()
    def reset_relationship(self) -> None:
        """Back to "not learned": uniform rows, no counts."""
        self.relationship.fill_(1.0 / self.cot_classes)
        self.relationship_counts.zero_()
        self.relationship_learned.zero_()

    @torch.no_grad()
    def set_relationship(self, matrix: Tensor, counts: Tensor) -> None:
        """Store a learned ``[num_classes, cot_classes]`` matrix and its per-class box counts."""
        expected = (self.num_classes, self.cot_classes)
        if tuple(matrix.shape) != expected or tuple(counts.shape) != expected[:1]:
            raise ValueError(f"relationship must be {list(expected)} with {expected[0]} counts, "
                             f"got {list(matrix.shape)} and {list(counts.shape)}")
        self.relationship.copy_(matrix)
        self.relationship_counts.copy_(counts)
        self.relationship_learned.fill_(1)

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are required in training")
        if not self.is_learned:
            raise RuntimeError("co-tuning needs the target -> source relationship before "
                               "training: call engine.models.relationship.learn_relationship "
                               "first (a resumed checkpoint carries it)")
        proposals, _, labels, regression_targets = self.select_training_samples(proposals,
                                                                                 targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels,
                                                      regression_targets)
        loss_cot = cotuning_loss(self.box_predictor.source_logits(box_features),
                                 torch.cat(labels), self.relationship, self.cot_lambda,
                                 self.cot_scale)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg,
                    "loss_cot": loss_cot}


def build_cotuning_faster_rcnn(cfg: Config, backbone: FeaturePyramidBackbone) -> FasterRCNN:
    """``build_model``'s Faster R-CNN with ``CoTuningRoIHeads`` and ``CoTuningPredictor``.

    Everything else (anchors, RoIAlign, box head, sampling budgets, thresholds) is exactly
    the supervised model's, read back from the RoI heads it builds.
    """
    if cfg.architecture != "FasterRCNN":
        raise ConfigError(f"co-tuning needs architecture FasterRCNN, got {cfg.architecture}",
                          key="use_cot")
    if cfg.BBoxHead.cot_classes < 1:
        raise ConfigError(f"must be >= 1 for co-tuning, got {cfg.BBoxHead.cot_classes}",
                          key="BBoxHead.cot_classes")
    model = _build_faster_rcnn(cfg, backbone)
    plain = model.roi_heads
    predictor = CoTuningPredictor(plain.box_predictor.cls_score.in_features, cfg.num_classes,
                                  cfg.BBoxHead.cot_classes)
    loss = cfg.BBoxHead.loss_cot
    model.roi_heads = CoTuningRoIHeads(
        plain.box_roi_pool, plain.box_head, predictor,
        fg_iou_thresh=plain.proposal_matcher.high_threshold,
        bg_iou_thresh=plain.proposal_matcher.low_threshold,
        batch_size_per_image=plain.fg_bg_sampler.batch_size_per_image,
        positive_fraction=plain.fg_bg_sampler.positive_fraction,
        bbox_reg_weights=plain.box_coder.weights,
        score_thresh=plain.score_thresh, nms_thresh=plain.nms_thresh,
        detections_per_img=plain.detections_per_img,
        num_classes=cfg.num_classes, cot_classes=cfg.BBoxHead.cot_classes,
        cot_lambda=loss.cot_lambda, cot_scale=loss.cot_scale)
    return model


def cotuning_heads(model: nn.Module) -> CoTuningRoIHeads:
    """The ``CoTuningRoIHeads`` of a co-tuning model (DDP-wrapped or not)."""
    net = getattr(model, "module", model)
    heads = getattr(net, "roi_heads", None)
    if not isinstance(heads, CoTuningRoIHeads):
        raise TypeError(f"not a co-tuning Faster R-CNN (roi_heads is "
                        f"{type(heads).__name__}); build it with use_cot: true")
    return heads


def load_cotuning_weights(model: nn.Module, path: str | Path,
                          logger: logging.Logger | None = None) -> LoadReport:
    """``pretrain_weights`` for co-tuning: ``load_pretrained`` plus the source-head checks.

    The file must hold a source classifier (``cls_score``) with exactly ``cot_classes`` + 1
    outputs: a different count is a ``WeightsError`` naming both numbers; none at all (a
    backbone-only file) is one too, since co-tuning would then transfer from a random head.
    A relationship stored in the file (a co-tuning checkpoint used as source weights) is
    dropped: it is learned on this run's training set.
    """
    net = getattr(model, "module", model)
    heads = cotuning_heads(net)
    report = load_pretrained(net, path, logger=logger)
    heads.reset_relationship()
    file, cot = str(path), heads.cot_classes
    for name, file_shape, _ in report.skipped_shape:
        if name == SOURCE_CLASSIFIER:
            found = file_shape[0] - 1
            raise WeightsError(
                f"the source classifier (cls_score) in this file has {found} classes "
                f"(+background) but BBoxHead.cot_classes is {cot}", file=file,
                key="BBoxHead.cot_classes",
                hint=f"if these are the source weights you meant, set BBoxHead.cot_classes: "
                     f"{found} (-o BBoxHead.cot_classes={found})")
    if SOURCE_CLASSIFIER in report.missing:
        raise WeightsError(
            f"holds no source classifier ({SOURCE_CLASSIFIER}, or a name it ends with): "
            f"co-tuning needs the weights of a whole detector trained on the {cot} source "
            f"classes, not only a backbone", file=file, key="pretrain_weights")
    return report


__all__ = ["SOURCE_CLASSIFIER", "CoTuningPredictor", "CoTuningRoIHeads",
           "build_cotuning_faster_rcnn", "cotuning_heads", "cotuning_loss",
           "load_cotuning_weights"]
