"""Co-tuning's model: the two-classifier box predictor, ``loss_cot``, training on CPU, eval
with the target head, and the source weights (filled by name; a wrong class count refused)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import FrozenBatchNorm2d

from engine.config import load_and_validate
from engine.models import build_model
from engine.models.cotuning import (
    SOURCE_CLASSIFIER,
    CoTuningRoIHeads,
    cotuning_loss,
    load_cotuning_weights,
)
from engine.models.relationship import learn_relationship
from engine.protocol.errors import UserError, WeightsError
from engine.tools import load_model
from tests.engine.cotuning_helpers import TARGET_KINDS, shapes_batch, tiny_cfg

REPO = Path(__file__).resolve().parents[2]
# --------------------------------------------------------------------------- the model

def test_predictor_names_and_shapes() -> None:
    model = build_model(tiny_cfg(num_classes=3, cot_classes=4))
    assert isinstance(model.roi_heads, CoTuningRoIHeads)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()
              if k.startswith("roi_heads.") and "box_head" not in k}
    width = model.roi_heads.box_head.fc7.out_features
    assert shapes == {
        "roi_heads.box_predictor.cls_score.weight": (5, width),        # source: 4 + bg
        "roi_heads.box_predictor.cls_score.bias": (5,),
        "roi_heads.box_predictor.target_cls_score.weight": (4, width),  # target: 3 + bg
        "roi_heads.box_predictor.target_cls_score.bias": (4,),
        "roi_heads.box_predictor.bbox_pred.weight": (16, width),        # 4 x (3 + bg)
        "roi_heads.box_predictor.bbox_pred.bias": (16,),
        "roi_heads.relationship": (3, 4),
        "roi_heads.relationship_counts": (3,),
        "roi_heads.relationship_learned": (),
    }
    # the rest of the detector is exactly the supervised one
    plain = build_model(tiny_cfg(use_cot=False))
    heads, plain_heads = model.roi_heads, plain.roi_heads
    assert heads.fg_bg_sampler.batch_size_per_image == plain_heads.fg_bg_sampler.batch_size_per_image
    assert heads.box_coder.weights == plain_heads.box_coder.weights
    assert (heads.score_thresh, heads.nms_thresh, heads.detections_per_img) == \
           (plain_heads.score_thresh, plain_heads.nms_thresh, plain_heads.detections_per_img)
    assert not heads.is_learned and torch.allclose(heads.relationship, torch.full((3, 4), 0.25))


def test_roadsign_config_fits_a_torchvision_coco_checkpoint() -> None:
    """The road-sign config's model has the tensor names and shapes of torchvision's COCO
    Faster R-CNN R50-FPN (built as torchvision builds it with COCO weights: frozen BN, 3
    trainable stages), except the target box regression: the source classifier loads by name."""
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    reference = FasterRCNN(_resnet_fpn_extractor(body, 3), num_classes=91).state_dict()
    _, cfg = load_and_validate(REPO / "configs" / "cot" /
                               "faster_rcnn_r50_fpn_cotuning_roadsign.yml")
    ours = build_model(cfg).state_dict()
    differ = {k for k, v in reference.items() if k not in ours or ours[k].shape != v.shape}
    assert differ == {"roi_heads.box_predictor.bbox_pred.weight",
                      "roi_heads.box_predictor.bbox_pred.bias"}
    assert ours[SOURCE_CLASSIFIER].shape == reference[SOURCE_CLASSIFIER].shape == (91, 1024)
    assert set(ours) - set(reference) == {
        "roi_heads.box_predictor.target_cls_score.weight",
        "roi_heads.box_predictor.target_cls_score.bias", "roi_heads.relationship",
        "roi_heads.relationship_counts", "roi_heads.relationship_learned"}


# --------------------------------------------------------------------------- the loss

def test_cotuning_loss_on_known_tensors() -> None:
    # 4 sampled RoIs: background, label 1, label 2, label 1; 3 source classes + background.
    logits = torch.tensor([[5.0, 0.0, 0.0, 0.0],
                           [9.0, 2.0, 0.0, -1.0],
                           [-3.0, 0.5, 1.5, 0.0],
                           [0.0, -1.0, 1.0, 3.0]], requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1])
    relationship = torch.tensor([[0.6, 0.3, 0.1],
                                 [0.2, 0.2, 0.4]])  # rows need not sum to 1 (PaddleDetection)

    def soft_ce(z: list[float], target: list[float], scale: float) -> float:
        # -sum_j t_j log softmax(scale * z)_j over the source columns (background dropped)
        log_norm = math.log(sum(math.exp(scale * v) for v in z))
        return -sum(t * (scale * v - log_norm) for t, v in zip(target, z))

    for cot_lambda, cot_scale in ((1.0, 1.0), (0.5, 2.0)):
        expected = cot_lambda * (soft_ce([2.0, 0.0, -1.0], [0.6, 0.3, 0.1], cot_scale)
                                 + soft_ce([0.5, 1.5, 0.0], [0.2, 0.2, 0.4], cot_scale)
                                 + soft_ce([-1.0, 1.0, 3.0], [0.6, 0.3, 0.1], cot_scale)) / 3
        loss = cotuning_loss(logits, labels, relationship, cot_lambda, cot_scale)
        assert loss.item() == pytest.approx(expected, rel=1e-6)

    loss = cotuning_loss(logits, labels, relationship)
    loss.backward()
    assert logits.grad[0].abs().sum() == 0        # background RoIs: no co-tuning gradient
    assert logits.grad[:, 0].abs().sum() == 0     # nor through the background logit
    assert logits.grad[1:, 1:].abs().sum() > 0


def test_cotuning_loss_without_foreground_is_zero_and_differentiable() -> None:
    logits = torch.randn(5, 4, requires_grad=True)
    loss = cotuning_loss(logits, torch.zeros(5, dtype=torch.int64), torch.rand(2, 3))
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph: DDP sees the source head used on every rank
    assert logits.grad is not None and logits.grad.abs().sum() == 0


# --------------------------------------------------------------------------- training and eval

def test_a_few_training_iterations_on_cpu() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    images, targets = shapes_batch(range(4))
    learned = learn_relationship(model, [(images[:2], targets[:2]), (images[2:], targets[2:])],
                                 3, "cpu")
    source_before = model.roi_heads.box_predictor.cls_score.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                                momentum=0.9)
    model.train()
    history = []
    for _ in range(4):
        losses = model(images, targets)
        assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_cot",
                               "loss_objectness", "loss_rpn_box_reg"}
        assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values()), losses
        history.append(losses["loss_cot"].item())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert all(h > 0 for h in history)
    # loss_cot trains the source head; the relationship stays fixed (a buffer, no gradient)
    assert not torch.equal(model.roi_heads.box_predictor.cls_score.weight, source_before)
    assert torch.equal(model.roi_heads.relationship, learned)


def test_loss_cot_follows_cot_lambda() -> None:
    images, targets = shapes_batch(range(2))
    values = {}
    for cot_lambda in (1.0, 3.0):
        torch.manual_seed(0)
        model = build_model(tiny_cfg(cot_lambda=cot_lambda))
        learn_relationship(model, [(images, targets)], 3, "cpu")
        torch.manual_seed(1)  # the same RPN sampling in both runs
        model.train()
        values[cot_lambda] = model(images, targets)["loss_cot"].item()
    assert values[3.0] == pytest.approx(3 * values[1.0], rel=1e-5)


def test_training_before_the_relationship_is_learned_is_refused() -> None:
    model = build_model(tiny_cfg())
    images, targets = shapes_batch(range(2))
    model.train()
    with pytest.raises(RuntimeError, match="learn_relationship"):
        model(images, targets)


def test_eval_predicts_with_the_target_head() -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    predictor = model.roi_heads.box_predictor
    with torch.no_grad():
        # every RoI scores target class 2; the source head would say otherwise
        predictor.target_cls_score.weight.zero_()
        predictor.target_cls_score.bias.copy_(torch.tensor([-10.0, -10.0, 10.0, -10.0]))
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.tensor([-10.0, 10.0, -10.0, -10.0, -10.0]))
    images, _ = shapes_batch(range(2))
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for out in outputs:
        assert set(out) == {"boxes", "scores", "labels"}
        assert len(out["labels"]) > 0 and bool((out["labels"] == 2).all())
        assert bool((out["scores"] > 0.99).all())


def test_a_cotuning_checkpoint_loads_for_eval(tmp_path: Path) -> None:
    """What ``dettui eval``/``infer`` do with a co-tuning config: a strict load of the run's
    checkpoint, relationship included, then the same predictions."""
    torch.manual_seed(0)
    cfg = tiny_cfg()
    model = build_model(cfg)
    images, targets = shapes_batch(range(3))
    learn_relationship(model, [(images, targets)], 3, "cpu")
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "class_names": list(TARGET_KINDS)}, path)
    loaded = load_model(cfg, str(path), torch.device("cpu"))
    assert torch.equal(loaded.roi_heads.relationship, model.roi_heads.relationship)
    assert loaded.roi_heads.is_learned
    model.eval()
    with torch.no_grad():
        expected, got = model(images), loaded(images)
    for a, b in zip(expected, got):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_engine_eval_with_the_cotuning_config(tmp_path: Path) -> None:
    """``python -m engine eval`` on a co-tuning config: COCO AP of a co-tuning checkpoint."""
    cfg_path = tmp_path / "cot.yml"
    cfg_path.write_text(
        "architecture: FasterRCNN\nnum_classes: 3\nuse_cot: true\npretrain_weights: source.pt\n"
        "BBoxHead: {cot_classes: 4}\nworker_num: 0\n"
        "backbone: {name: tiny, width: 16, norm: bn}\n"
        "model: {min_size: 96, max_size: 96, fpn_channels: 32, anchor_sizes: [16, 32, 64]}\n"
        f"EvalDataset: {{dataset_dir: {tmp_path / 'data'}, image_dir: val, "
        "anno_path: annotations/val.json, allow_empty: true,\n"
        f"  synthesize: {{num_images: 4, seed: 1, image_size: 96, classes: {list(TARGET_KINDS)}}}}}\n"
        "EvalReader: {batch_size: 4, sample_transforms: [{Resize: {target_size: 96}}]}\n")
    _, cfg = load_and_validate(cfg_path)
    torch.manual_seed(0)
    model = build_model(cfg)
    images, targets = shapes_batch(range(3))
    learn_relationship(model, [(images, targets)], 3, "cpu")
    torch.save({"model": model.state_dict()}, tmp_path / "cot.pt")
    done = subprocess.run([sys.executable, "-m", "engine", "eval", str(cfg_path), "--weights",
                           str(tmp_path / "cot.pt"), "--json", str(tmp_path / "m.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "per-class AP" in done.stdout and "ring" in done.stdout
    assert (tmp_path / "m.json").is_file()


# --------------------------------------------------------------------------- source weights

def _save_source(tmp_path: Path, source_classes: int, name: str = "source.pt") -> Path:
    torch.manual_seed(1)
    source = build_model(tiny_cfg(use_cot=False, num_classes=source_classes))
    path = tmp_path / name
    torch.save({"model": source.state_dict(),
                "class_names": [f"kind{i}" for i in range(source_classes)]}, path)
    return path


def test_source_weights_fill_the_source_head_by_name(tmp_path: Path) -> None:
    path = _save_source(tmp_path, source_classes=4)
    source = torch.load(path, weights_only=True)["model"]
    torch.manual_seed(0)
    model = build_model(tiny_cfg(num_classes=3, cot_classes=4))
    target_before = model.roi_heads.box_predictor.target_cls_score.weight.detach().clone()
    report = load_cotuning_weights(model, path)
    state = model.state_dict()
    for key in ("cls_score.weight", "cls_score.bias"):
        assert torch.equal(state[f"roi_heads.box_predictor.{key}"],
                           source[f"roi_heads.box_predictor.{key}"])
    assert torch.equal(state["backbone.body.c5.0.0.weight"], source["backbone.body.c5.0.0.weight"])
    # box regression for 3 target classes: the source's (4 classes) is skipped and reported
    assert {name for name, _, _ in report.skipped_shape} == {
        "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.bias"}
    assert "roi_heads.box_predictor.target_cls_score.weight" in report.missing
    assert torch.equal(state["roi_heads.box_predictor.target_cls_score.weight"], target_before)


def test_a_relationship_in_the_source_file_is_not_taken(tmp_path: Path) -> None:
    # a co-tuning checkpoint used as source weights: its relationship belonged to its data
    torch.manual_seed(0)
    old = build_model(tiny_cfg())
    images, targets = shapes_batch(range(2))
    learn_relationship(old, [(images, targets)], 3, "cpu")
    torch.save(old.state_dict(), tmp_path / "old_cot.pt")
    model = build_model(tiny_cfg())
    load_cotuning_weights(model, tmp_path / "old_cot.pt")
    assert torch.equal(model.roi_heads.box_predictor.cls_score.weight,
                       old.roi_heads.box_predictor.cls_score.weight)
    assert not model.roi_heads.is_learned
    assert int(model.roi_heads.relationship_counts.sum()) == 0


def test_source_class_count_mismatch_names_both_numbers(tmp_path: Path) -> None:
    path = _save_source(tmp_path, source_classes=5)
    model = build_model(tiny_cfg(cot_classes=3))
    with pytest.raises(WeightsError) as info:
        load_cotuning_weights(model, path)
    error = info.value
    assert isinstance(error, UserError)  # the exit-2 path of the engine and the CLI
    assert error.file == str(path) and error.key == "BBoxHead.cot_classes"
    assert ("the source classifier (cls_score) in this file has 5 classes (+background) but "
            "BBoxHead.cot_classes is 3") in error.render()
    assert "BBoxHead.cot_classes=5" in error.render()


def test_weights_without_a_classifier_are_refused(tmp_path: Path) -> None:
    full = torch.load(_save_source(tmp_path, source_classes=4), weights_only=True)["model"]
    backbone_only = {k: v for k, v in full.items() if k.startswith("backbone.")}
    torch.save(backbone_only, tmp_path / "backbone.pt")
    with pytest.raises(WeightsError, match=r"holds no source classifier.*4 source classes"):
        load_cotuning_weights(build_model(tiny_cfg()), tmp_path / "backbone.pt")
