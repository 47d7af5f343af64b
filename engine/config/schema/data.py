"""The data sections (``TrainDataset``, ``EvalDataset``, ``UnsupTrainDataset``, the readers,
the shapes generator and the semi split) and their checks. stdlib only."""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from engine.config.loader import KeyPath
from engine.config.ops import DEFAULT_STRONG_AUG, PHOTOMETRIC_OPS, TRANSFORM_OPS
from engine.config.schema.base import SHAPE_KINDS, doc
from engine.config.schema.validator import Validator

if TYPE_CHECKING:
    from engine.config.schema import Config


@dataclass
class ShapesSpec:
    """Generate the built-in synthetic shapes dataset here when it is missing."""

    num_images: int = doc("number of images to generate", 400)
    seed: int = doc("random seed; the same seed always gives the same images", 0)
    image_size: int = doc("side of the square images in pixels", 160)
    classes: list[str] | None = doc("shape kinds to draw, in label order (category ids 1..N); "
                                    "null: circle, square, triangle, cross. Kinds: "
                                    + ", ".join(SHAPE_KINDS), None)
    shots: int = doc("few-shot split: keep drawing images (skipping those that would exceed "
                     "it) until every class has exactly this many boxes; num_images is then "
                     "not used. 0: num_images images", 0)


@dataclass
class DatasetConfig:
    """A labeled dataset: a COCO instances json plus its images folder, or PaddleDetection's
    VOCDataSet (a list of image + Pascal VOC XML pairs, converted to COCO when loaded)."""

    name: Literal["COCODataSet", "VOCDataSet"] = doc(
        "COCODataSet: a COCO instances json; VOCDataSet: PaddleDetection's Pascal VOC list "
        "(anno_path lists 'image_path xml_path' lines, label_list names the classes)",
        "COCODataSet")
    dataset_dir: str = doc("root folder; relative paths are relative to the working directory", "")
    image_dir: str = doc("images folder, relative to dataset_dir (COCODataSet; not used for "
                         "absolute file_name entries, as `dettui data import` writes)", "images")
    anno_path: str = doc("COCODataSet: the COCO instances json; VOCDataSet: the list file of "
                         "'image_path xml_path' lines (paths relative to dataset_dir); "
                         "relative to dataset_dir", "annotations.json")
    label_list: str | None = doc("VOCDataSet: class names, one per line, relative to "
                                 "dataset_dir (default: the 20 Pascal VOC classes)", None)
    allow_empty: bool = doc("keep images that have no (valid) boxes", False)
    allow_outside_image_dir: bool = doc(
        "let an image's relative file_name climb out of image_dir with '..' (refused by "
        "default: a downloaded annotation file could make training read any file; absolute "
        "file_names are always allowed)", False)
    synthesize: ShapesSpec | None = doc("generate the shapes dataset here if it is missing", None)
    semi_split: SemiSplitSpec | None = doc("TrainDataset: keep the labeled part of this split "
                                           "of the json (e.g. 10% of the images)", None)


@dataclass
class SemiSplitSpec:
    """Keep one part of a PaddleDetection-style semi-supervised split of the annotation file
    (the same split ``dettui data split`` writes): TrainDataset keeps the labeled part,
    UnsupTrainDataset the unlabeled one."""

    percent: float = doc("percentage of the images that are labeled, between 0 and 100", 10.0)
    seed: int = doc("seed of the draw; the same file, percent and seed give the same split", 1)


@dataclass
class UnsupDatasetConfig:
    """Unlabeled training images: a COCO json whose annotations are ignored, or a folder."""

    name: Literal["COCODataSet", "ImageFolder"] = doc(
        "COCODataSet: the images a COCO json lists; ImageFolder: every image file in "
        "image_dir, sorted by name", "COCODataSet")
    dataset_dir: str = doc("root folder; relative paths are relative to the working directory", "")
    image_dir: str = doc("images folder, relative to dataset_dir", "images")
    anno_path: str | None = doc("COCODataSet: the json, relative to dataset_dir (its "
                                "annotations, if any, are ignored)", None)
    synthesize: ShapesSpec | None = doc("COCODataSet: generate the shapes dataset here if it "
                                        "is missing", None)
    semi_split: SemiSplitSpec | None = doc("COCODataSet: keep the unlabeled part of this "
                                           "split of the json", None)


