"""``dettui data check``: what a config's datasets hold, and the first file that is broken.

For ``TrainDataset``, ``EvalDataset`` and ``UnsupTrainDataset`` (when present): the same
statistics as an import (images, boxes per class, difficult/crowd boxes, boxes clipped or
dropped and why, images without boxes), then every image file is opened: a missing or
unreadable file, or one whose size is not the one the annotations declare (what training
would trip on at that image, maybe hours in), is a ``DataError`` naming it. ``decode``
also decodes every image (slow: catches files that are truncated after their header).

torch-free (numpy + PIL): the CLI runs it in its own process and the TUI in a worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from engine.config.schema import Config, DatasetConfig, UnsupDatasetConfig
from engine.data.cocofile import CocoIndex, index_coco, index_images, load_coco_json
from engine.data.imagefolder import list_image_files
from engine.data.images import SWAPS_AXES, decode_rgb, probe_image
from engine.data.sources import (
    annotation_source,
    check_image_folder,
    dataset_coco,
    dataset_root,
)
from engine.data.split import split_coco
from engine.data.summary import IGNORED_WHAT, DatasetSummary, plural
from engine.protocol.errors import DataError

Progress = Callable[[str, int, int], None]
"""``progress(section, images_done, images_total)``; it may raise to stop the check."""

DROP_INVALID = "degenerate, not finite, or under 1 px once clipped to the image"
PROGRESS_EVERY = 50


def iter_check_config(cfg: Config, *, decode: bool = False,
                      progress: Progress | None = None) -> Iterator[DatasetSummary]:
    """Check the config's datasets in order, yielding each one's summary as it is done;
    raises ``DataError`` at the first broken file."""
    yield check_labeled(cfg.TrainDataset, "TrainDataset", cfg.num_classes, train=True,
                        decode=decode, progress=progress)
    yield check_labeled(cfg.EvalDataset, "EvalDataset", cfg.num_classes, train=False,
                        decode=decode, progress=progress)
    if cfg.UnsupTrainDataset is not None:
        yield check_unlabeled(cfg.UnsupTrainDataset, "UnsupTrainDataset", decode=decode,
                              progress=progress)


def check_config(cfg: Config, *, decode: bool = False,
                 progress: Progress | None = None) -> list[DatasetSummary]:
    """Every summary of ``iter_check_config``."""
    return list(iter_check_config(cfg, decode=decode, progress=progress))


def _not_generated(ds: DatasetConfig | UnsupDatasetConfig, section: str) -> DatasetSummary | None:
    """A shapes dataset that the engine will write on first use has nothing to check yet."""
    anno = dataset_root(ds) / (ds.anno_path or "")
    if ds.synthesize is None or anno.is_file():
        return None
    summary = DatasetSummary(title=section, kind=ds.name, source=str(anno))
    summary.notes.append(f"not generated yet: synthesize writes "
                         f"{plural(ds.synthesize.num_images, 'shapes image')} here on first use")
    return summary


def check_labeled(ds: DatasetConfig, section: str, num_classes: int, *, train: bool,
                  decode: bool = False, progress: Progress | None = None) -> DatasetSummary:
    """Statistics of a labeled section, after opening every image it names."""
    pending = _not_generated(ds, section)
    if pending is not None:
        return pending
    root = dataset_root(ds)
    if not root.is_dir():
        raise DataError("dataset folder not found", file=str(root),
                        key=f"{section}.dataset_dir",
                        hint="relative paths are relative to the working directory")
    path = annotation_source(ds)
    data, converted = dataset_coco(ds, section)
    if ds.semi_split is not None:
        data = split_coco(data, ds.semi_split.percent, ds.semi_split.seed, file=str(path),
                          key=f"{section}.semi_split.percent")[0]
    index = index_coco(data, path, keep_empty=True)
    if len(index.cat_ids) > num_classes:
        raise DataError(f"{path} has {len(index.cat_ids)} categories but num_classes is "
                        f"{num_classes}", key="num_classes",
                        hint=f"set num_classes: {len(index.cat_ids)} (background is not "
                             "counted)")
    if converted is not None and ds.semi_split is None:
        summary = converted  # it also knows the boxes the conversion dropped or clipped
        summary.title = section
    else:
        summary = summarize_coco(data, index, title=section, kind=ds.name, source=str(path))
    empty = sum(summary.without_boxes.values())
    if train and empty and not ds.allow_empty:
        summary.notes.append(f"training skips {'the ' if empty > 1 else ''}"
                             f"{plural(empty, 'image')} without boxes "
                             f"({section}.allow_empty: false)")
    if ds.semi_split is not None:
        summary.notes.append(f"semi_split: the labeled {ds.semi_split.percent:g}% of the "
                             f"file (seed {ds.semi_split.seed})")
    image_root = root / ds.image_dir
    if converted is None or decode:
        check_image_folder(image_root, index.file_names, section)
        _open_images(image_root, index, section, path, decode, progress)
    return summary


def _open_images(image_root: Path, index: CocoIndex, section: str, anno: Path, decode: bool,
                 progress: Progress | None) -> None:
    total = len(index.image_ids)
    for i in range(total):
        if progress is not None and i % PROGRESS_EVERY == 0:
            progress(section, i, total)
        path = image_root / str(index.file_names[i])
        info = probe_image(path)
        height, width = (int(v) for v in index.sizes[i])
        if (info.height, info.width) != (height, width):
            hint = f"fix 'width'/'height' of image {int(index.image_ids[i])} in {anno}"
            if info.orientation in SWAPS_AXES and (info.raw_height, info.raw_width) == (
                    height, width):
                hint = (f"the file is stored {info.raw_width}x{info.raw_height} with EXIF "
                        f"orientation {info.orientation}, and dettui decodes it upright "
                        f"({info.width}x{info.height}); the annotations were made on the "
                        "stored bitmap: re-import the source annotations with `dettui data "
                        "import`, or turn their boxes with the image")
            raise DataError(f"the image is {info.width}x{info.height} (w x h) as decoded but "
                            f"the annotation file says {width}x{height}", file=str(path),
                            hint=hint)
        if decode:
            decode_rgb(path)
    if progress is not None:
        progress(section, total, total)


def summarize_coco(data: dict, index: CocoIndex, *, title: str, kind: str, source: str
                   ) -> DatasetSummary:
    """The summary of a checked COCO dict (``index`` built with ``keep_empty=True``)."""
    k = len(index.cat_ids)
    label_of = {cat: label for label, cat in enumerate(index.cat_ids, start=1)}
    kept = np.bincount(index.labels, minlength=k + 1)[1:]
    ignored = [0] * k
    annotated: set[int] = set()
    crowd_images: set[int] = set()
    clipped = 0
    sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
    first_invalid = None
    for i, ann in enumerate(data["annotations"]):
        annotated.add(ann["image_id"])
        if ann.get("iscrowd", 0):
            ignored[label_of[ann["category_id"]] - 1] += 1
            crowd_images.add(ann["image_id"])
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        width, height = sizes[ann["image_id"]]
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if not (math.isfinite(x + y + w + h) and x1 - x0 >= 1.0 and y1 - y0 >= 1.0):
            first_invalid = first_invalid or f"{source} annotations[{i}]"  # as index_coco
        elif (x0, y0, x1, y1) != (x, y, x + w, y + h):
            clipped += 1
    counts = np.diff(index.offsets)
    without: dict[str, int] = {}
    for image_id, count in zip(index.image_ids.tolist(), counts.tolist()):
        if count:
            continue
        if image_id not in annotated:
            reason = "no annotations"
        elif image_id in crowd_images:
            reason = f"only {IGNORED_WHAT} boxes"
        else:
            reason = "every box dropped"
        without[reason] = without.get(reason, 0) + 1
    summary = DatasetSummary(title=title, kind=kind, source=source,
                             images=len(index.image_ids), class_names=list(index.class_names),
                             boxes=[int(v) for v in kept], ignored=ignored,
                             without_boxes=without)
    if index.stats.invalid:
        summary.dropped[DROP_INVALID] = index.stats.invalid
        summary.dropped_first[DROP_INVALID] = first_invalid or ""
    summary.clipped = clipped
    return summary


def check_unlabeled(ds: UnsupDatasetConfig, section: str, *, decode: bool = False,
                    progress: Progress | None = None) -> DatasetSummary:
    """The unlabeled images: how many, and every one of them opens."""
    pending = _not_generated(ds, section)
    if pending is not None:
        pending.labeled = False
        return pending
    root = dataset_root(ds)
    folder = root / ds.image_dir
    if ds.name == "ImageFolder":
        names = list_image_files(folder, key=f"{section}.image_dir")
        source = str(folder)
    else:
        anno = root / (ds.anno_path or "")
        data = load_coco_json(anno, key=f"{section}.anno_path", required=("images",))
        if ds.semi_split is not None:
            data = split_coco(data, ds.semi_split.percent, ds.semi_split.seed,
                              file=str(anno), key=f"{section}.semi_split.percent")[1]
        names = index_images(data["images"], anno)[2]
        source = str(anno)
        check_image_folder(folder, names, section)
    summary = DatasetSummary(title=section, kind=ds.name, source=source, images=len(names),
                             labeled=False)
    for i, name in enumerate(names):
        if progress is not None and i % PROGRESS_EVERY == 0:
            progress(section, i, len(names))
        path = folder / name
        probe_image(path)
        if decode:
            decode_rgb(path)
    if not names:
        raise DataError("lists no images, so there are no unlabeled images to train on",
                        file=source, key=f"{section}")
    return summary
