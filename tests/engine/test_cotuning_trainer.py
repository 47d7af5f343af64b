"""The co-tuning trainer end to end on CPU: a real source detector, the relationship learned
before the first step, ``loss_cot`` in training, exact resume, and bad source weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.main import main as engine_main
from engine.protocol.events import read_events
from engine.protocol.rundir import RunDirectory
from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import DEMO_CONFIG, REPO, engine_env, tiny_overrides

COT = REPO / "configs" / "cot" / "cotuning_shapes.yml"
SIZE = ["model.min_size=64", "model.max_size=64",
        "EvalReader.sample_transforms=[{Resize: {target_size: 64}}]",
        "TrainDataset.synthesize.image_size=64", "EvalDataset.synthesize.image_size=64"]


def source_weights(tmp: Path, num_classes: int = 4) -> Path:
    """A (barely trained) Faster R-CNN on the four default shape kinds: the source."""
    argv = ["train", str(DEMO_CONFIG), "--runs-dir", str(tmp / "src-runs"), "--no-eval"]
    for o in [*tiny_overrides(tmp / "src-data", epoch_iter=1), *SIZE,
              "TrainReader.sample_transforms=[{Resize: {target_size: 64}}]",
              "architecture=FasterRCNN", f"num_classes={num_classes}"]:
        argv += ["-o", o]
    assert engine_main(argv) == 0
    (run,) = (tmp / "src-runs").iterdir()
    out = tmp / f"source{num_classes}.pt"
    state = load_checkpoint(run / "checkpoints" / "last.pt")  # as best.pt holds them:
    torch.save({"model": state["model"], "class_names": state["class_names"]}, out)
    return out


def cot_overrides(data: Path, weights: Path, *, epochs: int = 1, epoch_iter: int = 2) -> list:
    return [f"TrainDataset.dataset_dir={data}", f"EvalDataset.dataset_dir={data}",
            "TrainDataset.synthesize.shots=2", "EvalDataset.synthesize.num_images=8",
            *SIZE, "TrainReader.sample_transforms=[{RandomFlip: {prob: 0.5}}, "
            "{Resize: {target_size: 64}}]", f"pretrain_weights={weights}",
            f"epoch={epochs}", f"epoch_iter={epoch_iter}", "snapshot_epoch=1", "log_iter=1",
            "LearningRate.warmup_iters=1", "LearningRate.milestones=[100]"]


def events(run: Path, kind: str) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e["type"] == kind]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return source_weights(tmp_path_factory.mktemp("source"))


def test_cotuning_learns_the_relationship_then_trains_with_loss_cot(tmp_path: Path,
                                                                    source: Path) -> None:
    argv = ["train", str(COT), "--runs-dir", str(tmp_path / "runs")]
    for o in cot_overrides(tmp_path / "data", source):
        argv += ["-o", o]
    assert engine_main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    meta = json.loads((run / "run.json").read_text())
    assert meta["trainer"] == "CoTuning" and meta["status"] == "finished"
    rel = json.loads((run / "cot_relationship.json").read_text())
    assert rel["target_classes"] == ["ring", "frame", "diamond"]
    assert rel["source_classes"] == ["circle", "square", "triangle", "cross"]
    assert rel["source_names_from"] == "checkpoint"
    matrix = torch.tensor(rel["matrix"])
    # Source probabilities with the background column dropped (not renormalised, as
    # PaddleDetection does): each row sums to at most 1.
    assert matrix.shape == (3, 4) and bool(((matrix.sum(1) > 0) & (matrix.sum(1) <= 1)).all())
    assert all(n > 0 for n in rel["examples"].values())
    logs = [e["message"] for e in events(run, "log")]
    assert any(m.startswith("source detector weights") and "loaded" in m for m in logs)
    assert any("co-tuning relationship (target: top source classes)" in m for m in logs)
    trains = events(run, "train")
    assert all("loss_cot" in e["losses"] for e in trains) and trains[-1]["losses"]["loss_cot"] > 0
    # The matrix lives in the model: the checkpoint carries it unchanged by training.
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert torch.allclose(state["model"]["roi_heads.relationship"].float(), matrix, atol=1e-5)
    assert int(state["model"]["roi_heads.relationship_learned"]) == 1
    # best.pt evaluates with the co-tuning config.
    argv = [sys.executable, "-m", "tui.cli", "eval", str(COT), "--weights",
            str(run / "checkpoints" / "best.pt")]
    for o in cot_overrides(tmp_path / "data", source):
        argv += ["-o", o]
    proc = subprocess.run(argv, cwd=REPO, env=engine_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "per-class AP" in proc.stdout and "ring" in proc.stdout


def test_source_weights_with_another_class_count_exit_2(tmp_path: Path) -> None:
    five = source_weights(tmp_path, num_classes=5)
    argv = [sys.executable, "-m", "tui.cli", "run", str(COT), "--headless", "--runs-dir",
            str(tmp_path / "runs")]
    for o in cot_overrides(tmp_path / "data", five):
        argv += ["-o", o]
    proc = subprocess.run(argv, cwd=tmp_path, env=engine_env(), capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "has 5 classes" in out and "cot_classes is 4" in out and "Traceback" not in out


def test_cotuning_without_source_weights_is_refused_before_launch(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "tui.cli", "run", str(COT), "--headless", "--runs-dir",
            str(tmp_path / "runs"), "-o", "pretrain_weights=null"]
    proc = subprocess.run(argv, cwd=tmp_path, env=engine_env(), capture_output=True,
                          text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "pretrain_weights" in out, out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_cotuning_sigkill_then_resume_is_bit_identical(tmp_path: Path, source: Path) -> None:
    def cmd(run: Path, *extra: str) -> list[str]:
        argv = [sys.executable, "-m", "engine", "train", str(COT), "--run-dir", str(run),
                "--no-eval", *extra]
        for o in [*cot_overrides(tmp_path / "data", source, epochs=2, epoch_iter=4),
                  "enable_ce=true", "checkpoint_interval=2"]:
            argv += ["-o", o]
        return argv

    env = {**engine_env(), "OMP_NUM_THREADS": "1"}
    straight = RunDirectory.create(tmp_path / "runs", run_id="straight").path
    subprocess.run(cmd(straight), cwd=REPO, env=env, check=True, capture_output=True,
                   timeout=600)
    killed = RunDirectory.create(tmp_path / "runs", run_id="killed").path
    proc = subprocess.Popen(cmd(killed), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = __import__("time").time() + 300
    while not any(e["iter"] >= 5 for e in events(killed, "train")):
        assert proc.poll() is None and __import__("time").time() < deadline
        __import__("time").sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd(killed, "--resume", "auto"), cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=600)
    # The resumed run did not learn the relationship again.
    starts = [e for e in read_events(killed / "events.jsonl") if e["type"] == "start"]
    relearned = [e for e in events(killed, "log") if e["t"] >= starts[-1]["t"]
                 and "learning the target" in e["message"]]
    assert len(starts) == 2 and not relearned
    a = load_checkpoint(straight / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(killed / "checkpoints" / "last.pt")["model"]
    different = [n for n in a if not torch.equal(a[n], b[n])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
