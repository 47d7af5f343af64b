"""The annotations of a dataset config section, as a COCO dict, whatever their format.

``CocoDetection`` (training and evaluation) and ``dettui data check`` both go through
``dataset_coco``: a ``COCODataSet`` is its json as loaded; a ``VOCDataSet`` is converted in
memory by the same code as ``dettui data import voc`` (so the COCO evaluator gets a json
for it too).

torch-free.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from engine.config.schema import DatasetConfig
from engine.data.cocofile import load_coco_json
from engine.data.summary import DatasetSummary

log = logging.getLogger("dettui.data")


def dataset_root(ds_cfg: DatasetConfig) -> Path:
    return Path(ds_cfg.dataset_dir or ".")


def annotation_source(ds_cfg: DatasetConfig) -> Path:
    """The file the annotations come from (the json, or the VOC list file)."""
    return dataset_root(ds_cfg) / ds_cfg.anno_path


def dataset_coco(ds_cfg: DatasetConfig, section: str
                 ) -> tuple[dict[str, Any], DatasetSummary | None]:
    """The section's annotations as a COCO dict, and for a converted format the summary
    of the conversion (None for a COCO json, which is used as it is)."""
    if ds_cfg.name == "VOCDataSet":
        from engine.data.voc import voc_list_dataset  # defusedxml + image headers: on use

        coco, summary = voc_list_dataset(dataset_root(ds_cfg), ds_cfg.anno_path,
                                         ds_cfg.label_list, section=section)
        return coco, summary
    return load_coco_json(annotation_source(ds_cfg), key=f"{section}.anno_path"), None


def has_relative_file_names(file_names: Any) -> bool:
    """Whether any ``file_name`` needs ``image_dir`` (imported jsons name images by
    absolute path, and then the folder need not exist)."""
    return any(not Path(str(name)).is_absolute() for name in file_names)