@dataclass
class ReaderConfig:
    """How a dataset is turned into batches."""

    batch_size: int = doc("images per batch (per process)", 8)
    shuffle: bool = doc("shuffle every epoch", True)
    drop_last: bool = doc("drop the last incomplete batch", False)
    sample_transforms: list[dict] = doc(
        "per-image transforms, a list of one-key mappings {Op: {args}}; ops: "
        + ", ".join(TRANSFORM_OPS), factory=list)


@dataclass
class SemiReaderConfig:
    """Semi-supervised batches: one labeled and one unlabeled batch per step, each image
    in a weak and a strong view that share all geometry."""

    sup_batch_size: int = doc("labeled images per step (per process)", 4)
    unsup_batch_size: int = doc("unlabeled images per step (per process)", 4)
    shuffle: bool = doc("reshuffle each stream every time it has been drawn through", True)
    drop_last: bool = doc("drop each stream's last incomplete batch", True)
    sample_transforms: list[dict] = doc(
        "transforms applied once per image before the two views are made (geometric ops "
        "belong here); ops: " + ", ".join(TRANSFORM_OPS), factory=list)
    weak_aug: list[dict] = doc("photometric ops of the weak view (the teacher's input); "
                               "ops: " + ", ".join(PHOTOMETRIC_OPS), factory=list)
    strong_aug: list[dict] = doc(
        "photometric ops of the strong view (the student's input); default: "
        "PaddleDetection's StrongAugImage (colour jitter, three random erasings, blur, "
        "grayscale)", factory=lambda: copy.deepcopy(list(DEFAULT_STRONG_AUG)))


def check_transforms(v: Validator, keypath: KeyPath, ops: list[dict],
                      allowed: tuple[str, ...] | None = None) -> None:
    """Each op is a known one-key mapping with known arguments; with ``allowed``, only
    those ops (the weak/strong views take photometric ops only)."""
    *parent, leaf = keypath
    for i, op in enumerate(ops):
        where = (*parent, f"{leaf}[{i}]")
        if not isinstance(op, dict) or len(op) != 1:
            v.fail(where, "each transform is a one-key mapping like {RandomFlip: {prob: 0.5}}")
            continue
        (name, args), = op.items()
        if name not in TRANSFORM_OPS:
            close = difflib.get_close_matches(str(name), TRANSFORM_OPS, n=1)
            v.fail(where, f"unknown transform {name!r}; allowed: " + ", ".join(TRANSFORM_OPS),
                   hint=f"did you mean {close[0]!r}?" if close else None)
            continue
        if allowed is not None and name not in allowed:
            v.fail(where, f"{name} changes the geometry of the image, and the weak and strong "
                   f"views must share theirs point by point; {leaf} takes photometric ops "
                   "only: " + ", ".join(allowed),
                   hint=f"put {name} in {'.'.join(parent)}.sample_transforms, which runs "
                        "once before the two views are made")
        if args is None:
            continue
        if not isinstance(args, dict):
            v.fail(where, f"the arguments of {name} must be a mapping")
            continue
        for arg in args:
            if arg not in TRANSFORM_OPS[name]:
                v.fail(where, f"{name} has no argument {arg!r}; allowed: "
                       + ", ".join(TRANSFORM_OPS[name]))


def check_split(v: Validator, keypath: KeyPath, spec: SemiSplitSpec | None) -> None:
    if spec is not None and not 0.0 < spec.percent < 100.0:
        v.fail((*keypath, "percent"), f"must be between 0 and 100 (exclusive), got "
               f"{spec.percent:g}")


