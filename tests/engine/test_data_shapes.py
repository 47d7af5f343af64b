"""The synthetic shapes dataset: deterministic, tight boxes, safe to generate concurrently."""

from __future__ import annotations

import json
import logging
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config.schema import DatasetConfig, ShapesSpec
from engine.data.shapes import (
    SHAPE_CLASSES,
    derive_seed,
    ensure_dataset,
    generate_shapes,
    render_image,
    write_shapes_dataset,
)
from engine.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    a = generate_shapes(tmp_path / "a", "train", 8, seed=3)
    b = generate_shapes(tmp_path / "b", "train", 8, seed=3)
    assert a.read_text() == b.read_text()
    pa, pb = _pixels(tmp_path / "a" / "train"), _pixels(tmp_path / "b" / "train")
    assert list(pa) == [f"{i:06d}.png" for i in range(8)]
    assert all(np.array_equal(pa[name], pb[name]) for name in pa)


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    a = generate_shapes(tmp_path / "a", "train", 4, seed=3)
    b = generate_shapes(tmp_path / "b", "train", 4, seed=4)
    assert json.loads(a.read_text())["annotations"] != json.loads(b.read_text())["annotations"]
    pa, pb = _pixels(tmp_path / "a" / "train"), _pixels(tmp_path / "b" / "train")
    assert not any(np.array_equal(pa[name], pb[name]) for name in pa)


def test_image_depends_only_on_seed_and_index() -> None:
    # Growing num_images must not change the first images (each has its own stream).
    first, _ = render_image(5, 0)
    again, _ = render_image(5, 0)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, render_image(5, 1)[0])


