"""CocoDetection: label mapping, crowd/invalid boxes, items, and every DataError."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.config.schema import DatasetConfig
from engine.data.coco import CocoDetection
from engine.data.transforms import Resize
from engine.protocol.errors import DataError

CATEGORIES = [{"id": 12, "name": "zebra"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def _ann(ann_id: int, image_id: int, cat: int, bbox: list, **extra: Any) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox, **extra}


def _dataset(root: Path, annotations: list[dict] | None = None, *, images: int = 3,
             categories: list[dict] | None = None, mode: str = "RGB",
             allow_empty: bool = False) -> DatasetConfig:
    """Write ``images`` 80x60 images (ids 1..n) and an instances json under ``root``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for image_id in range(1, images + 1):
        name = f"img{image_id}.png"
        colour = 128 if len(mode) == 1 else (128,) * len(mode)
        Image.new(mode, (80, 60), colour).save(root / "images" / name)
        entries.append({"id": image_id, "file_name": name, "width": 80, "height": 60})
    if annotations is None:
        annotations = [_ann(1, 1, 3, [10, 10, 20, 20]), _ann(2, 2, 7, [0, 0, 80, 60]),
                       _ann(3, 3, 12, [5, 5, 10, 10])]
    data = {"images": entries, "annotations": annotations,
            "categories": CATEGORIES if categories is None else categories}
    (root / "annotations.json").write_text(json.dumps(data))
    return DatasetConfig(dataset_dir=str(root), image_dir="images",
                         anno_path="annotations.json", allow_empty=allow_empty)


def test_labels_follow_sorted_category_ids(tmp_path: Path) -> None:
    ds = CocoDetection(_dataset(tmp_path), num_classes=3, transforms=None, train=True)
    assert ds.class_names == ["cat", "dog", "zebra"]
    assert ds.label_to_cat_id == {1: 3, 2: 7, 3: 12}
    assert ds.cat_id_to_label == {3: 1, 7: 2, 12: 3}
    assert ds.image_ids == [1, 2, 3]
    assert [ds[i][1]["labels"].tolist() for i in range(3)] == [[1], [2], [3]]
    assert ds.anno_path == tmp_path / "annotations.json"
    assert ds.coco_json == json.loads((tmp_path / "annotations.json").read_text())


