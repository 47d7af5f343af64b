"""RT-DETR's training loss: transformers' ``RTDetrLoss``, extended for teacher pseudo-labels.

``ScoredRTDetrLoss`` subclasses transformers' criterion (Hungarian matching with scipy,
varifocal classification loss, L1 + GIoU box losses) and changes two things:

* **Teacher scores.** A target dict may carry ``"scores"`` (one confidence per box, from a
  teacher's pseudo-labels). The varifocal target of a matched query is then
  ``score x IoU(predicted box, target box)`` instead of ``IoU``, as PaddleDetection's Semi-RT-DETR
  does. That is exactly the branch where PaddleDetection's ``DETRLoss`` crashed
  (``iou_score`` never assigned when ``gt_score`` is given, issue #8673, notes section 6.6 bug
  6): here the IoU is computed first, for every target, and the score only scales it.
  Targets without ``"scores"`` count as score 1, so a supervised batch gives transformers'
  loss exactly (a test checks it).
* **Paired IoUs.** transformers computes the N x N IoU/GIoU matrix of the N matched pairs and
  keeps its diagonal; with denoising groups N is (boxes in the batch) x (groups), so that is
  quadratic in the denoising size. The IoUs here are computed pair by pair (the same values).

``detr_loss_inputs`` arranges an ``RTDetrModel`` output the way the criterion wants it (the
same split of denoising and matching queries as transformers' ``RTDetrForObjectDetectionLoss``),
and ``group_losses`` sums the per-layer terms into a few readable ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_convert, generalized_box_iou_loss
from transformers import RTDetrConfig
from transformers.loss.loss_rt_detr import RTDetrLoss


def paired_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of ``boxes1[i]`` with ``boxes2[i]`` (both ``[N, 4]`` xyxy); 0 for empty unions."""
    lt = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    rb = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).clamp(min=0).prod(-1)
    union = area1 + area2 - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


class ScoredRTDetrLoss(RTDetrLoss):
    """transformers' RT-DETR criterion with teacher-score-scaled varifocal targets.

    Call it as transformers' ``RTDetrLoss``: ``criterion(outputs, targets)`` with targets
    ``{"class_labels": 0..K-1, "boxes": normalised cxcywh, optional "scores": [0, 1]}``.
    Returns the weighted terms per layer (``loss_vfl``, ``loss_bbox_aux_0``,
    ``loss_giou_dn_2``...).
    """

    def __init__(self, config: RTDetrConfig):
        super().__init__(config)
        # Only transformers' cross-entropy variant uses it: kept out of the state dict so the
        # detector's keys stay exactly transformers' (weights files load both ways).
        self.register_buffer("empty_weight", self.empty_weight, persistent=False)

    def classification_targets(self, outputs: dict, targets: list[dict],
                               indices: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """``(target_score, one_hot)``, both ``[B, Q, K]``: the varifocal target of every
        query and class, and the matched class of every query (all zeros when unmatched).

        A matched query's target is ``IoU(its box, its target box) x score`` for its target's
        class, where score is the target's ``"scores"`` entry (1 when absent).
        """
        logits = outputs["logits"]
        idx = self._get_source_permutation_idx(indices)
        src_boxes = outputs["pred_boxes"][idx].detach()
        target_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
        ious = paired_box_iou(box_convert(src_boxes, "cxcywh", "xyxy"),
                              box_convert(target_boxes, "cxcywh", "xyxy"))
        # The matcher's indices live on the CPU, the denoising ones on the model's device.
        scores = torch.cat([t["scores"][j].to(ious) if "scores" in t else
                            torch.ones(len(j), dtype=ious.dtype, device=ious.device)
                            for t, (_, j) in zip(targets, indices)])
        matched_classes = torch.cat([t["class_labels"][j] for t, (_, j) in zip(targets, indices)])
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64,
                             device=logits.device)
        classes[idx] = matched_classes
        one_hot = F.one_hot(classes, num_classes=self.num_classes + 1)[..., :-1]
        score = torch.zeros(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        score[idx] = (ious * scores.to(ious.dtype)).to(logits.dtype)
        return score.unsqueeze(-1) * one_hot, one_hot

    def loss_labels_vfl(self, outputs: dict, targets: list[dict],
                        indices: list[tuple[Tensor, Tensor]], num_boxes: float,
                        log: bool = True) -> dict[str, Tensor]:
        """Varifocal loss (as transformers', with ``classification_targets``' targets)."""
        logits = outputs["logits"]
        target_score, one_hot = self.classification_targets(outputs, targets, indices)
        pred_score = torch.sigmoid(logits.detach())
        weight = (self.alpha * pred_score.pow(self.gamma) * (1 - one_hot)
                  + target_score).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight,
                                                  reduction="none")
        return {"loss_vfl": loss.mean(1).sum() * logits.shape[1] / num_boxes}

    def loss_boxes(self, outputs: dict, targets: list[dict],
                   indices: list[tuple[Tensor, Tensor]], num_boxes: float) -> dict[str, Tensor]:
        """L1 and GIoU losses of the matched pairs (normalised cxcywh boxes)."""
        idx = self._get_source_permutation_idx(indices)
        src_boxes = outputs["pred_boxes"][idx]
        target_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
        loss_bbox = F.l1_loss(src_boxes, target_boxes, reduction="none").sum() / num_boxes
        loss_giou = generalized_box_iou_loss(box_convert(src_boxes, "cxcywh", "xyxy"),
                                             box_convert(target_boxes, "cxcywh", "xyxy"),
                                             reduction="sum") / num_boxes
        return {"loss_bbox": loss_bbox, "loss_giou": loss_giou}


