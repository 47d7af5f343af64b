"""Prediction previews: a few fixed validation images with what the model predicts on them,
written to ``previews/`` in the run folder at every evaluation.

The predictions come from the evaluation pass itself (:class:`PreviewCollector` is handed
to :func:`engine.evaluation.evaluate_model`, which shows it every batch), so a preview
costs no extra forward pass: only decoding and drawing ``count`` images. Each file is
``epochNNN_imgK.png`` (NNN the 1-based epoch, K the image's place among the previews):
predicted boxes with a score at or above the threshold in their class colour with a label,
the ground truth as thin white outlines over them. Only the latest ``keep_epochs`` epochs are kept.

Files are written like every file of a run folder: to a temporary file in ``previews/``,
then renamed into place (never through a link: a rename replaces a planted link itself);
a ``previews`` that is not a real folder (a link out of the run) is refused.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from engine.drawing import draw_detections
from engine.protocol.rundir import atomic_write_bytes

__all__ = ["GT_COLOUR", "PREVIEW_NAME", "PreviewCollector", "preview_epochs", "preview_name",
           "prune", "write_previews"]

GT_COLOUR = (255, 255, 255)
PREVIEW_NAME = re.compile(r"^epoch(\d{3,})_img(\d+)\.png$")
"""The name of a preview file (what pruning and the TUI recognise)."""


def preview_name(epoch: int, index: int) -> str:
    """The file name of preview ``index`` of (1-based) ``epoch``."""
    return f"epoch{epoch:03d}_img{index}.png"


class PreviewCollector:
    """Keeps the eval outputs of the preview images (given by image id) as an evaluation
    goes by: boxes scaled to the original image, as the COCO evaluator scales them."""

    def __init__(self, image_ids: Sequence[int]) -> None:
        self.image_ids = [int(i) for i in image_ids]
        self.outputs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __call__(self, outputs: Sequence[Mapping[str, Any]],
                 targets: Sequence[Mapping[str, Any]]) -> None:
        wanted = set(self.image_ids)
        for output, target in zip(outputs, targets):
            image_id = int(target["image_id"])
            if image_id not in wanted or image_id in self.outputs:
                continue
            boxes = np.asarray(output["boxes"], dtype=np.float64).reshape(-1, 4).copy()
            orig_h, orig_w = (float(v) for v in target["orig_size"])
            size_h, size_w = (float(v) for v in target["size"])
            boxes[:, 0::2] *= orig_w / size_w
            boxes[:, 1::2] *= orig_h / size_h
            self.outputs[image_id] = (boxes, np.asarray(output["scores"], dtype=np.float64),
                                      np.asarray(output["labels"], dtype=np.int64))


def _previews_folder(folder: Path) -> Path:
    """``folder``, created if missing; refused (OSError) unless a real folder."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
    mode = os.lstat(folder).st_mode
    if not stat.S_ISDIR(mode):
        raise OSError(f"{folder} is not a folder (a link or a file): no previews written")
    return folder


def render_preview(image: Image.Image, gt_boxes: np.ndarray,
                   detections: list[tuple[tuple[float, float, float, float], float, int]],
                   class_names: Sequence[str]) -> bytes:
    """One preview as PNG bytes: the predictions with their labels (``engine.drawing``),
    then the ground truth outlined in white on top (thin: both stay visible)."""
    image = image.convert("RGB")
    draw_detections(image, detections, class_names)
    draw = ImageDraw.Draw(image)
    for box in gt_boxes.tolist():
        draw.rectangle(box, outline=GT_COLOUR, width=1)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def write_previews(folder: str | Path, epoch: int, collector: PreviewCollector,
                   images: Sequence[tuple[Image.Image, np.ndarray]],
                   class_names: Sequence[str], score_threshold: float,
                   keep_epochs: int) -> list[Path]:
    """Write the previews of (1-based) ``epoch``: ``images`` are the preview images (upright,
    as the model saw them before resizing) with their ground-truth xyxy boxes, in the order
    of ``collector.image_ids``. Then prune all but the latest ``keep_epochs`` epochs.
    Returns the files written. Raises OSError when the folder cannot be used."""
    folder = _previews_folder(Path(folder))
    written = []
    for k, (image_id, (image, gt_boxes)) in enumerate(zip(collector.image_ids, images)):
        boxes, scores, labels = collector.outputs.get(
            image_id, (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)))
        keep = (scores >= score_threshold) & (labels > 0)
        detections = [(tuple(b), float(s), int(c)) for b, s, c in
                      zip(boxes[keep].tolist(), scores[keep].tolist(), labels[keep].tolist())]
        path = folder / preview_name(epoch, k)
        atomic_write_bytes(path, render_preview(image, gt_boxes, detections, class_names))
        written.append(path)
    prune(folder, keep_epochs)
    return written


def preview_epochs(folder: str | Path) -> dict[int, list[Path]]:
    """The preview files of a folder by epoch (ascending), each epoch's in image order."""
    by_epoch: dict[int, list[tuple[int, Path]]] = {}
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    for name in names:
        m = PREVIEW_NAME.match(name)
        if m:
            by_epoch.setdefault(int(m.group(1)), []).append((int(m.group(2)), Path(folder) / name))
    return {e: [p for _, p in sorted(files)] for e, files in sorted(by_epoch.items())}


def prune(folder: str | Path, keep_epochs: int) -> None:
    """Remove the previews of all but the latest ``keep_epochs`` epochs (only files named
    like previews; a link is removed itself, never what it points to)."""
    epochs = preview_epochs(folder)
    for epoch in list(epochs)[: max(0, len(epochs) - keep_epochs)]:
        for path in epochs[epoch]:
            path.unlink(missing_ok=True)
