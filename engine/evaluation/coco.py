"""COCO bbox evaluation with faster-coco-eval (a maintained, pycocotools-exact evaluator).

``COCOEvaluator`` collects a model's eval outputs batch by batch (``update``), then runs the
COCO protocol once (``evaluate``). Which images count: exactly those passed to ``update`` (as
torchvision's reference evaluator does). An updated image with no detections still counts (its
ground truth are misses); images of the json never passed to ``update`` are left out, so a
partial pass gives numbers for that subset, and the full eval set gives the usual numbers.
If an image id arrives twice (a distributed sampler pads its last batch with repeats) only the
first arrival is kept.

Conventions of ``EvalResult``:

- ``metrics`` (AP, AP50, AP75, APs, APm, APl) are on the 0-1 scale. Where COCO has nothing to
  measure (it prints -1: e.g. APl when no ground-truth box is large) the value is NaN; the event
  writer turns NaN into ``null``.
- ``per_class`` holds AP@[.5:.95] of every category that has ground truth in the evaluated
  images; categories without ground truth there are omitted (their AP is undefined).
- ``stats`` are the 12 standard COCO numbers exactly as COCO computes them (-1 included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
NUM_STATS = 12


@dataclass
class EvalResult:
    """The outcome of one COCO bbox evaluation (see the module docstring for conventions)."""

    metrics: dict[str, float]
    per_class: dict[str, float]
    stats: list[float]
    num_images: int
    num_detections: int
    lines: list[str] = field(default_factory=list, repr=False)

    def summary_lines(self) -> list[str]:
        """The 12-line COCO summary, as pycocotools prints it."""
        return list(self.lines)


def _pair(value: Any) -> tuple[float, float]:
    """(h, w) from a tensor, array, list or tuple."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    h, w = (float(v) for v in value)
    return h, w


