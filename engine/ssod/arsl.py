"""ARSL (Liu et al., "Ambiguity-Resistant Semi-Supervised Learning for Dense Object
Detection", CVPR 2023), as PaddleDetection implements it (notes §5.4, §5.5).

FCOS whose third branch (torchvision's centerness branch) predicts the IoU of its box, and
whose confidence is the joint score ``sigmoid(cls) * sigmoid(iou)`` (JCE). Two losses:

- ``milc_losses`` (``FCOSLossMILC``, supervised): quality-focal BCE of the joint score
  against the IoU of the predicted box at the labeled class, GIoU regression weighted by
  the centerness targets, BCE of the IoU branch against that IoU;
- ``cr_losses`` on ``pseudo_targets`` (``FCOSLossCR``, unlabeled): per image, the teacher's
  joint scores split the points into positives (above an adaptive threshold, the
  candidates' mean + std, capped), ambiguous points (candidates below it) and negatives
  (TSA); positives learn a one-hot x joint-score class target and the teacher's box,
  ambiguous points the teacher's full soft score vector, and ambiguous points that sit
  inside a same-class positive box which their own box overlaps are mined as "potential
  positives" for the box and IoU terms.

Box regressions are ``(l, t, r, b)`` distances from a point in units of its level's size
(torchvision's ``BoxLinearCoder(normalize_by_size=True)``, PaddleDetection's
``norm_reg_targets``); IoUs between such boxes around the same point use PaddleDetection's
+1 smoothing in those units. Losses are computed in float32 (outside autocast:
``binary_cross_entropy`` on probabilities is not autocast-safe).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import FCOS
from torchvision.ops import box_iou

from engine.ssod.fcos_dense import DenseOutputs, DenseStudent

IoULossType = Literal["giou", "iou", "linear_iou"]


# ------------------------------------------------------------------------ shared pieces
def ltrb_iou(pred: Tensor, target: Tensor) -> Tensor:
    """``[N]`` IoU of boxes around the same point given as ``(l, t, r, b)`` distances, with
    PaddleDetection's smoothing ``(inter + 1) / (union + 1)``."""
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    inter_wh = torch.minimum(pred, target)
    inter = (inter_wh[:, 0] + inter_wh[:, 2]) * (inter_wh[:, 1] + inter_wh[:, 3])
    return (inter + 1.0) / (pred_area + target_area - inter + 1.0)


def ltrb_iou_loss(pred: Tensor, target: Tensor, loss_type: IoULossType = "giou") -> Tensor:
    """``[N]`` box loss between ltrb boxes around the same point (the target carries no
    gradient): ``1 - GIoU`` (the enclosing box is the elementwise max of the distances),
    ``1 - IoU`` or ``-log IoU``, the IoU smoothed as in ``ltrb_iou``."""
    target = target.detach()
    iou = ltrb_iou(pred, target)
    if loss_type == "linear_iou":
        return 1.0 - iou
    if loss_type == "iou":
        return -iou.log()
    if loss_type != "giou":
        raise ValueError(f"unknown iou_loss_type {loss_type!r}")
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    inter_wh = torch.minimum(pred, target)
    inter = (inter_wh[:, 0] + inter_wh[:, 2]) * (inter_wh[:, 1] + inter_wh[:, 3])
    union = pred_area + target_area - inter
    hull_wh = torch.maximum(pred, target)
    hull = (hull_wh[:, 0] + hull_wh[:, 2]) * (hull_wh[:, 1] + hull_wh[:, 3]) + 1e-7
    return 1.0 - (iou - (hull - union) / hull)


def quality_focal_bce(scores: Tensor, targets: Tensor, neg_weight: float = 0.75,
                      gamma: float = 2.0) -> Tensor:
    """Elementwise ``BCE(scores, targets) * w`` with ``w = |scores - targets|**gamma`` where
    the target is positive and ``neg_weight`` times that where it is 0 (scores are
    probabilities: the joint scores)."""
    distance = (scores - targets).abs().pow(gamma)
    weight = torch.where(targets > 0, distance, neg_weight * distance)
    return F.binary_cross_entropy(scores, targets, reduction="none") * weight


def joint_scores(cls_logits: Tensor, iou_logits: Tensor) -> Tensor:
    """``[N, C]`` ARSL's joint confidence: class probability x predicted IoU."""
    return cls_logits.sigmoid() * iou_logits.sigmoid().unsqueeze(1)