def detr_loss_inputs(outputs, aux_loss: bool) -> dict:
    """The criterion's ``outputs`` dict from an ``RTDetrModel`` output (train mode).

    The last decoder layer's matching queries are the main prediction; with ``aux_loss`` the
    other decoder layers and the encoder's top-k queries are auxiliary outputs; the denoising
    queries of every layer (when the model added any) are the denoising outputs.
    """
    logits = outputs.intermediate_logits            # [B, layers, dn + queries, K]
    boxes = outputs.intermediate_reference_points   # [B, layers, dn + queries, 4]
    meta = outputs.denoising_meta_values
    dn_logits = dn_boxes = None
    if meta is not None:
        dn_logits, logits = torch.split(logits, meta["dn_num_split"], dim=2)
        dn_boxes, boxes = torch.split(boxes, meta["dn_num_split"], dim=2)
    inputs: dict = {"logits": logits[:, -1], "pred_boxes": boxes[:, -1]}
    if aux_loss:
        layers = logits.shape[1]
        inputs["auxiliary_outputs"] = [
            {"logits": logits[:, i], "pred_boxes": boxes[:, i]} for i in range(layers - 1)
        ] + [{"logits": outputs.enc_topk_logits, "pred_boxes": outputs.enc_topk_bboxes}]
    if meta is not None:
        inputs["dn_auxiliary_outputs"] = [
            {"logits": dn_logits[:, i], "pred_boxes": dn_boxes[:, i]}
            for i in range(dn_logits.shape[1])]
        inputs["denoising_meta_values"] = meta
    return inputs


def group_losses(per_layer: dict[str, Tensor]) -> dict[str, Tensor]:
    """Sum transformers' per-layer terms into ``loss_{vfl,bbox,giou}`` (last decoder layer),
    ``..._aux`` (other decoder layers + encoder queries) and ``..._dn`` (denoising queries).

    The sum of the result equals the sum of the input: the total loss is unchanged.
    """
    grouped: dict[str, Tensor] = {}
    for name, value in per_layer.items():
        base, _, rest = name.partition("_aux_")
        if not rest:
            base, _, rest = name.partition("_dn_")
            group = f"{base}_dn" if rest else name
        else:
            group = f"{base}_aux"
        grouped[group] = grouped[group] + value if group in grouped else value
    return grouped
