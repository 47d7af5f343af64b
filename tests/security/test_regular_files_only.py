"""Issue 21 points 2 and 3: only regular files are read as data, and only regular files are
written over.

A FIFO named as an image hung ``dettui data check`` (and a training engine); a FIFO label
file or a FIFO in a YOLO image list hung ``data import``; a label file linked to
``/dev/zero`` read until memory ran out. As root, ``data import yolo DS /dev/null``
replaced the device with a json file. Every reader of outside data opens through
``engine.protocol.safefiles`` (regular files only, size capped) and every output path that exists as
something else than expected is refused with exit code 2."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from engine.data.cocobuild import read_name_list, write_coco_json
from engine.data.cocofile import load_coco_json
from engine.data.images import decode_rgb, probe_image
from engine.data.split import write_split
from engine.data.voc import read_voc_xml
from engine.data.yolo import import_yolo
from engine.protocol.errors import ConfigError, DataError
from engine.protocol.safefiles import RefusedFile, check_output_path, open_regular, read_regular
from engine.tools import _check_infer_out
from tests.dataset_files import make_yolo, tiny_config
from tests.security.helpers import dettui, out

pytestmark = pytest.mark.timeout(60)  # a reader that waits on a FIFO fails, not hangs


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


READERS: dict[str, Callable[[Path], object]] = {
    "image probe": probe_image,
    "image decode": decode_rgb,
    "COCO json": load_coco_json,
    "COCO json (split)": lambda p: write_split(p, 50.0, 1, p.parent / "split-out"),
    "VOC xml": read_voc_xml,
    "class list": lambda p: read_name_list(p, key="label_list"),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_every_dataset_reader_refuses_what_is_not_a_regular_file(
        tmp_path: Path, reader: str, kind: str) -> None:
    path = tmp_path / "data.file"
    if kind == "fifo":
        _fifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(DataError) as info:
        READERS[reader](path)
    what = "named pipe" if kind == "fifo" else "character device"
    assert what in info.value.render() and str(path) in info.value.render()


def test_a_fifo_named_as_an_image_fails_data_check_naming_it(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "images" / "a.png")
    fifo = _fifo(tmp_path / "images" / "b.png")
    images = [{"id": i, "file_name": n, "width": 64, "height": 48}
              for i, n in ((1, "a.png"), (2, "b.png"))]
    (tmp_path / "train.json").write_text(json.dumps(
        {"images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    section = {"name": "COCODataSet", "dataset_dir": str(tmp_path), "image_dir": "images",
               "anno_path": "train.json", "allow_empty": True}
    cfg = tiny_config(tmp_path / "cfg.yml", section, section, num_classes=1)
    proc = dettui("data", "check", str(cfg), timeout=60)
    assert proc.returncode == 2, out(proc)
    assert "named pipe" in out(proc) and str(fifo) in out(proc)
    assert "Traceback" not in out(proc)


@pytest.mark.parametrize("where", ["label file", "image list", "label -> /dev/zero"])
def test_yolo_import_refuses_fifos_and_devices_naming_them(tmp_path: Path, where: str) -> None:
    src = make_yolo(tmp_path / "ds", n=2)
    if where == "label file":
        bad = _fifo(src / "labels" / "train" / "im1.txt")
        what = "named pipe"
    elif where == "label -> /dev/zero":
        bad = src / "labels" / "train" / "im1.txt"
        bad.unlink()
        bad.symlink_to("/dev/zero")
        what = "character device"
    else:
        bad = _fifo(src / "images" / "extra" / "x.png")
        (src / "train.txt").write_text(f"images/train/im0.png\n{bad}\n")
        (src / "data.yaml").write_text("path: .\ntrain: train.txt\nnames: [red, blue]\n")
        what = "named pipe"
    with pytest.raises(DataError) as info:
        import_yolo(src, "train")
    assert what in info.value.render() and str(bad) in info.value.render()
    proc = dettui("data", "import", "yolo", str(src), str(tmp_path / "out.json"))
    assert proc.returncode == 2 and str(bad) in out(proc), out(proc)


def _socket(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    return s


@pytest.mark.parametrize("kind", ["fifo", "socket", "dangling link"])
def test_data_import_never_writes_over_what_is_not_a_regular_file(
        tmp_path: Path, kind: str) -> None:
    """As root, ``data import yolo DS /dev/null`` replaced the device; here a FIFO and a
    socket stand in for it (a test must not risk /dev/null)."""
    src = make_yolo(tmp_path / "ds", n=2)
    target = tmp_path / "out.json"
    sock = None
    if kind == "fifo":
        _fifo(target)
    elif kind == "socket":
        sock = _socket(target)
    else:
        target.symlink_to(tmp_path / "missing" / "x.json")
    try:
        before = os.lstat(target).st_mode
        proc = dettui("data", "import", "yolo", str(src), str(target))
        assert proc.returncode == 2, out(proc)
        assert str(target) in out(proc) and "refusing" in out(proc)
        assert os.lstat(target).st_mode == before  # still what it was
        assert not (tmp_path / "missing").exists()
    finally:
        if sock is not None:
            sock.close()


def _device(path: Path) -> Path:
    """A private character device (a copy of /dev/null's node, 1:3) in the test's folder:
    code with the bug replaces this one, never the machine's /dev/null (it did once, from a
    run of this test against the unfixed code). Needs root, as the bug did."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root (and so does replacing one)")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def test_write_coco_json_and_split_refuse_devices_and_fifos(tmp_path: Path) -> None:
    device = _device(tmp_path / "null")
    with pytest.raises(DataError, match="character device"):
        write_coco_json(device, {"images": []})
    assert stat.S_ISCHR(os.stat(device).st_mode)
    coco = tmp_path / "in.json"
    coco.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.png"}
                                           for i in (1, 2)],
                                "annotations": [], "categories": []}))
    outdir = tmp_path / "split"
    _fifo(outdir / "labeled.json")
    with pytest.raises(DataError, match="named pipe") as info:
        write_split(coco, 50, 1, outdir)
    assert info.value.key == "--out"
    assert stat.S_ISFIFO(os.stat(outdir / "labeled.json").st_mode)
    proc = dettui("data", "split", str(coco), "--percent", "50", "--out", str(device))
    assert proc.returncode == 2 and str(device) in out(proc), out(proc)
    assert stat.S_ISCHR(os.stat(device).st_mode)
    proc = dettui("data", "import", "yolo", str(make_yolo(tmp_path / "ds", n=2)), str(device))
    assert proc.returncode == 2 and "character device" in out(proc), out(proc)
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_infer_out_must_be_a_folder_and_its_drawings_regular_files(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    a_file = tmp_path / "out.txt"
    a_file.write_text("x")
    with pytest.raises(DataError, match="a regular file, not a folder"):
        _check_infer_out(a_file, [image])
    _fifo(tmp_path / "out" / "a.png")
    with pytest.raises(DataError, match="named pipe"):
        _check_infer_out(tmp_path / "out", [image])
    _check_infer_out(tmp_path / "new", [image])  # nothing there yet: fine


@pytest.mark.parametrize("kind", ["file", "dangling link", "fifo", "unwritable"])
def test_export_tensorboard_dir_that_cannot_be_one_is_exit_2(tmp_path: Path,
                                                             kind: str) -> None:
    from engine.trackers import prepare_logdir

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"schema": 1, "id": "r1", "status": "finished"}))
    (run / "events.jsonl").write_text(json.dumps(
        {"v": 1, "t": 1.0, "type": "train", "iter": 1, "loss": 1.0}) + "\n")
    logdir = tmp_path / "tb"
    if kind == "file":
        logdir.write_text("x")
    elif kind == "dangling link":
        logdir.symlink_to(tmp_path / "nowhere")
    elif kind == "fifo":
        _fifo(logdir)
    else:
        logdir.mkdir()
        logdir.chmod(0o500)
        if os.geteuid() == 0:  # root writes anywhere: the check must then pass
            prepare_logdir(logdir)
            return
    with pytest.raises(ConfigError):
        prepare_logdir(logdir)
    proc = dettui("export", "r1", "--tensorboard", str(logdir), "--runs-dir",
                  str(tmp_path / "runs"))
    assert proc.returncode == 2, out(proc)
    assert str(logdir) in out(proc) and "Traceback" not in out(proc)


def test_the_helpers_refuse_and_cap(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(RefusedFile, match="too large"):
        read_regular(big, 1024)
    with pytest.raises(RefusedFile, match="too large"):
        open_regular(big, 1024)
    with open_regular(big, 4096) as f:
        assert f.read() == b"x" * 2048
    check_output_path(big)
    check_output_path(tmp_path, folder=True)
    with pytest.raises(RefusedFile, match="not a folder"):
        check_output_path(big, folder=True)
    with pytest.raises(RefusedFile, match="directory"):
        check_output_path(tmp_path)