def check_datasets(cfg: Config, v: Validator) -> None:
    for section in ("TrainDataset", "EvalDataset"):
        ds: DatasetConfig = getattr(cfg, section)
        if ds.name == "VOCDataSet" and ds.synthesize is not None:
            v.fail((section, "synthesize"), "synthesize writes the shapes dataset as a COCO "
                   "json; it does not go with name: VOCDataSet")
        if ds.name == "COCODataSet" and ds.label_list is not None:
            v.fail((section, "label_list"), "label_list is for name: VOCDataSet; a COCO json "
                   "names its classes in 'categories'")
    if cfg.EvalDataset.semi_split is not None:
        v.fail(("EvalDataset", "semi_split"), "a semi-supervised split is for training data "
               "(TrainDataset keeps the labeled part, UnsupTrainDataset the unlabeled one); "
               "evaluation uses the whole EvalDataset")
    check_split(v, ("TrainDataset", "semi_split"), cfg.TrainDataset.semi_split)
    unsup = cfg.UnsupTrainDataset
    if unsup is None:
        return
    check_split(v, ("UnsupTrainDataset", "semi_split"), unsup.semi_split)
    if unsup.name == "ImageFolder":
        for key in ("anno_path", "synthesize", "semi_split"):
            if getattr(unsup, key) is not None:
                v.fail(("UnsupTrainDataset", key), f"{key} is for name: COCODataSet; an "
                       "ImageFolder reads every image file in dataset_dir/image_dir")
    elif unsup.anno_path is None:
        v.fail(("UnsupTrainDataset", "anno_path"), "a COCODataSet needs anno_path (a COCO "
               "json listing the images; its annotations are ignored)",
               hint="or set name: ImageFolder to use every image file in image_dir")
    labeled = cfg.TrainDataset
    same_file = (unsup.name == "COCODataSet" and unsup.dataset_dir == labeled.dataset_dir
                 and unsup.anno_path == labeled.anno_path)
    if (same_file and labeled.synthesize is not None and unsup.synthesize is not None
            and labeled.synthesize != unsup.synthesize):
        v.fail(("UnsupTrainDataset", "synthesize"), "generates the same json as "
               "TrainDataset.synthesize with other settings; whichever runs first would "
               "win; give both the same num_images, seed and image_size")
    if same_file and labeled.semi_split is not None and unsup.semi_split is not None:
        a, b = labeled.semi_split, unsup.semi_split
        if (a.percent, a.seed) != (b.percent, b.seed):
            v.fail(("UnsupTrainDataset", "semi_split"), f"splits the same json as "
                   f"TrainDataset.semi_split but differently (percent {b.percent:g} seed "
                   f"{b.seed} vs percent {a.percent:g} seed {a.seed}), so labeled images "
                   "would also be drawn as unlabeled ones; use the same percent and seed")


def check_synthesize(ds: DatasetConfig, section: str, v: Validator) -> None:
    spec = ds.synthesize
    if spec is None:
        return
    if spec.shots < 0:
        v.fail((section, "synthesize", "shots"), f"must be >= 0, got {spec.shots}")
    if spec.classes is None:
        return
    keypath = (section, "synthesize", "classes")
    if not spec.classes:
        v.fail(keypath, "must name at least one shape kind (or be null for the default four)")
    for name in spec.classes:
        if name not in SHAPE_KINDS:
            close = difflib.get_close_matches(name, SHAPE_KINDS, n=1)
            v.fail(keypath, f"unknown shape kind {name!r}; allowed: " + ", ".join(SHAPE_KINDS),
                   hint=f"did you mean {close[0]!r}?" if close else None)
    repeated = sorted({name for name in spec.classes if spec.classes.count(name) > 1})
    if repeated:
        v.fail(keypath, f"each shape kind may appear once; repeated: {', '.join(repeated)}")
