"""Dense Teacher (Zhou et al., ECCV 2022): dense pseudo-labels for semi-supervised detection.

PaddleDetection's ``SSODFCOSLoss`` (notes §4.4). The teacher's raw per-point outputs on the
weak view of an unlabeled image are the targets of the student's outputs on the strong view
(the two views share their geometry, so point ``i`` is the same place in both):

1. region selection: the top ``ratio`` of all points of the batch by the teacher's highest
   class probability are "foreground";
2. ``distill_loss_cls``: quality-focal-style BCE against the teacher's probabilities on the
   foreground rows, and background suppression (``BCE(p, 0) * p**2``) everywhere else,
   normalised by the summed teacher scores of the foreground;
3. ``distill_loss_box``: GIoU between the student's and the teacher's boxes around the point,
   foreground only;
4. ``distill_loss_quality``: BCE of the student's quality against the teacher's, foreground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection import FCOS
from torchvision.models.detection._utils import BoxLinearCoder
from torchvision.ops import generalized_box_iou_loss

from engine.ssod.arsl import fcos_matched_idxs, ltrb_iou
from engine.ssod.fcos_dense import DenseOutputs, DenseStudent


def qfl_v2(student_logits: Tensor, teacher_probs: Tensor, foreground: Tensor,
           beta: float = 2.0) -> Tensor:
    """PaddleDetection's ``QFLv2``, summed: for every entry ``BCE(p_s, 0) * p_s**beta``
    (background suppression), replaced on the foreground rows by
    ``BCE(p_s, p_t) * |p_t - p_s|**beta``.

    Args:
        student_logits: ``[N, C]`` logits.
        teacher_probs: ``[N, C]`` probabilities in [0, 1] (no gradient).
        foreground: ``[N]`` bool, the selected rows.
    """
    p_s = student_logits.sigmoid()
    loss = F.binary_cross_entropy_with_logits(
        student_logits, torch.zeros_like(student_logits), reduction="none") * p_s.pow(beta)
    if foreground.any():
        fg_logits, fg_t = student_logits[foreground], teacher_probs[foreground]
        fg_loss = (F.binary_cross_entropy_with_logits(fg_logits, fg_t, reduction="none")
                   * (fg_t - p_s[foreground]).abs().pow(beta))
        loss = loss.clone()
        loss[foreground] = fg_loss
    return loss.sum()


def ltrb_to_boxes(ltrb: Tensor) -> Tensor:
    """A point's ``(l, t, r, b)`` distances as a box around the origin, ``(-l, -t, r, b)``."""
    return torch.cat([-ltrb[:, :2], ltrb[:, 2:]], dim=1)


@dataclass
class Selection:
    """Which points the teacher calls foreground, and how sure it is."""

    foreground: Tensor   # [N] bool
    fg_score_sum: float  # summed max class probability of the foreground (the normaliser)
    count: int


def select_foreground(teacher_probs: Tensor, ratio: float) -> Selection:
    """The top ``ratio`` of all points (at least one) by the teacher's max class probability."""
    scores = teacher_probs.max(dim=1).values
    k = max(1, int(scores.numel() * ratio))
    top = scores.topk(k).indices
    foreground = torch.zeros_like(scores, dtype=torch.bool)
    foreground[top] = True
    return Selection(foreground, float(scores[top].sum()), k)


def dense_teacher_losses(student: DenseOutputs, teacher: DenseOutputs, ratio: float
                         ) -> tuple[dict[str, Tensor], Selection]:
    """``distill_loss_cls``, ``distill_loss_box`` and ``distill_loss_quality`` (unweighted)
    of the student's outputs against the teacher's, and the selection they used."""
    if student.cls_logits.shape != teacher.cls_logits.shape:
        raise ValueError(f"student and teacher outputs differ in shape: "
                         f"{tuple(student.cls_logits.shape)} vs {tuple(teacher.cls_logits.shape)}"
                         " (the weak and strong views must share their geometry)")
    with torch.no_grad():
        t_probs = teacher.cls_logits.sigmoid()
        sel = select_foreground(t_probs, ratio)
    fg = sel.foreground
    loss_cls = qfl_v2(student.cls_logits, t_probs, fg) / max(sel.fg_score_sum, 1e-6)
    s_boxes = ltrb_to_boxes(student.box_ltrb[fg])
    t_boxes = ltrb_to_boxes(teacher.box_ltrb[fg])
    loss_box = generalized_box_iou_loss(s_boxes, t_boxes, reduction="mean")
    loss_quality = F.binary_cross_entropy_with_logits(
        student.quality[fg], teacher.quality[fg].sigmoid(), reduction="mean")
    return ({"distill_loss_cls": loss_cls, "distill_loss_box": loss_box,
             "distill_loss_quality": loss_quality}, sel)


