"""The photometric ops of the strong view: erasing, blur, grayscale (and the default
strong augmentation built from them)."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torchvision.transforms.v2.functional as F

from engine.config.ops import DEFAULT_STRONG_AUG, PHOTOMETRIC_OPS
from engine.data.transforms import (
    GaussianBlur,
    RandomErasing,
    RandomGrayscale,
    build_transforms,
)
from engine.protocol.errors import ConfigError


def _target() -> dict:
    return {"boxes": torch.tensor([[4.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([1]),
            "image_id": 3}


def _photo(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)


def _changed_rect(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the pixels that changed; they must fill that box."""
    changed = (before != after).any(dim=0)
    rows = torch.nonzero(changed.any(dim=1)).flatten()
    cols = torch.nonzero(changed.any(dim=0)).flatten()
    top, left = int(rows[0]), int(cols[0])
    h, w = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
    return top, left, h, w


def test_erasing_paints_one_rectangle_within_scale_and_ratio() -> None:
    op = RandomErasing(prob=1.0, scale=[0.05, 0.2], ratio=[0.3, 3.3], value=7)
    image = torch.full((3, 60, 80), 100, dtype=torch.uint8)
    target = _target()
    for seed in range(30):
        random.seed(seed)
        out, out_target = op(image, target)
        assert out is not image and torch.equal(image, torch.full_like(image, 100))
        assert out_target["boxes"] is target["boxes"]  # boxes untouched
        top, left, h, w = _changed_rect(image, out)
        assert (out[:, top:top + h, left:left + w] == 7).all()
        assert int((out != 100).any(dim=0).sum()) == h * w  # exactly one filled rectangle
        # rounding each side to whole pixels moves area and ratio a little
        assert 0.05 * 0.8 <= h * w / (60 * 80) <= 0.2 * 1.25
        assert 0.3 / 1.5 <= h / w <= 3.3 * 1.5


def test_erasing_random_fill_is_noise_drawn_from_the_seed() -> None:
    op = RandomErasing(prob=1.0, scale=[0.2, 0.2], ratio=[1.0, 1.0], value="random")
    image = torch.full((3, 50, 50), 128, dtype=torch.uint8)
    random.seed(4)
    first, _ = op(image, _target())
    random.seed(4)
    again, _ = op(image, _target())
    assert torch.equal(first, again)
    top, left, h, w = _changed_rect(image, first)
    assert (h, w) == (22, 22)  # sqrt(0.2 * 2500) = 22.4
    patch = first[:, top:top + h, left:left + w].float()
    assert patch.std() > 50 and len(torch.unique(patch)) > 100   # noise, not a colour
    assert 90 < patch.mean() < 165                               # uniform over 0..255


def test_erasing_that_does_not_fit_and_prob_zero_leave_the_image() -> None:
    image = _photo()
    too_tall = RandomErasing(prob=1.0, scale=[0.9, 1.0], ratio=[8.0, 8.0], value=0)
    random.seed(0)
    assert too_tall(image, _target())[0] is image
    assert RandomErasing(prob=0.0, value="random")(image, _target())[0] is image


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def test_blur_spreads_a_point_into_the_gaussian() -> None:
    image = torch.zeros((3, 41, 41), dtype=torch.uint8)
    image[:, 20, 20] = 255
    op = GaussianBlur(prob=1.0, sigma=[1.5, 1.5], kernel_size=23)
    random.seed(0)
    out, target = op(image, _target())
    assert torch.equal(target["boxes"], _target()["boxes"])
    g = _gaussian(23, 1.5)
    expected = torch.zeros(41, 41, dtype=torch.float64)
    expected[9:32, 9:32] = 255 * torch.outer(g, g)
    assert (out[0].double() - expected).abs().max() <= 1.0
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert out[0, 20, 20] == out.max() and int(out[0].sum()) == pytest.approx(255, abs=40)


def test_blur_cut_at_four_sigma_stays_within_a_grey_level_of_the_full_kernel() -> None:
    image = _photo(64, 64, seed=2)
    for sigma in (0.4, 1.0, 2.0):
        random.seed(0)
        out, _ = GaussianBlur(prob=1.0, sigma=[sigma, sigma], kernel_size=23)(image, {})
        full = F.gaussian_blur(image, [23, 23], [sigma, sigma])
        assert (out.int() - full.int()).abs().max() <= 1, sigma
    assert GaussianBlur(prob=0.0)(image, {})[0] is image


def test_grayscale_gives_three_equal_luma_channels() -> None:
    image = _photo()
    random.seed(0)
    out, target = RandomGrayscale(prob=1.0)(image, _target())
    assert out.shape == image.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    r, g, b = image.double()
    # torchvision truncates the uint8 luma instead of rounding it
    assert (out[0].double() - (0.299 * r + 0.587 * g + 0.114 * b)).abs().max() < 1.5
    assert torch.equal(target["boxes"], _target()["boxes"])
    assert RandomGrayscale(prob=0.0)(image, {})[0] is image


def test_default_strong_aug_changes_pixels_never_geometry() -> None:
    strong = build_transforms([dict(op) for op in DEFAULT_STRONG_AUG], section="strong_aug",
                              allowed=PHOTOMETRIC_OPS)
    image, changed = _photo(80, 120, seed=5), 0
    for seed in range(20):
        random.seed(seed)
        out, target = strong(image, _target())
        assert out.shape == image.shape and out.dtype == torch.uint8
        assert torch.equal(target["boxes"], _target()["boxes"])
        changed += not torch.equal(out, image)
    assert changed >= 18  # P(no op fires) = 0.2 * 0.3 * 0.5 * 0.7 * 0.5 * 0.8 = 0.8 %


@pytest.mark.parametrize(("ops", "allowed", "expect"), [
    ([{"Resize": {"target_size": 64}}], PHOTOMETRIC_OPS, r"v\[0\].*Resize is not allowed"),
    ([{"RandomErasing": {"value": "noise"}}], None, r"RandomErasing: value must be 'random'"),
    ([{"RandomErasing": {"scale": [0.3, 0.1]}}], None, r"scale must be \[min, max\]"),
    ([{"GaussianBlur": {"sigma": 1.0}}], None, r"GaussianBlur: sigma must be a \[min, max\]"),
    ([{"GaussianBlur": {"kernel_size": 4}}], None, r"kernel_size must be an odd"),
    ([{"RandomGrayscale": {"prob": 2}}], None, r"prob must be between 0.0 and 1.0"),
    ([{"RandomGrayscale": {"p": 0.5}}], None, r"no argument 'p'; allowed: prob"),
])
def test_bad_photometric_ops_name_op_and_rule(ops: list, allowed: tuple | None,
                                              expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        build_transforms(ops, section="v", allowed=allowed)


def test_erasing_ratio_is_height_over_width() -> None:
    op = RandomErasing(prob=1.0, scale=[0.1, 0.1], ratio=[4.0, 4.0], value=0)
    image = torch.full((3, 100, 100), 50, dtype=torch.uint8)
    random.seed(1)
    _, _, h, w = _changed_rect(image, op(image, {})[0])
    assert (h, w) == (round(math.sqrt(1000 * 4)), round(math.sqrt(1000 / 4)))  # tall