def centerness(ltrb: Tensor) -> Tensor:
    """``[N]`` FCOS centerness of ltrb targets: ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))``."""
    lr, tb = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    return torch.sqrt((lr.min(1).values / lr.max(1).values.clamp(min=1e-12))
                      * (tb.min(1).values / tb.max(1).values.clamp(min=1e-12)))


def _float32(device: torch.device):
    return torch.autocast(device.type, enabled=False)


# ------------------------------------------------------------------------- FCOSLossMILC
def milc_losses(cls_logits: Tensor, box_ltrb: Tensor, iou_logits: Tensor, labels: Tensor,
                ltrb_targets: Tensor, *, iou_loss_type: IoULossType = "giou",
                neg_weight: float = 0.75, gamma: float = 2.0, iou_weight: float = 0.5
                ) -> dict[str, Tensor]:
    """ARSL's supervised loss over the points of a batch (``FCOSLossMILC``).

    Args:
        cls_logits: ``[N, K]`` class logits.
        box_ltrb: ``[N, 4]`` predicted ltrb distances.
        iou_logits: ``[N]`` IoU-branch logits.
        labels: ``[N]`` the column of each point's class, -1 for background.
        ltrb_targets: ``[N, 4]`` the assigned box as ltrb distances (read at positives only).

    Returns ``loss_cls`` (summed over all entries / positives), ``loss_box`` (GIoU weighted
    by the centerness targets / their sum) and ``loss_iou`` (BCE / positives x iou_weight).
    """
    with _float32(cls_logits.device):
        cls_logits, box_ltrb = cls_logits.float(), box_ltrb.float()
        iou_logits, ltrb_targets = iou_logits.float(), ltrb_targets.float()
        pos = torch.nonzero(labels >= 0).squeeze(1)
        num_pos = max(1, pos.numel())
        pos_pred, pos_target = box_ltrb[pos], ltrb_targets[pos].detach()
        with torch.no_grad():
            iou = ltrb_iou(pos_pred, pos_target)
        targets = torch.zeros_like(cls_logits)
        targets[pos, labels[pos]] = iou
        scores = joint_scores(cls_logits, iou_logits)
        loss_cls = quality_focal_bce(scores, targets, neg_weight, gamma).sum() / num_pos
        ctr = centerness(pos_target)
        loss_box = ((ltrb_iou_loss(pos_pred, pos_target, iou_loss_type) * ctr).sum()
                    / ctr.sum().clamp(min=1e-6))
        loss_iou = F.binary_cross_entropy_with_logits(iou_logits[pos], iou, reduction="sum")
        return {"loss_cls": loss_cls, "loss_box": loss_box,
                "loss_iou": loss_iou / num_pos * iou_weight}


# --------------------------------------------------------------------------- FCOSLossCR
@dataclass
class CRSettings:
    """``FCOSLossCR``'s settings (``FCOSLossCRConfig`` in the schema, same names)."""

    iou_loss_type: IoULossType = "giou"
    cls_weight: float = 2.0
    reg_weight: float = 2.0
    iou_weight: float = 0.5
    hard_neg_mining_flag: bool = True
    candidate_thresh: float = 0.1
    max_pos_thresh: float = 0.4
    fallback_topk: int = 10
    mining_iou_thresh: float = 0.6
    mining_level_diff: int = 1


def divide_samples(scores: Tensor, candidate_thresh: float = 0.1, max_pos_thresh: float = 0.4,
                   fallback_topk: int = 10) -> tuple[Tensor, Tensor, float | None]:
    """Task-separated sample division of one image by the teacher's max joint scores.

    Candidates score >= ``candidate_thresh``; the positive threshold is the candidates'
    mean + (unbiased) std, capped at ``max_pos_thresh`` (a single candidate has std 0);
    positives score >= it, ambiguous points are candidates below it. With no positive
    (no candidate, or a threshold above every score) the top ``fallback_topk`` points are
    the positives; the ambiguous set is kept as computed (PaddleDetection's order).

    Returns ``(positive indices, ambiguous indices, threshold or None)``.
    """
    empty = scores.new_zeros((0,), dtype=torch.long)
    candidates = scores[scores >= candidate_thresh]
    threshold = None
    positives, ambiguous = empty, empty
    if candidates.numel() > 0:
        std = candidates.std() if candidates.numel() > 1 else candidates.new_zeros(())
        threshold = min(float(candidates.mean() + std), max_pos_thresh)
        positives = torch.nonzero(scores >= threshold).squeeze(1)
        ambiguous = torch.nonzero((scores >= candidate_thresh) & (scores < threshold)).squeeze(1)
    if positives.numel() == 0:
        positives = scores.topk(min(fallback_topk, scores.numel())).indices
    return positives, ambiguous, threshold


