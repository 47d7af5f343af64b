"""PaddleDetection's semi-supervised split of a COCO annotation file.

``percent`` % of the images (``int(percent / 100 * N)`` of them, drawn without replacement
from a seeded generator) become the labeled part, with their annotations; the rest become
the unlabeled part, listed with no annotations (PaddleDetection's
``tools/gen_semi_coco.py``). Both parts keep the file's order of images, its categories
and its other top-level keys (``info``, ``licenses``). The draw uses Python's own
``random.Random(seed).random()`` (the one part of ``random`` whose sequence Python
promises to keep across versions), so a split is the same on every machine and Python
version, though not the same images PaddleDetection's numpy draw picks.

Used by ``dettui data split`` and, on the fly, by ``semi_split`` in a dataset config.
stdlib only: the CLI imports this module without torch or numpy.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.data.cocofile import load_coco_json
from engine.protocol.errors import DataError
from engine.protocol.safefiles import RefusedFile, check_output_path

LABELED_NAME = "labeled.json"
UNLABELED_NAME = "unlabeled.json"


@dataclass
class SplitCounts:
    """What a split put where (for the report line)."""

    images: int
    labeled_images: int
    labeled_boxes: int
    unlabeled_images: int
    unlabeled_boxes_dropped: int


def check_percent(percent: float, *, key: str) -> None:
    """``percent`` must leave both parts possible: strictly between 0 and 100."""
    if not 0.0 < percent < 100.0:
        raise DataError(f"the labeled percentage must be between 0 and 100 (exclusive), "
                        f"got {percent:g}", key=key)


def labeled_positions(num_images: int, percent: float, seed: int) -> list[int]:
    """Positions (in file order) of the images drawn as labeled, sorted."""
    count = int(percent / 100.0 * num_images)
    # A partial Fisher-Yates shuffle driven by random() alone: Random.sample/randrange may
    # change between Python versions, random() may not.
    rng = random.Random(seed)
    pool = list(range(num_images))
    for i in range(count):
        j = i + min(int(rng.random() * (num_images - i)), num_images - i - 1)
        pool[i], pool[j] = pool[j], pool[i]
    return sorted(pool[:count])


def split_coco(data: dict[str, Any], percent: float, seed: int, *, file: str | None = None,
               key: str | None = None) -> tuple[dict[str, Any], dict[str, Any], SplitCounts]:
    """Split a loaded COCO dict into its labeled and unlabeled parts.

    ``data`` needs an ``images`` list of objects with an ``id``; ``annotations`` (a list
    of objects with an ``image_id``) may be absent. ``file`` and ``key`` (the option or
    config key that set ``percent``) go into error messages.
    """
    check_percent(percent, key=key)
    images = data.get("images")
    if not isinstance(images, list):
        raise DataError("a COCO annotation file needs an 'images' list", file=file,
                        key="images")
    if not images:
        raise DataError("the annotation file lists no images: there is nothing to split",
                        file=file, key="images")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise DataError("'annotations' must be a list", file=file, key="annotations")
    ids = []
    for i, img in enumerate(images):
        if not isinstance(img, dict) or "id" not in img:
            raise DataError("each image needs an 'id'", file=file, key=f"images[{i}]")
        if not isinstance(img["id"], (int, str)) or isinstance(img["id"], bool):
            raise DataError(f"an image id is an integer (or a string), got "
                            f"{type(img['id']).__name__}", file=file, key=f"images[{i}].id")
        ids.append(img["id"])
    chosen = labeled_positions(len(images), percent, seed)
    if not chosen:
        raise DataError(f"{percent:g}% of {len(images)} images is less than one image, so "
                        "the labeled part would be empty", file=file, key=key,
                        hint=f"use at least {100.0 / len(images):.3g} percent")
    labeled_ids = {ids[i] for i in chosen}
    labeled_anns = []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise DataError("each annotation needs an 'image_id'", file=file,
                            key=f"annotations[{i}]")
        if not isinstance(ann["image_id"], (int, str)) or isinstance(ann["image_id"], bool):
            raise DataError(f"an image_id is an integer (or a string), got "
                            f"{type(ann['image_id']).__name__}", file=file,
                            key=f"annotations[{i}].image_id")
        if ann["image_id"] in labeled_ids:
            labeled_anns.append(ann)
    chosen_set = set(chosen)
    rest = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    labeled = {**rest, "images": [images[i] for i in chosen],
               "annotations": labeled_anns}
    unlabeled = {**rest, "images": [img for i, img in enumerate(images) if i not in chosen_set],
                 "annotations": []}
    counts = SplitCounts(images=len(images), labeled_images=len(chosen),
                         labeled_boxes=len(labeled_anns),
                         unlabeled_images=len(images) - len(chosen),
                         unlabeled_boxes_dropped=len(annotations) - len(labeled_anns))
    return labeled, unlabeled, counts


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_split(annotations: Path, percent: float, seed: int, out_dir: Path
                ) -> tuple[Path, Path, SplitCounts]:
    """``dettui data split``: write ``out_dir/labeled.json`` and ``out_dir/unlabeled.json``.

    Each file is written whole and then renamed into place, so a reader never sees half a
    file. Returns both paths and the counts.
    """
    check_percent(percent, key="--percent")
    data = load_coco_json(annotations, required=("images",), not_found_hint=None)
    labeled, unlabeled, counts = split_coco(data, percent, seed, file=str(annotations),
                                            key="--percent")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("--out must be a folder, and this is a file", file=str(out_dir),
                        key="--out")
    for path, folder in ((out_dir, True), (out_dir / LABELED_NAME, False),
                         (out_dir / UNLABELED_NAME, False)):
        try:  # a device, a FIFO or a dangling link: never written over
            check_output_path(path, folder=folder)
        except RefusedFile as exc:
            raise DataError(f"refusing to write there: {exc}", file=str(path),
                            key="--out") from None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder: {exc.strerror}", file=str(out_dir),
                        key="--out") from None
    paths = out_dir / LABELED_NAME, out_dir / UNLABELED_NAME
    for path, part in zip(paths, (labeled, unlabeled), strict=True):
        try:
            _write_json(path, part)
        except OSError as exc:
            raise DataError(f"cannot write: {exc.strerror}", file=str(path),
                            key="--out") from None
    return paths[0], paths[1], counts
