"""``ssod_method: Semi_RTDETR`` (notes §6.2): RT-DETR self-training with a teacher's
pseudo-labels (PaddleDetection's ``Trainer_Semi_RTDETR`` + ``DETR_SSOD``).

Each step ``it`` (0-based; PaddleDetection's ``iter_id`` is ``it + 1``):

1. **the teacher first**, before the forward (``SemiTrainer.follow_student``): from
   ``ema_start_iters`` on it becomes a copy of the student (once; also replacing teacher
   weights loaded at start-up unless ``ema_start_iters`` is 0, as PaddleDetection's
   ``momentum=0`` update at ``iter_id == ema_start_iters`` does), then follows it by EMA
   (``DETR_SSOD.train_cfg.ema_decay``, 0.9996) at every later step;
2. the student's supervised RT-DETR losses on the labeled weak + strong views (one double
   batch);
3. from ``ema_start_iters`` on (the semi phase), the teacher in eval mode labels the
   unlabeled weak views: one detection per query (DETR is one-to-one, so no NMS), kept when
   its best class scores (``score_fn``) at least ``pseudo_label_initial_score_thr`` and its
   box is larger than ``min_pseduo_box_size``; the student learns on the strong views of
   the images that kept a box, with the teacher's score scaling each box's varifocal target
   (``ScoredRTDetrLoss``); if no image kept one, the pseudo terms are the model's
   ``zero_loss`` so every parameter still gets a (zero) gradient and DDP's all-reduce
   matches across ranks;
4. one backward and one optimizer step (``apply_losses``).

Differences from PaddleDetection, each deliberate (notes §6.6): the teacher state, the
optimizer, the scheduler and both data positions are in one checkpoint, which ``resume``
restores (its bugs 1-3); the pseudo-label VFL target is ``score x IoU`` without a crash
(bug 6, fixed in ``ScoredRTDetrLoss``); evaluation never assumes a DataParallel wrapper
(bug 5). ``sup_weight`` and ``unsup_weight`` are applied (PaddleDetection reads but
ignores them). Teacher scores (``DETR_SSOD.train_cfg.score_fn``): ``softmax`` over the
class logits, PaddleDetection's ``DETRBBoxSemiPostProcess`` and the default (its COCO
threshold 0.7 is calibrated for it), or ``sigmoid`` of the logit RT-DETR is trained and
evaluated with. They differ in what the VFL target ``score x IoU`` asks: a sigmoid score
of a VFL-trained model already estimates the IoU (0.5-0.6 for good boxes of the tiny
shapes model), so with it the student is asked for about IoU squared on pseudo-boxes,
where a softmax score (near 1 for a confident query) leaves about IoU; but a softmax over
few classes (4 shapes) rates background queries highly too, as it only compares the
classes, which is why the shapes config uses ``sigmoid`` (and its 0.5 threshold).
The teacher's hard copy happens at the first semi step rather than one step before it, so
the teacher of the first semi step is the student of that moment, not its EMA one step old.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from engine.data.semi import SemiBatch
from engine.models.rtdetr import RTDETR
from engine.trainers.semi import SemiTrainer, resolve_iters

# The pseudo-label loss terms (each the sum of its last-layer, auxiliary and denoising parts).
PSEUDO_TERMS = ("loss_vfl_pseudo", "loss_bbox_pseudo", "loss_giou_pseudo")


def select_pseudo_labels(detections: list[dict[str, Tensor]], score_thr: float,
                         min_size: float) -> list[dict[str, Tensor]]:
    """The teacher's per-query detections kept as pseudo-labels: best-class score at least
    ``score_thr``, width and height above ``min_size`` pixels. Each result is a target
    (``boxes`` xyxy pixels, ``labels`` 1..K, ``scores``), possibly empty."""
    kept = []
    for det in detections:
        boxes = det["boxes"]
        keep = ((det["scores"] >= score_thr) & (boxes[:, 2] - boxes[:, 0] > min_size)
                & (boxes[:, 3] - boxes[:, 1] > min_size))
        kept.append({"boxes": boxes[keep], "labels": det["labels"][keep],
                     "scores": det["scores"][keep]})
    return kept


def pseudo_terms(losses: dict[str, Tensor]) -> dict[str, Tensor]:
    """RT-DETR's grouped terms (``loss_vfl``, ``loss_vfl_aux``, ``loss_vfl_dn``...) summed into
    ``PSEUDO_TERMS``; the total is unchanged."""
    out: dict[str, Tensor] = {}
    for name, value in losses.items():
        kind = name.split("_")[1]  # vfl, bbox or giou
        key = f"loss_{kind}_pseudo"
        out[key] = out[key] + value if key in out else value
    return out


class SemiRTDETRStudent(nn.Module):
    """What one (DDP) forward of the student computes: the supervised losses and, when
    given, the pseudo-label losses; both through the one wrapped detector, so the backward
    of their sum is one DDP backward.

    ``unsup_images`` may be an empty list (no image kept a pseudo-box): the pseudo terms are
    then ``RTDETR.zero_loss()``, which touches every trainable parameter.
    """

    def __init__(self, detector: RTDETR):
        super().__init__()
        self.detector = detector

    def forward(self, sup_images: list[Tensor], sup_targets: list[dict[str, Tensor]],
                unsup_images: list[Tensor] | None = None,
                unsup_targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
        sup = self.detector(sup_images, sup_targets)
        if unsup_images is None:
            return sup, None
        if not unsup_images:
            zero = self.detector.zero_loss()
            return sup, dict.fromkeys(PSEUDO_TERMS, zero)
        return sup, pseudo_terms(self.detector(unsup_images, unsup_targets))


class SemiRTDETRTrainer(SemiTrainer):
    """PaddleDetection's ``Trainer_Semi_RTDETR``."""

    semi_start_key = "ema_start_iters"
    unsup_terms = PSEUDO_TERMS

    def teacher_decay(self) -> float:
        return self.cfg.DETR_SSOD.train_cfg.ema_decay

    def schedule_starts(self) -> tuple[int, int]:
        # One key, as in PaddleDetection: the teacher and the pseudo-label loss start together.
        start = resolve_iters(self.cfg.ema_start_iters, self.max_iters)
        return start, start

    model_class = RTDETR
    model_purpose = "trains RT-DETR on its pseudo-labels"

    def train_module(self) -> nn.Module:
        return SemiRTDETRStudent(self.model_without_ddp)

    def inference_on(self) -> str:
        return self.cfg.DETR_SSOD.test_cfg.inference_on

    # ------------------------------------------------------------------------- teacher
    @torch.no_grad()
    def pseudo_labels(self, weak_images: list[Tensor]) -> list[dict[str, Tensor]]:
        """The teacher's pseudo-labels of the unlabeled weak views (``select_pseudo_labels``)."""
        tc = self.cfg.DETR_SSOD.train_cfg
        with torch.autocast(self.device.type, enabled=self.use_amp):
            detections = self.teacher.module.detect_per_query(weak_images, tc.score_fn)
        detections = [{k: v.float() if v.is_floating_point() else v for k, v in d.items()}
                      for d in detections]
        return select_pseudo_labels(detections, tc.pseudo_label_initial_score_thr,
                                    tc.min_pseduo_box_size)

    # ---------------------------------------------------------------------------- step
    def forward_losses(self, batch: SemiBatch) -> dict[str, Tensor]:
        tc = self.cfg.DETR_SSOD.train_cfg
        it = self.iter
        self.follow_student(it)
        semi = self.phase(it) == "semi" and self.teacher.started
        weak_images, weak_targets = self.to_device(*batch.sup_weak)
        strong_images, strong_targets = self.to_device(*batch.sup_strong)
        unsup_images = unsup_targets = None
        if semi:
            pseudo = self.pseudo_labels(self.to_device(*batch.unsup_weak)[0])
            strong = self.to_device(*batch.unsup_strong)[0]
            kept = [i for i, t in enumerate(pseudo) if len(t["boxes"])]
            # Images without a pseudo-box are dropped: as unlabeled images they would only
            # teach "background everywhere", which is what a threshold too high says.
            unsup_images = [strong[i] for i in kept]
            unsup_targets = [pseudo[i] for i in kept]
            boxes = sum(len(t["boxes"]) for t in pseudo)
            score_sum = sum(float(t["scores"].sum()) for t in pseudo)
            self.step_stats.update(pseudo_boxes_per_image=boxes / max(1, len(pseudo)),
                                   pseudo_images_kept=len(kept) / max(1, len(pseudo)),
                                   pseudo_score=score_sum / max(1, boxes))
        with torch.autocast(self.device.type, enabled=self.use_amp):
            # PaddleDetection concatenates the labeled weak and strong views.
            sup, unsup = self.model(weak_images + strong_images, weak_targets + strong_targets,
                                    unsup_images, unsup_targets)
        losses = {k: v * tc.sup_weight for k, v in sup.items()}
        return self.with_unsup_terms(losses, unsup,
                                     tc.unsup_weight if unsup is not None else 0.0)
