"""RT-DETR behind the torchvision detector contract: ``build_rtdetr(cfg)`` -> ``RTDETR``.

The detector itself is Hugging Face transformers' ``RTDetrModel`` (ResNet-vd backbone, hybrid
encoder, query selection, multi-scale deformable-attention decoder with box refinement,
contrastive denoising), built from ``cfg.rtdetr`` with random initialisation; nothing is
downloaded. ``RTDETR`` adapts it to what the engine expects of every detector:

* train mode: ``model(images, targets)`` with float ``[3, H, W]`` images in ``[0, 1]`` and
  targets ``{"boxes": xyxy pixels of that image, "labels": 1..K}`` returns a dict of weighted
  loss terms whose sum is the total loss;
* eval mode: ``model(images)`` returns ``{"boxes" (xyxy pixels of each input image),
  "scores", "labels" (1..K)}`` per image.

Each image is resized to the square ``rtdetr.image_size`` input (in training, with
``train_sizes``, to a side drawn per batch; stretched as RT-DETR does, or with ``keep_ratio``
scaled and zero-padded at the bottom/right), kept in ``[0, 1]`` (RT-DETR's
input normalisation is /255 only, notes section 6.4), and its boxes are mapped to the
normalised cxcywh / 0-based labels transformers works in, and back for the outputs.

State-dict keys are exactly those of transformers' ``RTDetrForObjectDetection`` (``model.*``),
so a transformers-format weights file loads as is, through ``pretrain_weights`` (partial
load with a report) or ``dettui eval --weights`` (strict).

For self-training (Semi-RT-DETR): a target may carry ``"scores"`` (teacher confidences), which
scale the varifocal targets (see ``engine/models/rtdetr_loss.py``); ``detect_per_query`` gives
one detection per query for pseudo-labelling; ``zero_loss`` is the loss of a batch with no
pseudo-boxes at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

from engine.config.schema import Config
from engine.models.rtdetr_loss import ScoredRTDetrLoss, detr_loss_inputs, group_losses


def stage_stride(stage: int) -> int:
    """Stride of a ResNet-vd stage's output (the stem and stage 1 are at stride 4)."""
    return 2 ** (stage + 1)


def rtdetr_config(cfg: Config) -> RTDetrConfig:
    """transformers' ``RTDetrConfig`` for ``cfg.rtdetr`` and ``cfg.num_classes``."""
    r = cfg.rtdetr
    stages = list(r.feature_stages)
    backbone = RTDetrResNetConfig(
        embedding_size=r.backbone_stem_channels, hidden_sizes=list(r.backbone_hidden_sizes),
        depths=list(r.backbone_depths), layer_type=r.backbone_layer_type, out_indices=stages)
    levels = len(stages)
    return RTDetrConfig(
        backbone_config=backbone,
        num_labels=cfg.num_classes,
        freeze_backbone_batch_norms=r.freeze_backbone_bn,
        encoder_in_channels=[r.backbone_hidden_sizes[s - 1] for s in stages],
        feat_strides=[stage_stride(s) for s in stages],
        encode_proj_layers=[levels - 1],  # AIFI on the deepest level, as published
        encoder_hidden_dim=r.encoder_hidden_dim,
        encoder_layers=r.encoder_layers,
        encoder_attention_heads=r.encoder_heads,
        encoder_ffn_dim=r.encoder_ffn_dim,
        hidden_expansion=r.hidden_expansion,
        d_model=r.d_model,
        decoder_in_channels=[r.encoder_hidden_dim] * levels,
        num_feature_levels=levels,
        decoder_layers=r.decoder_layers,
        decoder_attention_heads=r.decoder_heads,
        decoder_ffn_dim=r.decoder_ffn_dim,
        decoder_n_points=r.decoder_points,
        num_queries=r.num_queries,
        num_denoising=r.num_denoising,
        label_noise_ratio=r.label_noise_ratio,
        box_noise_scale=r.box_noise_scale,
        auxiliary_loss=r.aux_loss,
        weight_loss_vfl=r.weight_vfl,
        weight_loss_bbox=r.weight_bbox,
        weight_loss_giou=r.weight_giou,
        focal_loss_alpha=r.focal_alpha,
        focal_loss_gamma=r.focal_gamma,
        matcher_class_cost=r.matcher_class_cost,
        matcher_bbox_cost=r.matcher_bbox_cost,
        matcher_giou_cost=r.matcher_giou_cost,
        matcher_alpha=r.matcher_alpha,
        matcher_gamma=r.matcher_gamma,
        initializer_bias_prior_prob=r.prior_prob,
    )


