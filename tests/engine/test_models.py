"""build_model / build_backbone: every architecture builds, trains a step and predicts, on
tiny inputs; pyramid levels follow ``model.anchor_sizes``; freezing and key compatibility."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import FrozenBatchNorm2d

from engine.config.schema import validate
from engine.models import build_model, count_parameters
from engine.models.backbones import build_backbone
from engine.protocol.errors import ConfigError


def make_cfg(architecture: str = "FCOS", backbone: str = "tiny", **model):
    # score_thresh 0.3: an untrained dense head scores every location ~0.07; keep eval cheap.
    model = {"min_size": 64, "max_size": 96, "fpn_channels": 32, "score_thresh": 0.3, **model}
    return validate({"architecture": architecture, "num_classes": 3,
                     "backbone": {"name": backbone, "width": 16, "norm": "bn",
                                  "trainable_layers": 5},
                     "model": model})


def batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two images of different sizes; the second has no objects (a negative image)."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 80, generator=g), torch.rand(3, 72, 64, generator=g)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [40.0, 20.0, 70.0, 60.0]]),
                "labels": torch.tensor([1, 3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    return images, targets


EXPECTED_LOSSES = {
    "FCOS": {"classification", "bbox_regression", "bbox_ctrness"},
    "RetinaNet": {"classification", "bbox_regression"},
    "FasterRCNN": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
}


@pytest.mark.parametrize(("architecture", "backbone"), [
    (architecture, backbone) for architecture in ("FCOS", "RetinaNet", "FasterRCNN")
    for backbone in ("tiny", "resnet18")
] + [("FCOS", "mobilenet_v3"), ("FasterRCNN", "mobilenet_v3")])
def test_train_step_and_inference(architecture: str, backbone: str) -> None:
    torch.manual_seed(0)
    model = build_model(make_cfg(architecture, backbone))
    images, targets = batch()

    model.train()
    losses = model(images, targets)
    assert set(losses) == EXPECTED_LOSSES[architecture]
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for out, image in zip(outputs, images):
        assert set(out) == {"boxes", "scores", "labels"}
        assert out["boxes"].shape[1:] == (4,) and len(out["scores"]) == len(out["labels"])
        # boxes are in the input image's coordinates (the model's transform is undone)
        if len(out["boxes"]):
            assert out["boxes"][:, 2].max() <= image.shape[2] + 1e-3
            assert out["boxes"][:, 3].max() <= image.shape[1] + 1e-3
        assert bool((out["labels"] <= 3).all())  # num_classes + 1 outputs: labels 0..3


@pytest.mark.parametrize(("architecture", "anchors", "strides"), [
    ("FCOS", [16, 32, 64, 128], [8, 16, 32, 64]),         # one conv level above C5
    ("FCOS", [8, 16, 32, 64, 128], [8, 16, 32, 64, 128]),  # LastLevelP6P7
    ("FCOS", [16, 32, 64], [8, 16, 32]),                   # the body maps only
    ("FCOS", [64], [32]),                                   # the deepest map only
    ("FasterRCNN", [16, 32, 64, 128], [8, 16, 32, 64]),   # tiny has no stride-4 map
    ("FasterRCNN", [16, 32, 64, 128, 256, 512], [8, 16, 32, 64, 128, 256]),
])
def test_pyramid_levels_follow_anchor_sizes(architecture: str, anchors: list[int],
                                            strides: list[int]) -> None:
    cfg = make_cfg(architecture, anchor_sizes=anchors)
    backbone = build_backbone(cfg)
    assert backbone.strides == strides
    features = backbone(torch.rand(1, 3, 64, 64))
    assert len(features) == len(anchors)
    assert all(f.shape[1] == cfg.model.fpn_channels for f in features.values())
    # the feature maps really have those strides (64 px input)
    assert [64 // f.shape[-1] for f in features.values()][:3] == strides[:3]


def test_faster_rcnn_resnet_starts_at_stride_4() -> None:
    backbone = build_backbone(make_cfg("FasterRCNN", "resnet18",
                                       anchor_sizes=[32, 64, 128, 256, 512]))
    assert backbone.strides == [4, 8, 16, 32, 64]
    assert backbone.body_level_names == ["layer1", "layer2", "layer3", "layer4"]


@pytest.mark.parametrize("anchors", [[], [8, 16, 32, 64, 128, 256, 512]])
def test_impossible_anchor_sizes_name_the_key(anchors: list[int]) -> None:
    with pytest.raises(ConfigError) as info:
        build_model(make_cfg("FCOS", anchor_sizes=anchors))
    assert info.value.key == "model.anchor_sizes"
    assert f"got {len(anchors)} sizes" in info.value.message


def test_head_convs_sets_head_depth() -> None:
    def head_convs(model: torch.nn.Module) -> int:
        tower = model.head.classification_head.conv
        return sum(isinstance(m, torch.nn.Conv2d) for m in tower.modules())

    for architecture in ("FCOS", "RetinaNet"):
        assert head_convs(build_model(make_cfg(architecture, head_convs=1))) == 1
        assert head_convs(build_model(make_cfg(architecture, head_convs=3))) == 3


def test_frozen_bn_and_trainable_layers() -> None:
    cfg = validate({"architecture": "FCOS", "num_classes": 2,
                    "backbone": {"name": "resnet18", "norm": "frozen_bn", "trainable_layers": 2},
                    "model": {"fpn_channels": 32}})
    model = build_model(cfg)
    body = model.backbone.body
    assert isinstance(body.bn1, FrozenBatchNorm2d)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    trainable = {name.split(".")[0] for name, p in body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    assert count_parameters(model, trainable_only=True) < count_parameters(model)

    bad = validate({"architecture": "FCOS", "num_classes": 2,
                    "backbone": {"name": "resnet18", "trainable_layers": 6}})
    with pytest.raises(ConfigError) as info:
        build_model(bad)
    assert info.value.key == "backbone.trainable_layers"


def test_mobilenet_trainable_layers_freeze_early_blocks() -> None:
    cfg = validate({"architecture": "FCOS", "num_classes": 2,
                    "backbone": {"name": "mobilenet_v3", "trainable_layers": 1},
                    "model": {"fpn_channels": 32}})
    body = build_model(cfg).backbone.body
    first = next(iter(body.parameters()))
    assert not first.requires_grad
    assert any(p.requires_grad for p in body.parameters())


def test_count_parameters_counts_everything() -> None:
    model = build_model(make_cfg())
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(model) > 10_000


@pytest.mark.parametrize(("min_size", "rois", "proposals"), [(160, 64, 250), (400, 128, 500),
                                                            (800, 512, 2000)])
def test_faster_rcnn_budgets_scale_with_image_area(min_size: int, rois: int,
                                                   proposals: int) -> None:
    model = build_model(make_cfg("FasterRCNN", min_size=min_size, max_size=min_size))
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == rois
    assert model.rpn._pre_nms_top_n["training"] == proposals
    assert model.rpn._post_nms_top_n["testing"] == proposals // 2


def test_tiny_width_is_checked() -> None:
    cfg = validate({"architecture": "FCOS", "num_classes": 2,
                    "backbone": {"name": "tiny", "width": 7}})
    with pytest.raises(ConfigError) as info:
        build_model(cfg)
    assert info.value.key == "backbone.width"


@pytest.mark.parametrize(("architecture", "builder", "anchors"), [
    ("FCOS", "fcos_resnet50_fpn", [8, 16, 32, 64, 128]),
    ("RetinaNet", "retinanet_resnet50_fpn", [32, 64, 128, 256, 512]),
    ("FasterRCNN", "fasterrcnn_resnet50_fpn", [32, 64, 128, 256, 512]),
])
def test_state_dict_matches_torchvision_detectors(architecture: str, builder: str,
                                                 anchors: list[int]) -> None:
    """With torchvision's settings the model has torchvision's exact tensor names and shapes,
    so a locally saved torchvision detector checkpoint loads completely as pretrain_weights."""
    import torchvision.models.detection as detection

    reference = getattr(detection, builder)(weights=None, weights_backbone=None,
                                            num_classes=91).state_dict()
    cfg = validate({"architecture": architecture, "num_classes": 90,
                    "backbone": {"name": "resnet50", "norm": "bn", "trainable_layers": 5},
                    "model": {"fpn_channels": 256, "head_convs": 4, "anchor_sizes": anchors}})
    ours = build_model(cfg).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
           {k: tuple(v.shape) for k, v in reference.items()}
