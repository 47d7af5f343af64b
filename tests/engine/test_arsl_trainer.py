"""The ARSL trainer end to end on CPU: real shapes data, real teacher, real COCO eval.

Tiny shapes (64 px, 10 labeled + 30 unlabeled images, 2 + 2 per step), a handful of steps
that pass the burn-up step, so the consistency loss really runs; each run takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from engine.protocol.events import read_events
from engine.trainers.checkpoint import load_checkpoint
from tests.conftest import REPO, SEMI_DIR, engine_env, semi_overrides, train_in_process

ARSL = SEMI_DIR / "arsl" / "arsl_fcos_tiny_shapes.yml"


def arsl_overrides(data: Path, *, burn_up: float = 2, epochs: int = 2, epoch_iter: int = 3
                   ) -> list[str]:
    return [*semi_overrides(data, epochs=epochs, epoch_iter=epoch_iter),
            f"SEMISUPNET.BURN_UP_STEP={burn_up}", "SEMISUPNET.PSEUDO_WARM_UP_STEPS=2"]


def train(tmp_path: Path, *extra: str, no_eval: bool = False, **kw) -> tuple[int, Path]:
    return train_in_process(tmp_path / "runs", ARSL,
                            [*arsl_overrides(tmp_path / "data", **kw), *extra], no_eval=no_eval)


def events(run: Path, kind: str) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e["type"] == kind]


def test_arsl_burns_in_then_learns_from_pseudo_labels(tmp_path: Path) -> None:
    # 2 epochs x 3 iterations, burn-up at iteration 3 (0-based, the first of epoch 1),
    # pseudo weight ramping over 2 iterations.
    # UNSUP_LOSS_WEIGHT 1 (the shapes config has 0.25), so the ramp below reads 0, 0.5, 1.
    code, run = train(tmp_path, "SEMISUPNET.UNSUP_LOSS_WEIGHT=1.0", burn_up=3)
    assert code == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["trainer"] == "ARSL" and meta["status"] == "finished"
    trains = events(run, "train")
    assert [e["phase"] for e in trains] == ["burn_in"] * 3 + ["semi"] * 3
    burn, semi = trains[0], trains[-1]
    assert set(burn["losses"]) == {"loss_cls", "loss_box", "loss_iou", "loss_cls_pseudo",
                                   "loss_box_pseudo", "loss_iou_pseudo"}
    assert burn["losses"]["loss_cls_pseudo"] == 0.0 and burn["next_phase_iter"] == 3
    assert burn["stats"]["unsup_weight"] == 0.0 and "pseudo_pos_per_image" not in burn["stats"]
    # The ramp: 0 at the burn-up step, 0.5 one step later, then 1.
    assert [e["stats"]["unsup_weight"] for e in trains[3:]] == [0.0, 0.5, 1.0]
    for key in ("loss_cls_pseudo", "loss_box_pseudo", "loss_iou_pseudo"):
        assert semi["losses"][key] > 0, key
    stats = semi["stats"]
    assert stats["pseudo_pos_per_image"] >= 1 and stats["pseudo_ambiguous_per_image"] >= 0
    assert stats["pseudo_mined_per_image"] >= 0 and 0 < stats["pseudo_pos_score"] <= 1
    # Epoch 0 ends before the burn-up step: the student alone; then teacher, student.
    assert [e["model"] for e in events(run, "eval")] == ["student", "teacher", "student"]
    assert meta["best"]["model"] in ("student", "teacher")
    logs = [e["message"] for e in events(run, "log")]
    assert any("teacher started" in m and "iteration 4" in m for m in logs), logs
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["trainer"] == "ARSL" and last["eval_model"] == "teacher"
    assert last["teacher"]["started_at"] == 3 and last["teacher"]["updates"] == 2
    assert last["teacher"]["decay"] == 0.99
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["model"].keys() == last["model"].keys() == last["teacher"]["model"].keys()


def test_teacher_copies_at_burn_up_then_follows_before_each_update(tmp_path: Path) -> None:
    # One iteration per epoch, every epoch's weights kept: S_k = the student after k
    # updates. Burn-up at iteration 2: the teacher becomes S_2 before the 3rd update, and
    # at iteration 3, before the 4th update, 0.75 S_2 + 0.25 S_3 (an asymmetric decay: with
    # 0.5 an average taken the wrong way round gives the same numbers).
    code, run = train(tmp_path, "SEMISUPNET.EMA_KEEP_RATE=0.75", "save_epoch_checkpoints=true",
                      no_eval=True, epochs=4, epoch_iter=1)
    assert code == 0
    ckpt = run / "checkpoints"
    s2 = load_checkpoint(ckpt / "epoch_0002.pt")["model"]
    s3 = load_checkpoint(ckpt / "epoch_0003.pt")["model"]
    final = load_checkpoint(ckpt / "epoch_0004.pt")
    teacher, s4 = final["teacher"]["model"], final["model"]
    floats = [n for n, t in s2.items() if t.dtype.is_floating_point]
    for name in floats:
        assert torch.allclose(teacher[name], 0.75 * s2[name] + 0.25 * s3[name], atol=1e-6), name
    assert any(not torch.equal(teacher[n], s4[n]) for n in floats)
    assert final["teacher"]["started_at"] == 2 and final["teacher"]["updates"] == 1


def test_fractional_burn_up(tmp_path: Path) -> None:
    # 0.5 of 2 x 3 iterations: the semi phase starts at iteration 3.
    code, run = train(tmp_path, no_eval=True, burn_up=0.5)
    assert code == 0
    assert [e["phase"] for e in events(run, "train")][2:4] == ["burn_in", "semi"]


def test_a_burn_up_past_the_schedule_is_warned_about(tmp_path: Path) -> None:
    code, run = train(tmp_path, no_eval=True, burn_up=50, epochs=1, epoch_iter=2)
    assert code == 0
    warnings = [e["message"] for e in events(run, "log") if e["level"] == "warning"]
    assert any("semi-supervised phase never starts" in w
               and "SEMISUPNET.BURN_UP_STEP is 50" in w for w in warnings), warnings
    assert {e["phase"] for e in events(run, "train")} == {"burn_in"}


def test_arsl_best_pt_works_in_dettui_eval_and_infer(tmp_path: Path) -> None:
    code, run = train(tmp_path, epochs=1, burn_up=1)
    assert code == 0
    best = run / "checkpoints" / "best.pt"
    assert torch.load(best, weights_only=True)["which"] == "teacher"
    overrides = [a for o in arsl_overrides(tmp_path / "data", epochs=1) for a in ("-o", o)]
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "eval", str(ARSL), "--weights",
                           str(best), *overrides], cwd=REPO, env=engine_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Average Precision" in proc.stdout
    image = next((tmp_path / "data" / "val").iterdir())
    out = tmp_path / "infer"
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "infer", str(ARSL), "--weights",
                           str(best), "--out", str(out), *overrides, str(image)], cwd=REPO,
                          env=engine_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert any(out.iterdir())


def test_arsl_refuses_a_non_fcos_architecture(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "tui.cli", "run", str(ARSL), "--headless",
            "--runs-dir", str(tmp_path / "runs")]
    for o in [*arsl_overrides(tmp_path / "data", epochs=1, epoch_iter=1),
              "architecture=RetinaNet"]:
        argv += ["-o", o]
    proc = subprocess.run(argv, cwd=tmp_path, env=engine_env(), capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "ARSL trains FCOS" in out and "Traceback" not in out