@dataclass(frozen=True)
class InputGeometry:
    """Where one image sits in the square model input: resized to ``resized_height x
    resized_width`` at the top-left of a ``canvas x canvas`` input (the rest is padding)."""

    height: int
    width: int
    resized_height: int
    resized_width: int
    canvas: int

    @classmethod
    def fit(cls, height: int, width: int, canvas: int, keep_ratio: bool) -> InputGeometry:
        if not keep_ratio:
            return cls(height, width, canvas, canvas, canvas)
        scale = canvas / max(height, width)
        return cls(height, width, min(canvas, max(1, round(height * scale))),
                   min(canvas, max(1, round(width * scale))), canvas)

    def _factors(self, like: Tensor) -> Tensor:
        """Pixels of the original image -> fraction of the canvas, per x/y coordinate."""
        fx = self.resized_width / (self.width * self.canvas)
        fy = self.resized_height / (self.height * self.canvas)
        return torch.tensor([fx, fy, fx, fy], dtype=like.dtype, device=like.device)

    def to_normalized_cxcywh(self, boxes: Tensor) -> Tensor:
        """xyxy pixels of the original image -> cxcywh as fractions of the model input."""
        xyxy = boxes * self._factors(boxes)
        return torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                            xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], dim=-1)

    def to_pixel_xyxy(self, boxes: Tensor) -> Tensor:
        """cxcywh fractions of the model input -> xyxy pixels of the original image, clipped
        to it."""
        cx, cy, w, h = boxes.unbind(-1)
        xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        xyxy = xyxy / self._factors(boxes)
        limits = torch.tensor([self.width, self.height] * 2, dtype=xyxy.dtype,
                              device=xyxy.device)
        return torch.minimum(xyxy.clamp(min=0), limits)


