"""RT-DETR (transformers' model behind the torchvision contract): box/label conversions, the
teacher-score varifocal target, empty images, training through the engine, eval/infer, and
loading transformers-format weights. Tiny dims throughout: every model builds in well under
a second and trains a step in a fraction of one."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import RTDetrForObjectDetection, RTDetrResNetBackbone
from transformers.loss.loss_rt_detr import RTDetrLoss

from engine.config.schema import validate
from engine.main import main as engine_main
from engine.models import build_model
from engine.models.rtdetr import RTDETR, InputGeometry, rtdetr_config
from engine.models.rtdetr_loss import ScoredRTDetrLoss, group_losses
from engine.models.weights import load_pretrained
from engine.protocol.errors import ConfigError
from engine.protocol.events import read_events
from engine.tools import load_model
from engine.trainers.optim import build_optimizer
from tests.conftest import REPO, engine_env, tiny_overrides

TINY_CONFIG = REPO / "configs" / "rtdetr" / "rtdetr_tiny_shapes.yml"

# A few-thousand-parameter RT-DETR: every part present (ResNet-vd, AIFI, CCFM, 3 levels,
# query selection, denoising, 2 refining decoder layers), all of it tiny.
TINY = {"image_size": 64, "backbone_layer_type": "basic", "backbone_depths": [1, 1, 1, 1],
        "backbone_hidden_sizes": [8, 16, 16, 32], "backbone_stem_channels": 8,
        "freeze_backbone_bn": False, "backbone_lr_mult": 0.5, "encoder_hidden_dim": 16,
        "encoder_heads": 2, "encoder_ffn_dim": 32, "hidden_expansion": 0.5, "d_model": 16,
        "decoder_layers": 2, "decoder_heads": 2, "decoder_ffn_dim": 32, "decoder_points": 2,
        "num_queries": 10, "num_denoising": 6}
TINY_OVERRIDES = [f"rtdetr.{k}={json.dumps(v)}" for k, v in TINY.items()] + [
    "TrainDataset.synthesize.image_size=64", "EvalDataset.synthesize.image_size=64",
    "TrainReader.sample_transforms=[{Resize: {target_size: 64}}]",
    "EvalReader.sample_transforms=[{Resize: {target_size: 64}}]"]


def make_cfg(num_classes: int = 3, **rtdetr):
    return validate({"architecture": "RTDETR", "num_classes": num_classes,
                     "model": {"score_thresh": 0.0}, "rtdetr": {**TINY, **rtdetr}})


def tiny_model(num_classes: int = 3, **rtdetr) -> RTDETR:
    torch.manual_seed(0)
    return build_model(make_cfg(num_classes, **rtdetr))


def batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images of different sizes; the second has no objects."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 72, 64, generator=g)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [40.0, 20.0, 70.0, 60.0]]),
                "labels": torch.tensor([1, 3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    return images, targets


# ------------------------------------------------------------------ conversions both ways

def test_stretched_boxes_become_fractions_of_the_image_and_back() -> None:
    g = InputGeometry.fit(100, 200, 160, keep_ratio=False)
    assert (g.resized_height, g.resized_width) == (160, 160)
    boxes = torch.tensor([[20.0, 10.0, 60.0, 50.0], [0.0, 0.0, 200.0, 100.0]])
    norm = g.to_normalized_cxcywh(boxes)
    assert torch.allclose(norm, torch.tensor([[0.2, 0.3, 0.2, 0.4], [0.5, 0.5, 1.0, 1.0]]))
    assert torch.allclose(g.to_pixel_xyxy(norm), boxes)


def test_letterboxed_boxes_are_fractions_of_the_padded_input_and_back() -> None:
    # 100 x 200 into 160: scaled by 0.8 to 80 x 160 at the top-left, 80 rows of padding below.
    g = InputGeometry.fit(100, 200, 160, keep_ratio=True)
    assert (g.resized_height, g.resized_width) == (80, 160)
    boxes = torch.tensor([[20.0, 10.0, 60.0, 50.0]])
    norm = g.to_normalized_cxcywh(boxes)  # [16, 8, 48, 40] / 160
    assert torch.allclose(norm, torch.tensor([[0.2, 0.15, 0.2, 0.2]]))
    assert torch.allclose(g.to_pixel_xyxy(norm), boxes)
    # A prediction reaching into the padding is clipped to the image.
    out = g.to_pixel_xyxy(torch.tensor([[0.9, 0.9, 0.4, 0.4]]))
    assert torch.allclose(out, torch.tensor([[140.0, 100.0, 200.0, 100.0]]))


def test_prepare_resizes_pads_and_keeps_zero_one_values() -> None:
    model = tiny_model(keep_ratio=True)
    image = torch.rand(3, 32, 64)
    pixels, (geometry,) = model.prepare([image])
    assert pixels.shape == (1, 3, 64, 64)
    assert (geometry.resized_height, geometry.resized_width) == (32, 64)
    assert torch.equal(pixels[0, :, :32], image)  # already the right width: not resampled
    assert pixels[0, :, 32:].abs().sum() == 0      # padding
    pixels, _ = model.prepare([torch.rand(3, 40, 40)])
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0


def test_multi_scale_training_draws_a_side_per_batch_and_eval_uses_image_size() -> None:
    model = tiny_model(train_sizes=[32, 96])
    model.train()
    sides = {model.prepare([torch.rand(3, 50, 70)])[0].shape[-1] for _ in range(40)}
    assert sides == {32, 96}
    model.eval()
    assert model.prepare([torch.rand(3, 50, 70)])[0].shape[-2:] == (64, 64)


def test_backbone_stem_freezes_as_configured() -> None:
    frozen, trained = tiny_model(), tiny_model(freeze_backbone_stem=False)
    stem = "model.backbone.model.embedder."
    assert all(not p.requires_grad for n, p in frozen.named_parameters() if n.startswith(stem))
    assert all(p.requires_grad for n, p in trained.named_parameters() if n.startswith(stem))


def test_targets_in_and_detections_out_use_each_others_conventions() -> None:
    model = tiny_model(num_classes=3)
    geometry = InputGeometry.fit(100, 200, 64, keep_ratio=False)
    (target,) = model.model_targets(
        [{"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([3]),
          "scores": torch.tensor([0.8])}], [geometry])
    assert target["class_labels"].tolist() == [2]  # labels 1..K -> 0..K-1
    assert torch.allclose(target["boxes"], torch.tensor([[0.2, 0.3, 0.2, 0.4]]))
    assert target["scores"].tolist() == pytest.approx([0.8])
    # Query 1 says class index 2 (label 3) with the same box: it comes back as pixels, label 3.
    logits = torch.full((1, 2, 3), -9.0)
    logits[0, 1, 2] = 4.0
    boxes = torch.tensor([[[0.5, 0.5, 0.1, 0.1], [0.2, 0.3, 0.2, 0.4]]])
    model.detections_per_img = 1
    (det,) = model.detections(logits, boxes, [geometry])
    assert det["labels"].tolist() == [3]
    assert det["scores"].tolist() == pytest.approx([torch.sigmoid(torch.tensor(4.0)).item()])
    assert torch.allclose(det["boxes"], torch.tensor([[20.0, 10.0, 60.0, 50.0]]))


# ----------------------------------------------------------------------- the loss

def _criterion() -> ScoredRTDetrLoss:
    return ScoredRTDetrLoss(rtdetr_config(make_cfg(num_classes=2)))


def test_teacher_scores_scale_the_varifocal_target_of_matched_queries() -> None:
    criterion = _criterion()
    outputs = {"logits": torch.zeros(1, 3, 2),
               "pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1],
                                            [0.25, 0.25, 0.1, 0.1]]])}
    targets = [{"boxes": torch.tensor([[0.25, 0.25, 0.1, 0.1], [0.55, 0.5, 0.2, 0.2]]),
                "class_labels": torch.tensor([0, 1]), "scores": torch.tensor([0.9, 0.5])}]
    # Query 0 <-> target 1 (IoU 0.03 / 0.05 = 0.6), query 2 <-> target 0 (the same box).
    indices = [(torch.tensor([0, 2]), torch.tensor([1, 0]))]
    target_score, one_hot = criterion.classification_targets(outputs, targets, indices)
    expected = torch.tensor([[[0.0, 0.5 * 0.6], [0.0, 0.0], [0.9 * 1.0, 0.0]]])
    assert torch.allclose(target_score, expected, atol=1e-6)
    assert one_hot.tolist() == [[[0, 1], [0, 0], [1, 0]]]
    # Without scores the target is the IoU alone (transformers' supervised target).
    del targets[0]["scores"]
    target_score, _ = criterion.classification_targets(outputs, targets, indices)
    assert torch.allclose(target_score, torch.tensor([[[0.0, 0.6], [0.0, 0.0], [1.0, 0.0]]]),
                          atol=1e-6)


def test_without_scores_the_losses_are_transformers_own() -> None:
    config = rtdetr_config(make_cfg(num_classes=4))
    ours, theirs = ScoredRTDetrLoss(config), RTDetrLoss(config)
    g = torch.Generator().manual_seed(0)
    boxes = torch.cat([0.2 + 0.6 * torch.rand(2, 7, 2, generator=g),
                       0.05 + 0.3 * torch.rand(2, 7, 2, generator=g)], -1)
    outputs = {"logits": torch.randn(2, 7, 4, generator=g), "pred_boxes": boxes}
    targets = [{"boxes": boxes[0, :3] + 0.01, "class_labels": torch.tensor([0, 3, 1])},
               {"boxes": boxes[1, :1] - 0.01, "class_labels": torch.tensor([2])}]
    indices = theirs.matcher(outputs, targets)
    for name in ("vfl", "boxes"):
        a = ours.get_loss(name, outputs, targets, indices, num_boxes=4)
        b = theirs.get_loss(name, outputs, targets, indices, num_boxes=4)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key], b[key], atol=1e-6), key
    # A teacher score of 1 everywhere changes nothing; lower scores lower the targets.
    scored = [{**t, "scores": torch.ones(len(t["boxes"]))} for t in targets]
    assert torch.allclose(ours.loss_labels_vfl(outputs, scored, indices, 4)["loss_vfl"],
                          theirs.loss_labels_vfl(outputs, targets, indices, 4)["loss_vfl"])


def test_grouped_terms_keep_the_total() -> None:
    per_layer = {"loss_vfl": torch.tensor(1.0), "loss_bbox": torch.tensor(2.0),
                 "loss_vfl_aux_0": torch.tensor(0.5), "loss_vfl_aux_1": torch.tensor(0.25),
                 "loss_bbox_dn_0": torch.tensor(3.0), "loss_bbox_dn_1": torch.tensor(4.0)}
    grouped = group_losses(per_layer)
    assert set(grouped) == {"loss_vfl", "loss_bbox", "loss_vfl_aux", "loss_bbox_dn"}
    assert grouped["loss_vfl_aux"].item() == 0.75 and grouped["loss_bbox_dn"].item() == 7.0
    assert sum(grouped.values()).item() == sum(per_layer.values()).item()


# ----------------------------------------------------------- the adapter as a detector

EXPECTED_LOSSES = {f"loss_{t}{s}" for t in ("vfl", "bbox", "giou") for s in ("", "_aux", "_dn")}


def test_train_step_with_an_empty_image_and_pseudo_label_scores() -> None:
    model = tiny_model()
    images, targets = batch()
    targets[0]["scores"] = torch.tensor([0.9, 0.75])  # teacher pseudo-labels on one image
    model.train()
    losses = model(images, targets)
    assert set(losses) == EXPECTED_LOSSES
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

    model.eval()
    with torch.no_grad():
        detections = model(images)
    for det, image in zip(detections, images):
        assert det["boxes"].shape == (30, 4)  # 10 queries x 3 classes, fewer than 100
        assert set(det["labels"].unique().tolist()) <= {1, 2, 3}
        h, w = image.shape[-2:]
        assert (det["boxes"][:, 2] <= w).all() and (det["boxes"][:, 3] <= h).all()
        assert (det["boxes"][:, :2] >= 0).all()
    per_query = model.detect_per_query(images)
    assert [len(d["scores"]) for d in per_query] == [10, 10]
    assert (per_query[0]["scores"].diff() <= 0).all()


def test_all_empty_batch_and_zero_loss_reach_every_parameter() -> None:
    model = tiny_model().train()
    images, targets = batch()
    empty = [targets[1], targets[1]]
    losses = model(images, empty)  # no boxes anywhere: no denoising, only negatives
    assert all(torch.isfinite(v) for v in losses.values())
    assert not any(k.endswith("_dn") for k in losses)
    zero = model.zero_loss()
    assert zero.item() == 0.0 and zero.requires_grad
    model.zero_grad(set_to_none=True)
    zero.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and p.grad.abs().sum() == 0 for p in trainable)


def test_backbone_trains_at_its_lr_multiplier() -> None:
    cfg = make_cfg()
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    backbone = {id(p) for p in model.model.backbone.parameters()}
    for group in optimizer.param_groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) <= 1
        if in_backbone == {True}:
            assert group["lr"] == pytest.approx(cfg.LearningRate.base_lr * 0.5)
        else:
            assert group["lr"] == pytest.approx(cfg.LearningRate.base_lr)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == \
           sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("feature_stages", [3, 2], "increasing stage numbers"),
    ("image_size", 80, "multiple of the largest feature stride 32"),
    ("backbone_stem_channels", 16, "must equal backbone_hidden_sizes[0]"),
    ("d_model", 15, "not divisible by decoder_heads"),
    ("backbone_depths", [1, 1, 1], "4 stage depths"),
    ("train_sizes", [64, 100], "positive multiple of the largest feature stride 32"),
])
def test_bad_layouts_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_cfg(**{key: value})
    assert info.value.key == f"rtdetr.{key}" and message in info.value.message


# --------------------------------------------------------- weights in transformers' format

def test_transformers_weights_load_partially_and_strictly(tmp_path: Path) -> None:
    cfg = make_cfg(num_classes=3)
    # A transformers RT-DETR of the same layout for 7 classes, saved as its state dict.
    torch.manual_seed(1)
    hf = RTDetrForObjectDetection(rtdetr_config(make_cfg(num_classes=7)))
    file = tmp_path / "rtdetr_hf.safetensors"
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(file))

    model = build_model(cfg)
    assert set(model.state_dict()) == set(hf.state_dict())  # the same names
    report = load_pretrained(model, file)
    skipped = {name for name, _, _ in report.skipped_shape}
    assert skipped == {"model.denoising_class_embed.weight", "model.enc_score_head.weight",
                       "model.enc_score_head.bias", "model.decoder.class_embed.0.weight",
                       "model.decoder.class_embed.0.bias", "model.decoder.class_embed.1.weight",
                       "model.decoder.class_embed.1.bias"}
    assert not report.missing and not report.unused and not report.renamed
    key = "model.encoder.aifi.0.layers.0.self_attn.q_proj.weight"
    assert torch.equal(model.state_dict()[key], hf.state_dict()[key])

    # A backbone alone in transformers' naming (RTDetrResNetBackbone, as an ImageNet
    # ResNet-vd would be converted) lands on model.backbone.model.* by name suffix.
    backbone = RTDetrResNetBackbone(rtdetr_config(cfg).backbone_config)
    torch.save(backbone.state_dict(), tmp_path / "resnet_vd.pt")
    report = load_pretrained(build_model(cfg), tmp_path / "resnet_vd.pt")
    assert len(report.loaded) == len(backbone.state_dict()) == len(report.renamed)
    assert all(name.startswith("model.backbone.model.") for name in report.loaded)
    assert not report.unused and not report.skipped_shape

    # Same class count, as a weights_only torch file: `dettui eval` loads it strictly.
    hf3 = RTDetrForObjectDetection(rtdetr_config(cfg))
    pt = tmp_path / "rtdetr_hf.pt"
    torch.save(hf3.state_dict(), pt)
    loaded = load_model(cfg, str(pt), torch.device("cpu"))
    for name, value in hf3.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


# -------------------------------------------------------------------- through the engine

def _train(tmp_path: Path, *extra: str, iters: int, no_eval: bool = False) -> Path:
    argv = ["train", str(TINY_CONFIG), "--runs-dir", str(tmp_path / "runs")]
    if no_eval:
        argv.append("--no-eval")
    for o in [*tiny_overrides(tmp_path / "data", epochs=1, epoch_iter=iters, train_images=8),
              *TINY_OVERRIDES, "enable_ce=true", *extra]:
        argv += ["-o", o]
    assert engine_main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    return run


def test_supervised_training_through_the_engine(tmp_path: Path) -> None:
    run = _train(tmp_path, "LearningRate.base_lr=0.002", "OptimizerBuilder.clip_grad_norm=1.0",
                 iters=12)
    events = read_events(run / "events.jsonl")
    train = [e for e in events if e["type"] == "train"]
    assert len(train) == 12 and set(train[-1]["losses"]) == EXPECTED_LOSSES
    losses = [e["loss"] for e in train]
    assert all(math.isfinite(v) for v in losses)
    # 8 images seen 6 times each: the loss falls.
    assert sum(losses[-4:]) < sum(losses[:4]), losses
    (ev,) = [e for e in events if e["type"] == "eval"]
    assert set(ev["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert 0.0 <= ev["metrics"]["AP"] <= 1.0
    assert set(ev["per_class"]) == {"circle", "square", "triangle", "cross"}


def test_eval_and_infer_on_rtdetr_weights(tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    run = _train(tmp_path, iters=2, no_eval=True)
    weights = run / "checkpoints" / "last.pt"
    opts = [x for o in [*tiny_overrides(tmp_path / "data", train_images=8), *TINY_OVERRIDES]
            for x in ("-o", o)]
    metrics = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "eval", str(TINY_CONFIG),
                           "--weights", str(weights), "--json", str(metrics), *opts],
                          cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in proc.stdout
    assert set(json.loads(metrics.read_text())["metrics"]) >= {"AP", "AP50"}

    # `dettui infer` runs exactly this in its engine process (in-process here: each
    # interpreter start imports torch and transformers, seconds on a busy CPU).
    image = next((tmp_path / "data" / "val").glob("*.png"))
    out = tmp_path / "drawn"
    assert engine_main(["infer", str(TINY_CONFIG), str(image), "--weights", str(weights),
                        "--out", str(out), "--score-thresh", "0", *opts]) == 0
    assert "detections >= 0" in capsys.readouterr().out
    before = np.asarray(Image.open(image).convert("RGB"))
    after = np.asarray(Image.open(out / image.name).convert("RGB"))
    assert before.shape == after.shape and (before != after).any()  # boxes were drawn