def unsup_weight_at(iteration: int, start: int, weight: float, suppress: str) -> float:
    """The weight of the unsupervised loss at ``iteration`` (semi phase starts at
    ``start``), with PaddleDetection's ``suppress`` ramps: ``linear`` rises 0 -> 1 over
    ``start`` iterations, ``exp`` over 2000, ``step`` is 0.25 until ``2 * start``. Like
    PaddleDetection (``curr_iter > semi_start_iters``) the first weighted iteration is the
    one after ``start``: 0 up to and including it."""
    if iteration <= start:
        return 0.0
    if suppress == "linear":
        if start > 0 and iteration <= 2 * start:
            return weight * (iteration - start) / start
    elif suppress == "exp":
        if iteration <= start + 2000:
            return weight * math.exp((iteration - (start + 2000)) / 1000)
    elif suppress == "step":
        if iteration <= 2 * start:
            return weight * 0.25
    elif suppress != "none":
        raise ValueError(f"unknown suppress {suppress!r}")
    return weight


# ------------------------------------------------------------------------- the student
def iou_quality_loss(box_coder: BoxLinearCoder, targets: list[dict[str, Tensor]],
                     head_outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> Tensor:
    """PaddleDetection's ``FCOSLoss(quality='iou')`` quality term: at every positive point,
    BCE of the quality logit against the IoU of the point's predicted box with its assigned
    box (ltrb distances in units of the point's level size, IoU smoothed as in
    ``ltrb_iou``; the target carries no gradient), summed and divided by the positives
    (at least 1), as torchvision's centerness term."""
    regression = head_outputs["bbox_regression"]      # [B, P, 4]
    quality = head_outputs["bbox_ctrness"]            # [B, P, 1]
    preds, assigned, logits = [], [], []
    for b, (target, idx, points) in enumerate(zip(targets, matched_idxs, anchors,
                                                  strict=True)):
        fg = idx >= 0
        if target["labels"].numel() == 0 or not bool(fg.any()):
            continue
        preds.append(regression[b][fg])
        assigned.append(box_coder.encode(points[fg], target["boxes"][idx[fg]]))
        logits.append(quality[b, fg, 0])
    if not preds:
        return quality.sum() * 0.0
    pred = torch.cat(preds).float()
    with torch.no_grad():
        iou = ltrb_iou(pred, torch.cat(assigned).float())
    return F.binary_cross_entropy_with_logits(torch.cat(logits).float(), iou,
                                              reduction="sum") / max(1, len(iou))


class DenseTeacherStudent(DenseStudent):
    """The DenseTeacher student: FCOS's supervised loss with its quality branch trained as
    ``quality`` says (``DenseTeacher.train_cfg.quality``): ``centerness``, torchvision's
    FCOS as it is (term ``bbox_ctrness``), or ``iou``, PaddleDetection's
    ``FCOSLoss(quality='iou')`` of its DenseTeacher config (the paper's): the branch learns
    the IoU of each positive point's box (``iou_quality_loss``, term ``bbox_iou``). The
    classification and GIoU terms are torchvision's in both (its GIoU term is already the
    unweighted one of PaddleDetection's ``iou`` quality). Either way the network stays a
    plain torchvision FCOS, scoring boxes by ``sqrt(cls * quality)`` at inference."""

    def __init__(self, fcos: FCOS, quality: str = "centerness"):
        super().__init__(fcos)
        if quality not in ("centerness", "iou"):
            raise ValueError(f"quality must be centerness or iou, got {quality!r}")
        self.quality = quality

    def sup_loss(self, targets: list[dict], head_outputs: dict[str, Tensor],
                 anchors: list[Tensor], num_anchors_per_level: list[int]) -> dict[str, Tensor]:
        if self.quality == "centerness":
            return super().sup_loss(targets, head_outputs, anchors, num_anchors_per_level)
        matched = fcos_matched_idxs(self.fcos, targets, anchors, num_anchors_per_level)
        losses = self.fcos.head.compute_loss(targets, head_outputs, anchors, matched)
        return {"classification": losses["classification"],
                "bbox_regression": losses["bbox_regression"],
                "bbox_iou": iou_quality_loss(self.fcos.head.box_coder, targets,
                                             head_outputs, anchors, matched)}
