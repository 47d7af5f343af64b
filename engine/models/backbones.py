"""Backbones with a feature pyramid on top: ``build_backbone(cfg)``.

Every backbone is a *body* that returns a few feature maps (shallow to deep), a torchvision
``FeaturePyramidNetwork`` that turns them into ``model.fpn_channels``-wide levels, and, when
the config asks for more levels than the body has, extra levels above the deepest one.

How many levels: one per entry of ``model.anchor_sizes`` (the anchor generators and the FCOS
level assignment need exactly one size per level). The pyramid starts at stride 8 for FCOS and
RetinaNet and at stride 4 for Faster R-CNN where the body has a stride-4 map (their usual
designs); with fewer sizes than body maps the shallowest maps are dropped, with more, extra
levels are added: strided 3x3 convs (``LastLevelP6P7``-style) for the dense detectors, 1x1
max-pools (``LastLevelMaxPool``-style) for Faster R-CNN. The standard layouts use torchvision's
own extra blocks, so their state-dict keys match torchvision's detection checkpoints.

State-dict keys follow torchvision's ``BackboneWithFPN`` (``body.*``, ``fpn.*``), so a
converted torchvision detector checkpoint loads with ``load_pretrained``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet34, resnet50
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import (
    ExtraFPNBlock,
    FeaturePyramidNetwork,
    LastLevelMaxPool,
    LastLevelP6P7,
)

from engine.config.schema import Config
from engine.protocol.errors import ConfigError

# Extra levels above the deepest body map: enough for stride 256 on a stride-32 body.
MAX_EXTRA_LEVELS = 3


@dataclass(frozen=True)
class BodyLevel:
    """One feature map a body can return: the child module that produces it, its width, stride."""

    module: str
    channels: int
    stride: int


class FeaturePyramidBackbone(nn.Module):
    """A body plus an FPN; returns an ordered dict of ``out_channels``-wide maps, finest first.

    Attributes:
        out_channels: channels of every pyramid level (what the detection heads need).
        strides: the stride of each returned level, in order.
        body_level_names: names of the levels computed from body maps (the extras excluded).
    """

    def __init__(self, body: nn.Module, levels: list[BodyLevel], out_channels: int,
                 extra_blocks: ExtraFPNBlock | None, extra_strides: list[int]):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork([lvl.channels for lvl in levels], out_channels,
                                         extra_blocks=extra_blocks)
        self.out_channels = out_channels
        self.strides = [lvl.stride for lvl in levels] + extra_strides
        self.body_level_names = [lvl.module for lvl in levels]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


class ExtraLevels(ExtraFPNBlock):
    """``count`` extra pyramid levels above the last one, each at twice the previous stride.

    ``kind="conv"`` generalises torchvision's ``LastLevelP6P7`` (a strided 3x3 conv on P5, then
    ReLU + strided conv for each further level; submodules are named ``p6``, ``p7``... as there);
    ``kind="maxpool"`` generalises ``LastLevelMaxPool`` (a 1x1 stride-2 max-pool per level).
    Used only for the counts torchvision's own blocks do not cover.
    """

    def __init__(self, channels: int, count: int, kind: str):
        super().__init__()
        self.kind = kind
        self.count = count
        if kind == "conv":
            for i in range(count):
                conv = nn.Conv2d(channels, channels, 3, 2, 1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.constant_(conv.bias, 0)
                self.add_module(f"p{6 + i}", conv)

    def forward(self, results: list[Tensor], x: list[Tensor],
                names: list[str]) -> tuple[list[Tensor], list[str]]:
        last = results[-1]
        for i in range(self.count):
            if self.kind == "conv":
                conv = getattr(self, f"p{6 + i}")
                last = conv(last if i == 0 else F.relu(last))
                names.append(f"p{6 + i}")
            else:
                last = F.max_pool2d(last, kernel_size=1, stride=2, padding=0)
                names.append("pool" if i == 0 else f"pool{i + 1}")
            results.append(last)
        return results, names


# --------------------------------------------------------------------------- tiny body

def _conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class TinyBody(nn.Module):
    """A small plain CNN for CPU training from scratch; returns the ``c3``/``c4``/``c5`` maps.

    Channels ``w/2, w, 2w, 4w, 8w`` at strides ``2, 4, 8, 16, 32`` with ``w = backbone.width``.
    Each stage halves the resolution with a strided conv and refines with one more conv.
    Dense 3x3 convs rather than depthwise-separable ones: on CPU a depthwise-separable body of
    the same width has ~8x fewer FLOPs and parameters but trains only ~1.5x faster (depthwise
    convs run far from peak), so per second of training dense convs buy much more capacity.
    """

    def __init__(self, width: int):
        super().__init__()
        w = width
        self.stem = nn.Sequential(_conv_bn_relu(3, w // 2, 2), _conv_bn_relu(w // 2, w, 2))
        self.c3 = nn.Sequential(_conv_bn_relu(w, 2 * w, 2), _conv_bn_relu(2 * w, 2 * w))
        self.c4 = nn.Sequential(_conv_bn_relu(2 * w, 4 * w, 2), _conv_bn_relu(4 * w, 4 * w))
        self.c5 = nn.Sequential(_conv_bn_relu(4 * w, 8 * w, 2), _conv_bn_relu(8 * w, 8 * w))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        c3 = self.c3(self.stem(x))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        return OrderedDict([("c3", c3), ("c4", c4), ("c5", c5)])


def _tiny_body(cfg: Config) -> tuple[nn.Module, list[BodyLevel]]:
    w = cfg.backbone.width
    if w < 8 or w % 2:
        raise ConfigError(f"the tiny backbone needs an even width >= 8, got {w}",
                          key="backbone.width")
    levels = [BodyLevel("c3", 2 * w, 8), BodyLevel("c4", 4 * w, 16), BodyLevel("c5", 8 * w, 32)]
    return TinyBody(w), levels


# --------------------------------------------------------------------------- torchvision bodies

def _norm_layer(cfg: Config) -> Callable[..., nn.Module]:
    return FrozenBatchNorm2d if cfg.backbone.norm == "frozen_bn" else nn.BatchNorm2d


def _check_trainable_layers(cfg: Config, max_value: int) -> int:
    n = cfg.backbone.trainable_layers
    if not 0 <= n <= max_value:
        raise ConfigError(f"backbone {cfg.backbone.name} has {max_value} stages; trainable_layers "
                          f"must be between 0 and {max_value}, got {n}",
                          key="backbone.trainable_layers")
    return n


def _resnet_body(cfg: Config) -> tuple[nn.Module, list[BodyLevel]]:
    constructors = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
    net = constructors[cfg.backbone.name](weights=None, norm_layer=_norm_layer(cfg))
    # Same freezing rule as torchvision's resnet_fpn_backbone: the last n of the five stages.
    n = _check_trainable_layers(cfg, 5)
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:n]
    if n == 5:
        trainable.append("bn1")
    for name, param in net.named_parameters():
        if not any(name.startswith(prefix) for prefix in trainable):
            param.requires_grad_(False)
    expansion = 4 if cfg.backbone.name == "resnet50" else 1
    levels = [BodyLevel(f"layer{i}", 64 * 2 ** (i - 1) * expansion, 2 ** (i + 1))
              for i in (1, 2, 3, 4)]
    return net, levels


def _mobilenet_v3_body(cfg: Config) -> tuple[nn.Module, list[BodyLevel]]:
    features = mobilenet_v3_large(weights=None, norm_layer=_norm_layer(cfg)).features
    # Blocks flagged _is_cn start a new (halved) resolution; the map just before each of them,
    # and the last block, close a stride: those are C2..C5 (strides 4..32).
    starts = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    stage_starts = [0, *starts, len(features) - 1]
    n = _check_trainable_layers(cfg, len(stage_starts))
    freeze_before = len(features) if n == 0 else stage_starts[len(stage_starts) - n]
    for block in features[:freeze_before]:
        for param in block.parameters():
            param.requires_grad_(False)
    ends = [i - 1 for i in starts[1:]] + [len(features) - 1]
    levels = [BodyLevel(str(idx), features[idx].out_channels, 2 ** (k + 2))
              for k, idx in enumerate(ends)]
    return features, levels


BODY_BUILDERS: dict[str, Callable[[Config], tuple[nn.Module, list[BodyLevel]]]] = {
    "tiny": _tiny_body,
    "resnet18": _resnet_body,
    "resnet34": _resnet_body,
    "resnet50": _resnet_body,
    "mobilenet_v3": _mobilenet_v3_body,
}


# --------------------------------------------------------------------------- the pyramid

def _extra_blocks(kind: str, count: int, channels: int) -> ExtraFPNBlock | None:
    if count == 0:
        return None
    if kind == "conv" and count == 2:
        return LastLevelP6P7(channels, channels)
    if kind == "maxpool" and count == 1:
        return LastLevelMaxPool()
    return ExtraLevels(channels, count, kind)


def build_backbone(cfg: Config) -> FeaturePyramidBackbone:
    """``cfg.backbone.name`` with an FPN of ``len(cfg.model.anchor_sizes)`` levels on top.

    Raises ``ConfigError`` (naming ``model.anchor_sizes``) when that many levels cannot be built.
    """
    body, levels = BODY_BUILDERS[cfg.backbone.name](cfg)
    dense = cfg.architecture != "FasterRCNN"
    first_stride = 8 if dense else 4
    levels = [lvl for lvl in levels if lvl.stride >= first_stride]
    wanted = len(cfg.model.anchor_sizes)
    if not 1 <= wanted <= len(levels) + MAX_EXTRA_LEVELS:
        raise ConfigError(
            f"{cfg.architecture} on backbone {cfg.backbone.name} can have 1 to "
            f"{len(levels) + MAX_EXTRA_LEVELS} pyramid levels (strides "
            f"{levels[0].stride}..{levels[-1].stride * 2 ** MAX_EXTRA_LEVELS}), one per anchor "
            f"size; got {wanted} sizes", key="model.anchor_sizes")
    used = levels[max(0, len(levels) - wanted):]
    extra = wanted - len(used)
    last = used[-1].stride
    extra_strides = [last * 2 ** (i + 1) for i in range(extra)]
    channels = cfg.model.fpn_channels
    # Runs the body's children in order up to the deepest map used, returning the named ones
    # (and drops classifier layers such as a ResNet's avgpool/fc).
    getter = IntermediateLayerGetter(body, {lvl.module: lvl.module for lvl in used})
    extra_blocks = _extra_blocks("conv" if dense else "maxpool", extra, channels)
    return FeaturePyramidBackbone(getter, used, channels, extra_blocks, extra_strides)
