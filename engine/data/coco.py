"""``CocoDetection``: a COCO-format detection dataset for torchvision's detectors."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from engine.config.schema import DatasetConfig
from engine.data.cocofile import CocoIndex, index_coco, load_coco_json
from engine.data.images import decode_rgb
from engine.data.sources import annotation_source, check_image_folder, dataset_coco
from engine.data.split import split_coco
from engine.protocol.errors import DataError

log = logging.getLogger("dettui.data")

Target = dict[str, Any]
SampleTransform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]


def read_rgb(path: Path) -> torch.Tensor:
    """Decode an image file to a uint8 ``[3, H, W]`` RGB tensor, upright: the EXIF
    orientation is applied, as detectron2, Ultralytics and every image viewer do, so boxes
    drawn on the image as people see it fit (``engine.data.images``). Grayscale, CMYK,
    palette and alpha images are converted to RGB.

    The tensor is a channels-last view of the decoded ``H x W x 3`` array, which is the
    layout torchvision's fast uint8 resize path wants.
    """
    try:
        array = decode_rgb(path)
    except DataError as exc:
        if exc.message != "image file not found":
            raise
        raise DataError("image file not found", file=str(path),
                        hint="check image_dir and the 'file_name' of this image in the "
                             "annotation file") from None
    except MemoryError:
        raise
    except Exception as exc:
        # Pillow's decoders fail in many ways on bad files: OSError, ValueError (a text or
        # ICC chunk that inflates too far), SyntaxError, struct.error, EOFError,
        # DecompressionBombError... For the user they all mean one thing: this image file
        # cannot be used. (A crash here would not even name the file.)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise DataError(f"cannot read the image ({type(exc).__name__}"
                        + (f": {first})" if first else ")"), file=str(path),
                        hint="replace or remove this image (and its entry in the "
                             "annotation file)") from exc
    return torch.from_numpy(array).permute(2, 0, 1)


class CocoDetection(Dataset):
    """Images and boxes from a COCO instances json.

    Labels are contiguous: categories sorted by id become ``1..K``; 0 is the background
    (torchvision convention, so the model is built with ``num_classes + 1`` outputs).
    With ``train`` images left without a valid box are skipped (unless the config's
    ``allow_empty``); for evaluation every image of the json is kept, because the COCO
    evaluator scores against the json itself.

    An item is ``(image, target)``: ``image`` float32 ``[3, H, W]`` in ``[0, 1]``; target
    ``boxes`` float32 ``[N, 4]`` xyxy pixels of the transformed image, ``labels`` int64
    ``[N]``, ``image_id`` int, ``orig_size`` and ``size`` ``(h, w)`` before and after the
    transforms.
    """

    def __init__(self, ds_cfg: DatasetConfig, num_classes: int,
                 transforms: SampleTransform | None = None, train: bool = True, *,
                 section: str | None = None):
        self.train = train
        self.transforms = transforms
        self.section = section or ("TrainDataset" if train else "EvalDataset")
        root = Path(ds_cfg.dataset_dir or ".")
        if not root.is_dir():
            raise DataError("dataset folder not found", file=str(root),
                            key=f"{self.section}.dataset_dir",
                            hint="relative paths are relative to the working directory")
        self.ds_cfg = ds_cfg
        self.anno_path: Path = annotation_source(ds_cfg)
        self.image_root: Path = root / ds_cfg.image_dir
        self.semi_split = ds_cfg.semi_split
        data, converted = dataset_coco(ds_cfg, self.section)
        if converted is not None:
            for line in converted.lines():
                log.info("%s", line)
        data = self._select(data)
        index = index_coco(data, self.anno_path, keep_empty=ds_cfg.allow_empty or not train,
                           allow_outside=ds_cfg.allow_outside_image_dir)
        # See coco_json: workers must not inherit millions of Python objects, so a json is
        # read again when the evaluator asks; a converted eval set is kept instead
        # (converting again would re-read every annotation file and image header).
        self._json_cache: dict | None = data if converted is not None and not train else None
        del data
        num_cats = len(index.cat_ids)
        if num_classes < num_cats:
            raise DataError(
                f"the annotation file {self.anno_path} has {num_cats} categories but "
                f"num_classes is {num_classes}", key="num_classes",
                hint=f"set num_classes: {num_cats} (background is not counted)")
        if num_classes > num_cats:
            log.warning("%s: num_classes is %d but %s has only %d categories; the extra "
                        "classes are never trained", self.section, num_classes,
                        self.anno_path, num_cats)
        if index.stats.images_in_file == 0:
            raise DataError("the annotation file lists no images", file=str(self.anno_path),
                            key="images")
        if index.stats.images == 0:
            raise DataError("no usable images: no image has a valid, non-crowd box",
                            file=str(self.anno_path),
                            hint=f"set {self.section}.allow_empty: true to train on images "
                                 "without boxes")
        check_image_folder(self.image_root, index.file_names, self.section)
        self._index: CocoIndex = index
        self._log_summary(num_cats)

    def _select(self, data: dict) -> dict:
        """The labeled part of the file's semi-supervised split, if the config asks for one."""
        if self.semi_split is None:
            return data
        labeled, _, counts = split_coco(data, self.semi_split.percent, self.semi_split.seed,
                                        file=str(self.anno_path),
                                        key=f"{self.section}.semi_split.percent")
        log.info("%s: semi_split keeps the labeled %g%% of %s (seed %d): %d of %d images",
                 self.section, self.semi_split.percent, self.anno_path, self.semi_split.seed,
                 counts.labeled_images, counts.images)
        return labeled

    def _log_summary(self, num_cats: int) -> None:
        s = self._index.stats
        log.info("%s: %s: %d images (%d skipped without boxes), %d boxes (%d crowd ignored, "
                 "%d invalid dropped), %d classes (%d present)", self.section, self.anno_path,
                 s.images, s.skipped_empty, s.boxes, s.crowd, s.invalid, num_cats,
                 s.classes_present)

    # ------------------------------------------------------------------ metadata

    @property
    def class_names(self) -> list[str]:
        """Class names by label: ``class_names[label - 1]``."""
        return list(self._index.class_names)

    @property
    def label_to_cat_id(self) -> dict[int, int]:
        """Contiguous label (1..K) -> COCO category id (for writing detections back)."""
        return {label: cat for label, cat in enumerate(self._index.cat_ids, start=1)}

    @property
    def cat_id_to_label(self) -> dict[int, int]:
        """COCO category id -> contiguous label (1..K)."""
        return {cat: label for label, cat in enumerate(self._index.cat_ids, start=1)}

    @property
    def image_ids(self) -> list[int]:
        """COCO image id of each item, in item order."""
        return self._index.image_ids.tolist()

    @property
    def stats(self) -> dict[str, int]:
        """What indexing kept and dropped (images, boxes, crowd, invalid, skipped_empty...)."""
        return dict(vars(self._index.stats))

    @property
    def coco_json(self) -> dict:
        """The annotation json as loaded (for the COCO evaluator).

        Read again on first use instead of kept from ``__init__``: a train set's json can
        hold millions of objects that forked workers would otherwise copy page by page.
        """
        if self._json_cache is None:
            if self.ds_cfg.name == "COCODataSet":
                self._json_cache = self._select(load_coco_json(self.anno_path))
            else:
                self._json_cache = self._select(dataset_coco(self.ds_cfg, self.section)[0])
        return self._json_cache

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_json_cache"] = None  # never ship the json to spawned workers
        return state

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self._index.image_ids)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, Target]:
        """``item`` is an index, or ``(index, seed)``: then the random augmentations are
        drawn from ``seed`` alone (the process's ``random`` state is left as it was)."""
        if isinstance(item, tuple):
            idx, seed = item
            saved = random.getstate()
            random.seed(seed)
            try:
                return self._load(int(idx))
            finally:
                random.setstate(saved)
        return self._load(int(item))

    def _load(self, idx: int) -> tuple[torch.Tensor, Target]:
        image, target = self.load_raw(idx)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return finish_sample(image, target)

    def load_raw(self, idx: int) -> tuple[torch.Tensor, Target]:
        """Item ``idx`` as decoded: a uint8 ``[3, H, W]`` image and its target, before any
        transform (the semi-supervised views start from here)."""
        index = self._index
        path = self.image_root / str(index.file_names[idx])
        image = read_rgb(path)
        height, width = (int(v) for v in index.sizes[idx])
        if tuple(image.shape[-2:]) != (height, width):
            raise DataError(f"the image is {image.shape[-1]}x{image.shape[-2]} (w x h) but "
                            f"the annotation file says {width}x{height}", file=str(path),
                            hint=f"fix 'width'/'height' of image {int(index.image_ids[idx])} "
                                 f"in {self.anno_path}")
        start, end = int(index.offsets[idx]), int(index.offsets[idx + 1])
        target: Target = {
            "boxes": torch.from_numpy(index.boxes[start:end].copy()),
            "labels": torch.from_numpy(index.labels[start:end].copy()),
            "image_id": int(index.image_ids[idx]),
            "orig_size": (height, width),
        }
        return image, target


def finish_sample(image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
    """The last step of every item: note the final ``size`` and turn the uint8 image into
    float32 in ``[0, 1]`` (late, because uint8 is the fast path of every transform)."""
    target["size"] = (int(image.shape[-2]), int(image.shape[-1]))
    image = image.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    return image, target
