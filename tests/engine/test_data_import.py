"""Bring your own data: Pascal VOC and YOLO imports, PaddleDetection's VOCDataSet, and the
quirks of real files (difficult objects, boxes outside the image, odd image modes, EXIF
rotation, missing labels), on real files written here. Two tiny real trainings at the end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from engine.config.schema import DatasetConfig
from engine.data.check import check_config
from engine.data.coco import CocoDetection, read_rgb
from engine.data.images import orient_box, probe_image
from engine.data.voc import import_voc, voc_list_dataset
from engine.data.yolo import import_yolo
from engine.evaluation.coco import COCOEvaluator
from engine.main import main as engine_main
from engine.protocol.errors import DataError
from engine.protocol.events import read_events
from tests.dataset_files import (
    COLOURS,
    make_voc,
    make_yolo,
    shapes_scene,
    tiny_config,
    voc_objects,
    voc_xml,
    write_image,
    yolo_line,
)

RED = COLOURS["red"]


def boxes_of(coco: dict, file_suffix: str) -> list[tuple[list[float], int, int]]:
    """(bbox, category_id, iscrowd) of the image whose file_name ends with file_suffix."""
    (image,) = [im for im in coco["images"] if im["file_name"].endswith(file_suffix)]
    return [(a["bbox"], a["category_id"], a["iscrowd"]) for a in coco["annotations"]
            if a["image_id"] == image["id"]]


def object_extent(pixels: np.ndarray, colour: tuple) -> tuple[int, int, int, int]:
    """Pixel-edge box (x0, y0, x1, y1) of the pixels near ``colour`` in an HxWx3 array."""
    near = (np.abs(pixels.astype(int) - np.array(colour)).sum(axis=-1) < 90)
    ys, xs = np.nonzero(near)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def dataset(anno: Path, train: bool = True) -> CocoDetection:
    """A CocoDetection on an imported json (image_dir left at its default: not used)."""
    cfg = DatasetConfig(dataset_dir=str(anno.parent), anno_path=anno.name, allow_empty=True)
    return CocoDetection(cfg, num_classes=2, train=train)


# --------------------------------------------------------------------------- VOC

def test_voc_layout_by_split_and_whole(tmp_path: Path) -> None:
    src = make_voc(tmp_path / "voc", n=12)
    train, s_train = import_voc(src, split="train")
    val, _ = import_voc(src, split="val")
    whole, s_whole = import_voc(src)
    assert (len(train["images"]), len(val["images"]), len(whole["images"])) == (9, 3, 12)
    assert [c["name"] for c in whole["categories"]] == ["blue", "red"]   # sorted names
    for im in whole["images"]:
        assert Path(im["file_name"]).is_absolute() and Path(im["file_name"]).is_file()
        assert (im["width"], im["height"]) == (64, 64)
    # each box is the rectangle drawn: VOC's 1-based xmin/ymin move down by one
    scene = shapes_scene(3)
    want = sorted(([x0, y0, x1 - x0, y1 - y0], 1 + ["blue", "red"].index(c), 0)
                  for (x0, y0, x1, y1), c in scene)
    assert sorted(boxes_of(whole, "000003.jpg")) == want
    assert s_whole.images == 12 and s_whole.total_boxes == len(whole["annotations"])
    assert sum(s_train.boxes) == len(train["annotations"])
    assert s_train.source.endswith("ImageSets/Main/train.txt")


def test_voc_difficult_is_crowd_ignored_by_training_and_by_coco_eval(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "a.png", (80, 60))
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.xml").write_text(voc_xml("a.png", (80, 60), [
        ("red", (11, 11, 30, 30), 0), ("red", (41, 21, 70, 50), 1)]))
    coco, summary = import_voc(None, images=tmp_path / "img", annotations=tmp_path / "ann")
    assert sorted(a["iscrowd"] for a in coco["annotations"]) == [0, 1]
    assert summary.boxes == [1] and summary.ignored == [1]
    out = tmp_path / "a.json"
    out.write_text(json.dumps(coco))
    ds = dataset(out)
    _, target = ds.load_raw(0)
    assert target["boxes"].tolist() == [[10.0, 10.0, 30.0, 30.0]]       # difficult not trained
    # For COCO eval a detection on the difficult box is no false positive (were the box
    # dropped, the first detection would be one: AP 0.5), and missing it is no miss (were
    # it a normal box, recall would be 0.5).
    for boxes in ([[40.0, 20.0, 70.0, 50.0], [10.0, 10.0, 30.0, 30.0]],
                  [[10.0, 10.0, 30.0, 30.0]]):
        evaluator = COCOEvaluator(coco, ds.label_to_cat_id, ds.class_names)
        dets = {"boxes": torch.tensor(boxes), "scores": torch.tensor([0.95, 0.9][:len(boxes)]),
                "labels": torch.ones(len(boxes), dtype=torch.int64)}
        evaluator.update([dets], [{"image_id": 1, "orig_size": (60, 80), "size": (60, 80)}])
        assert evaluator.evaluate().metrics["AP"] == pytest.approx(1.0)


def test_boxes_outside_the_image_are_clipped_or_dropped_and_counted(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "a.png", (50, 40))
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.xml").write_text(voc_xml("a.png", (50, 40), [
        ("red", (-9, 5, 20, 20), 0),     # partly outside: clipped to x = 0
        ("red", (41, 31, 90, 70), 0),    # partly outside: clipped to the corner
        ("red", (60, 5, 80, 20), 0),     # entirely outside
        ("red", (30, 5, 10, 20), 0),     # xmin > xmax
        ("red", (50.7, 5, 51, 20), 0),   # under a pixel once clipped
    ]))
    coco, summary = import_voc(None, images=tmp_path / "img", annotations=tmp_path / "ann")
    assert sorted(a["bbox"] for a in coco["annotations"]) == [[0, 4, 20, 16], [40, 30, 10, 10]]
    assert summary.clipped == 2
    assert summary.dropped == {"entirely outside the image": 1,
                               "zero or negative width/height as written": 1,
                               "under 1 px wide or high once clipped to the image": 1}
    assert summary.dropped_first["entirely outside the image"].endswith("a.xml object[2]")
    text = "\n".join(summary.lines())
    assert "dropped  3 boxes" in text and "clipped  2 boxes" in text


def test_images_without_labels_and_orphan_annotations(tmp_path: Path) -> None:
    img, ann = tmp_path / "img", tmp_path / "ann"
    for name in ("a", "b", "c"):
        write_image(img / f"{name}.jpg", (40, 30))
    ann.mkdir()
    (ann / "a.xml").write_text(voc_xml("a.jpg", (40, 30), [("cat", (2, 2, 20, 20), 0)]))
    (ann / "b.xml").write_text(voc_xml("b.jpg", (40, 30), []))
    (ann / "zz.xml").write_text(voc_xml("zz.jpg", (40, 30), [("cat", (2, 2, 20, 20), 0)]))
    coco, summary = import_voc(None, images=img, annotations=ann)
    assert summary.images == 3 and summary.without_boxes == {
        "no <object> in the XML": 1, "no annotation file": 1}
    assert any("1 annotation files have no image" in n for n in summary.notes)


def test_paddledetection_vocdataset_section(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", n=8)
    lines = [f"JPEGImages/{i:06d}.jpg Annotations/{i:06d}.xml" for i in range(8)]
    (root / "trainval.txt").write_text("\n".join(lines) + "\n")
    (root / "label_list.txt").write_text("red\nblue\n")          # the order is the labels'
    cfg = DatasetConfig(name="VOCDataSet", dataset_dir=str(root), anno_path="trainval.txt",
                        label_list="label_list.txt")
    ds = CocoDetection(cfg, num_classes=2, train=False)
    assert len(ds) == 8 and ds.class_names == ["red", "blue"]
    coco = ds.coco_json                       # what the COCO evaluator gets: built in memory
    assert len(coco["images"]) == 8 and {c["name"] for c in coco["categories"]} == {"red", "blue"}
    image, target = ds.load_raw(0)
    assert tuple(image.shape) == (3, 64, 64) and len(target["boxes"]) >= 1
    # the same parser as the import: identical annotations
    imported, _ = import_voc(root, classes=root / "label_list.txt")
    assert [a["bbox"] for a in imported["annotations"]] == [a["bbox"] for a in coco["annotations"]]
    # no label_list: PaddleDetection's 20 Pascal VOC classes, so 'red' is unknown
    with pytest.raises(DataError, match="'red' is not in the class list") as err:
        voc_list_dataset(root, "trainval.txt", None, section="TrainDataset")
    assert err.value.file.endswith("000000.xml") and err.value.key == "object[0].name"


# --------------------------------------------------------------------------- YOLO

def test_yolo_data_yaml_names_as_list_or_mapping(tmp_path: Path) -> None:
    a, sa = import_yolo(make_yolo(tmp_path / "a", names_as="list"), "train")
    b, _ = import_yolo(make_yolo(tmp_path / "b", names_as="dict") / "data.yaml", "train")
    assert [c["name"] for c in a["categories"]] == ["red", "blue"] == [
        c["name"] for c in b["categories"]]
    assert [x["bbox"] for x in a["annotations"]] == [x["bbox"] for x in b["annotations"]]
    scene = shapes_scene(2)
    want = sorted(([x0, y0, x1 - x0, y1 - y0], 1 + ["red", "blue"].index(c), 0)
                  for (x0, y0, x1, y1), c in scene)
    assert sorted(boxes_of(a, "/images/train/im2.png")) == want
    val, _ = import_yolo(tmp_path / "a", "val")
    assert len(val["images"]) == 2 and sa.images == 8
    (tmp_path / "a" / "data.yaml").unlink()               # images/ + labels/ folders
    (tmp_path / "a" / "classes.txt").write_text("red\nblue\n")
    c, _ = import_yolo(tmp_path / "a", "val")
    assert [x["bbox"] for x in c["annotations"]] == [x["bbox"] for x in val["annotations"]]
    with pytest.raises(DataError, match="no 'vla' split") as err:
        import_yolo(tmp_path / "a", "vla")                # a typo never mixes the splits
    assert err.value.hint == "splits here: train, val"


def test_yolo_folders_with_classes_txt_missing_and_empty_labels(tmp_path: Path) -> None:
    root = tmp_path / "y"
    for i in range(4):
        write_image(root / "images" / f"{i}.jpg", (40, 20))
    labels = root / "labels"
    labels.mkdir()
    (labels / "0.txt").write_text("1 0.5 0.5 0.5 0.5\n1 0.5 0.5 0.5 0.5\n")  # repeated line
    (labels / "1.txt").write_text("")                                         # empty file
    (labels / "2.txt").write_text("0 0.1 0.1 0.9 0.1 0.9 0.6 0.1 0.6\n")      # a polygon
    (labels / "classes.txt").write_text("cat\ndog\n")                         # no 3.txt
    coco, summary = import_yolo(root, "train")
    assert summary.class_names == ["cat", "dog"] and summary.boxes == [1, 1]
    assert summary.without_boxes == {"empty label file": 1, "no label file": 1}
    assert summary.dropped == {"repeated label line": 1}
    assert sorted(a["bbox"] for a in coco["annotations"]) == [[4, 2, 32, 10], [10, 5, 20, 10]]
    (labels / "classes.txt").write_text("cat\ndog\x1b[2J\n")   # a name that clears a terminal
    _, summary = import_yolo(root, "train")
    assert "\x1b" not in "\n".join(summary.lines())
    assert any("dog\\x1b[2J" in line for line in summary.lines())
    (labels / "classes.txt").unlink()
    with pytest.raises(DataError, match="no class names"):
        import_yolo(root, "train")


# --------------------------------------------------------------------------- image files

@pytest.mark.parametrize(("mode", "suffix"), [("L", ".jpg"), ("CMYK", ".jpg"),
                                              ("RGBA", ".png"), ("P", ".png"),
                                              ("LA", ".png"), ("I;16", ".png")])
def test_odd_image_modes_are_sized_right_and_read_as_rgb(tmp_path: Path, mode: str,
                                                         suffix: str) -> None:
    path = write_image(tmp_path / "images" / f"x{suffix}", (45, 31),
                       [((5, 6, 25, 20), RED)], mode=mode)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x.txt").write_text(yolo_line(0, (5, 6, 25, 20), 45, 31) + "\n")
    (tmp_path / "classes.txt").write_text("thing\n")
    coco, _ = import_yolo(tmp_path, "train")
    (image,) = coco["images"]
    assert (image["width"], image["height"]) == (45, 31)
    pixels = read_rgb(path)
    assert pixels.dtype == torch.uint8 and tuple(pixels.shape) == (3, 31, 45)
    out = tmp_path / "x.json"
    out.write_text(json.dumps(coco))
    loaded, target = dataset(out).load_raw(0)
    assert tuple(loaded.shape) == (3, 31, 45)
    assert target["boxes"].tolist() == [[5.0, 6.0, 25.0, 20.0]]
    if mode not in ("L", "LA", "I;16"):  # a coloured object stays coloured
        x0, y0, x1, y1 = object_extent(pixels.permute(1, 2, 0).numpy(), RED)
        assert (x0, y0, x1, y1) == (5, 6, 25, 20)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_box_matches_pil_exif_transpose(tmp_path: Path, orientation: int) -> None:
    rect = (5, 3, 17, 9)                                    # on the stored 30 x 20 bitmap
    path = write_image(tmp_path / "o.jpg", (30, 20), [(rect, RED)], orientation=orientation,
                       quality=100, subsampling=0)  # sharp colour edges
    info = probe_image(path)
    with Image.open(path) as img:
        upright = np.array(ImageOps.exif_transpose(img).convert("RGB"))
    assert (info.height, info.width) == upright.shape[:2] == tuple(read_rgb(path).shape[1:])
    assert orient_box(rect, orientation, 30, 20) == object_extent(upright, RED)


def test_png_exif_orientation_is_read_from_the_header_as_the_decoder_applies_it(
        tmp_path: Path) -> None:
    path = write_image(tmp_path / "o.png", (30, 20), [((5, 3, 17, 9), RED)], orientation=8)
    info = probe_image(path)
    pixels = read_rgb(path).permute(1, 2, 0).numpy()
    assert (info.orientation, info.width, info.height) == (8, 20, 30)
    assert pixels.shape[:2] == (30, 20)
    assert object_extent(pixels, RED) == orient_box((5, 3, 17, 9), 8, 30, 20)


def _rotated_photo(tmp_path: Path, orientation: int) -> tuple[Path, tuple[int, int, int, int]]:
    """A 60 x 40 stored bitmap with a red object, tagged with ``orientation``; returns the
    path and the object's box on the upright image, found in PIL's own upright decode."""
    path = write_image(tmp_path / "photos" / "p.jpg", (60, 40), [((8, 4, 30, 16), RED)],
                       orientation=orientation, quality=100, subsampling=0)
    with Image.open(path) as img:
        upright = np.array(ImageOps.exif_transpose(img).convert("RGB"))
    return path, object_extent(upright, RED)


def _assert_box_on_object(anno: Path) -> None:
    ds = dataset(anno)
    image, target = ds.load_raw(0)
    coco = json.loads(anno.read_text())
    (im,) = coco["images"]
    assert (im["height"], im["width"]) == tuple(image.shape[1:])   # what the model sees
    x0, y0, x1, y1 = (round(v) for v in target["boxes"][0].tolist())
    inside = image[:, y0 + 1:y1 - 1, x0 + 1:x1 - 1].float().mean(dim=(1, 2))
    assert inside.tolist() == pytest.approx(list(RED), abs=25)      # the box lands on it
    assert (x0, y0, x1, y1) == object_extent(image.permute(1, 2, 0).numpy(), RED)


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_jpeg_yolo_labels(tmp_path: Path, orientation: int) -> None:
    path, (x0, y0, x1, y1) = _rotated_photo(tmp_path, orientation)
    assert probe_image(path).width == 40                  # upright: 40 wide, 60 high
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "p.txt").write_text(yolo_line(0, (x0, y0, x1, y1), 40, 60) + "\n")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "p.jpg").write_bytes(path.read_bytes())
    (tmp_path / "classes.txt").write_text("thing\n")
    coco, _ = import_yolo(tmp_path, "train")
    out = tmp_path / "y.json"
    out.write_text(json.dumps(coco))
    _assert_box_on_object(out)


@pytest.mark.parametrize(("orientation", "drawn_on"), [(6, "stored"), (8, "stored"),
                                                       (6, "upright")])
def test_exif_rotated_jpeg_voc_boxes_follow_the_image(tmp_path: Path, orientation: int,
                                                      drawn_on: str) -> None:
    path, upright_box = _rotated_photo(tmp_path, orientation)
    ann = tmp_path / "ann"
    ann.mkdir()
    if drawn_on == "stored":   # labelImg-style: <size> and boxes of the stored bitmap
        xml = voc_xml("p.jpg", (60, 40), voc_objects([((8, 4, 30, 16), "thing")]))
    else:                      # Label Studio / CVAT style: the upright image
        xml = voc_xml("p.jpg", (40, 60), voc_objects([(upright_box, "thing")]))
    (ann / "p.xml").write_text(xml)
    coco, summary = import_voc(None, images=path.parent, annotations=ann)
    out = tmp_path / "v.json"
    out.write_text(json.dumps(coco))
    _assert_box_on_object(out)
    assert any("turned with the image" in n for n in summary.notes) == (drawn_on == "stored")


# --------------------------------------------------------------------------- bad input

def test_bad_files_are_data_errors_naming_file_and_line(tmp_path: Path) -> None:
    img, ann = tmp_path / "img", tmp_path / "ann"
    write_image(img / "a.png", (20, 20))
    ann.mkdir()
    (ann / "a.xml").write_text("<annotation>\n  <object>\n    <name>x</name>\n</annotation>\n")
    with pytest.raises(DataError, match="malformed XML") as err:
        import_voc(None, images=img, annotations=ann)
    assert err.value.file.endswith("a.xml") and err.value.line == 4
    (ann / "a.xml").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        "\n<annotation><filename>&b;</filename></annotation>\n")
    with pytest.raises(DataError, match="refusing the XML"):
        import_voc(None, images=img, annotations=ann)
    (ann / "a.xml").write_text(voc_xml("a.png", None, [("x", (1, 1, "ten", 5), 0)]))
    with pytest.raises(DataError, match="<xmax> of object 'x' must be a number") as err:
        import_voc(None, images=img, annotations=ann)
    assert err.value.key == "object[0].bndbox.xmax"

    root = make_yolo(tmp_path / "y", n=2)
    label = root / "labels" / "train" / "im1.txt"
    for text, needle in [("0 0.5 0.5 0.2\n", "expected 5 fields"),
                         ("0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n", "class id 2 is out of range"),
                         ("0 0.5 0.5 0.2 0.2\n-1 0.5 0.5 0.2 0.2\n", "class id -1"),
                         ("0 0.5 nan 0.2 0.2\n", "not a finite number"),
                         ("0 0.5 abc 0.2 0.2\n", "'abc' is not a number")]:
        label.write_text(text)
        with pytest.raises(DataError, match=needle) as err:
            import_yolo(root, "train")
        assert err.value.file == str(label)
        assert err.value.line == text.count("\n"), text


# --------------------------------------------------------------------------- check + train

def test_check_config_reports_the_same_statistics(tmp_path: Path) -> None:
    from engine.config import load_and_validate

    root = make_voc(tmp_path / "voc", n=8)
    coco, _ = import_voc(root, split="train")
    (tmp_path / "train.json").write_text(json.dumps(coco))
    (root / "val_list.txt").write_text(
        "".join(f"JPEGImages/{i:06d}.jpg Annotations/{i:06d}.xml\n" for i in (6, 7)))
    (root / "labels.txt").write_text("blue\nred\n")
    config = tiny_config(tmp_path / "cfg.yml",
                         {"name": "COCODataSet", "dataset_dir": str(tmp_path),
                          "anno_path": "train.json"},
                         {"name": "VOCDataSet", "dataset_dir": str(root),
                          "anno_path": "val_list.txt", "label_list": "labels.txt"})
    _, cfg = load_and_validate(config, [])
    train, val = check_config(cfg)
    assert (train.images, val.images) == (6, 2)
    assert train.class_names == val.class_names == ["blue", "red"]
    assert train.total_boxes == len(coco["annotations"])
    assert (train.kind, val.kind) == ("COCODataSet", "VOCDataSet")


def _train(tmp_path: Path, config: Path) -> Path:
    runs = tmp_path / "runs"
    code = engine_main(["train", str(config), "--runs-dir", str(runs)])
    (run,) = runs.iterdir()
    assert code == 0, (run / "train.log").read_text()
    return run


@pytest.mark.slow
def test_trains_on_an_imported_voc_json_and_on_a_vocdataset_config(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "voc", n=12)
    for split in ("train", "val"):
        coco, _ = import_voc(root, split=split)
        (tmp_path / f"{split}.json").write_text(json.dumps(coco))
    # image_dir is left at its default ('images', which does not exist): absolute names
    imported = tiny_config(tmp_path / "imported.yml",
                           {"dataset_dir": str(tmp_path), "anno_path": "train.json"},
                           {"dataset_dir": str(tmp_path), "anno_path": "val.json"})
    for name in ("train", "val"):
        ids = (root / "ImageSets" / "Main" / f"{name}.txt").read_text().split()
        (root / f"{name}_list.txt").write_text(
            "".join(f"JPEGImages/{i}.jpg Annotations/{i}.xml\n" for i in ids))
    (root / "label_list.txt").write_text("blue\nred\n")
    voc = tiny_config(tmp_path / "voc.yml",
                      {"name": "VOCDataSet", "dataset_dir": str(root),
                       "anno_path": "train_list.txt", "label_list": "label_list.txt"},
                      {"name": "VOCDataSet", "dataset_dir": str(root),
                       "anno_path": "val_list.txt", "label_list": "label_list.txt"})
    for i, config in enumerate((imported, voc)):
        run = _train(tmp_path / str(i), config)
        evals = [e for e in read_events(run / "events.jsonl") if e["type"] == "eval"]
        assert len(evals) == 1 and set(evals[0]["per_class"]) == {"blue", "red"}
        assert 0.0 <= evals[0]["metrics"]["AP"] <= 1.0
        trains = [e for e in read_events(run / "events.jsonl") if e["type"] == "train"]
        assert trains[-1]["iter"] == 2


def test_check_explains_a_coco_json_made_on_the_sideways_bitmap(tmp_path: Path) -> None:
    from engine.data.check import check_labeled

    path, _ = _rotated_photo(tmp_path, 6)               # stored 60 x 40, upright 40 x 60
    coco = {"images": [{"id": 1, "file_name": str(path), "width": 60, "height": 40}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "bbox": [8, 4, 22, 12], "area": 264, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "sideways.json").write_text(json.dumps(coco))
    cfg = DatasetConfig(dataset_dir=str(tmp_path), anno_path="sideways.json")
    with pytest.raises(DataError, match="is 40x60 .* says 60x40") as err:
        check_labeled(cfg, "TrainDataset", 1, train=True)
    assert err.value.file == str(path) and "EXIF orientation 6" in err.value.hint
