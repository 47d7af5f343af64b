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

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torchvision.transforms.v2.functional as F

from engine.config.ops import TRANSFORM_OPS
from engine.protocol.errors import ConfigError

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


def _parse_range(value: Any, name: str, low: float, high: float | None = None
                 ) -> tuple[float, float]:
    """A ``[min, max]`` pair of numbers within ``[low, high]``."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name} must be a [min, max] pair, got {value!r}")
    lo, hi = (_parse_float(v, name, low, high) for v in value)
    if lo > hi:
        raise ValueError(f"{name} must be [min, max] with min <= max, got {list(value)}")
    return lo, hi


def _generator() -> torch.Generator:
    """A torch generator drawn from ``random``, so tensor noise follows the sample's seed."""
    return torch.Generator().manual_seed(random.getrandbits(63))


class RandomErasing:
    """With probability ``prob``, paint one random rectangle (one attempt, as
    PaddleDetection's ``RandomErasing``): its area is a fraction of the image drawn from
    ``scale``, its aspect ratio (height / width) drawn log-uniformly from ``ratio``; a
    rectangle that does not fit leaves the image as it was. ``value``: ``'random'`` fills
    with uniform noise (0-255 per pixel and channel), a number or ``[r, g, b]`` with that
    colour. Boxes are untouched (the objects are still there, partly hidden)."""

    def __init__(self, prob: float = 0.5, scale: Any = (0.02, 0.33), ratio: Any = (0.3, 3.3),
                 value: Any = 0):
        self.prob = _parse_float(prob, "prob", 0.0, 1.0)
        self.scale = _parse_range(scale, "scale", 0.0, 1.0)
        self.ratio = _parse_range(ratio, "ratio", 1e-6)
        if value == "random":
            self.value: str | tuple[int, ...] = "random"
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)
              and 0 <= value <= 255):
            self.value = (round(value),) * 3
        elif (isinstance(value, (list, tuple)) and len(value) == 3
              and all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 255
                      for c in value)):
            self.value = tuple(round(c) for c in value)
        else:
            raise ValueError(f"value must be 'random', a grey level 0-255 or [r, g, b], "
                             f"got {value!r}")

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if random.random() >= self.prob:
            return image, target
        height, width = image.shape[-2:]
        area = random.uniform(*self.scale) * height * width
        aspect = math.exp(random.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if not (0 < h < height and 0 < w < width):
            return image, target
        top, left = random.randint(0, height - h), random.randint(0, width - w)
        image = image.clone()  # the other view may share the input
        if self.value == "random":
            fill = torch.randint(0, 256, (image.shape[0], h, w), dtype=image.dtype,
                                 generator=_generator())
        else:
            fill = torch.tensor(self.value, dtype=image.dtype).view(-1, 1, 1)
        image[:, top:top + h, left:left + w] = fill
        return image, target

    def __repr__(self) -> str:
        return (f"RandomErasing(prob={self.prob}, scale={list(self.scale)}, "
                f"ratio={list(self.ratio)}, value={self.value!r})")


class GaussianBlur:
    """With probability ``prob``, a Gaussian blur whose sigma is drawn from ``sigma``
    (PaddleDetection's ``RandomGaussianBlur``: kernel 23, reflected borders).

    The kernel is cut at 4 sigma when that is narrower than ``kernel_size``: the taps cut
    weigh less than 0.04 % of the centre one and change no pixel by more than one grey
    level, and at sigma 1 the blur costs a fifth of the full 23 x 23 kernel.
    """

    def __init__(self, prob: float = 0.5, sigma: Any = (0.1, 2.0), kernel_size: int = 23):
        self.prob = _parse_float(prob, "prob", 0.0, 1.0)
        self.sigma = _parse_range(sigma, "sigma", 1e-3)
        if (isinstance(kernel_size, bool) or not isinstance(kernel_size, int)
                or kernel_size < 1 or kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be an odd positive integer, got {kernel_size!r}")
        self.kernel_size = kernel_size

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if random.random() >= self.prob:
            return image, target
        sigma = random.uniform(*self.sigma)
        size = min(self.kernel_size, 2 * math.ceil(4.0 * sigma) + 1)
        # reflect padding needs the image wider than half the kernel
        size = min(size, 2 * ((min(image.shape[-2:]) - 1) // 2) + 1)
        if size < 3:
            return image, target
        return F.gaussian_blur(image, [size, size], [sigma, sigma]), target

    def __repr__(self) -> str:
        return (f"GaussianBlur(prob={self.prob}, sigma={list(self.sigma)}, "
                f"kernel_size={self.kernel_size})")


class RandomGrayscale:
    """With probability ``prob``, replace the colours by their luma (ITU-R 601), kept as
    three equal channels so the model's input shape does not change."""

    def __init__(self, prob: float = 0.2):
        self.prob = _parse_float(prob, "prob", 0.0, 1.0)

    def __call__(self, image: torch.Tensor, target: Target) -> tuple[torch.Tensor, Target]:
        if random.random() >= self.prob:
            return image, target
        return F.rgb_to_grayscale(image, num_output_channels=3), target

    def __repr__(self) -> str:
        return f"RandomGrayscale(prob={self.prob})"


Transform = Callable[[torch.Tensor, Target], tuple[torch.Tensor, Target]]

# The config name of every op; kept equal to the keys of schema.TRANSFORM_OPS (tested).
OPS: dict[str, Callable[..., Transform]] = {
    "Resize": Resize,
    "RandomResize": RandomResize,
    "RandomFlip": RandomFlip,
    "ColorJitter": ColorJitter,
    "RandomErasing": RandomErasing,
    "GaussianBlur": GaussianBlur,
    "RandomGrayscale": RandomGrayscale,
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


def build_transforms(ops: list[dict], *, section: str = "sample_transforms",
                     allowed: Sequence[str] | None = None) -> Compose:
    """Build ``sample_transforms`` (a list of one-key mappings ``{Op: {args}}``).

    ``section`` (e.g. ``TrainReader.sample_transforms``) names the config key in errors.
    A bad op or argument is a ``ConfigError`` naming the op and what is allowed.
    ``allowed`` restricts the ops (the semi-supervised views take photometric ops only).
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
        if allowed is not None and name not in allowed:
            raise ConfigError(f"{name} is not allowed here; allowed: " + ", ".join(allowed),
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
