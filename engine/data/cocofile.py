"""Reading and checking a COCO instances json, and packing it for training.

Kept apart from the torch ``Dataset`` so the checks can run without torch (a future
``dettui data check``) and so the ``Dataset`` stays small. Per-image boxes are packed into
a few flat numpy arrays instead of a list of dicts: DataLoader workers are forked, and
touching millions of small Python objects there (even just their refcounts) copies the
parent's memory page by page; numpy arrays are a handful of objects.

numpy only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.protocol.errors import DataError
from engine.protocol.safefiles import read_regular

REQUIRED_KEYS = ("images", "annotations", "categories")
MAX_ANNOTATION_BYTES = 8 << 30  # COCO's train2017 instances file is 450 MB


def load_coco_json(path: Path, *, key: str | None = None,
                   required: tuple[str, ...] = REQUIRED_KEYS,
                   not_found_hint: str | None = "check dataset_dir and anno_path"
                   ) -> dict[str, Any]:
    """Parse ``path`` and check its top-level shape; every problem is a ``DataError``.

    The one COCO json reader: training, ``dettui data check``/``split`` and the tools all
    read through it. ``key`` names the config key (or option) that points at the file.
    ``required``: the top-level lists it must have (unlabeled images, and the file
    ``dettui data split`` cuts, need only ``images``).
    """
    try:  # a regular file only: a FIFO would hang the engine, /dev/zero eat its memory
        text = read_regular(path, MAX_ANNOTATION_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise DataError("annotation file not found", file=str(path), key=key,
                        hint=not_found_hint) from None
    except IsADirectoryError:
        raise DataError("is a folder, expected a COCO annotation json", file=str(path),
                        key=key) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the annotation file: {exc}", file=str(path),
                        key=key) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno,
                        column=exc.colno) from None
    except (ValueError, RecursionError) as exc:  # a 4301-digit number, 100000-deep nesting
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise DataError(f"not usable JSON: {why}", file=str(path)) from None
    if not isinstance(data, dict):
        raise DataError(f"a COCO annotation file must hold a JSON object with the keys "
                        f"{', '.join(required)}; got a {type(data).__name__}",
                        file=str(path))
    missing = [k for k in required if k not in data]
    if missing:
        raise DataError(f"missing required key(s) {', '.join(map(repr, missing))}; a COCO "
                        f"instances file has {', '.join(REQUIRED_KEYS)}", file=str(path))
    for k in REQUIRED_KEYS:
        if k in data and not isinstance(data[k], list):
            raise DataError(f"must be a list, got {_kind(data[k])}", file=str(path), key=k)
    return data


@dataclass
class IndexStats:
    """What indexing kept and dropped, for the summary log line."""

    images_in_file: int = 0
    images: int = 0
    boxes: int = 0
    crowd: int = 0
    invalid: int = 0
    skipped_empty: int = 0
    classes_present: int = 0


@dataclass
class CocoIndex:
    """A COCO file packed for training; image ``i`` owns ``boxes[offsets[i]:offsets[i+1]]``.

    Labels are contiguous: the categories sorted by id get labels ``1..K`` (0 is the
    background, as torchvision's detectors expect).
    """

    cat_ids: list[int]            # sorted; label = position + 1
    class_names: list[str]        # class_names[label - 1]
    image_ids: np.ndarray         # int64 [n]
    file_names: np.ndarray        # str [n], relative to the image folder
    sizes: np.ndarray             # int64 [n, 2], (height, width) declared in the json
    boxes: np.ndarray             # float32 [m, 4], xyxy pixels, clipped to the image
    labels: np.ndarray            # int64 [m]
    offsets: np.ndarray           # int64 [n + 1]
    stats: IndexStats


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    """An integer that numpy's int64 (and the COCO evaluator) can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63


def _is_number(value: Any) -> bool:
    """A number a float can hold (an int of 400 digits cannot)."""
    return (isinstance(value, float) or _is_int(value))


def _index_categories(cats: list, path: Path) -> tuple[list[int], list[str]]:
    by_id: dict[int, str] = {}
    for i, cat in enumerate(cats):
        where = f"categories[{i}]"
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise DataError("each category needs an integer 'id' and a string 'name'",
                            file=str(path), key=where)
        if not isinstance(cat.get("name"), str):
            raise DataError(f"category {cat['id']} needs a string 'name'", file=str(path),
                            key=f"{where}.name")
        if cat["id"] in by_id:
            raise DataError(f"duplicate category id {cat['id']}", file=str(path), key=where)
        by_id[cat["id"]] = cat["name"]
    if not by_id:
        raise DataError("no categories: a detection dataset needs at least one",
                        file=str(path), key="categories")
    ids = sorted(by_id)
    return ids, [by_id[i] for i in ids]


def climbs_out(file_name: str) -> bool:
    """Whether a relative ``file_name`` leaves the folder it is relative to (``../x``,
    ``a/../../x``); absolute names are explicit and do not count."""
    if os.path.isabs(file_name):
        return False
    parts = Path(os.path.normpath(file_name)).parts
    return bool(parts) and parts[0] == ".."


def index_images(images: list, path: Path, allow_outside: bool = False
                 ) -> tuple[dict[int, int], list, list, list]:
    """Check the ``images`` list; return id -> position, ids, file names, (h, w) sizes. A
    relative file name climbing out of the image folder is refused unless
    ``allow_outside``."""
    position: dict[int, int] = {}
    ids, names, sizes = [], [], []
    for i, img in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            raise DataError("each image needs an integer 'id' (64-bit), a string 'file_name' "
                            "and integer 'width' and 'height'", file=str(path), key=where)
        name = img.get("file_name")
        if not isinstance(name, str) or not name:
            raise DataError(f"image {img['id']} needs a non-empty string 'file_name'",
                            file=str(path), key=f"{where}.file_name")
        if not allow_outside and climbs_out(name):
            raise DataError(f"image {img['id']}: file_name {name!r} climbs out of the image "
                            "folder", file=str(path), key=f"{where}.file_name",
                            hint="a relative file_name must stay inside image_dir; use an "
                                 "absolute path, or set allow_outside_image_dir: true in the "
                                 "dataset's config section if this is intended")
        for dim in ("width", "height"):
            if not _is_int(img.get(dim)) or img[dim] < 1:
                raise DataError(f"image {img['id']} needs a positive integer {dim!r}, got "
                                f"{img.get(dim)!r}", file=str(path), key=f"{where}.{dim}")
        if img["id"] in position:
            raise DataError(f"duplicate image id {img['id']}", file=str(path), key=where)
        position[img["id"]] = i
        ids.append(img["id"])
        names.append(name)
        sizes.append((img["height"], img["width"]))
    return position, ids, names, sizes


def index_coco(data: dict[str, Any], path: Path, *, keep_empty: bool,
               allow_outside: bool = False) -> CocoIndex:
    """Check every entry of a loaded COCO dict and pack it (see ``CocoIndex``).

    Structural problems (wrong types, unknown ids, duplicates) raise ``DataError``, and so
    does a relative ``file_name`` that climbs out of the image folder, unless
    ``allow_outside``.
    Crowd boxes are left out; boxes that are degenerate, not finite, or smaller than a
    pixel once clipped to the image are dropped and counted. Images left without boxes
    are dropped unless ``keep_empty``.
    """
    cat_ids, class_names = _index_categories(data["categories"], path)
    label_of = {cat_id: label for label, cat_id in enumerate(cat_ids, start=1)}
    position, ids, names, sizes = index_images(data["images"], path, allow_outside)

    stats = IndexStats(images_in_file=len(ids))
    per_image: list[list[tuple[float, float, float, float, int]]] = [[] for _ in ids]
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataError(f"each annotation must be an object, got {_kind(ann)}",
                            file=str(path), key=where)
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        img_pos = position.get(image_id) if _is_int(image_id) else None
        if img_pos is None:
            raise DataError(f"image_id {image_id!r} is not in 'images'",
                            file=str(path), key=f"{where}.image_id")
        label = label_of.get(cat_id) if _is_int(cat_id) else None
        if label is None:
            raise DataError(f"category_id {cat_id!r} is not in 'categories' "
                            f"(ids: {_id_list(cat_ids)})", file=str(path),
                            key=f"{where}.category_id")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
            raise DataError(f"bbox must be a list of 4 numbers [x, y, width, height], got "
                            f"{bbox!r}", file=str(path), key=f"{where}.bbox")
        if ann.get("iscrowd", 0):
            stats.crowd += 1  # crowd regions are for evaluation (ignored matches) only
            continue
        height, width = sizes[img_pos]
        x, y, w, h = (float(v) for v in bbox)
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        # NaN fails every comparison, so "not (>= 1)" also drops non-finite boxes.
        if not (math.isfinite(x + y + w + h) and x1 - x0 >= 1.0 and y1 - y0 >= 1.0):
            stats.invalid += 1
            continue
        per_image[img_pos].append((x0, y0, x1, y1, label))

    keep = [i for i, boxes in enumerate(per_image) if boxes or keep_empty]
    stats.skipped_empty = len(ids) - len(keep)
    rows = [row for i in keep for row in per_image[i]]
    packed = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    counts = np.fromiter((len(per_image[i]) for i in keep), dtype=np.int64, count=len(keep))
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    labels = packed[:, 4].astype(np.int64)
    stats.images, stats.boxes = len(keep), len(rows)
    stats.classes_present = int(np.unique(labels).size)
    return CocoIndex(
        cat_ids=cat_ids, class_names=class_names,
        image_ids=np.asarray([ids[i] for i in keep], dtype=np.int64),
        file_names=np.asarray([names[i] for i in keep], dtype=str),
        sizes=np.asarray([sizes[i] for i in keep], dtype=np.int64).reshape(-1, 2),
        boxes=np.ascontiguousarray(packed[:, :4], dtype=np.float32), labels=labels,
        offsets=offsets, stats=stats)


def _id_list(ids: list[int], limit: int = 12) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return shown + (", ..." if len(ids) > limit else "")
