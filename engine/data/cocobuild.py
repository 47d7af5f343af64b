"""``CocoBuilder``: the one place where imported boxes become a COCO instances dict.

The VOC and YOLO readers hand it upright-image boxes in pixels (``x0, y0, x1, y1``); it
applies the same rules ``cocofile.index_coco`` applies at training time, so what the
report counts is what training gets: a box partly outside its image is clipped to it; a
box with no area as written, entirely outside, or under a pixel once clipped is dropped
and counted by reason. Ignored boxes (VOC ``difficult``) are written with ``iscrowd: 1``.

Images are referenced in place by absolute path in ``file_name`` (nothing is copied):
``CocoDetection`` joins ``image_dir`` with a ``file_name``, and joining with an absolute
name gives the name itself, so the written json works from any working directory and
whatever ``image_dir`` says.

stdlib only.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from engine.data.images import ImageInfo
from engine.data.summary import IGNORED_WHAT, DatasetSummary
from engine.protocol.errors import DataError
from engine.protocol.safefiles import RefusedFile, check_output_path, read_regular_text

Box = tuple[float, float, float, float]

DROP_EMPTY = "zero or negative width/height as written"
DROP_OUTSIDE = "entirely outside the image"
DROP_TINY = "under 1 px wide or high once clipped to the image"


class CocoBuilder:
    """Collects images and boxes, then ``finish()`` gives the COCO dict and its summary."""

    def __init__(self, class_names: list[str], summary: DatasetSummary) -> None:
        for name in class_names:
            _check_unicode(name, "class name", summary.source)
        self.class_names = list(class_names)
        self.summary = summary
        summary.class_names = list(class_names)
        summary.boxes = [0] * len(class_names)
        summary.ignored = [0] * len(class_names)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self._no_labels: list[str | None] = []
        self._kept: list[int] = []
        self._ignored: list[int] = []
        self._seen_boxes: list[int] = []

    def add_image(self, path: Path, info: ImageInfo, no_labels: str | None = None) -> int:
        """Add an image (its upright size); returns its id. ``no_labels`` says why it has
        no annotation at all (e.g. "no label file"), for the report."""
        _check_unicode(str(path), "image file name", str(path))
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": os.path.abspath(path),
                            "width": info.width, "height": info.height})
        self._no_labels.append(no_labels)
        self._kept.append(0)
        self._ignored.append(0)
        self._seen_boxes.append(0)
        return image_id

    def add_box(self, image_id: int, class_index: int, box: Box, *, where: str,
                ignored: bool = False) -> None:
        """Add one box of ``class_names[class_index]`` to image ``image_id``, clipped to
        the image, or count why it was dropped (``where`` names its file and line)."""
        pos = image_id - 1
        self._seen_boxes[pos] += 1
        image = self.images[pos]
        x0, y0, x1, y1 = box
        if not (x1 > x0 and y1 > y0):  # NaN fails too
            self.summary.drop(DROP_EMPTY, where)
            return
        width, height = image["width"], image["height"]
        cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        if cx1 <= cx0 or cy1 <= cy0:
            self.summary.drop(DROP_OUTSIDE, where)
            return
        if cx1 - cx0 < 1.0 or cy1 - cy0 < 1.0:
            self.summary.drop(DROP_TINY, where)
            return
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            self.summary.clipped += 1
        w, h = cx1 - cx0, cy1 - cy0
        self.annotations.append({
            "id": len(self.annotations) + 1, "image_id": image_id,
            "category_id": class_index + 1,
            "bbox": [_round(cx0), _round(cy0), _round(w), _round(h)],
            "area": _round(w * h), "iscrowd": int(ignored)})
        if ignored:
            self.summary.ignored[class_index] += 1
            self._ignored[pos] += 1
        else:
            self.summary.boxes[class_index] += 1
            self._kept[pos] += 1

    def finish(self, info: dict[str, Any] | None = None) -> tuple[dict[str, Any], DatasetSummary]:
        """The COCO dict (categories ``1..K`` in class order) and the completed summary."""
        why_empty: dict[str, int] = {}
        for no_labels, kept, ignored, seen in zip(self._no_labels, self._kept, self._ignored,
                                                  self._seen_boxes):
            if kept:
                continue
            if no_labels is not None and not seen:
                reason = no_labels
            elif ignored:
                reason = f"only {IGNORED_WHAT} boxes"
            else:
                reason = "every box dropped"
            why_empty[reason] = why_empty.get(reason, 0) + 1
        self.summary.images = len(self.images)
        self.summary.without_boxes = why_empty
        coco = {
            "info": info or {},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": ""}
                           for i, name in enumerate(self.class_names)],
        }
        return coco, self.summary


def _check_unicode(text: str, what: str, where: str) -> None:
    """A name the COCO json (UTF-8) can hold: a file name that is not UTF-8 on disk, or a
    lone surrogate, cannot be written, and is refused naming it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # the bytes on disk (os.fsencode undoes the surrogate escapes of a file name)
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")
        shown = shown.encode("utf-8", "backslashreplace").decode("utf-8")
        raise DataError(f"the {what} '{shown}' is not valid UTF-8 text, which a COCO json "
                        "must be", file=where if where.isprintable() and _utf8(where)
                        else shown, hint="rename it") from None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _round(value: float) -> float:
    """Two decimals keep the json small; sub-pixel detail below that is noise."""
    r = round(value, 2)
    return int(r) if r == int(r) else r


def parse_number(text: str | None) -> float | None:
    """A finite float from ``text``, or None."""
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_name_list(path: Path, *, key: str) -> list[str]:
    """Class names, one per line (a ``label_list`` or ``classes.txt``); blank lines are
    skipped, a repeated name is an error naming its line."""
    try:
        text = read_regular_text(path, encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("class list not found", file=str(path), key=key) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the class list: {exc}", file=str(path), key=key) from None
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in first_line:
            raise DataError(f"class {name!r} is listed twice (first on line "
                            f"{first_line[name]})", file=str(path), line=lineno)
        first_line[name] = lineno
    if not first_line:
        raise DataError("the class list is empty", file=str(path), key=key)
    return list(first_line)


def write_coco_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` whole, then rename it into place (a reader never sees half a file)."""
    if path.is_dir():
        raise DataError("the output must be a .json file path, and this is a folder",
                        file=str(path))
    try:  # a device, a FIFO, a socket: never replaced by a json file
        check_output_path(path)
    except RefusedFile as exc:
        raise DataError(f"refusing to write over it: {exc}", file=str(path),
                        hint="give the path of a new or regular .json file") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder: {exc.strerror}",
                        file=str(path.parent)) from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False),
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise DataError(f"cannot write: {exc.strerror}", file=str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
