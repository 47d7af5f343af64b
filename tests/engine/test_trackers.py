"""TensorBoard scalars from dettui events (issue 11): the mapping, a resumed run's
repeated steps, and an export of a run folder, written and read back with TensorBoard's
own writer and reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.protocol.events import EventWriter, read_events
from engine.protocol.rundir import RunDirectory
from engine.trackers import TensorBoardSink, TrackerFeed, export_run, history, scalars

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
from tests.tracker_files import tensorboard_scalars  # noqa: E402


def _train(it: int, loss: float, lr: float = 0.01) -> dict:
    return {"v": 1, "t": 1000.0 + it, "type": "train", "epoch": 0, "iter": it,
            "loss": loss, "losses": {"loss_cls": loss * 0.75, "loss_box": loss * 0.25},
            "lr": lr, "ips": 50.0, "batch_time": 0.1, "data_time": 0.01, "memory": None}


def _eval(it: int, ap: float, model: str = "model") -> dict:
    return {"v": 1, "t": 2000.0 + it, "type": "eval", "epoch": 0, "iter": it,
            "model": model, "metrics": {"AP": ap, "AP50": ap + 0.2, "AP75": ap, "APs": None,
                                        "APm": ap, "APl": ap},
            "per_class": {"circle": ap + 0.1, "red square": ap - 0.1}}


def test_every_loss_term_lr_ap_and_per_class_ap_become_tags() -> None:
    step, values = scalars(_train(7, 2.0))
    assert step == 7
    assert values == {"loss/total": 2.0, "loss/loss_cls": 1.5, "loss/loss_box": 0.5,
                      "train/lr": 0.01, "train/ips": 50.0, "train/batch_time": 0.1,
                      "train/data_time": 0.01}  # memory null (no CUDA): no point
    step, values = scalars(_eval(8, 0.5))
    assert step == 8
    assert values == {"eval/AP": 0.5, "eval/AP50": 0.7, "eval/AP75": 0.5, "eval/APm": 0.5,
                      "eval/APl": 0.5, "eval/per_class/circle": 0.6,
                      "eval/per_class/red square": 0.4}
    # a semi-supervised trainer's models each get their own tags
    _, teacher = scalars(_eval(8, 0.3, model="teacher"))
    assert teacher["eval/teacher/AP"] == 0.3
    assert teacher["eval/teacher/per_class/circle"] == pytest.approx(0.4)
    assert scalars({"v": 1, "t": 1.0, "type": "system", "cpu_percent": 5.0}) is None


def _resumed_run() -> list[dict]:
    """An attempt that died after step 5 (its checkpoint at 3), then a resume from 3."""
    first = [{"v": 1, "t": 999.0, "type": "start", "start_iter": 0},
             *[_train(i, 10.0 - i) for i in range(1, 6)]]
    second = [{"v": 1, "t": 1999.0, "type": "start", "start_iter": 3},
              *[_train(i, 100.0 + i) for i in range(4, 7)], _eval(6, 0.42)]
    return first + second


def test_live_tensorboard_drops_the_steps_a_resume_repeats(tmp_path: Path) -> None:
    feed = TrackerFeed([TensorBoardSink(tmp_path / "tb")])
    for event in _resumed_run():
        feed.handle(event)
    feed.close()
    shown = tensorboard_scalars(tmp_path / "tb")
    assert shown["loss/total"] == {1: 9.0, 2: 8.0, 3: 7.0, 4: 104.0, 5: 105.0, 6: 106.0}
    assert shown["eval/AP"] == {6: pytest.approx(0.42)}
    # the export's view of the same events is what TensorBoard shows
    expected: dict[str, dict[int, float]] = {}
    for step, _, values in history(_resumed_run()):
        for tag, value in values.items():
            expected.setdefault(tag, {})[step] = value
    assert shown.keys() == expected.keys()
    for tag in expected:
        assert shown[tag] == pytest.approx(expected[tag], rel=1e-6), tag


def test_export_writes_a_run_folders_curves(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="r1")
    with EventWriter(run.events) as writer:
        for event in _resumed_run():
            writer.write(event.pop("type"), **{k: v for k, v in event.items()
                                               if k not in ("v", "t")})
    result = export_run(run.path, tensorboard=tmp_path / "exported")
    assert result == {"steps": 6, "tags": 14, "tensorboard": str(tmp_path / "exported")}
    shown = tensorboard_scalars(tmp_path / "exported")
    assert shown["loss/total"] == {1: 9.0, 2: 8.0, 3: 7.0, 4: 104.0, 5: 105.0, 6: 106.0}
    assert shown["eval/per_class/red square"] == {6: pytest.approx(0.32)}
    written = history(read_events(run.events))
    assert [step for step, _, _ in written] == [1, 2, 3, 4, 5, 6]
