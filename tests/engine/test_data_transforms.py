"""Transforms keep the boxes on the objects."""

from __future__ import annotations

import random

import pytest
import torch

from engine.config.ops import TRANSFORM_OPS
from engine.data.transforms import (
    OPS,
    ColorJitter,
    Compose,
    RandomFlip,
    RandomResize,
    Resize,
    build_transforms,
    hflip,
    output_size,
)
from engine.protocol.errors import ConfigError


def _scene(height: int = 120, width: int = 200) -> tuple[torch.Tensor, dict]:
    """A dark image with two bright rectangles and their exact boxes."""
    image = torch.full((3, height, width), 20, dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [120.0, 30.0, 190.0, 110.0]])
    for x0, y0, x1, y1 in boxes.int().tolist():
        image[:, y0:y1, x0:x1] = 230
    return image, {"boxes": boxes, "labels": torch.tensor([1, 2]), "image_id": 1}


def _bright_extent(image: torch.Tensor, box: torch.Tensor) -> tuple[int, int, int, int]:
    """Pixel extent of the bright pixels inside (a 3 px margin around) ``box``."""
    x0, y0, x1, y1 = box.tolist()
    m = 3
    x0, y0 = max(int(x0) - m, 0), max(int(y0) - m, 0)
    region = image[0, y0:int(y1) + m, x0:int(x1) + m] > 125
    rows = torch.nonzero(region.any(dim=1)).flatten()
    cols = torch.nonzero(region.any(dim=0)).flatten()
    return (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1,
            y0 + int(rows[-1]) + 1)


def test_op_names_match_the_schema() -> None:
    assert set(OPS) == set(TRANSFORM_OPS)


def test_hflip_mirrors_pixels_and_boxes() -> None:
    image, target = _scene()
    flipped, ftarget = hflip(image, target)
    assert ftarget["boxes"][0].tolist() == [150.0, 20.0, 190.0, 60.0]
    for box in ftarget["boxes"]:
        assert _bright_extent(flipped, box) == tuple(int(v) for v in box.tolist())
    twice, ttarget = hflip(flipped, ftarget)
    assert torch.equal(twice, image) and torch.equal(ttarget["boxes"], target["boxes"])
    assert torch.equal(target["boxes"], _scene()[1]["boxes"])  # input left untouched


def test_random_flip_probability_extremes() -> None:
    image, target = _scene()
    same, starget = RandomFlip(prob=0.0)(image, target)
    assert same is image and starget is target
    flipped, _ = RandomFlip(prob=1.0)(image, target)
    assert torch.equal(flipped, image.flip(-1))


@pytest.mark.parametrize(("size", "keep_ratio", "expected"), [
    (100, True, (60, 100)),          # longest side = 100
    (400, True, (240, 400)),         # upscaling too
    (100, False, (100, 100)),
    ((90, 90), True, (54, 90)),      # fits inside [h, w]
    ((60, 300), True, (60, 100)),
    ((50, 70), False, (50, 70)),
])
def test_output_size(size, keep_ratio: bool, expected: tuple[int, int]) -> None:
    assert output_size(120, 200, size, keep_ratio) == expected


def test_resize_scales_boxes_with_the_pixels() -> None:
    image, target = _scene()
    out, otarget = Resize(target_size=100)(image, target)
    assert out.shape == (3, 60, 100) and out.dtype == torch.uint8
    assert torch.allclose(otarget["boxes"], target["boxes"] * 0.5)
    for box in otarget["boxes"]:
        got = torch.tensor(_bright_extent(out, box), dtype=torch.float32)
        assert (got - box).abs().max() <= 1.0  # antialiasing blurs by at most a pixel


def test_resize_without_ratio_and_boxes_stay_inside() -> None:
    image, target = _scene()
    out, otarget = Resize(target_size=[64, 64], keep_ratio=False)(image, target)
    assert out.shape == (3, 64, 64)
    sx, sy = 64 / 200, 64 / 120
    assert torch.allclose(otarget["boxes"][1], torch.tensor([120 * sx, 30 * sy, 190 * sx,
                                                             110 * sy]))
    assert otarget["boxes"][:, 0::2].max() <= 64 and otarget["boxes"][:, 1::2].max() <= 64


def test_resize_to_the_same_size_is_free() -> None:
    image, target = _scene()
    out, otarget = Resize(target_size=200)(image, target)
    assert out is image and otarget is target


def test_random_resize_draws_from_sizes_reproducibly() -> None:
    op = RandomResize(sizes=[80, 100, 120])
    image, target = _scene()
    random.seed(0)
    first = [op(image, target)[0].shape[-1] for _ in range(20)]
    random.seed(0)
    assert [op(image, target)[0].shape[-1] for _ in range(20)] == first
    assert set(first) == {80, 100, 120}


def test_color_jitter_changes_pixels_not_boxes() -> None:
    image, target = _scene()
    random.seed(1)
    out, otarget = ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1)(
        image, target)
    assert out.dtype == torch.uint8 and out.shape == image.shape
    assert not torch.equal(out, image)
    assert otarget["boxes"] is target["boxes"]
    same, _ = ColorJitter(brightness=0.5, prob=0.0)(image, target)
    assert same is image


def test_build_transforms_from_config_ops() -> None:
    compose = build_transforms([{"RandomResize": {"sizes": [64]}}, {"RandomFlip": {"prob": 1.0}},
                                {"ColorJitter": None}])
    assert isinstance(compose, Compose) and len(compose.transforms) == 3
    image, target = _scene()
    out, otarget = compose(image, target)
    assert out.shape == (3, 38, 64)
    scale = 64 / 200
    assert torch.allclose(otarget["boxes"][0], torch.tensor(
        [64 - 50 * scale, 20 * 38 / 120, 64 - 10 * scale, 60 * 38 / 120]))
    assert "RandomFlip(prob=1.0)" in repr(compose)


@pytest.mark.parametrize(("ops", "fragment"), [
    ([{"Rotate": {}}], "unknown transform 'Rotate'; allowed: Resize"),
    ([{"RandomFlip": {"p": 0.5}}], "RandomFlip has no argument 'p'; allowed: prob"),
    ([{"RandomFlip": {"prob": 2}}], "prob must be between 0.0 and 1.0, got 2"),
    ([{"Resize": {}}], "target_size is required"),
    ([{"Resize": {"target_size": [1, 2, 3]}}], "target_size must be a positive integer"),
    ([{"Resize": {"target_size": 64, "keep_ratio": "yes"}}], "keep_ratio must be true or false"),
    ([{"RandomResize": {"sizes": []}}], "sizes must be a non-empty list"),
    ([{"ColorJitter": {"hue": 0.9}}], "hue must be between 0.0 and 0.5"),
    ([{"RandomFlip": 0.5}], "the arguments of RandomFlip must be a mapping"),
    (["RandomFlip"], "one-key mapping"),
])
def test_build_transforms_errors_name_the_op(ops: list, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_transforms([{"RandomFlip": {}}, *ops], section="TrainReader.sample_transforms")
    assert fragment in str(err.value)
    assert err.value.key == "TrainReader.sample_transforms[1]"
