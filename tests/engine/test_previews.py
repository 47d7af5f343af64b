"""Prediction previews: written at each evaluation of a real (tiny) training run, from the
evaluation's own outputs, pruned to the latest epochs, never through a link."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.config import load_and_validate
from engine.data.loader import build_eval_dataset
from engine.previews import (
    GT_COLOUR,
    PreviewCollector,
    preview_epochs,
    write_previews,
)
from tests.engine.test_trainer import events, train


def test_previews_are_written_at_each_eval_and_pruned(tmp_path: Path) -> None:
    code, run = train(tmp_path, "preview_images=2", "preview_keep_epochs=2",
                      "preview_score_threshold=0.0", epochs=3, epoch_iter=1)
    assert code == 0
    previews = events(run, "preview")
    assert [e["epoch"] for e in previews] == [0, 1, 2]
    assert previews[-1]["files"] == ["epoch003_img0.png", "epoch003_img1.png"]
    # the model that decides best.pt: the demo evaluates the EMA of its weights
    assert previews[-1]["model"] == "ema" and previews[-1]["dir"] == str(run / "previews")
    assert sorted(p.name for p in (run / "previews").iterdir()) == [
        "epoch002_img0.png", "epoch002_img1.png", "epoch003_img0.png", "epoch003_img1.png"]
    assert list(preview_epochs(run / "previews")) == [2, 3]
    _, cfg = load_and_validate(run / "config.yaml")
    raw, target = build_eval_dataset(cfg).load_raw(0)
    image = np.asarray(Image.open(run / "previews" / "epoch003_img0.png"))
    assert image.shape == (96, 96, 3)  # the original eval image, not the model's input
    x0, y0, x1, _ = (round(v) for v in target["boxes"][0].tolist())
    top = image[y0, x0 + 1:x1]  # the first ground-truth box's top edge is outlined
    assert (top == GT_COLOUR).all(axis=-1).mean() > 0.5
    assert not np.array_equal(image, raw.permute(1, 2, 0).numpy())
    assert "previews (ema, epoch 3)" in (run / "train.log").read_text()


def test_a_linked_previews_folder_is_refused_and_training_goes_on(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "linked"
    run.mkdir(parents=True)
    (run / "checkpoints").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "previews").symlink_to(outside)
    code, run = train(tmp_path, "preview_images=1", run_dir=run, epochs=1, epoch_iter=1)
    assert code == 0
    assert list(outside.iterdir()) == []
    warnings = [e["message"] for e in events(run, "log") if e["level"] == "warning"]
    assert any("previews not written" in m and "not a folder" in m for m in warnings)


def test_collector_scales_boxes_and_threshold_filters(tmp_path: Path) -> None:
    collector = PreviewCollector([7, 8])
    out = {"boxes": np.array([[10.0, 10.0, 20.0, 20.0], [0.0, 0.0, 5.0, 5.0]]),
           "scores": np.array([0.9, 0.1]), "labels": np.array([1, 2])}
    collector([out], [{"image_id": 7, "orig_size": (80, 160), "size": (40, 40)}])
    collector([out], [{"image_id": 9, "orig_size": (40, 40), "size": (40, 40)}])
    boxes, scores, _ = collector.outputs[7]
    assert boxes[0].tolist() == [40.0, 20.0, 80.0, 40.0] and 9 not in collector.outputs
    black = Image.new("RGB", (160, 80))
    paths = write_previews(tmp_path / "previews", 5, collector,
                           [(black, np.array([[100.0, 50.0, 150.0, 70.0]])),
                            (black, np.zeros((0, 4)))], ["a", "b"], 0.5, keep_epochs=1)
    assert [p.name for p in paths] == ["epoch005_img0.png", "epoch005_img1.png"]
    drawn = np.asarray(Image.open(paths[0]))
    assert drawn[20:41, 40].any() and not drawn[0:6, 5].any()  # 0.9 drawn, 0.1 not
    assert (drawn[50, 100:151] == GT_COLOUR).all()
    assert not np.asarray(Image.open(paths[1])).any()  # no outputs, no ground truth
    write_previews(tmp_path / "previews", 6, collector, [(black, np.zeros((0, 4)))] * 2,
                   ["a", "b"], 0.5, keep_epochs=1)
    assert list(preview_epochs(tmp_path / "previews")) == [6]
