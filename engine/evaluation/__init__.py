"""Evaluation: COCO bbox mAP with faster-coco-eval (``engine.evaluation.coco``).

``evaluate_model`` is the one evaluation routine: the trainers call it for every model they
report (``model``, ``ema``, ``teacher``, ``student``) and ``dettui eval`` calls it on weights
from a file, so both always measure the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from engine.evaluation.coco import COCOEvaluator, EvalResult

__all__ = ["COCOEvaluator", "EvalObserver", "EvalResult", "evaluate_model"]

EvalObserver = Callable[[Sequence[dict[str, Any]], Sequence[Any]], None]
"""Shown each batch's outputs (on the CPU) and targets, e.g. to keep a few predictions."""


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: Iterable[tuple[list[torch.Tensor], list[Any]]],
                   dataset: Any, device: torch.device, *, amp: bool = False,
                   observe: EvalObserver | None = None) -> EvalResult:
    """COCO-evaluate ``model`` on every batch of ``loader`` (images and targets of
    ``dataset``, a ``CocoDetection``). The model's train/eval mode is restored after.
    ``observe`` sees every batch's outputs as well (no second forward pass for them)."""
    was_training = model.training
    model.eval()
    evaluator = COCOEvaluator(dataset.coco_json, dataset.label_to_cat_id, dataset.class_names)
    try:
        for images, targets in loader:
            images = [img.to(device, non_blocking=True) for img in images]
            with torch.autocast(device.type, enabled=amp):
                outputs = model(images)
            outputs = [{k: v.float().cpu() for k, v in o.items()} for o in outputs]
            evaluator.update(outputs, targets)
            if observe is not None:
                observe(outputs, targets)
    finally:
        model.train(was_training)
    return evaluator.evaluate()
