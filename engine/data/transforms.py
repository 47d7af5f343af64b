"""Per-image transforms named in ``sample_transforms`` (see ``TRANSFORM_OPS``).

Each op takes and returns ``(image, target)``: ``image`` a uint8 ``[3, H, W]`` tensor,
``target["boxes"]`` float32 xyxy pixels, kept right by every op (scaled on resize,
mirrored on flip, clipped to the image). Images stay uint8 until the dataset converts them
to float at the very end: uint8 resizing is torchvision's fast path and this is the CPU
hot loop of training.

Randomness comes from Python's ``random`` module, which the DataLoader seeds in every
worker (and ``worker_init_fn`` seeds again explicitly), so a seeded run draws the same
augmentations.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchvision.transforms.v2.functional as F

from engine.config.schema import TRANSFORM_OPS
from engine.errors import ConfigError

Target = dict[str, Any]
Size = int | tuple[int, int]


def _parse_size(value: Any, name: str) -> Size:
    """A side length ``n`` or an ``[h, w]`` pair of positive integers."""
    if value is None:
        raise ValueError(f"{name} is required (a side length or [height, width])")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return int(value[0]), int(value[1])
    raise ValueError(f"{name} must be a positive integer or [height, width], got {value!r}")


def _parse_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _parse_float(value: Any, name: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return float(value)


def output_size(height: int, width: int, size: Size, keep_ratio: bool) -> tuple[int, int]:
    """The ``(h, w)`` an image is resized to.

    ``keep_ratio`` with an int: the longest side becomes ``size``; with ``[h, w]``: the
    largest size that fits in it. Without ``keep_ratio``: exactly ``size`` (square for an
    int).
    """
    if isinstance(size, int):
        if not keep_ratio:
            return size, size
        scale = size / max(height, width)
    else:
        if not keep_ratio:
            return size
        scale = min(size[0] / height, size[1] / width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: torch.Tensor, target: Target, height: int, width: int
           ) -> tuple[torch.Tensor, Target]:
    """Resize to exactly ``(height, width)`` (bilinear, antialiased) and scale the boxes."""
    old_h, old_w = image.shape[-2:]
    if (old_h, old_w) == (height, width):
        return image, target
    image = F.resize(image, [height, width], antialias=True)
    sx, sy = width / old_w, height / old_h
    boxes = target["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    boxes[:, 0::2].clamp_(0.0, width)
    boxes[:, 1::2].clamp_(0.0, height)
    return image, {**target, "boxes": boxes}


class Resize:
    """Resize to ``target_size`` (see ``output_size``)."""

    def __init__(self, target_size: Any = None, keep_ratio: bool = True):
        self.target_size = _parse_size(target_size, "target_size")
        self.keep_ratio = _parse_bool(keep_ratio, "keep_ratio")

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        h, w = output_size(*image.shape[-2:], self.target_size, self.keep_ratio)
        return resize(image, target, h, w)

    def __repr__(self) -> str:
        return f"Resize(target_size={self.target_size}, keep_ratio={self.keep_ratio})"


class RandomResize:
    """Resize to one of ``sizes``, drawn uniformly per image (multi-scale training)."""

    def __init__(self, sizes: Any = None, keep_ratio: bool = True):
        if not isinstance(sizes, (list, tuple)) or not sizes:
            raise ValueError(f"sizes must be a non-empty list of side lengths, got {sizes!r}")
        self.sizes = [_parse_size(s, "each of sizes") for s in sizes]
        self.keep_ratio = _parse_bool(keep_ratio, "keep_ratio")

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        size = random.choice(self.sizes)
        h, w = output_size(*image.shape[-2:], size, self.keep_ratio)
        return resize(image, target, h, w)

    def __repr__(self) -> str:
        return f"RandomResize(sizes={self.sizes}, keep_ratio={self.keep_ratio})"


def hflip(image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
    """Mirror left-right; a box ``[x0, x1]`` becomes ``[W - x1, W - x0]``."""
    width = image.shape[-1]
    boxes = target["boxes"]
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return image.flip(-1), {**target, "boxes": flipped}


class RandomFlip:
    """Horizontal flip with probability ``prob``."""

    def __init__(self, prob: float = 0.5):
        self.prob = _parse_float(prob, "prob", 0.0, 1.0)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if random.random() < self.prob:
            return hflip(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob})"


class ColorJitter:
    """Random brightness, contrast, saturation and hue, all applied with probability
    ``prob``. Factors are drawn from ``[1 - x, 1 + x]`` (hue: a shift in ``[-h, h]``).
    A fixed order keeps it cheap and easy to reason about; boxes are untouched."""

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0, prob: float = 1.0):
        self.brightness = _parse_float(brightness, "brightness", 0.0)
        self.contrast = _parse_float(contrast, "contrast", 0.0)
        self.saturation = _parse_float(saturation, "saturation", 0.0)
        self.hue = _parse_float(hue, "hue", 0.0, 0.5)
        self.prob = _parse_float(prob, "prob", 0.0, 1.0)

    @staticmethod
    def _factor(amount: float) -> float:
        return random.uniform(max(0.0, 1.0 - amount), 1.0 + amount)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if random.random() >= self.prob:
            return image, target
        if self.brightness > 0:
            image = F.adjust_brightness(image, self._factor(self.brightness))
        if self.contrast > 0:
            image = F.adjust_contrast(image, self._factor(self.contrast))
        if self.saturation > 0:
            image = F.adjust_saturation(image, self._factor(self.saturation))
        if self.hue > 0:
            image = F.adjust_hue(image, random.uniform(-self.hue, self.hue))
        return image, target

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue}, prob={self.prob})")


Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]

# The config name of every op; kept equal to the keys of schema.TRANSFORM_OPS (tested).
OPS: dict[str, Callable[..., Transform]] = {
    "Resize": Resize,
    "RandomResize": RandomResize,
    "RandomFlip": RandomFlip,
    "ColorJitter": ColorJitter,
}


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


def build_transforms(ops: list[dict], *, section: str = "sample_transforms") -> Compose:
    """Build ``sample_transforms`` (a list of one-key mappings ``{Op: {args}}``).

    ``section`` (e.g. ``TrainReader.sample_transforms``) names the config key in errors.
    A bad op or argument is a ``ConfigError`` naming the op and what is allowed.
    """
    built = []
    for i, op in enumerate(ops):
        where = f"{section}[{i}]"
        if not isinstance(op, dict) or len(op) != 1:
            raise ConfigError("each transform is a one-key mapping like "
                              "{RandomFlip: {prob: 0.5}}", key=where)
        ((name, args),) = op.items()
        if name not in OPS:
            raise ConfigError(f"unknown transform {name!r}; allowed: " + ", ".join(OPS),
                              key=where)
        args = {} if args is None else args
        if not isinstance(args, dict):
            raise ConfigError(f"the arguments of {name} must be a mapping", key=where)
        unknown = sorted(set(args) - set(TRANSFORM_OPS[name]))
        if unknown:
            raise ConfigError(f"{name} has no argument {unknown[0]!r}; allowed: "
                              + ", ".join(TRANSFORM_OPS[name]), key=where)
        try:
            built.append(OPS[name](**args))
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}", key=where) from None
    return Compose(built)
