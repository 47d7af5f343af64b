"""``dettui data split`` and bad semi-supervised data, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data.split import labeled_positions
from tests.conftest import DEMO_CONFIG, REPO, engine_env


def dettui(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=cwd, env=engine_env(),
                          capture_output=True, text=True, timeout=120)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    """A COCO file of 40 images; image i has i % 3 boxes (ids not in file order)."""
    images = [{"id": 1000 - i, "file_name": f"{i:03d}.jpg", "width": 64, "height": 48}
              for i in range(40)]
    anns = [{"id": len(images) * 10 + k + 3 * i, "image_id": 1000 - i, "category_id": 7,
             "bbox": [1, 2, 10, 12], "area": 120, "iscrowd": 0}
            for i in range(40) for k in range(i % 3)]
    data = {"info": {"description": "test"}, "images": images, "annotations": anns,
            "categories": [{"id": 7, "name": "thing"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_split_writes_labeled_and_unlabeled_parts(coco_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "semi" / "p25"
    proc = dettui("data", "split", str(coco_file), "--percent", "25", "--seed", "3",
                  "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    source = json.loads(coco_file.read_text())
    labeled = json.loads((out / "labeled.json").read_text())
    unlabeled = json.loads((out / "unlabeled.json").read_text())
    lab_ids = [im["id"] for im in labeled["images"]]
    unl_ids = [im["id"] for im in unlabeled["images"]]
    assert len(lab_ids) == 10 and len(unl_ids) == 30                    # int(25% of 40)
    assert sorted(lab_ids + unl_ids) == sorted(im["id"] for im in source["images"])
    order = [im["id"] for im in source["images"]]
    assert lab_ids == [i for i in order if i in lab_ids]                 # file order kept
    assert labeled["annotations"] == [a for a in source["annotations"]
                                      if a["image_id"] in set(lab_ids)]
    assert unlabeled["annotations"] == []
    for part in (labeled, unlabeled):
        assert part["categories"] == source["categories"] and part["info"] == source["info"]
    n_boxes = len(labeled["annotations"])
    assert f"labeled:   10 images, {n_boxes} annotations" in proc.stdout
    dropped = len(source["annotations"]) - n_boxes
    assert f"unlabeled: 30 images, no annotations ({dropped} dropped)" in proc.stdout
    assert "40 images" in proc.stdout

    again = tmp_path / "again"
    assert dettui("data", "split", str(coco_file), "--percent", "25", "--seed", "3",
                  "--out", str(again)).returncode == 0
    assert (again / "labeled.json").read_bytes() == (out / "labeled.json").read_bytes()
    other = tmp_path / "other"
    assert dettui("data", "split", str(coco_file), "--percent", "25", "--seed", "4",
                  "--out", str(other)).returncode == 0
    assert (other / "labeled.json").read_bytes() != (out / "labeled.json").read_bytes()


def test_the_draw_is_fixed_by_python_random_alone() -> None:
    """Pinned values: a change of the draw would silently change every user's split."""
    assert labeled_positions(10, 30, seed=1) == [0, 1, 8]
    assert labeled_positions(1000, 1.0, seed=0)[:3] == [261, 308, 407]
    assert len(set(labeled_positions(1000, 50, seed=7))) == 500


@pytest.mark.parametrize(("args", "needles"), [
    (["--percent", "0"], ["--percent", "between 0 and 100", "got 0"]),
    (["--percent", "100"], ["--percent", "between 0 and 100"]),
    (["--percent", "-5"], ["--percent", "between 0 and 100"]),
    (["--percent", "1"], ["less than one image", "--percent", "at least 2.5 percent"]),
    (["--percent", "ten"], ["--percent", "valid number"]),
])
def test_bad_percent_is_refused(coco_file: Path, tmp_path: Path, args: list[str],
                                needles: list[str]) -> None:
    proc = dettui("data", "split", str(coco_file), "--out", str(tmp_path / "o"), *args)
    assert_user_error(proc, *needles)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("content", "needles"), [
    ('{"images": [], "annotations": [], "categories": []}', ["lists no images", "'images'"]),
    ('{"annotations": []}', ["missing required key(s) 'images'"]),
    ('{"images": [{"id": 1}],\n "annotations": [}', [":2:", "not valid JSON"]),
    ('[1, 2]', ["JSON object", "got a list"]),
    (None, ["annotation file not found"]),
])
def test_bad_annotation_file_is_refused(tmp_path: Path, content: str | None,
                                        needles: list[str]) -> None:
    path = tmp_path / "anno.json"
    if content is not None:
        path.write_text(content)
    proc = dettui("data", "split", str(path), "--percent", "10", "--out", str(tmp_path / "o"))
    assert_user_error(proc, str(path), *needles)


def test_run_refuses_semi_trainer_without_unlabeled_data(tmp_path: Path) -> None:
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(tmp_path / "runs"),
                  "--trainer", "DenseTeacher", cwd=tmp_path)
    assert_user_error(proc, "UnsupTrainDataset", "DenseTeacher")
    assert not (tmp_path / "runs").exists()  # refused before anything started


def test_run_refuses_an_empty_unlabeled_folder(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(tmp_path / "runs"),
                  "--trainer", "DenseTeacher",
                  "-o", f"UnsupTrainDataset={{name: ImageFolder, dataset_dir: {tmp_path}, "
                        "image_dir: raw}",
                  "-o", "SemiTrainReader={sup_batch_size: 2}", cwd=tmp_path)
    assert_user_error(proc, "UnsupTrainDataset.image_dir", str(tmp_path / "raw"),
                      "no image files")
