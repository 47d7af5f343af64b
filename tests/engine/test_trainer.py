"""The engine end to end on CPU: real training, real COCO eval, real checkpoints.

Tiny model, 64-96 px shapes, a handful of iterations: each run takes a few seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from engine.main import main as engine_main
from engine.protocol.events import read_events
from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import DEMO_CONFIG, tiny_overrides

SMALL = ["model.min_size=96", "model.max_size=96",
         "TrainReader.sample_transforms=[{Resize: {target_size: 96}}]",
         "EvalReader.sample_transforms=[{Resize: {target_size: 96}}]",
         "TrainDataset.synthesize.image_size=96", "EvalDataset.synthesize.image_size=96"]


def train(tmp_path: Path, *extra: str, run_dir: Path | None = None, resume: str | None = None,
          epochs: int = 1, epoch_iter: int = 2, no_eval: bool = False, data: Path | None = None,
          config: Path = DEMO_CONFIG) -> tuple[int, Path]:
    data = data or tmp_path / "data"
    argv = ["train", str(config), "--runs-dir", str(tmp_path / "runs")]
    if run_dir is not None:
        argv += ["--run-dir", str(run_dir)]
    if resume:
        argv += ["--resume", resume]
    if no_eval:
        argv.append("--no-eval")
    for o in [*tiny_overrides(data, epochs=epochs, epoch_iter=epoch_iter), *SMALL, *extra]:
        argv += ["-o", o]
    before = set((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else set()
    code = engine_main(argv)
    if run_dir is None:
        (run_dir,) = set((tmp_path / "runs").iterdir()) - before
    return code, run_dir


def events(run: Path, kind: str | None = None) -> list[dict]:
    evs = read_events(run / "events.jsonl")
    return [e for e in evs if kind is None or e["type"] == kind]


def test_run_directory_contract(tmp_path: Path) -> None:
    code, run = train(tmp_path, epochs=2, epoch_iter=2)
    assert code == 0
    meta = json.loads((run / "run.json").read_text())
    for key in ("schema", "id", "status", "trainer", "best", "pid", "host", "created",
                "started", "ended", "exit_code", "device", "world_size", "command", "attempt"):
        assert key in meta, key
    assert meta["status"] == "finished" and meta["trainer"] == "Trainer"
    assert meta["best"]["metric"] == "AP" and 0.0 <= meta["best"]["value"] <= 1.0
    assert Path(meta["best"]["checkpoint"]).exists()
    assert (run / "config.yaml").exists() and (run / "train.log").stat().st_size > 0
    kinds = [e["type"] for e in events(run)]
    assert kinds[0] == "status" and "start" in kinds and kinds[-1] == "status"
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in events(run))
    train_ev = events(run, "train")[-1]
    assert set(train_ev["losses"]) == {"classification", "bbox_regression", "bbox_ctrness"}
    assert train_ev["iter"] == 4 and train_ev["max_iters"] == 4
    assert math.isfinite(train_ev["loss"]) and train_ev["lr"] > 0
    evals = events(run, "eval")
    assert [e["epoch"] for e in evals] == [0, 1]
    assert set(evals[0]["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert set(evals[0]["per_class"]) == {"circle", "square", "triangle", "cross"}
    # each evaluation is announced as it begins (front-ends show "evaluating")
    all_events = events(run)
    starts = [i for i, e in enumerate(all_events) if e["type"] == "eval_start"]
    ends = [i for i, e in enumerate(all_events) if e["type"] == "eval"]
    assert len(starts) == 2 and all(s < e for s, e in zip(starts, ends)), kinds
    assert [all_events[i]["models"] for i in starts] == [[e["model"]] for e in evals]
    assert all(all_events[i]["images"] > 0 for i in starts)
    for ev in events(run, "checkpoint"):
        assert Path(ev["path"]).exists() and ev["kind"] in ("last", "best", "epoch", "interval")
    assert events(run, "system"), "no system sample"
    sysev = events(run, "system")[0]
    assert sysev["cpu_percent"] >= 0 and sysev["proc_rss_mb"] > 0
    assert isinstance(sysev["gpus"], list)


def test_checkpoint_is_a_plain_dict_and_resume_continues(tmp_path: Path) -> None:
    code, run = train(tmp_path, "save_epoch_checkpoints=true", epochs=1, epoch_iter=2)
    assert code == 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    for key in ("model", "optimizer", "scheduler", "scaler", "ema", "epoch", "iter", "best",
                "config", "rng", "sampler"):
        assert key in state, key
    assert state["epoch"] == 1 and state["iter"] == 2 and state["epoch_iter"] == 0
    assert (run / "checkpoints" / "epoch_0001.pt").exists()
    # Resume in place with 2 epochs: must start at epoch 1, step 3, and keep the best.
    code, _ = train(tmp_path, "save_epoch_checkpoints=true", run_dir=run, resume="auto",
                    epochs=2, epoch_iter=2)
    assert code == 2  # epoch changed: refused without --force
    assert "epoch: 1 -> 2" in events(run, "error")[-1]["message"]
    argv_force = ["train", str(DEMO_CONFIG), "--run-dir", str(run), "--resume", "auto",
                  "--force"]
    for o in [*tiny_overrides(tmp_path / "data", epochs=2, epoch_iter=2), *SMALL,
              "save_epoch_checkpoints=true"]:
        argv_force += ["-o", o]
    assert engine_main(argv_force) == 0
    start = events(run, "start")[-1]
    assert start["start_epoch"] == 1 and start["start_iter"] == 2
    assert [e["iter"] for e in events(run, "train") if e["t"] >= start["t"]][0] == 3
    final = load_checkpoint(run / "checkpoints" / "last.pt")
    assert final["iter"] == 4 and final["epoch"] == 2


def test_ema_is_evaluated_and_saved(tmp_path: Path) -> None:
    code, run = train(tmp_path, "use_ema=true", epoch_iter=3)
    assert code == 0
    assert events(run, "eval")[-1]["model"] == "ema"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["ema"]["step"] == 3


def test_pretrained_weights_partial_load_reports_skips(tmp_path: Path) -> None:
    code, run = train(tmp_path, epoch_iter=1, no_eval=True)
    assert code == 0
    weights = tmp_path / "w.pt"
    torch.save(load_checkpoint(run / "checkpoints" / "last.pt")["model"], weights)
    # Same architecture, one more class: the classification head no longer fits.
    code, run2 = train(tmp_path, "num_classes=5", f"pretrain_weights={weights}",
                       epoch_iter=1, no_eval=True)
    assert code == 0
    logs = [e["message"] for e in events(run2, "log")]
    assert any("pretrained weights" in m and "skipped" in m for m in logs), logs


def test_nonfinite_loss_stops_before_the_step_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    # An absurd learning rate without clipping makes the loss overflow within a few steps.
    code, run = train(tmp_path, "OptimizerBuilder.type=SGD", "LearningRate.base_lr=1e12",
                      "LearningRate.warmup_iters=0", "OptimizerBuilder.clip_grad_norm=0",
                      "checkpoint_interval=1", epoch_iter=30, no_eval=True)
    assert code == 1
    err = events(run, "error")[-1]
    assert err["error_type"] == "NonFiniteLoss" and "non-finite loss at iteration" in err["message"]
    assert err["iter"] >= 2 and set(err["losses"]) >= {"classification", "loss"}
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iter"] == err["iter"] - 1  # the last good step, untouched by the bad one
    assert all(torch.isfinite(t).all() for t in state["model"].values()
               if t.dtype.is_floating_point)


def test_enable_ce_gives_identical_runs(tmp_path: Path) -> None:
    losses = []
    for n in range(2):
        code, run = train(tmp_path / str(n), "enable_ce=true", epoch_iter=3, no_eval=True,
                          data=tmp_path / "data")
        assert code == 0
        losses.append([e["loss"] for e in events(run, "train")])
    assert losses[0] == losses[1]


@pytest.mark.parametrize("arch", ["RetinaNet", "FasterRCNN"])
def test_other_architectures_train_and_evaluate(tmp_path: Path, arch: str) -> None:
    code, run = train(tmp_path, f"architecture={arch}", epoch_iter=1)
    assert code == 0
    assert events(run, "eval")[-1]["metrics"]["AP"] >= 0.0


def test_trains_and_evaluates_on_real_coco128(tmp_path: Path, coco128: Path) -> None:
    cfg = Path(__file__).resolve().parents[2] / "configs" / "coco128" / "fcos_r18_coco128.yml"
    argv = ["train", str(cfg), "--runs-dir", str(tmp_path / "runs")]
    for o in [f"TrainDataset.dataset_dir={coco128}", f"EvalDataset.dataset_dir={coco128}",
              "epoch=1", "epoch_iter=2", "worker_num=0", "TrainReader.batch_size=2",
              "EvalReader.batch_size=8", "model.min_size=128", "model.max_size=128",
              "TrainReader.sample_transforms=[{Resize: {target_size: 128}}]",
              "EvalReader.sample_transforms=[{Resize: {target_size: 128}}]",
              "backbone.name=tiny", "log_iter=1"]:
        argv += ["-o", o]
    assert engine_main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    ev = events(run, "eval")[-1]
    assert len(ev["per_class"]) >= 71  # categories present in coco128
    start = events(run, "start")[-1]
    assert start["train_images"] >= 120 and start["eval_images"] == 128


def test_best_pt_holds_the_evaluated_weights_not_a_training_state(tmp_path: Path) -> None:
    code, run = train(tmp_path, "use_ema=true", epoch_iter=2)
    assert code == 0
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["which"] == "ema" and "iter" not in best and "optimizer" not in best
    ema = load_checkpoint(run / "checkpoints" / "last.pt")["ema"]["model"]
    assert best["model"].keys() == ema.keys()
    assert all(torch.equal(best["model"][k], ema[k]) for k in ema)
    meta = json.loads((run / "run.json").read_text())
    assert meta["best"]["model"] == "ema"


def test_resume_refuses_a_checkpoint_of_another_trainer_even_with_force(tmp_path: Path) -> None:
    code, run = train(tmp_path, epoch_iter=1, no_eval=True)
    assert code == 0
    last = run / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["trainer"] = "DenseTeacher"
    torch.save(state, last)
    argv = ["train", str(DEMO_CONFIG), "--run-dir", str(run), "--resume", "auto", "--force"]
    for o in [*tiny_overrides(tmp_path / "data", epochs=1, epoch_iter=1), *SMALL]:
        argv += ["-o", o]
    assert engine_main(argv) == 2
    msg = events(run, "error")[-1]["message"]
    assert "written by the DenseTeacher trainer" in msg and "Trainer" in msg
