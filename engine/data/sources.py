"""The annotations of a dataset config section, as a COCO dict, whatever their format.

``CocoDetection`` (training and evaluation) and ``dettui data check`` both go through
``dataset_coco``: a ``COCODataSet`` is its json as loaded; a ``VOCDataSet`` is converted in
memory by the same code as ``dettui data import voc`` (so the COCO evaluator gets a json
for it too).

torch-free.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from engine.config.schema import DatasetConfig, UnsupDatasetConfig
from engine.data.cocofile import load_coco_json
from engine.data.summary import DatasetSummary
from engine.protocol.errors import DataError

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


def check_image_folder(image_root: Path, file_names: Any, section: str) -> None:
    """The one rule for ``image_dir``, shared by the engine's datasets, ``dettui data
    check`` and the launcher (CLI and launch form): the folder must exist only when some
    ``file_name`` is relative to it. A json written by ``dettui data import`` names every
    image by its absolute path, so its config needs no ``image_dir`` at all."""
    if image_root.is_dir() or not has_relative_file_names(file_names):
        return
    raise DataError("image folder not found", file=str(image_root), key=f"{section}.image_dir",
                    hint="the annotation file names images relative to dataset_dir/image_dir; "
                         "fix image_dir (relative paths are relative to the working "
                         "directory), or name every image by its absolute path")


def listed_file_names(ds_cfg: DatasetConfig | UnsupDatasetConfig, section: str) -> list[str]:
    """The ``file_name`` of every image a dataset section's annotations list (for the
    launcher, which otherwise never reads them: only when the image folder is missing)."""
    if ds_cfg.name == "VOCDataSet":
        data, _ = dataset_coco(ds_cfg, section)  # type: ignore[arg-type]
    else:
        data = load_coco_json(annotation_source(ds_cfg),  # type: ignore[arg-type]
                              key=f"{section}.anno_path", required=("images",))
    return [str(image.get("file_name", "")) for image in data["images"]
            if isinstance(image, dict)]


SYNTHESIZE_ANYWHERE_ENV = "DETTUI_SYNTHESIZE_ANYWHERE"
"""Set to 1, ``synthesize`` may create its dataset folder anywhere (the test suite does:
it generates tiny datasets in pytest's temporary folders)."""


def synthesize_target(ds_cfg: DatasetConfig | UnsupDatasetConfig, section: str,
                      runs_dir: Path | None) -> Path | None:
    """Where ``synthesize`` will generate the shapes dataset of a section, or None when
    nothing will be generated (no ``synthesize``, or its json is there).

    Generating is the demo's convenience, not a way to fill a disk at a mistyped path: a
    dataset folder that does not exist yet is created only inside the working directory
    or the runs folder, unless the user says so (creates the folder first, or sets
    ``DETTUI_SYNTHESIZE_ANYWHERE=1``); anywhere else is a ``DataError`` naming the key."""
    if ds_cfg.synthesize is None or getattr(ds_cfg, "name", "") == "ImageFolder":
        return None
    root = dataset_root(ds_cfg)
    if (root / (ds_cfg.anno_path or "")).is_file():
        return None
    target = root.expanduser().resolve()
    if root.is_dir() or os.environ.get(SYNTHESIZE_ANYWHERE_ENV) == "1":
        return target
    allowed = [Path.cwd().resolve()]
    if runs_dir is not None:
        allowed.append(Path(runs_dir).expanduser().resolve())
    if any(target == place or place in target.parents for place in allowed):
        return target
    raise DataError(
        f"synthesize would create the shapes dataset in {target}, a folder that does not "
        f"exist, outside the working directory ({allowed[0]})"
        + (f" and the runs folder ({allowed[1]})" if len(allowed) > 1 else ""),
        key=f"{section}.dataset_dir",
        hint=f"fix dataset_dir if it is a mistake; to generate the dataset there, create "
             f"the folder first (mkdir -p {target}) or set {SYNTHESIZE_ANYWHERE_ENV}=1")