def test_item_layout(tmp_path: Path) -> None:
    ds = CocoDetection(_dataset(tmp_path), 3, transforms=None, train=True)
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 60, 80)
    assert image.is_contiguous() and image.min() >= 0.0 and image.max() <= 1.0
    assert torch.allclose(image, torch.full_like(image, 128 / 255))
    assert target["boxes"].dtype == torch.float32
    assert target["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]  # xywh -> xyxy
    assert target["labels"].dtype == torch.int64
    assert target["image_id"] == 1
    assert target["orig_size"] == (60, 80) and target["size"] == (60, 80)


def test_transforms_apply_to_image_and_boxes(tmp_path: Path) -> None:
    ds = CocoDetection(_dataset(tmp_path), 3, transforms=Resize(target_size=40), train=True)
    image, target = ds[0]
    assert image.shape == (3, 30, 40)
    assert target["boxes"].tolist() == [[5.0, 5.0, 15.0, 15.0]]
    assert target["orig_size"] == (60, 80) and target["size"] == (30, 40)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_non_rgb_images_become_rgb(tmp_path: Path, mode: str) -> None:
    ds = CocoDetection(_dataset(tmp_path, mode=mode), 3, transforms=None, train=True)
    assert ds[0][0].shape == (3, 60, 80)


def test_crowd_and_invalid_boxes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    annotations = [
        _ann(1, 1, 3, [10, 10, 20, 20]),                 # kept
        _ann(2, 1, 7, [0, 0, 40, 40], iscrowd=1),        # crowd: ignored for training
        _ann(3, 1, 3, [10, 10, 0, 5]),                   # zero width
        _ann(4, 1, 3, [10, 10, 5, -3]),                  # negative height
        _ann(5, 1, 3, [100, 10, 5, 5]),                  # right of the image
        _ann(6, 1, 3, [79.5, 10, 30, 5]),                # < 1 px once clipped
        _ann(7, 1, 3, [float("nan"), 1, 5, 5]),          # NaN
        _ann(8, 1, 12, [70, -5, 30, 20]),                # partly outside: clipped, kept
        _ann(9, 2, 3, [1, 1, 0.5, 0.5]),                 # sub-pixel: image 2 ends up empty
        _ann(10, 3, 7, [0, 0, 20, 20], iscrowd=1),       # only crowd: image 3 empty too
    ]
    cfg = _dataset(tmp_path, annotations)
    with caplog.at_level(logging.INFO, logger="dettui.data"):
        train = CocoDetection(cfg, 3, transforms=None, train=True)
    assert train.stats == {"images_in_file": 3, "images": 1, "boxes": 2, "crowd": 2,
                           "invalid": 6, "skipped_empty": 2, "classes_present": 2}
    _, target = train[0]
    assert target["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0], [70.0, 0.0, 80.0, 15.0]]
    assert target["labels"].tolist() == [1, 3]
    line = caplog.records[-1].getMessage()
    for part in ("TrainDataset", "1 images", "2 skipped without boxes", "2 boxes",
                 "2 crowd ignored", "6 invalid dropped", "3 classes"):
        assert part in line

    # Evaluation keeps every image of the json (the evaluator scores against the json).
    evalset = CocoDetection(cfg, 3, transforms=None, train=False)
    assert evalset.image_ids == [1, 2, 3]
    assert evalset[1][1]["boxes"].shape == (0, 4)
    assert evalset[1][1]["labels"].shape == (0,)
    # ... and so does training with allow_empty.
    cfg.allow_empty = True
    assert len(CocoDetection(cfg, 3, transforms=None, train=True)) == 3


def test_extra_classes_are_allowed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dettui.data"):
        ds = CocoDetection(_dataset(tmp_path), num_classes=5, transforms=None, train=True)
    assert len(ds.class_names) == 3
    assert "num_classes is 5" in caplog.text


def test_pickling_leaves_the_json_behind(tmp_path: Path) -> None:
    ds = CocoDetection(_dataset(tmp_path), 3, transforms=Resize(target_size=40), train=False)
    assert ds.coco_json["categories"] == CATEGORIES
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._json_cache is None
    assert torch.equal(clone[2][0], ds[2][0]) and clone.coco_json == ds.coco_json


# ----------------------------------------------------------------------------- errors

def _error(cfg: DatasetConfig, num_classes: int = 3, train: bool = True) -> str:
    with pytest.raises(DataError) as err:
        CocoDetection(cfg, num_classes, transforms=None, train=train)
    return str(err.value)


def _rewrite(cfg: DatasetConfig, text: str) -> None:
    (Path(cfg.dataset_dir) / cfg.anno_path).write_text(text)


def test_error_dataset_folder_missing(tmp_path: Path) -> None:
    text = _error(DatasetConfig(dataset_dir=str(tmp_path / "nope")), train=False)
    assert str(tmp_path / "nope") in text and "dataset folder not found" in text
    assert "EvalDataset.dataset_dir" in text


def test_error_annotation_file_missing(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path)
    cfg.anno_path = "missing.json"
    text = _error(cfg)
    assert str(tmp_path / "missing.json") in text and "annotation file not found" in text
    assert "TrainDataset.anno_path" in text


def test_error_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path)
    _rewrite(cfg, '{\n  "images": [],\n  "annotations": [,]\n}')
    text = _error(cfg)
    assert f"{tmp_path / 'annotations.json'}:3:19" in text and "not valid JSON" in text


def test_error_missing_keys(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path)
    _rewrite(cfg, json.dumps({"images": []}))
    text = _error(cfg)
    assert "missing required key(s) 'annotations', 'categories'" in text
    assert str(tmp_path / "annotations.json") in text


def test_error_top_level_not_an_object(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path)
    _rewrite(cfg, "[1, 2]")
    assert "must hold a JSON object" in _error(cfg)


def test_error_wrong_types(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path)
    _rewrite(cfg, json.dumps({"images": {}, "annotations": [], "categories": []}))
    text = _error(cfg)
    assert "key 'images'" in text and "must be a list, got dict" in text


@pytest.mark.parametrize(("mutate", "fragments"), [
    (lambda d: d["images"][1].pop("width"),
     ["key 'images[1].width'", "positive integer 'width'"]),
    (lambda d: d["images"][0].update(file_name=None), ["key 'images[0].file_name'"]),
    (lambda d: d["images"].append(dict(d["images"][0])), ["duplicate image id 1"]),
    (lambda d: d["categories"][0].pop("name"), ["key 'categories[0].name'"]),
    (lambda d: d["categories"].append({"id": 3, "name": "x"}), ["duplicate category id 3"]),
    (lambda d: d.update(categories=[]), ["no categories"]),
    (lambda d: d["annotations"][2].update(category_id=99),
     ["key 'annotations[2].category_id'", "category_id 99 is not in 'categories'",
      "ids: 3, 7, 12"]),
    (lambda d: d["annotations"][0].update(image_id=42),
     ["key 'annotations[0].image_id'", "image_id 42 is not in 'images'"]),
    (lambda d: d["annotations"][1].update(bbox=[1, 2, 3]),
     ["key 'annotations[1].bbox'", "list of 4 numbers"]),
    (lambda d: d["annotations"][1].update(bbox=["1", 2, 3, 4]), ["list of 4 numbers"]),
])
def test_error_malformed_entries(tmp_path: Path, mutate, fragments: list[str]) -> None:
    cfg = _dataset(tmp_path)
    path = tmp_path / "annotations.json"
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    text = _error(cfg)
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text


def test_error_num_classes_too_small(tmp_path: Path) -> None:
    text = _error(_dataset(tmp_path), num_classes=2)
    assert "key 'num_classes'" in text
    assert "has 3 categories but num_classes is 2" in text
    assert "set num_classes: 3" in text


def test_error_no_usable_images(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path, [_ann(1, 1, 3, [0, 0, 0, 0])])
    assert "allow_empty" in _error(cfg)


def test_error_image_folder_missing(tmp_path: Path) -> None:
    cfg = _dataset(tmp_path)
    cfg.image_dir = "pictures"
    text = _error(cfg)
    assert str(tmp_path / "pictures") in text and "TrainDataset.image_dir" in text


def test_error_image_missing_on_access(tmp_path: Path) -> None:
    ds = CocoDetection(_dataset(tmp_path), 3, transforms=None, train=True)
    (tmp_path / "images" / "img2.png").unlink()
    with pytest.raises(DataError) as err:
        ds[1]
    assert str(tmp_path / "images" / "img2.png") in str(err.value)
    assert "image file not found" in str(err.value)


def test_error_image_unreadable_on_access(tmp_path: Path) -> None:
    ds = CocoDetection(_dataset(tmp_path), 3, transforms=None, train=True)
    (tmp_path / "images" / "img3.png").write_bytes(b"not an image")
    with pytest.raises(DataError) as err:
        ds[2]
    assert str(tmp_path / "images" / "img3.png") in str(err.value)
    assert "cannot read the image" in str(err.value)


def test_error_image_size_differs_from_json(tmp_path: Path) -> None:
    ds = CocoDetection(_dataset(tmp_path), 3, transforms=None, train=True)
    Image.new("RGB", (60, 80)).save(tmp_path / "images" / "img1.png")
    with pytest.raises(DataError) as err:
        ds[0]
    assert "60x80 (w x h) but the annotation file says 80x60" in str(err.value)


def test_boxes_are_finite_and_inside(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    annotations = [_ann(i + 1, 1 + i % 3, 3, [float(v) for v in rng.uniform(-30, 90, 4)])
                   for i in range(200)]
    ds = CocoDetection(_dataset(tmp_path, annotations, allow_empty=True), 3, None, train=True)
    for i in range(len(ds)):
        boxes = ds[i][1]["boxes"]
        assert torch.isfinite(boxes).all()
        assert (boxes[:, 2] - boxes[:, 0] >= 1).all() and (boxes[:, 3] - boxes[:, 1] >= 1).all()
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 80).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 60).all()
    assert ds.stats["boxes"] + ds.stats["invalid"] == 200
    assert ds.stats["boxes"] > 50 and ds.stats["invalid"] > 10
