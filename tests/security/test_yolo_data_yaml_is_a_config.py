"""Issue 21 point 4: a YOLO ``data.yaml`` is a config from others. It is read through the
config loader's limits (an alias bomb in ``names:`` took 72 s and 3.8 GB and printed a
226 MB error), class names must be strings, the duplicate check is linear (60,000 names took
272 s), and a ``path:`` / ``train:`` that leads outside the data.yaml's folder is reported
in the import's summary (it walked all of ``/usr`` silently)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.data.yolo import import_yolo
from engine.protocol.errors import DataError
from tests.dataset_files import make_yolo
from tests.security.helpers import dettui, out

pytestmark = pytest.mark.timeout(60)


def _alias_bomb(levels: int = 20) -> str:
    lines = ["a0: &a0 [x, y]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nnames: *a{levels}\n"


def test_an_alias_bomb_in_names_is_refused_before_it_expands(tmp_path: Path) -> None:
    src = make_yolo(tmp_path / "ds", n=2)
    (src / "data.yaml").write_text("path: .\ntrain: images/train\n" + _alias_bomb())
    started = time.monotonic()
    proc = dettui("data", "import", "yolo", str(src), str(tmp_path / "out.json"))
    assert proc.returncode == 2, out(proc)
    assert "aliases" in out(proc) and str(src / "data.yaml") in out(proc)
    assert len(proc.stderr) < 2000  # one message, not the expanded names
    assert time.monotonic() - started < 30


def test_a_data_yaml_over_the_config_size_limit_or_a_fifo_is_refused(tmp_path: Path) -> None:
    src = make_yolo(tmp_path / "ds", n=2)
    (src / "data.yaml").write_text("names: [a, b]\n#" + "x" * (2 << 20) + "\n")
    with pytest.raises(DataError, match="too large"):
        import_yolo(src, "train")
    (src / "data.yaml").unlink()
    os.mkfifo(src / "data.yaml")
    with pytest.raises(DataError, match="named pipe"):
        import_yolo(src / "data.yaml", "train")


def test_60000_class_names_are_checked_for_repeats_in_linear_time(tmp_path: Path) -> None:
    src = make_yolo(tmp_path / "ds", n=2)
    names = [f"c{i}" for i in range(60_000)] + ["c17"]
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nnames: ["
                                   + ", ".join(names) + "]\n")
    started = time.monotonic()
    with pytest.raises(DataError, match="class names repeat: 'c17'"):
        import_yolo(src, "train")
    assert time.monotonic() - started < 20  # was 272 s (quadratic)


def test_a_train_folder_outside_the_data_yaml_folder_is_reported(tmp_path: Path) -> None:
    outside = make_yolo(tmp_path / "elsewhere", n=2)
    src = tmp_path / "ds"
    src.mkdir()
    (src / "data.yaml").write_text(f"train: {outside / 'images' / 'train'}\n"
                                   "names: [red, blue]\n")
    coco, summary = import_yolo(src, "train")
    assert len(coco["images"]) == 2
    notes = "\n".join(summary.lines())
    assert f"train: {outside / 'images' / 'train'} is outside the data.yaml's folder" in notes
    (src / "data.yaml").write_text(f"path: {outside}\ntrain: images/train\n"
                                   "names: [red, blue]\n")
    _, summary = import_yolo(src, "train")
    assert f"path: {outside} is outside" in "\n".join(summary.lines())
    inside = make_yolo(tmp_path / "inside", n=2)
    _, summary = import_yolo(inside, "train")
    assert "is outside the data.yaml" not in "\n".join(summary.lines())