def decode_ltrb(ltrb: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """xyxy pixel boxes of ltrb distances (in level units) around ``points`` ``[N, 2]``."""
    d = ltrb * strides.unsqueeze(1)
    return torch.stack([points[:, 0] - d[:, 0], points[:, 1] - d[:, 1],
                        points[:, 0] + d[:, 2], points[:, 1] + d[:, 3]], dim=1)


def encode_ltrb(boxes: Tensor, points: Tensor, strides: Tensor) -> Tensor:
    """The inverse of ``decode_ltrb``: ltrb distances of xyxy boxes from ``points``."""
    d = torch.stack([points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1],
                     boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]], dim=1)
    return d / strides.unsqueeze(1)


def mine_potential_positives(scores: Tensor, classes: Tensor, boxes: Tensor, points: Tensor,
                             strides: Tensor, levels: Tensor, positives: Tensor,
                             ambiguous: Tensor, iou_thresh: float = 0.6, level_diff: int = 1
                             ) -> tuple[Tensor, Tensor]:
    """Ambiguous points that are in fact positives for localisation (one image).

    An ambiguous point ``h`` matches a positive ``p`` when their decoded boxes overlap by
    IoU >= ``iou_thresh``, they have the same argmax class, ``h``'s point lies strictly
    inside ``p``'s box, and their pyramid levels differ by at most ``level_diff``. Every
    ``h`` with a match is mined; its box target is the average of its matched positives'
    boxes weighted by their scores, as ltrb distances from ``h`` in ``h``'s level units.

    Args:
        scores, classes: ``[n]`` the teacher's max joint score and its class per point.
        boxes: ``[n, 4]`` the teacher's decoded xyxy boxes; ``points`` ``[n, 2]``;
        strides, levels: ``[n]`` each point's level size and level index.
        positives, ambiguous: index tensors into the points.

    Returns ``(mined indices, their ltrb targets [m, 4])``.
    """
    pos_boxes, amb_boxes = boxes[positives], boxes[ambiguous]
    amb_points = points[ambiguous]
    iou = box_iou(amb_boxes, pos_boxes)                                  # [h, p]
    inside = torch.stack([amb_points[:, None, 0] - pos_boxes[None, :, 0],
                          amb_points[:, None, 1] - pos_boxes[None, :, 1],
                          pos_boxes[None, :, 2] - amb_points[:, None, 0],
                          pos_boxes[None, :, 3] - amb_points[:, None, 1]], dim=2).min(2).values > 0
    valid = ((iou >= iou_thresh) & inside
             & (classes[ambiguous][:, None] == classes[positives][None, :])
             & ((levels[ambiguous][:, None] - levels[positives][None, :]).abs() <= level_diff))
    mined = valid.any(dim=1)
    if not mined.any():
        return ambiguous[:0], boxes.new_zeros((0, 4))
    weights = valid[mined].to(scores.dtype) * scores[positives][None, :]   # [m, p]
    merged = (weights @ pos_boxes) / weights.sum(dim=1, keepdim=True)
    idx = ambiguous[mined]
    return idx, encode_ltrb(merged, points[idx], strides[idx])


@dataclass
class PseudoTargets:
    """The consistency-loss targets of a batch of unlabeled points (rows as in
    ``DenseOutputs``), and counts for the train events."""

    cls_targets: Tensor    # [N, C] one-hot x joint score (positives), soft vector (ambiguous)
    loc_targets: Tensor    # [N, 4] ltrb targets of the localisation positives
    iou_targets: Tensor    # [N] the teacher's predicted IoU at localisation positives
    cls_mask: Tensor       # [N] bool, the positives
    loc_mask: Tensor       # [N] bool, positives + mined potential positives
    num_images: int
    num_positive: int = 0
    num_ambiguous: int = 0
    num_mined: int = 0
    positive_score_sum: float = 0.0
    thresholds: list[float | None] = field(default_factory=list)

    def stats(self) -> dict[str, float]:
        """Pseudo-label statistics per image, for ``step_stats``."""
        n = max(1, self.num_images)
        return {"pseudo_pos_per_image": self.num_positive / n,
                "pseudo_ambiguous_per_image": self.num_ambiguous / n,
                "pseudo_mined_per_image": self.num_mined / n,
                "pseudo_pos_score": self.positive_score_sum / max(1, self.num_positive)}


