"""Co-tuning's target -> source category relationship: learned once, before training.

PaddleDetection's ``FasterRCNN.relationship_learning`` (notes section 7.2): one pass over the
training loader with the model in eval mode, the ground-truth boxes used as RoIs (RoIAlign ->
box head -> source classifier -> softmax, background dropped), averaging the source-class
probabilities per target class into a ``[num_classes, cot_classes]`` matrix. Rows are not
re-normalised after the background column is dropped (as PaddleDetection; the soft
cross-entropy's optimum is the same). Two differences, both deliberate:

* a target class with no box in the training set gets a uniform row (``1 / cot_classes``)
  instead of PaddleDetection's NaN row, and its count 0 says so;
* under torch.distributed the per-class sums and counts are all-reduced, so every rank stores
  the relationship of the whole training set (PaddleDetection averages per rank).

``write_relationship_json`` writes it for the run directory (``cot_relationship.json``), where
the TUI shows each target class's top source classes.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from engine.models.cotuning import cotuning_heads
from engine.protocol.rundir import COT_RELATIONSHIP, atomic_write_text

RELATIONSHIP_JSON_VERSION = 1


def relationship_from_sums(sums: Tensor, counts: Tensor) -> Tensor:
    """``[K, S]`` float32: ``sums[k] / counts[k]``, or uniform ``1 / S`` where ``counts[k]`` is 0
    (a target class the training set has no box of)."""
    num_sources = sums.shape[1]
    seen = counts > 0
    mean = sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)
    uniform = torch.full_like(sums, 1.0 / num_sources)
    return torch.where(seen.unsqueeze(1), mean, uniform).float()


@torch.no_grad()
def gt_source_probabilities(model: nn.Module, images: list[Tensor],
                            targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
    """The source head's class probabilities (background dropped) on the ground-truth boxes.

    ``model`` is a co-tuning Faster R-CNN (not DDP-wrapped), ideally in eval mode (the
    transform then resizes deterministically and BatchNorm uses its running statistics).
    Returns ``probs`` ``[N, cot_classes]`` and the boxes' target ``labels`` ``[N]``, for the
    N boxes of the batch in order.
    """
    heads = cotuning_heads(model)
    image_list, resized = model.transform(images, targets)
    features = model.backbone(image_list.tensors)
    boxes = [t["boxes"] for t in resized]
    pooled = heads.box_roi_pool(features, boxes, image_list.image_sizes)
    logits = heads.box_predictor.source_logits(heads.box_head(pooled))
    probs = logits.float().softmax(dim=-1)[:, 1:]
    labels = torch.cat([t["labels"] for t in resized])
    return probs, labels


def learn_relationship(model: nn.Module, loader: Iterable, num_classes: int,
                       device: torch.device | str, distributed: bool = False) -> Tensor:
    """One pass over ``loader`` -> the ``[num_classes, cot_classes]`` relationship, which is
    also stored in the model (``roi_heads.set_relationship``) with its per-class box counts.

    ``loader`` yields ``(images, targets)`` as the training loader does (targets with
    ``boxes`` xyxy and ``labels`` ``1..num_classes``). The model (DDP-wrapped or not) runs in
    eval mode under no_grad and is put back in its previous mode. With ``distributed``, every
    rank must call this (the sums and counts are all-reduced); each rank's loader yields its
    share (the sampler's wrap-around padding may count a few images twice). Returns the
    matrix on the CPU.
    """
    net = getattr(model, "module", model)
    heads = cotuning_heads(net)
    if num_classes != heads.num_classes:
        raise ValueError(f"the model has {heads.num_classes} target classes, not {num_classes}")
    device = torch.device(device)
    sums = torch.zeros(num_classes, heads.cot_classes, dtype=torch.float64, device=device)
    counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for images, targets in loader:
                images = [image.to(device, non_blocking=True) for image in images]
                targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)}
                           for t in targets]
                probs, labels = gt_source_probabilities(net, images, targets)
                if labels.numel() == 0:
                    continue
                if int(labels.min()) < 1 or int(labels.max()) > num_classes:
                    raise ValueError(f"target labels must be 1..{num_classes}, got "
                                     f"{int(labels.min())}..{int(labels.max())}")
                sums.index_add_(0, labels - 1, probs.double())
                counts += torch.bincount(labels - 1, minlength=num_classes)
    finally:
        net.train(was_training)
    if distributed and dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
        dist.all_reduce(counts)
    matrix = relationship_from_sums(sums, counts)
    heads.set_relationship(matrix, counts)
    return matrix.cpu()


# --------------------------------------------------------------------------- names and JSON

def _coco_names(cot_classes: int) -> list[str] | None:
    """COCO's names for a COCO detector's source head: torchvision's 90 category ids (its
    Faster R-CNN checkpoints; 10 ids are unused, "N/A") or the 80 contiguous classes
    (PaddleDetection's, MMDetection's). The list ships with torchvision; nothing is downloaded."""
    if cot_classes not in (80, 90):
        return None
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    names = list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])[1:]
    return names if cot_classes == 90 else [n for n in names if n != "N/A"]


def source_class_names(weights: str | Path, cot_classes: int) -> tuple[list[str], str]:
    """Names of the source classes and where they came from.

    ``"checkpoint"``: the ``class_names`` a dettui checkpoint stores (the source run's
    classes); else ``"coco"`` for a head of 80 or 90 classes (taken to be a COCO detector);
    else ``"index"``: ``source 1``, ``source 2``...
    """
    path = Path(weights)
    if path.suffix != ".safetensors":
        try:
            content: Any = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
            content = None
        names = content.get("class_names") if isinstance(content, dict) else None
        if (isinstance(names, list) and len(names) == cot_classes
                and all(isinstance(n, str) for n in names)):
            return list(names), "checkpoint"
    coco = _coco_names(cot_classes)
    if coco is not None:
        return coco, "coco"
    return [f"source {i}" for i in range(1, cot_classes + 1)], "index"


def relationship_summary(relationship: Tensor, counts: Tensor, target_names: Sequence[str],
                         source_names: Sequence[str], *, source_names_from: str = "index",
                         top_k: int = 3) -> dict[str, Any]:
    """The JSON-ready description of a relationship (see ``write_relationship_json``)."""
    matrix = relationship.detach().cpu().double()
    num_targets, num_sources = matrix.shape
    if len(target_names) != num_targets or len(source_names) != num_sources:
        raise ValueError(f"{len(target_names)} target and {len(source_names)} source names for "
                         f"a {num_targets} x {num_sources} relationship")
    k = min(top_k, num_sources)
    values, indices = matrix.topk(k, dim=1)
    top = {name: [{"source": source_names[j], "p": round(float(p), 6)}
                  for p, j in zip(values[row].tolist(), indices[row].tolist(), strict=True)]
           for row, name in enumerate(target_names)}
    return {
        "version": RELATIONSHIP_JSON_VERSION,
        "target_classes": list(target_names),
        "source_classes": list(source_names),
        "source_names_from": source_names_from,
        "examples": {name: int(c) for name, c in zip(target_names, counts.tolist(), strict=True)},
        "top": top,
        "matrix": [[round(float(p), 6) for p in row] for row in matrix.tolist()],
    }


def write_relationship_json(run_dir: str | Path, model: nn.Module, target_names: Sequence[str],
                            source_names: Sequence[str] | None = None, *,
                            source_names_from: str = "index", top_k: int = 3) -> Path:
    """Write the model's learned relationship to ``run_dir/cot_relationship.json`` (atomic).

    Format (version 1)::

        {"version": 1,
         "target_classes": ["ring", ...],          # by target label 1..K
         "source_classes": ["circle", ...],        # by source class 1..S
         "source_names_from": "checkpoint" | "coco" | "index",
         "examples": {"ring": 10, ...},            # GT boxes averaged; 0 -> uniform row
         "top": {"ring": [{"source": "circle", "p": 0.61}, ...], ...},  # top_k, best first
         "matrix": [[...S floats...], ...K rows]}  # row k: target label k + 1

    ``source_names`` default to ``source 1..S``.
    """
    heads = cotuning_heads(model)
    if source_names is None:
        source_names = [f"source {i}" for i in range(1, heads.cot_classes + 1)]
    summary = relationship_summary(heads.relationship, heads.relationship_counts, target_names,
                                   source_names, source_names_from=source_names_from,
                                   top_k=top_k)
    path = Path(run_dir) / COT_RELATIONSHIP
    atomic_write_text(path, json.dumps(summary, indent=1) + "\n")
    return path


__all__ = ["RELATIONSHIP_JSON_VERSION", "gt_source_probabilities", "learn_relationship",
           "relationship_from_sums", "relationship_summary", "source_class_names",
           "write_relationship_json"]
