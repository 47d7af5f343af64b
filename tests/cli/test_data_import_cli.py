"""``dettui data import voc|yolo`` and ``dettui data check`` through the real CLI: exit
codes, reports, and one clear message naming the file (and line) for broken input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, engine_env
from tests.dataset_files import make_voc, make_yolo, tiny_config, voc_xml, write_image


def dettui(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *map(str, args)], cwd=cwd,
                          env=engine_env(), capture_output=True, text=True, timeout=120)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


@pytest.fixture(scope="module")
def voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_voc(tmp_path_factory.mktemp("voc") / "VOC2007", n=8)


def test_import_voc_split_writes_json_and_report(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "train.json"
    proc = dettui("data", "import", "voc", voc, out, "--split", "train")
    assert proc.returncode == 0, proc.stderr
    coco = json.loads(out.read_text())
    assert len(coco["images"]) == 6
    assert all(Path(im["file_name"]).is_absolute() for im in coco["images"])
    per_class = {c["name"]: sum(a["category_id"] == c["id"] for a in coco["annotations"])
                 for c in coco["categories"]}
    for name, count in per_class.items():
        assert any(line.split() == [name, str(count)] for line in proc.stdout.splitlines()), (
            proc.stdout)
    assert "images   6" in proc.stdout
    assert f"anno_path: \"{out.name}\"" in proc.stdout and "num_classes: 2" in proc.stdout


def test_import_voc_folders_and_usage_errors(voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    proc = dettui("data", "import", "voc", out, "--images", voc / "JPEGImages",
                  "--annotations", voc / "Annotations")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(out.read_text())["images"]) == 8
    assert_user_error(dettui("data", "import", "voc", out, "--images", voc / "JPEGImages"),
                      "--images and --annotations go together")
    assert_user_error(dettui("data", "import", "voc", voc, out, "--images", voc),
                      "give SRC and OUT.json, or OUT.json with --images")
    assert_user_error(dettui("data", "import", "voc", voc, out, "--split", "tset"),
                      "no split 'tset'", "splits here: train, val")
    assert_user_error(dettui("data", "import", "voc", tmp_path, out),
                      "not a Pascal VOC folder: JPEGImages/ is missing")


def test_import_voc_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "a.jpg", (30, 30))
    (tmp_path / "ann").mkdir()
    bad = tmp_path / "ann" / "a.xml"
    bad.write_text("<annotation>\n<object><name>cat</name>\n</annotation>\n")
    proc = dettui("data", "import", "voc", tmp_path / "o.json", "--images", tmp_path / "img",
                  "--annotations", tmp_path / "ann")
    assert_user_error(proc, f"{bad}:3:", "malformed XML")
    assert not (tmp_path / "o.json").exists()


def test_import_yolo_yaml_splits(tmp_path: Path) -> None:
    root = make_yolo(tmp_path / "yolo", n=6)
    for split, n in (("train", 6), ("val", 2)):
        out = tmp_path / f"{split}.json"
        proc = dettui("data", "import", "yolo", root / "data.yaml", out, "--split", split)
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(out.read_text())["images"]) == n
        assert f"images   {n}" in proc.stdout
    assert_user_error(dettui("data", "import", "yolo", root, tmp_path / "t.json", "--split",
                             "test"), "no 'test' split", "splits here: train, val")


def test_import_yolo_bad_label_lines_name_file_and_line(tmp_path: Path) -> None:
    root = make_yolo(tmp_path / "yolo", n=2)
    label = root / "labels" / "train" / "im0.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2\n")
    assert_user_error(dettui("data", "import", "yolo", root, tmp_path / "o.json"),
                      f"{label}:2:", "expected 5 fields")
    label.write_text("7 0.5 0.5 0.2 0.2\n")
    assert_user_error(dettui("data", "import", "yolo", root, tmp_path / "o.json"),
                      f"{label}:1:", "class id 7 is out of range", "ids 0..1")
    assert_user_error(dettui("data", "import", "yolo", tmp_path / "nope", tmp_path / "o.json"),
                      "nope: not found")


def test_import_report_counts_quirks(tmp_path: Path) -> None:
    write_image(tmp_path / "img" / "a.png", (40, 40))
    write_image(tmp_path / "img" / "b.png", (40, 40))
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.xml").write_text(voc_xml("a.png", (40, 40), [
        ("dog", (5, 5, 20, 20), 0), ("dog", (10, 10, 30, 30), 1), ("dog", (30, 30, 60, 60), 0),
        ("dog", (50, 50, 60, 60), 0)]))
    proc = dettui("data", "import", "voc", tmp_path / "o.json", "--images", tmp_path / "img",
                  "--annotations", tmp_path / "ann")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "images   2  (1 without boxes: 1 no annotation file)" in out
    assert "boxes    2 in 1 class (+1 difficult/crowd, ignored)" in out
    assert "clipped  1 box partly outside its image" in out
    assert "dropped  1 box" in out and "entirely outside the image" in out


def _check_config(tmp_path: Path, voc: Path) -> Path:
    proc = dettui("data", "import", "voc", voc, tmp_path / "train.json", "--split", "train")
    assert proc.returncode == 0, proc.stderr
    (voc / "val_list.txt").write_text("JPEGImages/000006.jpg Annotations/000006.xml\n"
                                      "JPEGImages/000007.jpg Annotations/000007.xml\n")
    (voc / "labels.txt").write_text("blue\nred\n")
    return tiny_config(tmp_path / "cfg.yml",
                       {"dataset_dir": str(tmp_path), "anno_path": "train.json"},
                       {"name": "VOCDataSet", "dataset_dir": str(voc),
                        "anno_path": "val_list.txt", "label_list": "labels.txt"})


def test_data_check_prints_statistics_and_names_the_first_broken_file(
        tmp_path: Path, voc: Path) -> None:
    config = _check_config(tmp_path, voc)
    proc = dettui("data", "check", config)
    assert proc.returncode == 0, proc.stderr
    assert "TrainDataset (COCODataSet)" in proc.stdout
    assert "EvalDataset (VOCDataSet)" in proc.stdout and "ok: 8 images checked" in proc.stdout
    # a json naming an image that is gone
    coco = json.loads((tmp_path / "train.json").read_text())
    gone = Path(coco["images"][2]["file_name"])
    moved = gone.with_suffix(".bak")
    gone.rename(moved)
    try:
        assert_user_error(dettui("data", "check", config), f"{gone}: image file not found")
    finally:
        moved.rename(gone)
    # an image whose size is not the annotation's
    coco["images"][1]["width"] = 65
    (tmp_path / "train.json").write_text(json.dumps(coco))
    assert_user_error(dettui("data", "check", config), coco["images"][1]["file_name"],
                      "the annotation file says 65x64")
    coco["images"][1]["width"] = 64
    (tmp_path / "train.json").write_text(json.dumps(coco))
    # an unreadable image in the VOC eval list
    broken = voc / "JPEGImages" / "000007.jpg"
    saved = broken.read_bytes()
    broken.write_bytes(b"not a jpeg at all")
    try:
        assert_user_error(dettui("data", "check", config), f"{broken}: cannot read the image",
                          "val_list.txt:2")
    finally:
        broken.write_bytes(saved)


def test_data_check_unsup_section_and_no_torch(tmp_path: Path, voc: Path) -> None:
    config = _check_config(tmp_path, voc)
    text = config.read_text() + (f"UnsupTrainDataset:\n  name: ImageFolder\n"
                                 f"  dataset_dir: {voc}\n  image_dir: JPEGImages\n")
    config.write_text(text)
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom tui.cli import app\n"
            f"r = CliRunner().invoke(app, ['data', 'check', {str(config)!r}])\n"
            "print(r.output)\nprint('exit', r.exit_code)\n"
            "print('torch', any(m.split('.')[0] == 'torch' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=engine_env(),
                         capture_output=True, text=True, timeout=120)
    assert "UnsupTrainDataset (ImageFolder)" in out.stdout, out.stdout + out.stderr
    assert "exit 0" in out.stdout and "torch False" in out.stdout