@torch.no_grad()
def pseudo_targets(teacher: DenseOutputs, settings: CRSettings) -> PseudoTargets:
    """The teacher's dense pseudo-labels (JCE + TSA + potential-positive mining), image by
    image."""
    with _float32(teacher.cls_logits.device):
        cls_logits, ltrb = teacher.cls_logits.float(), teacher.box_ltrb.float()
        iou_logits = teacher.quality.float()
        joint = joint_scores(cls_logits, iou_logits)
        max_scores, classes = joint.max(dim=1)
        points = (teacher.anchors[:, :2] + teacher.anchors[:, 2:]).float() / 2
        strides = teacher.strides.float()
        out = PseudoTargets(cls_targets=torch.zeros_like(joint),
                            loc_targets=torch.zeros_like(ltrb),
                            iou_targets=torch.zeros_like(iou_logits),
                            cls_mask=torch.zeros_like(max_scores, dtype=torch.bool),
                            loc_mask=torch.zeros_like(max_scores, dtype=torch.bool),
                            num_images=teacher.num_images)
        for image in range(teacher.num_images):
            rows = torch.nonzero(teacher.images == image).squeeze(1)
            scores = max_scores[rows]
            pos, amb, threshold = divide_samples(scores, settings.candidate_thresh,
                                                 settings.max_pos_thresh, settings.fallback_topk)
            pos_rows, amb_rows = rows[pos], rows[amb]
            out.cls_targets[pos_rows, classes[pos_rows]] = joint[pos_rows, classes[pos_rows]]
            out.cls_targets[amb_rows] = joint[amb_rows]   # overrides a fallback positive
            out.cls_mask[pos_rows] = True
            out.loc_targets[pos_rows] = ltrb[pos_rows]
            out.loc_mask[pos_rows] = True
            if settings.hard_neg_mining_flag and amb.numel() > 0:
                boxes = decode_ltrb(ltrb[rows], points[rows], strides[rows])
                mined, mined_ltrb = mine_potential_positives(
                    scores, classes[rows], boxes, points[rows], strides[rows],
                    teacher.levels[rows], pos, amb, settings.mining_iou_thresh,
                    settings.mining_level_diff)
                out.loc_targets[rows[mined]] = mined_ltrb
                out.loc_mask[rows[mined]] = True
                out.num_mined += mined.numel()
            out.num_positive += pos.numel()
            out.num_ambiguous += amb.numel()
            out.positive_score_sum += float(scores[pos].sum())
            out.thresholds.append(threshold)
        out.iou_targets[out.loc_mask] = iou_logits[out.loc_mask].sigmoid()
        return out


def cr_losses(student: DenseOutputs, targets: PseudoTargets, settings: CRSettings
              ) -> dict[str, Tensor]:
    """``loss_cls_pseudo``, ``loss_box_pseudo`` and ``loss_iou_pseudo`` of the student's
    outputs on the strong views against the pseudo targets (weighted by cls/reg/iou_weight,
    not yet by the pseudo-loss ramp).

    - cls: quality-focal BCE of the student's joint scores over every entry, / the summed
      max targets of the positives;
    - box: the IoU loss at the localisation positives, each weighted by its max class
      target, / the sum of those weights;
    - iou: mean BCE of the student's IoU branch at the localisation positives.
    """
    with _float32(student.cls_logits.device):
        cls_logits, ltrb = student.cls_logits.float(), student.box_ltrb.float()
        iou_logits = student.quality.float()
        t = targets.cls_targets
        scores = joint_scores(cls_logits, iou_logits)
        cls_norm = t[targets.cls_mask].max(dim=1).values.sum().clamp(min=1e-6)
        loss_cls = quality_focal_bce(scores, t).sum() / cls_norm
        loc = torch.nonzero(targets.loc_mask).squeeze(1)
        loc_weights = t[loc].max(dim=1).values
        box = ltrb_iou_loss(ltrb[loc], targets.loc_targets[loc], settings.iou_loss_type)
        loss_box = (box * loc_weights).sum() / loc_weights.sum().clamp(min=1e-6)
        loss_iou = F.binary_cross_entropy(iou_logits[loc].sigmoid(), targets.iou_targets[loc],
                                          reduction="sum") / max(1, loc.numel())
        return {"loss_cls_pseudo": loss_cls * settings.cls_weight,
                "loss_box_pseudo": loss_box * settings.reg_weight,
                "loss_iou_pseudo": loss_iou * settings.iou_weight}


