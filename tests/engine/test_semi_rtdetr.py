"""The Semi-RT-DETR trainer end to end on CPU: real shapes data, a real tiny transformers
RT-DETR as student and teacher, real COCO eval.

Tiny shapes (64 px, 10 labeled + 30 unlabeled images, 2 + 2 per step) and the tiny RT-DETR
of tests/engine/test_rtdetr.py; a handful of steps that pass ``ema_start_iters``, so the
pseudo-label branch really runs. A randomly initialised teacher scores every query near
RT-DETR's prior (0.01), so the runs that must keep pseudo-boxes lower the threshold to 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.main import main as engine_main
from engine.protocol.events import read_events
from engine.trainers.checkpoint import load_checkpoint
from engine.trainers.semi_rtdetr import (
    PSEUDO_TERMS,
    SemiRTDETRStudent,
    pseudo_terms,
    select_pseudo_labels,
)
from tests.conftest import SEMI_DIR, semi_overrides, train_in_process
from tests.engine.test_rtdetr import TINY, batch, tiny_model

SEMI_RTDETR = SEMI_DIR / "semi_rtdetr" / "semi_rtdetr_tiny_shapes.yml"
TINY_RTDETR = [f"rtdetr.{k}={json.dumps(v)}" for k, v in TINY.items()]
SUP_TERMS = {f"loss_{t}{s}" for t in ("vfl", "bbox", "giou") for s in ("", "_aux", "_dn")}


def rtdetr_semi_overrides(data: Path, *, ema_start: float = 3, thr: float = 0.0,
                          epochs: int = 2, epoch_iter: int = 3) -> list[str]:
    return [*semi_overrides(data, epochs=epochs, epoch_iter=epoch_iter), *TINY_RTDETR,
            f"ema_start_iters={ema_start}", "DETR_SSOD.train_cfg.ema_decay=0.9",
            f"DETR_SSOD.train_cfg.pseudo_label_initial_score_thr={thr}"]


def train(tmp_path: Path, *extra: str, no_eval: bool = False, **kw) -> tuple[int, Path]:
    return train_in_process(tmp_path / "runs", SEMI_RTDETR,
                            [*rtdetr_semi_overrides(tmp_path / "data", **kw), *extra],
                            no_eval=no_eval)


def events(run: Path, kind: str) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e["type"] == kind]


# ----------------------------------------------------------------------------- pieces
def test_pseudo_labels_are_kept_by_score_and_size_without_nms() -> None:
    detections = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [1.0, 1, 11, 11],
                                          [0.0, 0, 2, 30], [5.0, 5, 9, 9]]),
                   "scores": torch.tensor([0.95, 0.9, 0.8, 0.5]),
                   "labels": torch.tensor([1, 1, 2, 3])},
                  {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.69]),
                   "labels": torch.tensor([2])}]
    kept = select_pseudo_labels(detections, 0.7, 0.0)
    # Two heavily overlapping boxes of one class both stay: no NMS.
    assert kept[0]["scores"].tolist() == pytest.approx([0.95, 0.9, 0.8])
    assert kept[0]["labels"].tolist() == [1, 1, 2]
    assert len(kept[1]["boxes"]) == 0 and kept[1]["labels"].dtype == torch.int64
    # min_pseduo_box_size drops the 2-pixel-wide box.
    assert select_pseudo_labels(detections, 0.7, 2.0)[0]["labels"].tolist() == [1, 1]


def test_teacher_scores_are_a_softmax_or_a_sigmoid_of_the_last_layer() -> None:
    model = tiny_model().eval()
    images, _ = batch()
    with torch.no_grad():
        sigmoid = model.detect_per_query(images, "sigmoid")
        softmax = model.detect_per_query(images, "softmax")
        logits = model.model(model.prepare(images)[0]).intermediate_logits[:, -1]
    for b in range(len(images)):
        for det, probs in ((softmax[b], logits[b].softmax(-1)),
                           (sigmoid[b], logits[b].sigmoid())):
            best = probs.max(-1)
            order = best.values.argsort(descending=True)
            assert torch.allclose(det["scores"], best.values[order])
            assert torch.equal(det["labels"], best.indices[order] + 1)
    assert all((d["scores"] >= 1 / 3 - 1e-6).all() for d in softmax)  # 3 classes
    with pytest.raises(ValueError, match="score_fn"):
        model.detect_per_query(images, "relu")


def test_pseudo_terms_keep_the_total() -> None:
    losses = {name: torch.tensor(float(i + 1)) for i, name in enumerate(sorted(SUP_TERMS))}
    grouped = pseudo_terms(losses)
    assert set(grouped) == set(PSEUDO_TERMS)
    assert sum(grouped.values()).item() == pytest.approx(sum(losses.values()).item())


def test_all_empty_pseudo_batch_gives_zero_terms_and_grads_to_every_parameter() -> None:
    model = tiny_model().train()
    student = SemiRTDETRStudent(model)
    images, targets = batch()
    sup, unsup = student(images, targets, [], [])
    assert set(unsup) == set(PSEUDO_TERMS)
    assert all(v.item() == 0.0 and v.requires_grad for v in unsup.values())
    loss = sum(sup.values()) + sum(unsup.values())
    assert torch.isfinite(loss)
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)  # DDP's all-reduce sees them all
    # With pseudo-boxes on one image, the scored loss runs and gives finite terms.
    scored = [{**targets[0], "scores": torch.tensor([0.9, 0.8])}]
    _, unsup = student(images, targets, images[:1], scored)
    assert set(unsup) == set(PSEUDO_TERMS)
    assert all(torch.isfinite(v) and v.item() > 0 for v in unsup.values())


# ------------------------------------------------------------------- through the engine
def test_semi_rtdetr_warms_up_then_learns_from_pseudo_labels(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # 2 epochs x 3 iterations; the teacher and the pseudo loss start at iteration 3 (0-based).
    code, run = train(tmp_path)
    assert code == 0
    meta = json.loads((run / "run.json").read_text())
    assert meta["trainer"] == "Semi_RTDETR" and meta["status"] == "finished"
    trains = events(run, "train")
    assert [e["phase"] for e in trains] == ["burn_in"] * 3 + ["semi"] * 3
    warm, semi = trains[0], trains[-1]
    assert set(warm["losses"]) == SUP_TERMS | set(PSEUDO_TERMS)
    assert all(warm["losses"][k] == 0.0 for k in PSEUDO_TERMS)
    assert warm["next_phase_iter"] == 3 and warm["teacher"] == "not started"
    assert "pseudo_boxes_per_image" not in warm["stats"] and warm["stats"]["unsup_weight"] == 0
    assert all(semi["losses"][k] > 0 for k in PSEUDO_TERMS), semi["losses"]
    # Threshold 0: every query of every unlabeled image is a pseudo-box (10 queries).
    stats = semi["stats"]
    assert stats["pseudo_boxes_per_image"] == 10 and stats["pseudo_images_kept"] == 1.0
    assert 0 < stats["pseudo_score"] < 1 and stats["unsup_weight"] == 1.0
    assert semi["teacher"] == "started"
    # Epoch 0 ends before the teacher starts: the student alone; then teacher, student.
    assert [e["model"] for e in events(run, "eval")] == ["student", "teacher", "student"]
    assert meta["best"]["model"] in ("student", "teacher")
    logs = [e["message"] for e in events(run, "log")]
    assert any("teacher started" in m and "iteration 4" in m for m in logs), logs
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["trainer"] == "Semi_RTDETR" and last["eval_model"] == "teacher"
    assert last["teacher"]["started_at"] == 3 and last["teacher"]["updates"] == 2
    assert last["teacher"]["decay"] == 0.9

    # best.pt is a plain detector: `dettui eval` and `dettui infer` take it.
    best = run / "checkpoints" / "best.pt"
    assert torch.load(best, weights_only=True)["model"].keys() == last["model"].keys()
    # `dettui eval`/`infer` run exactly these in their engine process (in-process here:
    # each interpreter start imports torch and transformers, seconds on a busy CPU;
    # tests/engine/test_rtdetr.py runs `dettui eval` on RT-DETR weights as a subprocess).
    opts = [a for o in rtdetr_semi_overrides(tmp_path / "data") for a in ("-o", o)]
    capsys.readouterr()
    assert engine_main(["eval", str(SEMI_RTDETR), "--weights", str(best), *opts]) == 0
    assert "Average Precision" in capsys.readouterr().out
    image = next((tmp_path / "data" / "val").iterdir())
    out = tmp_path / "infer"
    assert engine_main(["infer", str(SEMI_RTDETR), str(image), "--weights", str(best),
                        "--out", str(out), "--score-thresh", "0", *opts]) == 0
    assert (out / image.name).exists()


def test_a_batch_without_pseudo_boxes_still_steps(tmp_path: Path) -> None:
    # Threshold 1: a sigmoid score never reaches it, so no unlabeled image keeps a box.
    code, run = train(tmp_path, no_eval=True, ema_start=1, epochs=1, thr=1.0)
    assert code == 0
    trains = events(run, "train")
    assert [e["phase"] for e in trains] == ["burn_in", "semi", "semi"]
    for e in trains[1:]:
        assert all(e["losses"][k] == 0.0 for k in PSEUDO_TERMS)
        assert e["stats"]["pseudo_boxes_per_image"] == 0 and e["stats"]["pseudo_images_kept"] == 0
        assert e["losses"]["loss_vfl"] > 0  # the supervised loss still trains
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iter"] == 3


def test_teacher_copies_then_follows_before_each_update(tmp_path: Path) -> None:
    # One iteration per epoch, every epoch's weights kept: S_k = the student after k
    # updates. ema_start 2: the teacher becomes S_2 before the 3rd update (PaddleDetection
    # updates the EMA first), and at iteration 3, before the 4th update, 0.75 S_2 + 0.25 S_3
    # (an asymmetric decay: with 0.5 an average taken the wrong way round gives the same
    # numbers).
    code, run = train(tmp_path, "DETR_SSOD.train_cfg.ema_decay=0.75",
                      "save_epoch_checkpoints=true", no_eval=True, ema_start=2, epochs=4,
                      epoch_iter=1)
    assert code == 0
    ckpt = run / "checkpoints"
    s2 = load_checkpoint(ckpt / "epoch_0002.pt")["model"]
    s3 = load_checkpoint(ckpt / "epoch_0003.pt")["model"]
    final = load_checkpoint(ckpt / "epoch_0004.pt")
    teacher = final["teacher"]["model"]
    floats = [n for n, t in s2.items() if t.dtype.is_floating_point]
    for name in floats:
        assert torch.allclose(teacher[name], 0.75 * s2[name] + 0.25 * s3[name], atol=1e-6), name
    assert final["teacher"]["started_at"] == 2 and final["teacher"]["updates"] == 1


def test_teacher_and_student_weights_load_separately(tmp_path: Path) -> None:
    code, run = train(tmp_path, no_eval=True, epochs=1, epoch_iter=1)
    assert code == 0
    student = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    teacher = {k: v + 0.01 if v.dtype.is_floating_point else v for k, v in student.items()}
    torch.save(student, tmp_path / "student.pt")
    torch.save(teacher, tmp_path / "teacher.pt")
    # The teacher is trusted from the start; ema_start 5 keeps it as loaded for this step.
    code, run2 = train(tmp_path, f"pretrain_teacher_weights={tmp_path / 'teacher.pt'}",
                       f"pretrain_student_weights={tmp_path / 'student.pt'}", epochs=1,
                       epoch_iter=1, ema_start=5)
    assert code == 0
    logs = [e["message"] for e in events(run2, "log")]
    assert any(m.startswith("student weights") and "loaded" in m for m in logs), logs
    assert any(m.startswith("teacher weights") and "loaded" in m for m in logs), logs
    assert [e["model"] for e in events(run2, "eval")] == ["teacher", "student"]
    state = load_checkpoint(run2 / "checkpoints" / "last.pt")
    assert all(torch.equal(state["teacher"]["model"][k], v) for k, v in teacher.items())
    assert not torch.equal(state["model"]["model.decoder.bbox_embed.0.layers.0.weight"],
                           student["model.decoder.bbox_embed.0.layers.0.weight"])
