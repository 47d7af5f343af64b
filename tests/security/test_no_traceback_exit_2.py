"""Issue 21 point 6: no traceback, exit 2 with the file and the reason. Each of these
ended in a traceback: non-UTF-8 image file names and surrogate class names in ``data
import`` (UnicodeEncodeError writing the json); ``names: {0: a, .inf: b}``
(OverflowError); integers over 4,300 digits, ids or sizes >= 2^63 and 100,000-deep nesting
in a COCO json; unhashable ids in ``data split``; a 401-digit number or ``iter`` 1e30 in
events.jsonl (``export``). (``--tensorboard`` targets: test_regular_files_only.py;
``-o ema_start_iters=.inf``: test_config_numbers.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.data.cocofile import index_coco, load_coco_json
from engine.data.split import split_coco, write_split
from engine.data.yolo import import_yolo
from engine.protocol.errors import DataError
from engine.trackers import export_run
from tests.dataset_files import make_yolo, tiny_config
from tests.security.helpers import dettui, out

IMAGES = [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}]
CATS = [{"id": 1, "name": "x"}]


def _no_traceback(proc_text: str) -> None:
    assert "Traceback" not in proc_text, proc_text


def test_a_non_utf8_image_file_name_is_named_not_a_traceback(tmp_path: Path) -> None:
    src = make_yolo(tmp_path / "ds", n=2)
    train = os.fsencode(src / "images" / "train")
    os.rename(os.path.join(train, b"im1.png"), os.path.join(train, b"im\xff.png"))
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        import_yolo(src, "train")
    assert "im\\xff.png" in info.value.render()
    proc = dettui("data", "import", "yolo", str(src), str(tmp_path / "out.json"))
    assert proc.returncode == 2 and "im\\xff.png" in out(proc), out(proc)
    _no_traceback(out(proc))
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(("names", "why"), [
    ('["ok", "\\udcff"]', "not valid UTF-8"),
    ("{0: a, .inf: b}", "class ids"),
    ("{0: a, 1: [b]}", "must be a non-empty string"),
    ("[a, 7]", "must be a non-empty string"),
    ("{0: a, " + "9" * 400 + ": b}", "class ids"),
], ids=["surrogate", "inf-id", "list-name", "int-name", "400-digit-id"])
def test_odd_class_names_are_named_not_a_traceback(tmp_path: Path, names: str,
                                                   why: str) -> None:
    src = make_yolo(tmp_path / "ds", n=2)
    (src / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {names}\n")
    with pytest.raises(DataError, match=why) as info:
        import_yolo(src, "train")
    assert str(src) in info.value.render()


@pytest.mark.parametrize(("doc", "why"), [
    ('{"images": [], "annotations": [], "categories": [], "x": ' + "9" * 4301 + "}",
     "Exceeds the limit"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
], ids=["4301-digit-int", "100000-deep"])
def test_json_that_python_will_not_parse_is_a_data_error(tmp_path: Path, doc: str,
                                                         why: str) -> None:
    path = tmp_path / "a.json"
    path.write_text(doc)
    for reader in (load_coco_json, lambda p: write_split(p, 50.0, 1, tmp_path / "out")):
        with pytest.raises(DataError, match=why) as info:
            reader(path)
        assert info.value.file == str(path)


@pytest.mark.parametrize("change", [
    {"images": [{**IMAGES[0], "id": 2**63}]},
    {"images": [{**IMAGES[0], "width": 2**64}]},
    {"categories": [{"id": 2**70, "name": "x"}]},
    {"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10**400, 4]}]},
])
def test_ids_and_sizes_beyond_64_bits_are_named(tmp_path: Path, change: dict) -> None:
    data = {"images": IMAGES, "annotations": [], "categories": CATS, **change}
    with pytest.raises(DataError) as info:
        index_coco(data, tmp_path / "a.json", keep_empty=True)
    assert info.value.key is not None


def test_data_check_on_such_a_json_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(
        {"images": [{**IMAGES[0], "id": 2**63}], "annotations": [], "categories": CATS}))
    section = {"name": "COCODataSet", "dataset_dir": str(tmp_path), "image_dir": ".",
               "anno_path": "a.json", "allow_empty": True}
    cfg = tiny_config(tmp_path / "cfg.yml", section, section, num_classes=1)
    proc = dettui("data", "check", str(cfg))
    assert proc.returncode == 2 and "a.json" in out(proc) and "images[0]" in out(proc)
    _no_traceback(out(proc))


@pytest.mark.parametrize("bad", [{"id": [1]}, {"id": {"a": 1}}, {"id": 1.5}])
def test_unhashable_or_odd_ids_in_data_split(bad: dict) -> None:
    data = {"images": [{"id": 1}, bad, {"id": 3}], "annotations": []}
    with pytest.raises(DataError, match="image id") as info:
        split_coco(data, 50, 1, file="a.json")
    assert info.value.key == "images[1].id"
    data = {"images": [{"id": 1}, {"id": 2}], "annotations": [{"image_id": [1]}]}
    with pytest.raises(DataError, match="image_id"):
        split_coco(data, 50, 1, file="a.json")


def test_export_skips_numbers_no_curve_can_hold(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"schema": 1, "id": "r1", "status": "finished"}))
    huge = "9" * 401
    (run / "events.jsonl").write_text("\n".join([
        '{"v":1,"t":1.0,"type":"train","iter":1,"loss":0.5}',
        '{"v":1,"t":2.0,"type":"train","iter":2,"loss":' + huge + "}",
        '{"v":1,"t":3.0,"type":"train","iter":1e30,"loss":0.5}',
        '{"v":1,"t":4.0,"type":"train","iter":' + "9" * 30 + ',"loss":0.5}',
        '{"v":1,"t":5.0,"type":"train","iter":3,"loss":0.25}',
        '{"v":1,"t":6.0,"type":"train","iter":4,"loss":0.25,"stats":{"n":' + huge + "}}",
    ]) + "\n")
    result = export_run(run, tensorboard=tmp_path / "tb")
    assert result["steps"] == 2  # iterations 1 and 3; the unusable lines are skipped
    proc = dettui("export", "r1", "--tensorboard", str(tmp_path / "tb2"), "--runs-dir",
                  str(tmp_path / "runs"))
    assert proc.returncode == 0, out(proc)
    assert "exported 2 steps" in out(proc)