def arsl_unsup_losses(student: DenseOutputs, teacher: DenseOutputs, settings: CRSettings
                      ) -> tuple[dict[str, Tensor], PseudoTargets]:
    """``FCOSLossCR``: pseudo targets from the teacher's outputs on the weak views, and the
    student's losses on the strong views against them."""
    if student.cls_logits.shape != teacher.cls_logits.shape:
        raise ValueError(f"student and teacher outputs differ in shape: "
                         f"{tuple(student.cls_logits.shape)} vs {tuple(teacher.cls_logits.shape)}"
                         " (the weak and strong views must share their geometry)")
    targets = pseudo_targets(teacher, settings)
    return cr_losses(student, targets, settings), targets


def pseudo_weight_at(iteration: int, burn_up: int, warm_up: int, weight: float) -> float:
    """The pseudo-loss weight at ``iteration``: 0 during burn-in, then rising linearly from
    0 (at ``burn_up``) to ``weight`` over ``warm_up`` iterations."""
    if iteration < burn_up:
        return 0.0
    if warm_up <= 0:
        return weight
    return weight * min(1.0, (iteration - burn_up) / warm_up)


# ------------------------------------------------------------------------ the student
class _MatchedIdxs:
    """Stands in for FCOS's head inside ``FCOS.compute_loss``: returns the assignment."""

    def compute_loss(self, targets: list[dict], head_outputs: dict, anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> list[Tensor]:
        return matched_idxs


def fcos_matched_idxs(fcos: FCOS, targets: list[dict[str, Tensor]], anchors: list[Tensor],
                      num_anchors_per_level: list[int]) -> list[Tensor]:
    """torchvision's FCOS assignment (center sampling, per-level size ranges, smallest box
    wins): per image, the index of each point's box, or -1.

    ``FCOS.compute_loss`` computes it and hands it to ``head.compute_loss``; calling it
    with a head that returns what it is given reuses torchvision's rule as it is (in
    PaddleDetection ``Gt2FCOSTarget`` plays this part)."""
    proxy = SimpleNamespace(center_sampling_radius=fcos.center_sampling_radius,
                            head=_MatchedIdxs())
    return FCOS.compute_loss(proxy, targets, {}, anchors, num_anchors_per_level)


class ARSLStudent(DenseStudent):
    """The ARSL student: ``DenseStudent`` whose supervised loss is ``FCOSLossMILC`` (the
    FCOS centerness branch trained as an IoU branch), so the trained network is still a
    plain torchvision FCOS (its inference score ``sqrt(cls * ctrness)`` ranks boxes by
    ARSL's joint score)."""

    def __init__(self, fcos: FCOS, *, iou_loss_type: IoULossType = "giou",
                 neg_weight: float = 0.75, gamma: float = 2.0, iou_weight: float = 0.5):
        super().__init__(fcos)
        self.milc = {"iou_loss_type": iou_loss_type, "neg_weight": neg_weight,
                     "gamma": gamma, "iou_weight": iou_weight}

    def sup_loss(self, targets: list[dict], head_outputs: dict[str, Tensor],
                 anchors: list[Tensor], num_anchors_per_level: list[int]) -> dict[str, Tensor]:
        matched = fcos_matched_idxs(self.fcos, targets, anchors, num_anchors_per_level)
        labels, ltrb_targets = [], []
        for t, idx, a in zip(targets, matched, anchors, strict=True):
            if t["labels"].numel() == 0:
                labels.append(torch.full_like(idx, -1))
                ltrb_targets.append(a.new_zeros((len(idx), 4)))
                continue
            safe = idx.clamp(min=0)
            labels.append(torch.where(idx >= 0, t["labels"][safe], -1))
            ltrb_targets.append(self.fcos.head.box_coder.encode(a, t["boxes"][safe]))
        cls = head_outputs["cls_logits"]
        return milc_losses(cls.reshape(-1, cls.shape[-1]),
                           head_outputs["bbox_regression"].reshape(-1, 4),
                           head_outputs["bbox_ctrness"].reshape(-1),
                           torch.cat(labels), torch.cat(ltrb_targets), **self.milc)
