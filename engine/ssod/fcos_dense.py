"""torchvision's FCOS, opened up: its raw per-point outputs and its supervised loss from
one forward, which is what dense semi-supervised methods need.

``FCOS.forward`` gives either losses (train) or post-processed boxes (eval). DenseTeacher and
ARSL need, for the same network, the supervised losses of labeled images *and* the raw
per-point class logits, box regressions and quality logits of unlabeled images (the
student's, to learn; the teacher's, as dense pseudo-labels). ``DenseOutputs`` holds those
raw outputs with every point of every level and image as one row, so the losses can treat
them as a flat set of points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS


@dataclass
class DenseOutputs:
    """Raw FCOS outputs of a batch, flattened over images, levels and positions.

    Attributes:
        cls_logits: ``[N, C]`` class logits of the object classes (torchvision's background
            column 0, never a target, is dropped).
        box_ltrb: ``[N, 4]`` (left, top, right, bottom) distances from each point to its box
            edges, in units of the point's level size (torchvision's FCOS regression target).
        quality: ``[N]`` quality (centerness) logits.
        anchors: ``[N, 4]`` the point anchors (xyxy pixels of the transformed image).
        strides: ``[N]`` the level size of each point (pixels per unit of ``box_ltrb``).
        levels: ``[N]`` the pyramid level index of each point.
        images: ``[N]`` the index of each point's image in the batch.
        num_images: images in the batch.
    """

    cls_logits: Tensor
    box_ltrb: Tensor
    quality: Tensor
    anchors: Tensor
    strides: Tensor
    levels: Tensor
    images: Tensor
    num_images: int


def _forward_head(fcos: FCOS, images: list[Tensor], targets: list[dict] | None):
    images_t, targets_t = fcos.transform(images, targets)
    features = list(fcos.backbone(images_t.tensors).values())
    head_outputs = fcos.head(features)
    anchors = fcos.anchor_generator(images_t, features)
    num_anchors_per_level = [x.size(2) * x.size(3) for x in features]
    return head_outputs, anchors, num_anchors_per_level, targets_t


def _flatten(head_outputs: dict[str, Tensor], anchors: list[Tensor],
             num_anchors_per_level: list[int]) -> DenseOutputs:
    cls = head_outputs["cls_logits"]          # [B, P, C + 1]
    num_images, points = cls.shape[:2]
    anchors_t = torch.stack(anchors)          # [B, P, 4]
    sizes = anchors_t[..., 2] - anchors_t[..., 0]
    levels = torch.cat([torch.full((n,), i, dtype=torch.long)
                        for i, n in enumerate(num_anchors_per_level)]).to(cls.device)
    return DenseOutputs(
        cls_logits=cls[..., 1:].reshape(num_images * points, -1),
        box_ltrb=head_outputs["bbox_regression"].reshape(num_images * points, 4),
        quality=head_outputs["bbox_ctrness"].reshape(num_images * points),
        anchors=anchors_t.reshape(num_images * points, 4),
        strides=sizes.reshape(num_images * points),
        levels=levels.repeat(num_images),
        images=torch.arange(num_images, device=cls.device).repeat_interleave(points),
        num_images=num_images)


def dense_outputs(fcos: FCOS, images: list[Tensor]) -> DenseOutputs:
    """The raw outputs of ``fcos`` on ``images`` (whatever its train/eval mode)."""
    head_outputs, anchors, num_per_level, _ = _forward_head(fcos, images, None)
    return _flatten(head_outputs, anchors, num_per_level)


class DenseStudent(nn.Module):
    """The student of a dense semi-supervised method: ``forward(sup_images, sup_targets,
    unsup_images)`` returns the supervised loss terms of the labeled images and the raw
    outputs of the unlabeled ones, in one forward (one DDP forward, one backward per step).

    ``sup_loss`` computes the supervised terms from the head outputs; the default is FCOS's
    own loss (focal classification, GIoU regression, centerness BCE).
    """

    def __init__(self, fcos: FCOS):
        super().__init__()
        self.fcos = fcos

    def sup_loss(self, targets: list[dict], head_outputs: dict[str, Tensor],
                 anchors: list[Tensor], num_anchors_per_level: list[int]) -> dict[str, Tensor]:
        return self.fcos.compute_loss(targets, head_outputs, anchors, num_anchors_per_level)

    def forward(self, sup_images: list[Tensor], sup_targets: list[dict],
                unsup_images: list[Tensor] | None = None
                ) -> tuple[dict[str, Tensor], DenseOutputs | None]:
        head_outputs, anchors, num_per_level, targets_t = _forward_head(
            self.fcos, sup_images, sup_targets)
        losses = self.sup_loss(targets_t, head_outputs, anchors, num_per_level)
        unsup = dense_outputs(self.fcos, unsup_images) if unsup_images else None
        return losses, unsup
