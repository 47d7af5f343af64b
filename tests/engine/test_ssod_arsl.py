"""ARSL's losses, sample division and potential-positive mining on hand-made tensors with
known answers (engine/ssod/arsl.py)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.config.schema import validate
from engine.models import build_model
from engine.ssod.arsl import (
    ARSLStudent,
    CRSettings,
    PseudoTargets,
    arsl_unsup_losses,
    cr_losses,
    divide_samples,
    fcos_matched_idxs,
    ltrb_iou,
    ltrb_iou_loss,
    milc_losses,
    mine_potential_positives,
    pseudo_targets,
    pseudo_weight_at,
    quality_focal_bce,
)
from engine.ssod.fcos_dense import DenseOutputs, dense_outputs

LN2 = math.log(2.0)
SURE = 30.0  # a logit whose sigmoid is 1 to float precision


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def bce(p: float, t: float) -> float:
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def outputs(cls: torch.Tensor, ltrb: torch.Tensor, iou: torch.Tensor, *,
            points: torch.Tensor | None = None, strides: torch.Tensor | None = None,
            levels: torch.Tensor | None = None, images: torch.Tensor | None = None
            ) -> DenseOutputs:
    n = cls.shape[0]
    points = torch.zeros(n, 2) if points is None else points
    strides = torch.ones(n) if strides is None else strides
    half = strides.unsqueeze(1) / 2
    images = torch.zeros(n, dtype=torch.long) if images is None else images
    return DenseOutputs(cls_logits=cls, box_ltrb=ltrb, quality=iou,
                        anchors=torch.cat([points - half, points + half], dim=1),
                        strides=strides,
                        levels=torch.zeros(n, dtype=torch.long) if levels is None else levels,
                        images=images, num_images=int(images.max()) + 1)


# ----------------------------------------------------------------------- box geometry
def test_ltrb_iou_and_losses_with_paddle_smoothing() -> None:
    # Same point, a 2x2 box inside a 4x4 one: (4 + 1) / (16 + 1).
    pred, target = torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([[2.0, 2, 2, 2]])
    assert ltrb_iou(pred, target).item() == pytest.approx(5 / 17)
    assert ltrb_iou_loss(pred, target, "giou").item() == pytest.approx(12 / 17)  # hull = union
    assert ltrb_iou_loss(pred, target, "linear_iou").item() == pytest.approx(12 / 17)
    assert ltrb_iou_loss(pred, target, "iou").item() == pytest.approx(-math.log(5 / 17))
    # Disjoint unit boxes on either side of the point: IoU (0 + 1) / (2 + 1), hull 2x2.
    a, b = torch.tensor([[1.0, 1, 0, 0]]), torch.tensor([[0.0, 0, 1, 1]])
    assert ltrb_iou(a, b).item() == pytest.approx(1 / 3)
    assert ltrb_iou_loss(a, b, "giou").item() == pytest.approx(1 - (1 / 3 - 2 / 4), rel=1e-5)
    # Identical boxes: no loss.
    assert ltrb_iou_loss(target, target, "giou").item() == pytest.approx(0.0, abs=1e-6)


def test_quality_focal_bce_weights_positives_and_negatives() -> None:
    scores = torch.tensor([[0.5, 0.5]])
    targets = torch.tensor([[0.8, 0.0]])
    loss = quality_focal_bce(scores, targets, neg_weight=0.75, gamma=2.0)
    assert loss[0, 0].item() == pytest.approx(bce(0.5, 0.8) * 0.3 ** 2, rel=1e-5)
    assert loss[0, 1].item() == pytest.approx(LN2 * 0.75 * 0.5 ** 2, rel=1e-5)


# ---------------------------------------------------------------------- FCOSLossMILC
def test_milc_losses_known_values() -> None:
    # Point 0: class column 1, predicted 2x2 box, target 4x4 box (IoU 5/17, centerness 1).
    # Point 1: background. Logits 0: class 0.5 x IoU 0.5 = joint score 0.25 everywhere.
    cls = torch.zeros(2, 2)
    ltrb = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1]])
    iou = torch.zeros(2)
    labels = torch.tensor([1, -1])
    targets = torch.tensor([[2.0, 2, 2, 2], [0, 0, 0, 0]])
    losses = milc_losses(cls, ltrb, iou, labels, targets)
    t = 5 / 17
    neg = bce(0.25, 0.0) * 0.75 * 0.25 ** 2
    assert losses["loss_cls"].item() == pytest.approx(3 * neg + bce(0.25, t) * (0.25 - t) ** 2,
                                                      rel=1e-5)
    assert losses["loss_box"].item() == pytest.approx(12 / 17, rel=1e-5)
    assert losses["loss_iou"].item() == pytest.approx(bce(0.5, t) * 0.5, rel=1e-5)


def test_milc_box_loss_is_weighted_by_centerness_targets() -> None:
    # Two positives with the same loss per box, centerness 1 and sqrt(1/3 * 1): the
    # weighted mean is that loss; then make one of them perfect.
    ltrb_t = torch.tensor([[2.0, 2, 2, 2], [1.0, 2, 3, 2]])
    ctr = [1.0, math.sqrt(1 / 3)]
    pred = torch.tensor([[2.0, 2, 2, 2], [0.5, 1, 1.5, 1]])  # exact, and half size
    losses = milc_losses(torch.zeros(2, 2), pred, torch.zeros(2), torch.tensor([1, 1]), ltrb_t)
    half = ltrb_iou_loss(pred[1:], ltrb_t[1:]).item()
    assert losses["loss_box"].item() == pytest.approx(half * ctr[1] / sum(ctr), rel=1e-5)


def test_milc_without_positives_is_finite() -> None:
    losses = milc_losses(torch.zeros(3, 2), torch.ones(3, 4), torch.zeros(3),
                         torch.full((3,), -1), torch.zeros(3, 4))
    assert losses["loss_box"].item() == 0.0 and losses["loss_iou"].item() == 0.0
    assert math.isfinite(losses["loss_cls"].item()) and losses["loss_cls"].item() > 0


# ------------------------------------------------------------------- sample division
def test_divide_samples_adaptive_threshold() -> None:
    # Candidates (>= 0.1): 0.1, 0.1, 0.1, 0.35 -> mean 0.1625, std 0.125 -> thr 0.2875.
    scores = torch.tensor([0.1, 0.1, 0.1, 0.35, 0.02])
    pos, amb, thr = divide_samples(scores)
    assert thr == pytest.approx(0.2875)
    assert pos.tolist() == [3] and amb.tolist() == [0, 1, 2]


def test_divide_samples_threshold_is_capped() -> None:
    # Candidates 0.1, 0.2, 0.3, 0.6: mean 0.3 + std 0.216 > 0.4 -> the cap.
    pos, amb, thr = divide_samples(torch.tensor([0.05, 0.1, 0.2, 0.3, 0.6]))
    assert thr == pytest.approx(0.4)
    assert pos.tolist() == [4] and amb.tolist() == [1, 2, 3]
    # A single candidate has std 0: it is the threshold (below the cap) and positive.
    pos, amb, thr = divide_samples(torch.tensor([0.3, 0.01]))
    assert thr == pytest.approx(0.3) and pos.tolist() == [0] and amb.numel() == 0


def test_divide_samples_falls_back_to_top_k() -> None:
    scores = torch.linspace(0.0, 0.09, 12)  # no candidate
    pos, amb, thr = divide_samples(scores, fallback_topk=10)
    assert thr is None and amb.numel() == 0
    assert sorted(pos.tolist()) == list(range(2, 12))
    # Candidates but a threshold above all of them (0.2 + 0.141 > 0.3): top-1 positive,
    # and both candidates stay ambiguous.
    pos, amb, thr = divide_samples(torch.tensor([0.1, 0.3]), fallback_topk=1)
    assert thr == pytest.approx(0.2 + math.sqrt(0.02), rel=1e-5)
    assert pos.tolist() == [1] and amb.tolist() == [0, 1]


# ---------------------------------------------------------- potential-positive mining
def mining_scene() -> dict[str, torch.Tensor]:
    """Two positives (class 0, level 1) and five ambiguous points, one per rule."""
    boxes = torch.tensor([
        [34.0, 34, 66, 66],   # 0 positive P, score 0.8
        [36.0, 34, 68, 66],   # 1 positive Q, score 0.4
        [33.0, 33, 65, 65],   # 2 ambiguous A: overlaps both, inside both, level 0 -> mined
        [33.0, 33, 65, 65],   # 3 ambiguous, other class
        [33.0, 33, 65, 65],   # 4 ambiguous, level 3 (two levels away)
        [34.0, 34, 66, 66],   # 5 ambiguous, its point (70, 50) outside both boxes
        [46.0, 46, 54, 54],   # 6 ambiguous, small box: IoU < 0.6
    ])
    points = torch.tensor([[50.0, 50], [52, 50], [48, 48], [48, 48], [48, 48], [70, 50],
                           [50, 50]])
    return {"scores": torch.tensor([0.8, 0.4, 0.3, 0.3, 0.3, 0.3, 0.3]),
            "classes": torch.tensor([0, 0, 0, 1, 0, 0, 0]),
            "boxes": boxes, "points": points,
            "strides": torch.tensor([8.0, 8, 4, 4, 32, 8, 8]),
            "levels": torch.tensor([1, 1, 0, 0, 3, 1, 1]),
            "positives": torch.tensor([0, 1]), "ambiguous": torch.tensor([2, 3, 4, 5, 6])}


def test_mining_applies_every_rule_and_averages_boxes_by_score() -> None:
    mined, ltrb = mine_potential_positives(**mining_scene())
    assert mined.tolist() == [2]
    # (0.8 * P + 0.4 * Q) / 1.2 = (34.667, 34, 66.667, 66), from (48, 48) in units of 4.
    x1, x2 = (0.8 * 34 + 0.4 * 36) / 1.2, (0.8 * 66 + 0.4 * 68) / 1.2
    expected = [(48 - x1) / 4, (48 - 34) / 4, (x2 - 48) / 4, (66 - 48) / 4]
    assert ltrb[0].tolist() == pytest.approx(expected, rel=1e-5)


def test_mining_level_and_iou_limits_are_settings() -> None:
    scene = mining_scene()
    mined, _ = mine_potential_positives(**scene, level_diff=3)
    assert mined.tolist() == [2, 4]
    mined, _ = mine_potential_positives(**scene, iou_thresh=0.9)
    assert mined.numel() == 0


# ------------------------------------------------------------------ targets and losses
def teacher_image() -> DenseOutputs:
    """One image, 5 points, 2 classes; the IoU branch is sure (1), so the joint scores are
    the class probabilities: max scores 0.15, 0.15, 0.15, 0.35, 0.02. Candidates: mean 0.2,
    std 0.1 -> threshold 0.3: point 3 is positive, points 0-2 ambiguous. Points 0-2 lie
    inside point 3's box, on its level, their boxes overlapping it by IoU 0.78; point 2's
    class differs."""
    probs = torch.tensor([[0.15, 0.05], [0.15, 0.02], [0.01, 0.15], [0.35, 0.2],
                          [0.02, 0.01]])
    cls = torch.log(probs / (1 - probs))
    ltrb = torch.tensor([[2.0, 2, 2, 2], [2.0, 2, 2, 2], [2.0, 2, 2, 2], [2.0, 2, 2, 2],
                         [1.0, 1, 1, 1]])
    points = torch.tensor([[40.0, 40], [44, 40], [40, 44], [42, 42], [100, 100]])
    return outputs(cls, ltrb, torch.full((5,), SURE), points=points,
                   strides=torch.full((5,), 8.0))


def test_pseudo_targets_one_hot_positives_soft_ambiguous_mined_boxes() -> None:
    teacher = teacher_image()
    t = pseudo_targets(teacher, CRSettings())
    probs = teacher.cls_logits.sigmoid()
    assert t.cls_mask.tolist() == [False, False, False, True, False]
    # Positive: one-hot x joint score; ambiguous (0-2): the full soft vector; point 4: 0.
    assert t.cls_targets[3].tolist() == pytest.approx([0.35, 0.0], rel=1e-5)
    assert torch.allclose(t.cls_targets[:3], probs[:3], rtol=1e-5)
    assert t.cls_targets[4].tolist() == [0.0, 0.0]
    # Points 0 and 1 (class 0, IoU 0.78 with the positive's box, inside it) are mined:
    # their box targets are the positive's box seen from them; point 2 is another class.
    assert t.loc_mask.tolist() == [True, True, False, True, False]
    assert t.num_positive == 1 and t.num_ambiguous == 3 and t.num_mined == 2
    assert t.loc_targets[3].tolist() == [2.0, 2.0, 2.0, 2.0]
    box = [42 - 16, 42 - 16, 42 + 16, 42 + 16]
    assert t.loc_targets[0].tolist() == pytest.approx(
        [(40 - box[0]) / 8, (40 - box[1]) / 8, (box[2] - 40) / 8, (box[3] - 40) / 8])
    assert t.iou_targets[t.loc_mask].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert t.stats()["pseudo_pos_score"] == pytest.approx(0.35, rel=1e-5)
    # Without mining the box/IoU positives are the cls positives only.
    t2 = pseudo_targets(teacher, CRSettings(hard_neg_mining_flag=False))
    assert t2.loc_mask.tolist() == t2.cls_mask.tolist()


def test_pseudo_targets_divide_each_image_on_its_own() -> None:
    a, b = teacher_image(), teacher_image()
    b.cls_logits = b.cls_logits - 10  # image 1: no candidates -> top-10 of its 5 points
    both = outputs(torch.cat([a.cls_logits, b.cls_logits]), torch.cat([a.box_ltrb, b.box_ltrb]),
                   torch.cat([a.quality, b.quality]),
                   points=torch.cat([(a.anchors[:, :2] + a.anchors[:, 2:]) / 2] * 2),
                   strides=torch.full((10,), 8.0),
                   images=torch.tensor([0] * 5 + [1] * 5))
    t = pseudo_targets(both, CRSettings())
    assert t.cls_mask.tolist() == [False, False, False, True, False] + [True] * 5
    assert t.thresholds[0] == pytest.approx(0.3, rel=1e-5) and t.thresholds[1] is None
    assert t.stats()["pseudo_pos_per_image"] == 3.0


def test_cr_losses_known_values() -> None:
    # Student logits 0: joint score 0.25, IoU 0.5, box 2x2. Point 0 positive with target
    # 0.8 (class 0) and a 4x4 box; point 1 negative.
    student = outputs(torch.zeros(2, 1), torch.ones(2, 4), torch.zeros(2))
    targets = PseudoTargets(cls_targets=torch.tensor([[0.8], [0.0]]),
                            loc_targets=torch.tensor([[2.0, 2, 2, 2], [0, 0, 0, 0]]),
                            iou_targets=torch.tensor([0.9, 0.0]),
                            cls_mask=torch.tensor([True, False]),
                            loc_mask=torch.tensor([True, False]), num_images=1)
    s = CRSettings()
    losses = cr_losses(student, targets, s)
    cls = (bce(0.25, 0.8) * 0.55 ** 2 + bce(0.25, 0.0) * 0.75 * 0.25 ** 2) / 0.8
    assert losses["loss_cls_pseudo"].item() == pytest.approx(cls * 2.0, rel=1e-5)
    assert losses["loss_box_pseudo"].item() == pytest.approx(12 / 17 * 2.0, rel=1e-5)
    assert losses["loss_iou_pseudo"].item() == pytest.approx(bce(0.5, 0.9) * 0.5, rel=1e-5)


def test_cr_box_loss_weights_points_by_their_max_target() -> None:
    # Two localisation positives: exact box (weight 0.8) and a half-size one (weight 0.2).
    student = outputs(torch.zeros(2, 2), torch.tensor([[2.0, 2, 2, 2], [1, 1, 1, 1]]),
                      torch.zeros(2))
    targets = PseudoTargets(cls_targets=torch.tensor([[0.8, 0.0], [0.2, 0.1]]),
                            loc_targets=torch.full((2, 4), 2.0),
                            iou_targets=torch.tensor([0.9, 0.9]),
                            cls_mask=torch.tensor([True, False]),
                            loc_mask=torch.tensor([True, True]), num_images=1)
    losses = cr_losses(student, targets, CRSettings(reg_weight=1.0))
    assert losses["loss_box_pseudo"].item() == pytest.approx(12 / 17 * 0.2 / 1.0, rel=1e-5)


def test_unsup_losses_vanish_on_boxes_where_the_student_agrees_and_grow_otherwise() -> None:
    teacher = teacher_image()
    same = outputs(teacher.cls_logits.clone(), teacher.box_ltrb.clone(),
                   teacher.quality.clone(), points=(teacher.anchors[:, :2]
                                                    + teacher.anchors[:, 2:]) / 2,
                   strides=teacher.strides)
    losses, _ = arsl_unsup_losses(same, teacher, CRSettings(hard_neg_mining_flag=False))
    assert losses["loss_box_pseudo"].item() == pytest.approx(0.0, abs=1e-6)
    worse = outputs(-teacher.cls_logits, teacher.box_ltrb * 3, -teacher.quality,
                    points=(teacher.anchors[:, :2] + teacher.anchors[:, 2:]) / 2,
                    strides=teacher.strides)
    worse_losses, _ = arsl_unsup_losses(worse, teacher, CRSettings(hard_neg_mining_flag=False))
    for key in losses:
        assert worse_losses[key].item() > losses[key].item() + 1e-4, key


def test_gradients_reach_the_student_only() -> None:
    teacher = teacher_image()
    teacher.cls_logits.requires_grad_(True)
    s_cls = torch.zeros(5, 2, requires_grad=True)
    s_ltrb = torch.ones(5, 4, requires_grad=True)
    student = outputs(s_cls, s_ltrb, torch.zeros(5))
    losses, _ = arsl_unsup_losses(student, teacher, CRSettings())
    sum(losses.values()).backward()
    assert s_cls.grad.abs().sum() > 0 and s_ltrb.grad.abs().sum() > 0
    assert teacher.cls_logits.grad is None


def test_pseudo_weight_ramps_after_burn_up() -> None:
    assert pseudo_weight_at(99, 100, 20, 1.0) == 0.0
    assert pseudo_weight_at(100, 100, 20, 1.0) == 0.0
    assert pseudo_weight_at(110, 100, 20, 2.0) == pytest.approx(1.0)
    assert pseudo_weight_at(500, 100, 20, 2.0) == 2.0
    assert pseudo_weight_at(100, 100, 0, 1.0) == 1.0


# ---------------------------------------------------------------- the ARSL student
def test_student_milc_on_a_real_fcos_uses_torchvisions_assignment() -> None:
    torch.manual_seed(0)
    cfg = validate({"num_classes": 3})
    fcos = build_model(cfg)
    student = ARSLStudent(fcos)
    images = [torch.rand(3, 96, 96), torch.rand(3, 96, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 12, 50, 60]]), "labels": torch.tensor([2])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    losses, unsup = student(images, targets, images[:1])
    assert set(losses) == {"loss_cls", "loss_box", "loss_iou"}
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert unsup is not None and unsup.num_images == 1
    # The assignment: every matched point of image 0 lies inside the box; image 1 has none.
    out = dense_outputs(fcos, images)
    anchors = list(out.anchors.reshape(2, -1, 4))
    per_level = torch.bincount(out.levels[out.images == 0]).tolist()
    targets_t = fcos.transform(images, targets)[1]
    matched = fcos_matched_idxs(fcos, targets_t, anchors, per_level)
    pos = matched[0] >= 0
    assert pos.any() and not (matched[1] >= 0).any()
    centers = (anchors[0][pos, :2] + anchors[0][pos, 2:]) / 2
    box = targets_t[0]["boxes"][0]
    assert (centers >= box[:2]).all() and (centers <= box[2:]).all()
    sum(losses.values()).backward()
    assert fcos.head.regression_head.bbox_ctrness.weight.grad.abs().sum() > 0
