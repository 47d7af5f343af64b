"""The semi-supervised config sections: UnsupTrainDataset, SemiTrainReader, semi_split."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import field_docs, load_and_validate
from engine.config.ops import DEFAULT_STRONG_AUG
from engine.config.schema import validate
from engine.protocol.errors import ConfigError
from tests.conftest import REPO

SEMI_BASE = REPO / "configs" / "semi_det" / "_base_"

GOOD = """\
num_classes: 2
ssod_method: DenseTeacher
TrainDataset: {dataset_dir: d, anno_path: train.json, semi_split: {percent: 10, seed: 1}}
UnsupTrainDataset: {dataset_dir: d, anno_path: train.json, semi_split: {percent: 10, seed: 1}}
SemiTrainReader:
  sup_batch_size: 2
  unsup_batch_size: 4
  sample_transforms: [{RandomFlip: {prob: 0.5}}, {RandomResize: {sizes: [64, 96]}}]
  weak_aug: [{ColorJitter: {brightness: 0.1}}]
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_semi_config_validates_with_paddle_names_and_defaults(tmp_path: Path) -> None:
    _, cfg = load_and_validate(write(tmp_path / "c.yml", GOOD))
    reader, unsup = cfg.SemiTrainReader, cfg.UnsupTrainDataset
    assert (reader.sup_batch_size, reader.unsup_batch_size) == (2, 4)
    assert reader.shuffle and reader.drop_last
    assert reader.strong_aug == list(DEFAULT_STRONG_AUG)   # StrongAugImage by default
    reader.strong_aug[0]["ColorJitter"]["prob"] = 0.1      # a copy, not the constant
    assert DEFAULT_STRONG_AUG[0]["ColorJitter"]["prob"] == 0.8
    assert unsup.name == "COCODataSet" and unsup.semi_split.percent == 10.0
    assert cfg.TrainDataset.semi_split.seed == 1
    folder = validate({"num_classes": 1, "UnsupTrainDataset": {
        "name": "ImageFolder", "dataset_dir": "x", "image_dir": "raw"}})
    assert folder.UnsupTrainDataset.anno_path is None and folder.SemiTrainReader is None


def test_semi_keys_are_documented() -> None:
    docs = field_docs()
    for key in ("UnsupTrainDataset.name", "UnsupTrainDataset.semi_split.percent",
                "SemiTrainReader.strong_aug", "SemiTrainReader.unsup_batch_size",
                "TrainDataset.semi_split.seed"):
        assert docs[key], key
    assert "StrongAugImage" in docs["SemiTrainReader.strong_aug"]


def test_shapes_semi_config_validates_and_splits_the_same_json() -> None:
    _, cfg = load_and_validate(SEMI_BASE / "shapes_semi_10pct.yml",
                               ["ssod_method=DenseTeacher"])
    assert cfg.TrainDataset.anno_path == cfg.UnsupTrainDataset.anno_path
    assert cfg.TrainDataset.semi_split == cfg.UnsupTrainDataset.semi_split
    assert cfg.TrainDataset.semi_split.percent == 10.0
    # shapes scale: milder than StrongAugImage (see semi_shapes_reader.yml); COCO: the paper's
    assert cfg.SemiTrainReader.strong_aug != list(DEFAULT_STRONG_AUG)
    assert [next(iter(op)) for op in cfg.SemiTrainReader.strong_aug] == [
        'ColorJitter', 'RandomErasing', 'GaussianBlur', 'RandomGrayscale']
    assert cfg.EvalDataset.anno_path == "annotations/val.json"
    _, coco = load_and_validate(SEMI_BASE / "coco_semi_10pct.yml",
                                ["ssod_method=ARSL"])
    assert coco.UnsupTrainDataset.anno_path.endswith("unlabeled.json")
    assert coco.SemiTrainReader.strong_aug == list(DEFAULT_STRONG_AUG)


