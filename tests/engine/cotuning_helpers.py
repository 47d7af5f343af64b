"""Helpers shared by the co-tuning tests: a tiny co-tuning config and real shapes batches."""

from __future__ import annotations

import torch

from engine.config.schema import Config, validate
from engine.data.shapes import render_image

TARGET_KINDS = ("ellipse", "ring", "diamond")


def tiny_cfg(*, use_cot: bool = True, num_classes: int = 3, cot_classes: int = 4,
             cot_lambda: float = 1.0, cot_scale: float = 1.0) -> Config:
    data = {"architecture": "FasterRCNN", "num_classes": num_classes,
            "backbone": {"name": "tiny", "width": 16, "norm": "bn"},
            "model": {"min_size": 96, "max_size": 96, "fpn_channels": 32,
                      "anchor_sizes": [16, 32, 64], "score_thresh": 0.05}}
    if use_cot:
        data.update(use_cot=True, pretrain_weights="source.pt",
                    BBoxHead={"cot_classes": cot_classes,
                              "loss_cot": {"cot_lambda": cot_lambda, "cot_scale": cot_scale}})
    return validate(data)


def shapes_batch(indices: range, kinds: tuple[str, ...] = TARGET_KINDS, seed: int = 0):
    """Real shapes images (96 px) as the training loader gives them: float images in [0, 1],
    xyxy boxes, labels 1..len(kinds)."""
    images, targets = [], []
    for index in indices:
        pixels, objects = render_image(seed, index, 96, kinds)
        images.append(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255)
        targets.append({"boxes": torch.tensor([box for _, box, _ in objects], dtype=torch.float32),
                        "labels": torch.tensor([label + 1 for label, _, _ in objects])})
    return images, targets
