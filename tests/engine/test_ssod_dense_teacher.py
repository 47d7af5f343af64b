"""DenseTeacher's pseudo-labelling and losses on hand-made tensors with known answers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxLinearCoder

from engine.ssod.dense_teacher import (
    dense_teacher_losses,
    iou_quality_loss,
    ltrb_to_boxes,
    qfl_v2,
    select_foreground,
    unsup_weight_at,
)
from engine.ssod.fcos_dense import DenseOutputs

LN2 = math.log(2.0)


def outputs(cls: torch.Tensor, ltrb: torch.Tensor, quality: torch.Tensor) -> DenseOutputs:
    n = cls.shape[0]
    return DenseOutputs(cls_logits=cls, box_ltrb=ltrb, quality=quality,
                        anchors=torch.zeros(n, 4), strides=torch.ones(n),
                        levels=torch.zeros(n, dtype=torch.long),
                        images=torch.zeros(n, dtype=torch.long), num_images=1)


def test_qfl_v2_background_suppression_and_soft_targets() -> None:
    # Student logits 0 -> p = 0.5 everywhere; BCE(0.5, t) = ln 2 whatever t is.
    logits = torch.zeros(3, 2)
    teacher = torch.tensor([[0.9, 0.1], [0.2, 0.7], [0.0, 0.0]])
    fg = torch.tensor([True, False, False])
    # background rows: ln2 * 0.5^2 per entry (4 entries); foreground row: ln2 * |t - 0.5|^2
    expected = 4 * LN2 * 0.25 + LN2 * (0.4 ** 2 + 0.4 ** 2)
    assert qfl_v2(logits, teacher, fg).item() == pytest.approx(expected, rel=1e-6)
    # No foreground: pure suppression.
    assert qfl_v2(logits, teacher, torch.zeros(3, dtype=torch.bool)).item() == pytest.approx(
        6 * LN2 * 0.25, rel=1e-6)


def test_qfl_v2_is_zero_where_the_student_matches_a_confident_teacher() -> None:
    logits = torch.tensor([[20.0, -20.0]])   # p ~ (1, 0)
    teacher = torch.tensor([[1.0, 0.0]])
    assert qfl_v2(logits, teacher, torch.tensor([True])).item() == pytest.approx(0.0, abs=1e-6)


def test_select_foreground_takes_the_top_ratio_of_all_points() -> None:
    probs = torch.tensor([[0.1, 0.2], [0.9, 0.0], [0.3, 0.8], [0.05, 0.0]])
    sel = select_foreground(probs, ratio=0.5)
    assert sel.foreground.tolist() == [False, True, True, False]
    assert sel.count == 2 and sel.fg_score_sum == pytest.approx(1.7)
    assert select_foreground(probs, ratio=0.01).count == 1  # at least one point


def test_foreground_is_ranked_by_the_teachers_scores_not_the_students() -> None:
    # One class, four points: the teacher is surest of point 0, the student of point 3.
    t_cls = torch.tensor([[4.0], [0.0], [-2.0], [-4.0]])
    s_cls = torch.tensor([[-4.0], [-2.0], [0.0], [4.0]])
    t_box = torch.ones(4, 4)
    s_box = torch.tensor([[1.0, 1, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2], [3, 3, 3, 3]])
    q = torch.zeros(4)
    losses, sel = dense_teacher_losses(outputs(s_cls, s_box, q), outputs(t_cls, t_box, q), 0.25)
    assert sel.foreground.tolist() == [True, False, False, False]
    p_t = torch.sigmoid(torch.tensor(4.0)).item()
    assert sel.count == 1 and sel.fg_score_sum == pytest.approx(p_t)
    # Point 0's student box is the teacher's: no box loss (point 3's would cost).
    assert losses["distill_loss_box"].item() == pytest.approx(0.0, abs=1e-6)
    # cls: the soft target on point 0, background suppression on the others, / p_t.
    p_s = s_cls.sigmoid().flatten()
    fg = F.binary_cross_entropy(p_s[0], torch.tensor(p_t)) * (p_t - p_s[0]) ** 2
    bg = sum(F.binary_cross_entropy(p_s[i], torch.tensor(0.0)) * p_s[i] ** 2 for i in (1, 2, 3))
    assert losses["distill_loss_cls"].item() == pytest.approx(((fg + bg) / p_t).item(),
                                                              rel=1e-5)


def test_ltrb_boxes_are_boxes_around_the_point() -> None:
    assert ltrb_to_boxes(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).tolist() == [[-1, -2, 3, 4]]


def test_dense_teacher_losses_vanish_where_student_equals_teacher() -> None:
    torch.manual_seed(0)
    cls = torch.randn(50, 3)
    ltrb = torch.rand(50, 4) + 0.1
    q = torch.randn(50)
    t = outputs(cls, ltrb, q)
    losses, sel = dense_teacher_losses(outputs(cls.clone(), ltrb.clone(), q.clone()), t, 0.1)
    assert sel.count == 5
    assert losses["distill_loss_box"].item() == pytest.approx(0.0, abs=1e-6)
    # BCE(p, p) is the entropy of p: the minimum, not zero.
    p = q[sel.foreground].sigmoid()
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).mean()
    assert losses["distill_loss_quality"].item() == pytest.approx(entropy.item(), rel=1e-5)
    # A worse student (shifted boxes, other classes) costs more on every term.
    worse, _ = dense_teacher_losses(outputs(-cls, ltrb * 2, -q), t, 0.1)
    for key in losses:
        assert worse[key].item() > losses[key].item() + 1e-4, key


def test_gradients_reach_the_student_only() -> None:
    s_cls = torch.randn(20, 2, requires_grad=True)
    t_cls = torch.randn(20, 2, requires_grad=True)
    s = outputs(s_cls, torch.rand(20, 4) + 0.1, torch.randn(20))
    t = outputs(t_cls, torch.rand(20, 4) + 0.1, torch.randn(20))
    losses, _ = dense_teacher_losses(s, t, 0.2)
    losses["distill_loss_cls"].backward()
    assert s_cls.grad is not None and s_cls.grad.abs().sum() > 0
    assert t_cls.grad is None


def test_unsup_weight_ramps() -> None:
    assert unsup_weight_at(150, 100, 1.0, "linear") == pytest.approx(0.5)
    assert unsup_weight_at(250, 100, 2.0, "linear") == 2.0
    assert unsup_weight_at(5, 0, 1.0, "linear") == 1.0       # no burn-in, no ramp
    assert unsup_weight_at(150, 100, 1.0, "step") == 0.25
    assert unsup_weight_at(101, 100, 1.0, "exp") == pytest.approx(math.exp(-1.999))
    # PaddleDetection's ``curr_iter > semi_start_iters``: nothing at the start itself.
    for suppress in ("linear", "exp", "step", "none"):
        assert unsup_weight_at(100, 100, 1.0, suppress) == 0.0
        assert unsup_weight_at(0, 0, 1.0, suppress) == 0.0
    assert unsup_weight_at(150, 100, 1.0, "none") == 1.0


def test_iou_quality_learns_the_iou_of_each_positive_points_box() -> None:
    # One image, three points of size 8 centred at (4, 4); points 0 and 2 are assigned the
    # box (-4, -4, 12, 12), i.e. ltrb (1, 1, 1, 1) in units of 8; point 1 is background.
    coder = BoxLinearCoder(normalize_by_size=True)
    anchors = [torch.tensor([[0.0, 0, 8, 8]] * 3)]
    targets = [{"boxes": torch.tensor([[-4.0, -4, 12, 12]]), "labels": torch.tensor([1])}]
    matched = [torch.tensor([0, -1, 0])]
    regression = torch.tensor([[[1.0, 1, 1, 1], [5.0, 5, 5, 5], [2.0, 2, 2, 2]]])
    logits = torch.tensor([[[0.5], [3.0], [-1.0]]], requires_grad=True)
    loss = iou_quality_loss(coder, targets, {"bbox_regression": regression,
                                             "bbox_ctrness": logits}, anchors, matched)
    # IoU (inter + 1) / (union + 1): point 0 (4 + 1) / (4 + 1) = 1; point 2 inter 4,
    # union 16 -> 5 / 17. BCE against them, summed over the 2 positives, / 2.
    iou = torch.tensor([1.0, 5 / 17])
    expected = F.binary_cross_entropy_with_logits(torch.tensor([0.5, -1.0]), iou,
                                                  reduction="sum") / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[0, 1, 0] == 0  # the background point learns nothing here
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    assert iou_quality_loss(coder, empty, {"bbox_regression": regression,
                                           "bbox_ctrness": logits},
                            anchors, [torch.full((3,), -1)]).item() == 0.0
