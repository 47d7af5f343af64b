"""``UnlabeledImages``: the images of ``UnsupTrainDataset``, without boxes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.config.schema import UnsupDatasetConfig
from engine.data.coco import Target, read_rgb
from engine.data.cocofile import index_images, load_coco_json
from engine.data.imagefolder import list_image_files
from engine.data.shapes import ensure_dataset
from engine.data.sources import check_image_folder
from engine.data.split import split_coco
from engine.protocol.errors import DataError

log = logging.getLogger("dettui.data")


class UnlabeledImages(Dataset):
    """Every image a COCO json lists (its annotations are ignored; with ``semi_split``
    only the split's unlabeled part), or every image file of a folder sorted by name.

    ``load_raw(i)`` gives ``(image, target)`` like ``CocoDetection.load_raw``: a uint8
    ``[3, H, W]`` image and a target with empty ``boxes`` ``[0, 4]`` and ``labels``
    ``[0]``, the ``image_id`` (the json's, or the 1-based position in the folder) and
    ``orig_size``. File names are kept in a numpy array, not a list of strings, so forked
    workers do not copy them page by page.
    """

    def __init__(self, ds_cfg: UnsupDatasetConfig, *, section: str = "UnsupTrainDataset"):
        self.section = section
        root = Path(ds_cfg.dataset_dir or ".")
        self.image_root = root / ds_cfg.image_dir
        if ds_cfg.name == "ImageFolder":
            names = list_image_files(self.image_root, key=f"{section}.image_dir")
            ids = list(range(1, len(names) + 1))
            source = str(self.image_root)
        else:
            names, ids = self._from_json(ds_cfg, root)
            source = str(root / (ds_cfg.anno_path or ""))
            check_image_folder(self.image_root, names, section)
        self.file_names = np.asarray(names, dtype=str)
        self.image_ids = np.asarray(ids, dtype=np.int64)
        log.info("%s: %s: %d unlabeled images", section, source, len(names))

    def _from_json(self, ds_cfg: UnsupDatasetConfig, root: Path) -> tuple[list[str], list[int]]:
        section = self.section
        if ds_cfg.anno_path is None:  # the schema refuses this; a direct caller may not
            raise DataError("a COCODataSet needs anno_path", key=f"{section}.anno_path")
        ensure_dataset(ds_cfg, section=section)
        anno_path = root / ds_cfg.anno_path
        data = load_coco_json(anno_path, key=f"{section}.anno_path", required=("images",))
        if ds_cfg.semi_split is not None:
            spec = ds_cfg.semi_split
            _, data, counts = split_coco(data, spec.percent, spec.seed, file=str(anno_path),
                                         key=f"{section}.semi_split.percent")
            log.info("%s: semi_split keeps the unlabeled %g%% of %s (seed %d): %d of %d "
                     "images", section, 100.0 - spec.percent, anno_path, spec.seed,
                     counts.unlabeled_images, counts.images)
        _, ids, names, _ = index_images(data["images"], anno_path)
        if not ids:
            raise DataError("the annotation file lists no images, so there are no unlabeled "
                            "images to train on", file=str(anno_path), key="images")
        return names, ids

    def __len__(self) -> int:
        return len(self.file_names)

    def load_raw(self, idx: int) -> tuple[torch.Tensor, Target]:
        image = read_rgb(self.image_root / str(self.file_names[idx]))
        target: Target = {
            "boxes": torch.zeros((0, 4), dtype=torch.float32),
            "labels": torch.zeros((0,), dtype=torch.int64),
            "image_id": int(self.image_ids[idx]),
            "orig_size": (int(image.shape[-2]), int(image.shape[-1])),
        }
        return image, target