def test_coco_json_layout(tmp_path: Path) -> None:
    data = json.loads(generate_shapes(tmp_path, "val", 10, seed=0, image_size=128).read_text())
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4]
    assert tuple(c["name"] for c in data["categories"]) == SHAPE_CLASSES
    assert [im["id"] for im in data["images"]] == list(range(1, 11))
    assert all(im["width"] == im["height"] == 128 for im in data["images"])
    ann_ids = [a["id"] for a in data["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=11)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 4
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 4
        assert x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
        assert 0.1 * 128 * 0.75 <= max(w, h) <= 0.4 * 128 + 1  # roughly 16-64 px at 160
        assert 0 < ann["area"] <= w * h


def test_boxes_are_the_exact_pixel_extent() -> None:
    # Shapes are flat-coloured and far from the background colour, so the pixels equal to
    # a shape's colour are exactly that shape (where no other shape overlaps its box).
    checked = 0
    for index in range(30):
        pixels, objects = render_image(11, index)
        boxes = [box for _, box, _ in objects]
        for label, (x0, y0, x1, y1), area in objects:
            others = [b for b in boxes if b != (x0, y0, x1, y1)]
            if any(b[0] < x1 and x0 < b[2] and b[1] < y1 and y0 < b[3] for b in others):
                continue
            centre = pixels[(y0 + y1) // 2, (x0 + x1) // 2]
            mask = (pixels == centre).all(axis=-1)
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            assert (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) == (x0, y0, x1, y1), (
                f"image {index}: {SHAPE_CLASSES[label]} box is not tight")
            assert mask.sum() == area
            checked += 1
    assert checked >= 20


def test_write_shapes_dataset_uses_different_seeds_per_split(tmp_path: Path) -> None:
    paths = write_shapes_dataset(tmp_path, train=3, val=2, seed=7)
    assert paths == {"train": tmp_path / "annotations" / "train.json",
                     "val": tmp_path / "annotations" / "val.json"}
    assert len(list((tmp_path / "train").glob("*.png"))) == 3
    assert len(list((tmp_path / "val").glob("*.png"))) == 2
    assert json.loads(paths["train"].read_text())["info"]["seed"] == derive_seed(7, "train")
    assert derive_seed(7, "train") != derive_seed(7, "val")
    train, val = _pixels(tmp_path / "train"), _pixels(tmp_path / "val")
    assert not np.array_equal(train["000000.png"], val["000000.png"])


def test_generate_replaces_an_earlier_split(tmp_path: Path) -> None:
    generate_shapes(tmp_path, "train", 5, seed=1)
    generate_shapes(tmp_path, "train", 2, seed=2)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["000000.png", "000001.png"]
    assert json.loads((tmp_path / "annotations" / "train.json").read_text())["info"]["seed"] == 2


def test_generate_refuses_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("mine")
    with pytest.raises(DataError) as err:
        generate_shapes(tmp_path, "train", 2, seed=0)
    assert str(tmp_path / "train") in str(err.value) and "notes.txt" in str(err.value)
    assert (tmp_path / "train" / "notes.txt").exists()


def _dataset_cfg(root: Path, synthesize: ShapesSpec | None) -> DatasetConfig:
    return DatasetConfig(dataset_dir=str(root), image_dir="images",
                         anno_path="annotations/train.json", synthesize=synthesize)


def test_ensure_dataset_generates_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ds = _dataset_cfg(tmp_path / "shapes", ShapesSpec(num_images=4, seed=2, image_size=96))
    with caplog.at_level(logging.INFO, logger="dettui.data"):
        ensure_dataset(ds)
    anno = tmp_path / "shapes" / "annotations" / "train.json"
    assert anno.is_file() and len(list((tmp_path / "shapes" / "images").glob("*.png"))) == 4
    assert "generating the shapes dataset" in caplog.text and "4 images" in caplog.text
    data = json.loads(anno.read_text())
    assert data["info"]["seed"] == 2 and data["images"][0]["width"] == 96
    mtime = anno.stat().st_mtime_ns
    ensure_dataset(ds)  # present: nothing to do
    assert anno.stat().st_mtime_ns == mtime


def test_ensure_dataset_without_synthesize_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        ensure_dataset(_dataset_cfg(tmp_path, None), section="EvalDataset")
    text = str(err.value)
    assert str(tmp_path / "annotations" / "train.json") in text
    assert "EvalDataset.anno_path" in text and "not found" in text and "synthesize" in text


def test_ensure_dataset_never_overwrites_existing_images(tmp_path: Path) -> None:
    # Train and eval configs pointing at the same image folder: the second split must not
    # silently replace the first one's images.
    train = _dataset_cfg(tmp_path, ShapesSpec(num_images=3, seed=0))
    ensure_dataset(train)
    val = _dataset_cfg(tmp_path, ShapesSpec(num_images=2, seed=1))
    val.anno_path = "annotations/val.json"
    with pytest.raises(DataError) as err:
        ensure_dataset(val, section="EvalDataset")
    assert str(tmp_path / "images") in str(err.value)
    assert "EvalDataset.image_dir" in str(err.value) and "own image_dir" in str(err.value)
    assert len(list((tmp_path / "images").glob("*.png"))) == 3


def test_ensure_dataset_rejects_a_bad_spec(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="num_images must be >= 1"):
        ensure_dataset(_dataset_cfg(tmp_path, ShapesSpec(num_images=0)), section="TrainDataset")


def _ensure_in_child(root: str) -> None:
    ensure_dataset(_dataset_cfg(Path(root), ShapesSpec(num_images=12, seed=4)))


def test_two_processes_generating_at_once_agree(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_ensure_in_child, args=(str(tmp_path),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    generate_shapes(tmp_path / "ref", "train", 12, seed=4)
    assert ((tmp_path / "annotations" / "train.json").read_text()
            == (tmp_path / "ref" / "annotations" / "train.json").read_text())
    got, ref = _pixels(tmp_path / "images"), _pixels(tmp_path / "ref" / "train")
    assert list(got) == list(ref)
    assert all(np.array_equal(got[k], ref[k]) for k in ref)
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


def test_torch_free_modules_do_not_import_torch() -> None:
    # The CLI imports these directly and must stay fast to start.
    code = ("import sys, engine.data.shapes, engine.data.cocofile; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
