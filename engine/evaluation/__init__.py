"""Evaluation: COCO bbox mAP with faster-coco-eval (``engine.evaluation.coco``)."""
