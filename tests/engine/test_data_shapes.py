"""The synthetic shapes dataset: deterministic, tight boxes, safe to generate concurrently."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.config.schema.base import SHAPE_KINDS
from engine.config.schema.data import DatasetConfig, ShapesSpec
from engine.data.shapes import (
    SHAPE_CLASSES,
    derive_seed,
    ensure_dataset,
    generate_shapes,
    render_image,
    write_shapes_dataset,
)
from engine.protocol.errors import DataError

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


# --------------------------------------------------------------------------- classes and shots

# sha256 of version 1's output, recorded before shape kinds and ``classes`` were added: the
# demo, its benchmark and the determinism of every shapes run depend on the default output.
DEFAULT_JSON_SHA256 = "f96b72e880893c4f255ac88b7a517c7c3918f93af4c5ea21e27de7ebd3570c95"
DEFAULT_PIXELS_SHA256 = "e462244afaa2663f849904e1be3842ff2574ab73e8cd4c6cf1333541aac4b08a"


def _digests(anno: Path, folder: Path) -> tuple[str, str]:
    pixels = hashlib.sha256()
    for name, array in _pixels(folder).items():
        pixels.update(name.encode())
        pixels.update(array.tobytes())
    return hashlib.sha256(anno.read_bytes()).hexdigest(), pixels.hexdigest()


@pytest.mark.parametrize("classes", [None, list(SHAPE_CLASSES)])
def test_default_output_is_byte_identical_to_version_1(tmp_path: Path, classes) -> None:
    anno = generate_shapes(tmp_path, "train", 12, seed=5, image_size=96, classes=classes)
    assert _digests(anno, tmp_path / "train") == (DEFAULT_JSON_SHA256, DEFAULT_PIXELS_SHA256)


def test_classes_choose_the_kinds_and_their_label_order(tmp_path: Path) -> None:
    anno = generate_shapes(tmp_path, "train", 10, seed=5, image_size=96, classes=["ring", "star"])
    data = json.loads(anno.read_text())
    assert [(c["id"], c["name"]) for c in data["categories"]] == [(1, "ring"), (2, "star")]
    assert {a["category_id"] for a in data["annotations"]} == {1, 2}
    assert data["info"]["classes"] == ["ring", "star"]
    # same seed and indices, other kinds: other images
    default = generate_shapes(tmp_path / "d", "train", 10, seed=5, image_size=96)
    assert _digests(anno, tmp_path / "train") != _digests(default, tmp_path / "d" / "train")


@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_every_kind_has_an_exact_box_and_area(kind: str) -> None:
    # As test_boxes_are_the_exact_pixel_extent, for each kind alone (a ring's or a frame's hole
    # shows what is under it: its box is still its outer extent and its area its band).
    checked = 0
    for index in range(12):
        pixels, objects = render_image(3, index, classes=(kind,))
        boxes = [box for _, box, _ in objects]
        for label, (x0, y0, x1, y1), area in objects:
            assert label == 0
            others = [b for b in boxes if b != (x0, y0, x1, y1)]
            if any(b[0] < x1 and x0 < b[2] and b[1] < y1 and y0 < b[3] for b in others):
                continue
            colour = pixels[y0:y1, x0:x1][_inside(kind, x1 - x0, y1 - y0)]
            mask = (pixels == colour).all(axis=-1)
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            assert (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) == (x0, y0, x1, y1), kind
            assert mask.sum() == area
            checked += 1
    assert checked >= 6


def _inside(kind: str, w: int, h: int) -> tuple[int, int]:
    """A pixel (row, col within the box) that the shape always covers: the band of a ring or
    a frame, the middle of the others."""
    return (h // 2, 1) if kind in ("ring", "frame") else (h // 2, w // 2)


def test_extra_kinds_are_drawn_differently_from_their_relatives() -> None:
    # Same seed, same placement stream: a ring is a circle with a hole, a frame a square with
    # one, a diamond is not a square. (The kinds share the random stream up to the drawing.)
    def masks(kind: str) -> list[int]:
        return [area for _, _, area in render_image(9, 0, classes=(kind,))[1]]
    assert masks("ring")[0] < masks("circle")[0]
    assert masks("diamond")[0] < masks("square")[0]
    assert masks("frame")[0] < masks("square")[0]


def test_shots_gives_exactly_k_boxes_per_class(tmp_path: Path) -> None:
    classes = ["ellipse", "ring", "diamond"]
    anno = generate_shapes(tmp_path, "few", 1, seed=2, classes=classes, shots=5)
    data = json.loads(anno.read_text())
    counts = np.bincount([a["category_id"] for a in data["annotations"]], minlength=4)[1:]
    assert counts.tolist() == [5, 5, 5]
    ids = [im["id"] for im in data["images"]]
    assert ids == sorted(ids) and len(ids) == data["info"]["num_images"] < 15
    # the kept images are the generator's own images at those indices
    first = data["images"][0]
    pixels, _ = render_image(2, first["id"] - 1, classes=classes)
    assert np.array_equal(_pixels(tmp_path / "few")[first["file_name"]], pixels)


@pytest.mark.parametrize(("classes", "message"), [
    (["circle", "rnig"], r"unknown shape kind 'rnig'.*\n  hint: did you mean 'ring'\?"),
    (["star", "star"], "repeated: star"),
    ([], "at least one shape kind"),
])
def test_bad_classes_are_clear_errors(tmp_path: Path, classes: list[str], message: str) -> None:
    with pytest.raises(DataError, match=message):
        generate_shapes(tmp_path, "train", 2, seed=0, classes=classes)
    spec = ShapesSpec(num_images=2, classes=classes)
    with pytest.raises(DataError, match="TrainDataset.synthesize.classes"):
        ensure_dataset(_dataset_cfg(tmp_path / "cfg", spec), section="TrainDataset")


def test_ensure_dataset_draws_the_spec_classes_and_shots(tmp_path: Path) -> None:
    spec = ShapesSpec(seed=4, image_size=96, classes=["hexagon", "star"], shots=3)
    ensure_dataset(_dataset_cfg(tmp_path, spec))
    data = json.loads((tmp_path / "annotations" / "train.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["hexagon", "star"]
    assert sorted(a["category_id"] for a in data["annotations"]) == [1, 1, 1, 2, 2, 2]


def test_cli_classes_option(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "tui.cli", "data", "shapes"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([*cli, str(tmp_path / "a"), "--train", "3", "--val", "2",
                           "--classes", "ring, diamond"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for split in ("train", "val"):
        data = json.loads((tmp_path / "a" / "annotations" / f"{split}.json").read_text())
        assert [c["name"] for c in data["categories"]] == ["ring", "diamond"]
    bad = subprocess.run([*cli, str(tmp_path / "b"), "--classes", "ring,hexgon"], cwd=tmp_path,
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "unknown shape kind 'hexgon'" in bad.stderr and "did you mean 'hexagon'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "b").exists()