class COCOEvaluator:
    """Accumulates detections for COCO bbox evaluation of one eval pass.

    Args:
        coco_json: the eval set's COCO instances dict (``images``, ``annotations``,
            ``categories``); it is copied, never modified.
        label_to_cat_id: model label (``1..K``) -> COCO category id. Label 0 (background) is
            never a detection and is dropped.
        class_names: name of each label ``1..K`` in order (``class_names[label - 1]``), used as
            the keys of ``EvalResult.per_class``.
    """

    def __init__(self, coco_json: Mapping[str, Any], label_to_cat_id: Mapping[int, int],
                 class_names: Sequence[str]):
        self.coco_gt = COCO(dict(coco_json), use_deepcopy=True)
        known_cats = set(self.coco_gt.getCatIds())
        unknown = sorted(set(label_to_cat_id.values()) - known_cats)
        if unknown:
            raise ValueError(f"category ids {unknown} are not in the annotation json")
        if len(class_names) != len(label_to_cat_id):
            raise ValueError(f"{len(class_names)} class names for {len(label_to_cat_id)} labels")
        self.label_to_cat_id = dict(label_to_cat_id)
        self.cat_id_to_name = {self.label_to_cat_id[label]: class_names[label - 1]
                               for label in sorted(self.label_to_cat_id)}
        # Label -> category id as a lookup table, so a batch maps with one numpy index.
        max_label = max(self.label_to_cat_id, default=0)
        self._cat_lut = np.full(max_label + 1, -1, dtype=np.int64)
        for label, cat_id in self.label_to_cat_id.items():
            self._cat_lut[label] = cat_id
        self._known_images = set(self.coco_gt.getImgIds())
        self.reset()

    def reset(self) -> None:
        """Forget everything passed to ``update`` (start a new eval pass)."""
        self._seen: set[int] = set()
        self._chunks: list[np.ndarray] = []  # rows: image_id, x, y, w, h, score, category_id

    def update(self, outputs: Sequence[Mapping[str, torch.Tensor]],
               targets: Sequence[Mapping[str, Any]]) -> None:
        """Add one batch: the model's eval outputs and the matching targets.

        Boxes are xyxy in the model's input image (``target["size"]``, (h, w)); they are scaled
        to the original image (``target["orig_size"]``) and converted to COCO xywh.
        """
        if len(outputs) != len(targets):
            raise ValueError(f"{len(outputs)} outputs for {len(targets)} targets")
        for output, target in zip(outputs, targets):
            image_id = int(target["image_id"])
            if image_id not in self._known_images:
                raise ValueError(f"image_id {image_id} is not in the annotation json")
            if image_id in self._seen:
                continue
            self._seen.add(image_id)
            labels = output["labels"].detach().cpu().numpy().astype(np.int64)
            if labels.size == 0:
                continue
            boxes = output["boxes"].detach().cpu().numpy().astype(np.float64)
            scores = output["scores"].detach().cpu().numpy().astype(np.float64)
            if labels.max() >= len(self._cat_lut) or (self._cat_lut[labels[labels > 0]] < 0).any():
                raise ValueError(f"the model predicted labels {sorted(set(labels.tolist()))}; "
                                 f"known labels are {sorted(self.label_to_cat_id)}")
            keep = labels > 0
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            orig_h, orig_w = _pair(target["orig_size"])
            size_h, size_w = _pair(target["size"])
            boxes[:, 0::2] *= orig_w / size_w
            boxes[:, 1::2] *= orig_h / size_h
            rows = np.empty((len(boxes), 7), dtype=np.float64)
            rows[:, 0] = image_id
            rows[:, 1:3] = boxes[:, :2]
            rows[:, 3:5] = boxes[:, 2:] - boxes[:, :2]
            rows[:, 5] = scores
            rows[:, 6] = self._cat_lut[labels]
            self._chunks.append(rows)

    @property
    def num_images(self) -> int:
        """Images passed to ``update`` since the last ``reset``."""
        return len(self._seen)

    def evaluate(self) -> EvalResult:
        """Run COCO bbox evaluation on the images passed to ``update``."""
        if not self._seen:
            raise RuntimeError("nothing to evaluate: update() was not called since reset()")
        rows = np.concatenate(self._chunks) if self._chunks else np.zeros((0, 7))
        detections = [
            {"image_id": int(r[0]), "bbox": [r[1], r[2], r[3], r[4]], "score": r[5],
             "category_id": int(r[6])}
            for r in rows.tolist()
        ]
        coco_dt = self.coco_gt.loadRes(detections)
        evaluator = COCOeval_faster(self.coco_gt, coco_dt, iouType="bbox",
                                    print_function=_discard)
        evaluator.params.imgIds = sorted(self._seen)
        evaluator.evaluate()
        evaluator.accumulate()
        lines: list[str] = []
        evaluator.print_function = lines.append
        evaluator.summarize()
        stats = [float(s) for s in evaluator.stats[:NUM_STATS]]
        metrics = {name: (value if value >= 0 else math.nan)
                   for name, value in zip(METRIC_NAMES, stats)}
        return EvalResult(metrics=metrics, per_class=self._per_class(evaluator), stats=stats,
                          num_images=len(self._seen), num_detections=len(detections),
                          lines=lines[:NUM_STATS])

    def _per_class(self, evaluator: COCOeval_faster) -> dict[str, float]:
        # precision: [iou thresholds, recall thresholds, categories, area ranges, max dets];
        # area "all" is index 0, maxDets=100 the last. -1 marks "no ground truth".
        precision = evaluator.eval["precision"]
        per_class: dict[str, float] = {}
        for k, cat_id in enumerate(evaluator.params.catIds):
            if cat_id not in self.cat_id_to_name:
                continue
            p = precision[:, :, k, 0, -1]
            valid = p[p > -1]
            if valid.size:
                per_class[self.cat_id_to_name[cat_id]] = float(valid.mean())
        return per_class


def _discard(*_args: object) -> None:
    """faster-coco-eval's progress messages are not wanted in the run log."""
