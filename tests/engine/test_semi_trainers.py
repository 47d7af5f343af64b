"""The semi-supervised trainers end to end on CPU: real data, real teacher, real eval.

Tiny shapes (64 px, 10 labeled + 30 unlabeled images), a handful of steps that pass the
burn-in, so the unsupervised branch really runs; each run takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.config import load_and_validate
from engine.models import build_model
from engine.protocol.events import read_events
from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import REPO, SEMI_DIR, engine_env, semi_overrides, train_in_process

DENSE = SEMI_DIR / "denseteacher" / "denseteacher_fcos_tiny_shapes.yml"


def train(tmp_path: Path, config: Path, *extra: str, **kw) -> tuple[int, Path]:
    return train_in_process(tmp_path / "runs", config,
                            [*semi_overrides(tmp_path / "data", **kw), *extra])


def events(run: Path, kind: str) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e["type"] == kind]


def test_denseteacher_trains_distils_and_evaluates_teacher_and_student(tmp_path: Path) -> None:
    code, run = train(tmp_path, DENSE)
    assert code == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["trainer"] == "DenseTeacher" and meta["status"] == "finished"
    trains = events(run, "train")
    assert [e["phase"] for e in trains] == ["burn_in", "burn_in", "semi", "semi", "semi",
                                            "semi"]
    burn, semi = trains[0], trains[-1]
    assert burn["losses"]["distill_loss_cls"] == 0.0 and burn["next_phase_iter"] == 2
    assert semi["losses"]["distill_loss_cls"] > 0 and semi["losses"]["distill_loss_box"] > 0
    assert semi["stats"]["pseudo_points_per_image"] > 0 and semi["stats"]["unsup_weight"] > 0
    assert set(semi["losses"]) >= {"classification", "bbox_regression", "bbox_ctrness",
                                   "distill_loss_quality"}
    # The teacher exists from iteration 1: both models are evaluated, teacher first.
    assert [e["model"] for e in events(run, "eval")] == ["teacher", "student"] * 2
    assert meta["best"]["model"] == "teacher"
    # best.pt: the teacher's weights as a plain FCOS state dict.
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert best["which"] == "teacher" and last["eval_model"] == "teacher"
    assert best["model"].keys() == last["model"].keys() == last["teacher"]["model"].keys()
    assert last["trainer"] == "DenseTeacher" and last["teacher"]["started_at"] == 1


def test_denseteacher_best_pt_works_in_dettui_eval(tmp_path: Path) -> None:
    code, run = train(tmp_path, DENSE, epochs=1)
    assert code == 0
    argv = [sys.executable, "-m", "tui.cli", "eval", str(DENSE), "--weights",
            str(run / "checkpoints" / "best.pt")]
    for o in semi_overrides(tmp_path / "data", epochs=1):
        argv += ["-o", o]
    proc = subprocess.run(argv, cwd=REPO, env=engine_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Average Precision" in proc.stdout


def test_denseteacher_teacher_copies_at_ema_start_then_follows_after_each_update(
        tmp_path: Path) -> None:
    # One iteration per epoch, every epoch's weights kept: S_k = the student after k
    # updates. ema_start 1: after the 2nd update the teacher becomes S_2, then after each
    # update T <- 0.75 T + 0.25 S (an asymmetric decay: with 0.5 an average taken the wrong
    # way round gives the same numbers).
    code, run = train_in_process(
        tmp_path / "runs", DENSE, [*semi_overrides(tmp_path / "data", epochs=4, epoch_iter=1,
                                                   ema_start=1),
                                   "ema_decay=0.75", "save_epoch_checkpoints=true"],
        no_eval=True)
    assert code == 0
    ckpt = run / "checkpoints"
    s2, s3 = (load_checkpoint(ckpt / f"epoch_000{k}.pt")["model"] for k in (2, 3))
    final = load_checkpoint(ckpt / "epoch_0004.pt")
    teacher, s4 = final["teacher"]["model"], final["model"]
    floats = [n for n, t in s2.items() if t.dtype.is_floating_point]
    for name in floats:
        expected = 0.75 * (0.75 * s2[name] + 0.25 * s3[name]) + 0.25 * s4[name]
        assert torch.allclose(teacher[name], expected, atol=1e-6), name
    assert final["teacher"]["started_at"] == 1 and final["teacher"]["updates"] == 2


def test_a_semi_phase_that_never_starts_is_warned_about(tmp_path: Path) -> None:
    code, run = train(tmp_path, DENSE, epochs=1, epoch_iter=2, semi_start=50)
    assert code == 0
    warnings = [e["message"] for e in events(run, "log") if e["level"] == "warning"]
    assert any("semi-supervised phase never starts" in w and "semi_start_iters is 50" in w
               for w in warnings), warnings


def test_fractional_burn_in(tmp_path: Path) -> None:
    # 0.5 of 2 x 3 iterations: the semi phase starts at iteration 3.
    code, run = train(tmp_path, DENSE, "semi_start_iters=0.5", "ema_start_iters=0.2")
    assert code == 0
    assert [e["phase"] for e in events(run, "train")][2:4] == ["burn_in", "semi"]


def test_teacher_and_student_weights_load_separately(tmp_path: Path) -> None:
    code, run = train(tmp_path, DENSE, epochs=1, epoch_iter=1, semi_start=5)
    assert code == 0
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    torch.save(state["model"], tmp_path / "student.pt")
    torch.save(state["teacher"]["model"], tmp_path / "teacher.pt")
    code, run2 = train(tmp_path, DENSE, f"pretrain_teacher_weights={tmp_path / 'teacher.pt'}",
                       f"pretrain_student_weights={tmp_path / 'student.pt'}", epochs=1,
                       epoch_iter=1, semi_start=5, ema_start=5)
    assert code == 0
    logs = [e["message"] for e in events(run2, "log")]
    assert any(m.startswith("student weights") and "loaded" in m for m in logs), logs
    assert any(m.startswith("teacher weights") and "loaded" in m for m in logs), logs
    # A teacher given as weights is a teacher from the start: it is evaluated first.
    assert events(run2, "eval")[0]["model"] == "teacher"


@pytest.mark.parametrize("case", ["no_unsup", "empty_folder", "teacher_of_another_arch"])
def test_bad_semi_configs_exit_2_with_a_clear_message(tmp_path: Path, case: str) -> None:
    extra: list[str] = []
    needles: tuple[str, ...]
    if case == "no_unsup":
        extra = ["UnsupTrainDataset=null"]
        needles = ("UnsupTrainDataset",)
    elif case == "empty_folder":
        empty = tmp_path / "empty"
        empty.mkdir()
        extra = ["UnsupTrainDataset.name=ImageFolder", f"UnsupTrainDataset.dataset_dir={empty}",
                 "UnsupTrainDataset.image_dir=.", "UnsupTrainDataset.anno_path=null",
                 "UnsupTrainDataset.synthesize=null", "UnsupTrainDataset.semi_split=null"]
        needles = ("UnsupTrainDataset", str(empty))
    else:
        # A RetinaNet on the same backbone: the backbone fits, the head does not.
        _, cfg = load_and_validate(DENSE, [*semi_overrides(tmp_path / "data"),
                                           "architecture=RetinaNet", "ssod_method=null"])
        torch.save(build_model(cfg).state_dict(), tmp_path / "retinanet.pt")
        extra = [f"pretrain_teacher_weights={tmp_path / 'retinanet.pt'}",
                 f"pretrain_student_weights={tmp_path / 'retinanet.pt'}"]
        needles = ("retinanet.pt", "do not fit the FCOS teacher")
    argv = [sys.executable, "-m", "tui.cli", "run", str(DENSE), "--headless",
            "--runs-dir", str(tmp_path / "runs")]
    for o in [*semi_overrides(tmp_path / "data", epochs=1, epoch_iter=1), *extra]:
        argv += ["-o", o]
    proc = subprocess.run(argv, cwd=tmp_path, env=engine_env(), capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    for needle in needles:
        assert needle in out, (needle, out)
