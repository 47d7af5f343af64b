"""The trainer's stateful side jobs on their own: the shared EMA kernel, the EMA hook's
start, the checkpointer's files and events, the eval hook's best tracking.

No training here (tests/engine/test_trainer.py runs them inside real training); each
test takes milliseconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.evaluation import EvalResult
from engine.protocol.events import read_events
from engine.protocol.rundir import RunDirectory
from engine.recorder import RunRecorder
from engine.trainers.checkpoint import Checkpointer, load_checkpoint
from engine.trainers.ema import ModelEMA, ema_update_
from engine.trainers.hooks import EMAHook, EvalHook, on_period
from engine.trainers.teacher import Teacher


def net(fill: float) -> nn.Module:
    """A Linear + BatchNorm whose every float entry is ``fill`` (counters: ``fill`` too)."""
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for t in model.state_dict().values():
            t.fill_(int(fill) if not t.dtype.is_floating_point else fill)
    return model


def entries(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_one_kernel_moves_the_average_a_tenth_of_the_way_to_the_model() -> None:
    average, model = net(1.0), net(11.0)
    ema_update_(average, model, 0.9)
    for name, value in average.state_dict().items():
        # 0.9 * 1 + 0.1 * 11 = 2 (the inverted direction would give 10); counters copied
        expected = 2.0 if value.dtype.is_floating_point else 11
        assert torch.allclose(value, torch.full_like(value, expected)), name
    # ModelEMA (constant decay) and Teacher go through the same kernel: same numbers
    ema, teacher = ModelEMA(net(1.0), 0.9, "constant"), Teacher(net(1.0), 0.9)
    ema.update(model)
    teacher.update(model)
    for name, value in average.state_dict().items():
        assert torch.equal(ema.module.state_dict()[name], value), name
        assert torch.equal(teacher.module.state_dict()[name], value), name
    assert (ema.step, teacher.updates) == (1, 1)


def test_the_ema_hook_starts_from_the_weights_training_starts_with() -> None:
    model = net(1.0)
    hook = EMAHook(model, 0.9, "constant")
    with torch.no_grad():  # pretrain_weights (or co-tuning's relationship) loaded after
        model[0].weight.fill_(5.0)
    hook.before_train()
    assert torch.equal(hook.module[0].weight, torch.full((2, 2), 5.0))
    assert hook.state_dict()["step"] == 0
    assert not any(p.requires_grad for p in hook.module.parameters())


def test_a_restored_ema_hook_keeps_the_checkpoints_average() -> None:
    saved = EMAHook(net(3.0), 0.9, "constant")
    saved.average.update(net(13.0))  # 4.0 after one step
    state = saved.state_dict()
    model = net(1.0)
    hook = EMAHook(model, 0.9, "constant")
    hook.load_state_dict(state)
    hook.before_train()  # resumed: no restart from the model's weights
    assert torch.allclose(hook.module[0].weight, torch.full((2, 2), 4.0))
    assert hook.state_dict()["step"] == 1


def run_recorder(tmp_path: Path) -> tuple[RunRecorder, RunDirectory]:
    run = RunDirectory.create(tmp_path / "runs", run_id="r")
    return RunRecorder(run), run


def test_the_checkpointer_writes_last_best_and_epoch_files_and_says_so(tmp_path: Path) -> None:
    recorder, run = run_recorder(tmp_path)
    stale = run.checkpoints / ".last.pt.123.tmp"
    stale.write_bytes(b"cut short")
    step = {"iter": 0}

    def training_state() -> dict:
        return {"model": {"w": torch.tensor([float(step["iter"])])}, "iter": step["iter"]}

    ckpt = Checkpointer(run.checkpoints, recorder, training_state, trainer="Trainer",
                        class_names=["a", "b"], config={"epoch": 2})
    assert not stale.exists()  # a write a kill cut short is removed at start
    assert ckpt.best_path == run.checkpoints / "best.pt"
    step["iter"] = 3
    ckpt.save_last("interval", 0, 3)
    assert load_checkpoint(run.checkpoints / "last.pt")["iter"] == 3
    step["iter"] = 6
    ckpt.save_last("last", 0, 6)
    epoch_file = ckpt.link_epoch(0, 6)
    assert epoch_file == run.checkpoints / "epoch_0001.pt"
    assert os.path.samefile(epoch_file, run.checkpoints / "last.pt")
    best = {"metric": "AP", "value": 0.5, "epoch": 1, "model": "ema"}
    ckpt.save_best(nn.Linear(2, 1), best, 0, 6)
    state = torch.load(run.checkpoints / "best.pt", weights_only=True)
    assert (state["which"], state["best"], state["class_names"], state["trainer"]) == (
        "ema", best, ["a", "b"], "Trainer")
    assert set(state["model"]) == {"weight", "bias"}
    step["iter"] = 9
    ckpt.save_last("last", 1, 9)  # last.pt is replaced, epoch_0001.pt keeps iteration 6
    assert load_checkpoint(epoch_file)["iter"] == 6
    events = [(e["kind"], Path(e["path"]).name, e["epoch"], e["iter"])
              for e in read_events(run.events) if e["type"] == "checkpoint"]
    assert events == [("interval", "last.pt", 0, 3), ("last", "last.pt", 0, 6),
                      ("epoch", "epoch_0001.pt", 0, 6), ("best", "best.pt", 0, 6),
                      ("last", "last.pt", 1, 9)]


def test_without_a_folder_the_checkpointer_writes_nothing(tmp_path: Path) -> None:
    called = []
    ckpt = Checkpointer(None, RunRecorder(None), lambda: called.append(1) or {},
                        trainer="Trainer", class_names=[], config={})
    assert ckpt.save_last("last", 0, 1) is None
    assert ckpt.save_best(nn.Linear(1, 1), {"model": "model"}, 0, 1) is None
    assert ckpt.link_epoch(0, 1) is None
    assert ckpt.best_path is None
    assert called == []  # the training state is not even gathered


def result(ap: float) -> EvalResult:
    return EvalResult(metrics={"AP": ap}, per_class={}, stats=[], num_images=1,
                      num_detections=1)


@pytest.mark.parametrize(("done", "period", "last", "runs"), [
    (1, 2, 5, False), (2, 2, 5, True), (5, 2, 5, True), (3, 1, 5, True)])
def test_epoch_jobs_run_every_period_and_after_the_last_epoch(done: int, period: int,
                                                              last: int, runs: bool) -> None:
    assert on_period(done, period, last) is runs


def test_the_eval_hook_keeps_the_first_models_best_ap(tmp_path: Path) -> None:
    recorder, run = run_recorder(tmp_path)
    hook = EvalHook(1, 3, lambda observe: [], recorder, run.checkpoints / "best.pt")
    teacher, student = nn.Linear(1, 1), nn.Linear(1, 1)
    seen = []
    # The student scores higher each time, but the first model (the teacher) decides.
    for epoch, ap in enumerate([0.2, 0.1, 0.3]):
        hook.track_best([(teacher, "teacher", result(ap), 1.0),
                         (student, "student", result(0.9), 1.0)], epoch)
        seen.append((hook.improved, hook.best["value"], hook.best["epoch"]))
        hook.improved = False  # after_epoch starts each epoch with it cleared
    assert seen == [(True, 0.2, 1), (False, 0.2, 1), (True, 0.3, 3)]
    assert hook.best_model is teacher
    assert hook.best == {"metric": "AP", "value": 0.3, "epoch": 3, "model": "teacher",
                         "checkpoint": str(run.checkpoints / "best.pt")}
    assert run.read_meta()["best"] == hook.best
    hook.track_best([], 3)  # a rank other than 0 evaluates nothing: nothing changes
    assert hook.best["value"] == 0.3 and not hook.improved
