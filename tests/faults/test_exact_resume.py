"""Runs that never lose work: SIGKILL mid-epoch, resume, and get bit-identical weights.

Real engine subprocesses, real SIGKILL, real checkpoints (issue 4).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.protocol.events import read_events
from engine.protocol.rundir import RunDirectory
from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import DEMO_CONFIG, REPO, semi_overrides, tiny_overrides
from tests.engine.test_rtdetr import TINY as TINY_RTDETR
from tests.faults.procs import proc_env  # OMP_NUM_THREADS=1: steady on a busy CPU

SMALL = ["model.min_size=64", "model.max_size=64",
         "TrainReader.sample_transforms=[{RandomFlip: {prob: 0.5}}, {ColorJitter: {brightness: 0.3, prob: 0.5}}, {Resize: {target_size: 64}}]",
         "EvalReader.sample_transforms=[{Resize: {target_size: 64}}]",
         "TrainDataset.synthesize.image_size=64", "EvalDataset.synthesize.image_size=64",
         "enable_ce=true", "checkpoint_interval=2"]
EPOCHS, EPOCH_ITER = 2, 6


def engine_cmd(run: Path, data: Path, *extra: str, workers: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", "engine", "train", str(DEMO_CONFIG), "--run-dir", str(run),
           "--no-eval", *extra]
    for o in [*tiny_overrides(data, epochs=EPOCHS, epoch_iter=EPOCH_ITER, train_images=24),
              *SMALL, f"worker_num={workers}"]:
        cmd += ["-o", o]
    return cmd


def new_run(root: Path, name: str) -> Path:
    return RunDirectory.create(root, run_id=name).path


def wait_for_iter(run: Path, proc: subprocess.Popen, k: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(e["type"] == "train" and e["iter"] >= k
               for e in read_events(run / "events.jsonl")):
            return
        assert proc.poll() is None, "engine ended before the kill point"
        time.sleep(0.02)
    raise AssertionError(f"iteration {k} not reached in {timeout}s")


def final_model(run: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["iter"] == EPOCHS * EPOCH_ITER
    return state["model"]


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path, workers: int) -> None:
    data = tmp_path / "data"
    straight = new_run(tmp_path / "runs", "straight")
    subprocess.run(engine_cmd(straight, data, workers=workers), cwd=REPO, env=proc_env(),
                   check=True, capture_output=True, timeout=300)

    killed = new_run(tmp_path / "runs", "killed")
    k = random.Random(workers).choice([3, 4, 5, 9, 10, 11])  # mid-epoch, after a checkpoint
    proc = subprocess.Popen(engine_cmd(killed, data, workers=workers), cwd=REPO,
                            env=proc_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_iter(killed, proc, k)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["iter"] < EPOCHS * EPOCH_ITER
    subprocess.run(engine_cmd(killed, data, "--resume", "auto", workers=workers), cwd=REPO,
                   env=proc_env(), check=True, capture_output=True, timeout=300)

    a, b = final_model(straight), final_model(killed)
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"killed at iteration {k}: {len(different)} tensors differ"


DENSE = REPO / "configs" / "semi_det" / "denseteacher" / "denseteacher_fcos_tiny_shapes.yml"
ARSL = REPO / "configs" / "semi_det" / "arsl" / "arsl_fcos_tiny_shapes.yml"
SEMI_RTDETR = REPO / "configs" / "semi_det" / "semi_rtdetr" / "semi_rtdetr_tiny_shapes.yml"
# Each method's own schedule keys (ARSL's burn-up step starts both the teacher and the
# pseudo loss; Semi_RTDETR's ema_start_iters too). Semi_RTDETR: the tiny RT-DETR of
# tests/engine/test_rtdetr.py, and threshold 0 so its random teacher's queries all become
# pseudo-boxes (the scored loss and denoising on them really run).
METHOD_OVERRIDES = {
    ARSL: ["SEMISUPNET.BURN_UP_STEP=2", "SEMISUPNET.PSEUDO_WARM_UP_STEPS=2"],
    SEMI_RTDETR: [*(f"rtdetr.{k}={json.dumps(v)}" for k, v in TINY_RTDETR.items()),
                  "ema_start_iters=2", "DETR_SSOD.train_cfg.ema_decay=0.9",
                  "DETR_SSOD.train_cfg.pseudo_label_initial_score_thr=0.0"],
}


def semi_cmd(config: Path, run: Path, data: Path, *extra: str, workers: int = 0) -> list[str]:
    cmd = [sys.executable, "-m", "engine", "train", str(config), "--run-dir", str(run),
           "--no-eval", *extra]
    for o in [*semi_overrides(data, epochs=EPOCHS, epoch_iter=EPOCH_ITER, semi_start=2,
                              ema_start=1),
              "enable_ce=true", "checkpoint_interval=2", f"worker_num={workers}",
              *METHOD_OVERRIDES.get(config, [])]:
        cmd += ["-o", o]
    return cmd


@pytest.mark.parametrize("config,workers", [(DENSE, 0), (DENSE, 2), (ARSL, 0), (SEMI_RTDETR, 0)],
                         ids=["DenseTeacher-0workers", "DenseTeacher-2workers", "ARSL-0workers",
                              "Semi_RTDETR-0workers"])
def test_semi_sigkill_then_resume_is_bit_identical(tmp_path: Path, config: Path,
                                                   workers: int) -> None:
    """Student, teacher, optimizer and both data streams continue exactly."""
    data = tmp_path / "data"
    straight = new_run(tmp_path / "runs", "straight")
    subprocess.run(semi_cmd(config, straight, data, workers=workers), cwd=REPO,
                   env=proc_env(), check=True, capture_output=True, timeout=600)
    killed = new_run(tmp_path / "runs", "killed")
    k = random.Random(7 + workers).choice([3, 5, 9, 11])  # after a checkpoint, in semi
    proc = subprocess.Popen(semi_cmd(config, killed, data, workers=workers), cwd=REPO,
                            env=proc_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for_iter(killed, proc, k, timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["iter"] < EPOCHS * EPOCH_ITER
    subprocess.run(semi_cmd(config, killed, data, "--resume", "auto", workers=workers),
                   cwd=REPO, env=proc_env(), check=True, capture_output=True, timeout=600)
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(killed / "checkpoints" / "last.pt")
    assert a["iter"] == b["iter"] == EPOCHS * EPOCH_ITER
    for part in ("model", "teacher"):
        sa = a[part] if part == "model" else a[part]["model"]
        sb = b[part] if part == "model" else b[part]["model"]
        different = [n for n in sa if not torch.equal(sa[n], sb[n])]
        assert not different, f"{part}, killed at iteration {k}: {len(different)} differ"
    assert a["teacher"]["updates"] == b["teacher"]["updates"] > 0