class RTDETR(nn.Module):
    """transformers' RT-DETR with the torchvision detector interface (see the module doc).

    Attributes:
        model: transformers' ``RTDetrModel`` (its keys are ``RTDetrForObjectDetection``'s).
        criterion: ``ScoredRTDetrLoss``, the matching and losses.
        image_size, keep_ratio, train_sizes: how images are fitted into the model input.
        score_thresh, detections_per_img: inference filtering (``model`` config section).
    """

    def __init__(self, config: RTDetrConfig, *, image_size: int, keep_ratio: bool = False,
                 train_sizes: tuple[int, ...] = (), score_thresh: float = 0.0,
                 detections_per_img: int = 100):
        super().__init__()
        # The detection wrapper only adds the per-layer class/box heads, which it installs in
        # model.decoder and initialises (prior-probability biases, zeroed box deltas): keeping
        # its RTDetrModel keeps its state-dict keys.
        self.model = RTDetrForObjectDetection(config).model
        # transformers initialises BatchNorm weights ~ N(0, 0.01) (its initializer_range);
        # RT-DETR's reference implementations keep PyTorch's (1, 0). With the near-zero
        # weights every encoder block starts ~100x attenuated with random signs. Loaded
        # weights replace it, but from scratch it matters: the tiny shapes config reached
        # AP 0.02 after its first epoch with transformers' init, 0.32 with this one.
        for module in self.model.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        self.criterion = ScoredRTDetrLoss(config)
        self.num_classes = config.num_labels
        self.aux_loss = config.auxiliary_loss
        self.image_size = image_size
        self.keep_ratio = keep_ratio
        self.train_sizes = tuple(train_sizes)
        self.score_thresh = score_thresh
        self.detections_per_img = detections_per_img

    # ------------------------------------------------------------------ input and targets
    def input_size(self) -> int:
        """The side of the next input: ``image_size``, or in training with ``train_sizes``
        one of them drawn per batch (from torch's RNG, which checkpoints save and restore)."""
        if self.training and self.train_sizes:
            return self.train_sizes[int(torch.randint(len(self.train_sizes), ()))]
        return self.image_size

    def prepare(self, images: list[Tensor]) -> tuple[Tensor, list[InputGeometry]]:
        """The ``[B, 3, S, S]`` model input and each image's geometry in it."""
        size = self.input_size()
        batch = images[0].new_zeros((len(images), 3, size, size))
        geometries = []
        for i, image in enumerate(images):
            height, width = image.shape[-2:]
            geometry = InputGeometry.fit(height, width, size, self.keep_ratio)
            rh, rw = geometry.resized_height, geometry.resized_width
            if (rh, rw) != (height, width):
                image = F.interpolate(image[None], size=(rh, rw), mode="bilinear",
                                      align_corners=False)[0]
            batch[i, :, :rh, :rw] = image
            geometries.append(geometry)
        # Channels-last input: the convolutions then run in that layout (oneDNN's preferred
        # one on CPUs); measured ~10% off a tiny model's CPU train step. The weights keep
        # their layout, so state dicts and saved files are unaffected.
        return batch.contiguous(memory_format=torch.channels_last), geometries

    def model_targets(self, targets: list[dict[str, Tensor]],
                      geometries: list[InputGeometry]) -> list[dict[str, Tensor]]:
        """Engine targets (xyxy pixels, labels 1..K, optional scores) -> transformers' targets
        (normalised cxcywh ``boxes``, ``class_labels`` 0..K-1, ``scores`` kept)."""
        converted = []
        for target, geometry in zip(targets, geometries):
            item = {"boxes": geometry.to_normalized_cxcywh(target["boxes"].float()),
                    "class_labels": target["labels"].long() - 1}
            if "scores" in target:
                item["scores"] = target["scores"].float()
            converted.append(item)
        return converted

    # ----------------------------------------------------------------------- forward
    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        pixel_values, geometries = self.prepare(images)
        if self.training:
            if targets is None:
                raise ValueError("RTDETR in training mode needs targets")
            model_targets = self.model_targets(targets, geometries)
            outputs = self.model(pixel_values, labels=model_targets)
            per_layer = self.criterion(detr_loss_inputs(outputs, self.aux_loss), model_targets)
            return group_losses(per_layer)
        outputs = self.model(pixel_values)
        return self.detections(outputs.intermediate_logits[:, -1],
                               outputs.intermediate_reference_points[:, -1], geometries)

    def detections(self, logits: Tensor, boxes: Tensor,
                   geometries: list[InputGeometry]) -> list[dict[str, Tensor]]:
        """The best ``detections_per_img`` (query, class) pairs of each image by sigmoid score
        (as transformers' RT-DETR post-processing), at least ``score_thresh``."""
        probs = logits.sigmoid()
        num_queries, num_classes = probs.shape[1:]
        k = min(self.detections_per_img, num_queries * num_classes)
        scores, flat = probs.flatten(1).topk(k, dim=1)
        queries, labels = flat // num_classes, flat % num_classes + 1
        results = []
        for b, geometry in enumerate(geometries):
            keep = scores[b] >= self.score_thresh
            results.append({"boxes": geometry.to_pixel_xyxy(boxes[b, queries[b, keep]]),
                            "scores": scores[b, keep], "labels": labels[b, keep]})
        return results

    @torch.no_grad()
    def detect_per_query(self, images: list[Tensor], score_fn: str = "sigmoid"
                         ) -> list[dict[str, Tensor]]:
        """One detection per query (its best class), highest score first: what a DETR
        teacher's pseudo-labels are drawn from (one-to-one, so no NMS is needed). Runs in
        whatever mode the module is in; call it on a teacher in eval mode.

        ``score_fn``: ``sigmoid`` of the class logits (what RT-DETR is trained with and
        evaluates by), or ``softmax`` over the classes (PaddleDetection's
        ``DETRBBoxSemiPostProcess``), which rates a query by how much its best class beats
        the others rather than by how sure it is of an object."""
        if score_fn not in ("sigmoid", "softmax"):
            raise ValueError(f"score_fn must be sigmoid or softmax, got {score_fn!r}")
        pixel_values, geometries = self.prepare(images)
        outputs = self.model(pixel_values)
        logits = outputs.intermediate_logits[:, -1]
        probs = logits.softmax(-1) if score_fn == "softmax" else logits.sigmoid()
        scores, labels = probs.max(-1)
        boxes = outputs.intermediate_reference_points[:, -1]
        results = []
        for b, geometry in enumerate(geometries):
            order = scores[b].argsort(descending=True)
            results.append({"boxes": geometry.to_pixel_xyxy(boxes[b, order]),
                            "scores": scores[b, order], "labels": labels[b, order] + 1})
        return results

    def zero_loss(self) -> Tensor:
        """A zero scalar whose backward gives every trainable parameter a (zero) gradient.

        For an unsupervised batch in which no image kept a pseudo-box: adding it keeps every
        parameter in the autograd graph, so DistributedDataParallel's gradient all-reduce
        sees the same parameters on every rank.
        """
        return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0


def build_rtdetr(cfg: Config) -> RTDETR:
    """``architecture: RTDETR``: transformers' RT-DETR from ``cfg.rtdetr``, random init."""
    r = cfg.rtdetr
    model = RTDETR(rtdetr_config(cfg), image_size=r.image_size, keep_ratio=r.keep_ratio,
                   train_sizes=tuple(r.train_sizes), score_thresh=cfg.model.score_thresh,
                   detections_per_img=cfg.model.detections_per_img)
    if r.freeze_backbone_stem:  # PaddleDetection's freeze_stem_only
        model.model.backbone.model.embedder.requires_grad_(False)
    return model
