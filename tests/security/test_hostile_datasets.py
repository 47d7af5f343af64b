"""Point 7: a dataset is input. An image that cannot be decoded (here a PNG whose zTXt
chunk inflates to 8 MiB) is bad input naming the file, exit code 2, also from DataLoader
worker processes; a relative ``file_name`` that climbs out of the image folder is refused
naming the entry, unless the config allows it; absolute paths stay allowed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from engine.config.schema import DatasetConfig, field_docs
from engine.data.coco import CocoDetection
from engine.protocol.errors import DataError
from tests.conftest import DEMO_CONFIG, REPO, engine_env
from tests.security.helpers import dettui, out


def text_bomb_png(path: Path, size: tuple[int, int] = (64, 64)) -> Path:
    """A valid-looking 8 KB PNG whose compressed text chunk inflates to 8 MiB."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "a" * (8 << 20), zip=True)
    Image.new("RGB", size, (0, 128, 0)).save(path, pnginfo=info)
    assert path.stat().st_size < 64 << 10
    return path


def _dataset(root: Path, names: list[str], **cfg: object) -> DatasetConfig:
    """Images ``img<i>.png`` under root/images and an annotation file using ``names``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i, name in enumerate(names, start=1):
        Image.new("RGB", (64, 48), (200, 0, 0)).save(root / "images" / f"img{i}.png")
        images.append({"id": i, "file_name": name, "width": 64, "height": 48})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 20]})
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "x"}]}))
    return DatasetConfig(dataset_dir=str(root), image_dir="images",
                         anno_path="annotations.json", **cfg)  # type: ignore[arg-type]


def test_an_image_that_fails_to_decode_is_bad_input_naming_it(tmp_path: Path) -> None:
    ds_cfg = _dataset(tmp_path, ["img1.png", "img2.png"])
    bomb = text_bomb_png(tmp_path / "images" / "img2.png", (64, 48))
    ds = CocoDetection(ds_cfg, 1, transforms=None, train=True)
    assert ds[0][0].shape == (3, 48, 64)
    with pytest.raises(DataError) as info:
        ds[1]
    assert info.value.file == str(bomb)
    assert "Decompressed data too large" in info.value.message


@pytest.mark.slow
def test_a_run_with_such_an_image_ends_with_exit_2_naming_it(tmp_path: Path) -> None:
    """Through a DataLoader worker process, as in a real run: the one clear message."""
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "engine", "shapes", str(data), "--train", "4",
                    "--val", "2", "--seed", "1", "--image-size", "64"], cwd=REPO,
                   env=engine_env(), check=True, capture_output=True)
    bomb = text_bomb_png(data / "train" / "000002.png")
    opts = []
    for section, split in (("TrainDataset", "train"), ("EvalDataset", "val")):
        opts += ["-o", f"{section}.dataset_dir={data}", "-o", f"{section}.image_dir={split}",
                 "-o", f"{section}.anno_path=annotations/{split}.json",
                 "-o", f"{section}.synthesize=null"]
    opts += ["-o", "epoch=1", "-o", "epoch_iter=1", "-o", "worker_num=1",
             "-o", "TrainReader.batch_size=4", "-o", "TrainReader.shuffle=false",
             "-o", "model.min_size=64", "-o", "model.max_size=64"]
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--no-eval", "--runs-dir",
                  str(tmp_path / "runs"), *opts, timeout=240)
    text = out(proc)
    assert proc.returncode == 2, text
    assert f"error (DataError): {bomb}: cannot read the image" in text
    assert "Caught DataError in DataLoader worker" not in text and "Traceback" not in text


def test_a_file_name_climbing_out_of_the_image_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (64, 48)).save(secret)
    root = tmp_path / "ds"
    ds_cfg = _dataset(root, ["img1.png", "../../elsewhere/secret.png"])
    with pytest.raises(DataError) as info:
        CocoDetection(ds_cfg, 1, transforms=None, train=True)
    assert info.value.key == "images[1].file_name"
    assert info.value.file == str(root / "annotations.json")
    assert "climbs out of the image folder" in info.value.message
    assert "allow_outside_image_dir" in (info.value.hint or "")


def test_the_config_may_allow_it_and_absolute_paths_stay_allowed(tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (64, 48)).save(secret)
    root = tmp_path / "ds"
    allowed = CocoDetection(_dataset(root, ["img1.png", "../../elsewhere/secret.png"],
                                     allow_outside_image_dir=True), 1, train=True)
    assert allowed[1][0].shape == (3, 48, 64)
    absolute = CocoDetection(_dataset(tmp_path / "ds2", ["img1.png", str(secret)]), 1,
                             train=True)
    assert absolute[1][0].shape == (3, 48, 64)
    inside = CocoDetection(_dataset(tmp_path / "ds3", ["sub/../img1.png", "./img2.png"]), 1,
                           train=True)
    assert len(inside) == 2
    doc = field_docs()["TrainDataset.allow_outside_image_dir"]
    assert "absolute" in doc and "'..'" in doc