@pytest.mark.parametrize(("patch", "expect"), [
    # a semi trainer without its sections
    ({"UnsupTrainDataset": None}, r"key 'UnsupTrainDataset': ssod_method DenseTeacher .*"
                                  r"needs a UnsupTrainDataset section"),
    ({"SemiTrainReader": None}, r"key 'SemiTrainReader': .*needs a SemiTrainReader section"),
    # geometry in a view
    ({"SemiTrainReader.strong_aug": [{"RandomFlip": {"prob": 0.5}}]},
     r"key 'SemiTrainReader.strong_aug\[0\]': RandomFlip changes the geometry.*photometric"
     r".*hint: put RandomFlip in SemiTrainReader.sample_transforms"),
    ({"SemiTrainReader.weak_aug": [{"ColorJitter": {}}, {"Resize": {"target_size": 8}}]},
     r"key 'SemiTrainReader.weak_aug\[1\]': Resize changes the geometry"),
    ({"SemiTrainReader.strong_aug": [{"GaussianBlur": {"radius": 2}}]},
     r"GaussianBlur has no argument 'radius'; allowed: prob, sigma, kernel_size"),
    ({"SemiTrainReader.strong_aug": [{"GausianBlur": {}}]},
     r"unknown transform 'GausianBlur'.*did you mean 'GaussianBlur'"),
    ({"SemiTrainReader.unsup_batch_size": 0}, r"SemiTrainReader.unsup_batch_size': must be >= 1"),
    ({"SemiTrainReader.sup_batchsize": 2}, r"did you mean 'sup_batch_size'"),
    # datasets
    ({"UnsupTrainDataset.name": "ImageFolder"},
     r"UnsupTrainDataset.anno_path': anno_path is for name: COCODataSet"),
    ({"UnsupTrainDataset.name": "Folder"}, r"one of 'COCODataSet', 'ImageFolder'"),
    ({"UnsupTrainDataset.anno_path": None, "UnsupTrainDataset.semi_split": None},
     r"UnsupTrainDataset.anno_path': a COCODataSet needs anno_path"),
    ({"UnsupTrainDataset.semi_split": {"percent": 100}},
     r"UnsupTrainDataset.semi_split.percent': must be between 0 and 100"),
    ({"TrainDataset.semi_split": {"percent": 0}},
     r"TrainDataset.semi_split.percent': must be between 0 and 100"),
    ({"UnsupTrainDataset.semi_split": {"percent": 10, "seed": 2}},
     r"UnsupTrainDataset.semi_split': splits the same json as TrainDataset.semi_split but "
     r"differently"),
    ({"EvalDataset": {"semi_split": {"percent": 10}}},
     r"EvalDataset.semi_split': a semi-supervised split is for training data"),
])
def test_bad_semi_sections_name_the_key(tmp_path: Path, patch: dict, expect: str) -> None:
    import yaml

    data = yaml.safe_load(GOOD)
    for dotted, value in patch.items():
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node[p]
        if value is None and leaf in ("UnsupTrainDataset", "SemiTrainReader"):
            del node[leaf]
        else:
            node[leaf] = value
    path = write(tmp_path / "c.yml", yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="(?s)" + expect) as err:
        load_and_validate(path)
    assert str(path) in err.value.render()


def test_semi_rtdetr_section_keeps_paddle_names_and_checks_values() -> None:
    cfg = validate({"num_classes": 1})
    tc = cfg.DETR_SSOD.train_cfg
    assert (tc.pseudo_label_initial_score_thr, tc.ema_decay, tc.min_pseduo_box_size) == (
        0.7, 0.9996, 0.0)
    assert cfg.DETR_SSOD.test_cfg.inference_on == "teacher"
    assert "score_fn" in field_docs()["DETR_SSOD.train_cfg.pseudo_label_initial_score_thr"]
    assert tc.score_fn == "softmax"  # PaddleDetection's DETRBBoxSemiPostProcess
    for key, value, message in [("pseudo_label_initial_score_thr", 1.5, "between 0 and 1"),
                                ("ema_decay", 1.0, "must be in [0, 1)"),
                                ("min_pseduo_box_size", -1, "must be >= 0"),
                                ("unsup_weight", -0.5, "must be >= 0")]:
        with pytest.raises(ConfigError) as info:
            validate({"num_classes": 1, "DETR_SSOD": {"train_cfg": {key: value}}})
        assert info.value.key == f"DETR_SSOD.train_cfg.{key}" and message in info.value.message
    _, coco = load_and_validate(
        REPO / "configs" / "semi_det" / "semi_rtdetr" / "semi_rtdetr_r50vd_coco_semi010.yml")
    assert coco.ssod_method == "Semi_RTDETR" and coco.architecture == "RTDETR"
    assert coco.ema_start_iters == 10000 and not coco.use_ema
    assert coco.DETR_SSOD.train_cfg.pseudo_label_initial_score_thr == 0.7
    assert coco.DETR_SSOD.train_cfg.score_fn == "softmax"
    _, shapes = load_and_validate(
        REPO / "configs" / "semi_det" / "semi_rtdetr" / "semi_rtdetr_tiny_shapes.yml")
    assert shapes.DETR_SSOD.train_cfg.score_fn == "sigmoid"  # its published numbers'
    with pytest.raises(ConfigError) as info:
        validate({"num_classes": 1, "DETR_SSOD": {"train_cfg": {"score_fn": "relu"}}})
    assert info.value.key == "DETR_SSOD.train_cfg.score_fn"


def test_denseteacher_quality_branch_key() -> None:
    assert validate({"num_classes": 1}).DenseTeacher.train_cfg.quality == "centerness"
    dt = REPO / "configs" / "semi_det" / "denseteacher"
    _, coco = load_and_validate(dt / "denseteacher_fcos_r50_fpn_coco_semi010.yml")
    assert coco.DenseTeacher.train_cfg.quality == "iou"  # PaddleDetection's, the paper's
    _, shapes = load_and_validate(dt / "denseteacher_fcos_tiny_shapes.yml")
    assert shapes.DenseTeacher.train_cfg.quality == "centerness"  # its published numbers'
    with pytest.raises(ConfigError) as info:
        validate({"num_classes": 1, "DenseTeacher": {"train_cfg": {"quality": "giou"}}})
    assert info.value.key == "DenseTeacher.train_cfg.quality"
