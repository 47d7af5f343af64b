"""Semi-supervised data: weak/strong views that share geometry, the unlabeled datasets, and
the two-stream loader (independent reshuffles, exact restart at any step, rank shards)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image

from engine.config.schema import Config, UnsupDatasetConfig, validate
from engine.data.semi import PairedViews, SemiBatch, SemiLoader, build_semi_loader
from engine.data.shapes import generate_shapes
from engine.data.transforms import Compose, build_transforms
from engine.data.unlabeled import UnlabeledImages
from engine.protocol.errors import DataError

SHARED = [{"RandomResize": {"sizes": [48, 64, 80]}}, {"RandomFlip": {"prob": 0.5}}]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 shapes images of 64 px: annotations/train.json + train/."""
    root = tmp_path_factory.mktemp("semi_shapes")
    generate_shapes(root, "train", 30, seed=2, image_size=64)
    return root


def _config(root: Path, **overrides) -> Config:
    def part() -> dict:
        return {"dataset_dir": str(root), "image_dir": "train",
                "anno_path": "annotations/train.json",
                "semi_split": {"percent": 40, "seed": 3}}
    raw = {"num_classes": 4, "worker_num": 0, "seed": 5, "ssod_method": "DenseTeacher",
           "TrainDataset": part(), "UnsupTrainDataset": part(),
           "EvalDataset": {"dataset_dir": str(root), "image_dir": "train",
                           "anno_path": "annotations/train.json"},
           "SemiTrainReader": {"sup_batch_size": 2, "unsup_batch_size": 3,
                               "sample_transforms": SHARED}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return validate(raw)


# ------------------------------------------------------------------------ paired views

class _Marker:
    """A ``load_raw`` source: one black image with a white 4x4 marker and its box."""

    def __len__(self) -> int:
        return 1

    def load_raw(self, idx: int) -> tuple[torch.Tensor, dict]:
        image = torch.zeros((3, 60, 90), dtype=torch.uint8)
        image[:, 20:24, 61:65] = 255
        return image, {"boxes": torch.tensor([[61.0, 20.0, 65.0, 24.0]]),
                       "labels": torch.tensor([1]), "image_id": 1, "orig_size": (60, 90)}


def _centroid(view: torch.Tensor) -> tuple[float, float]:
    """(x, y) of the brightness-weighted centre of the pixels above half the maximum."""
    lum = view.sum(dim=0)
    weight = torch.where(lum >= lum.max() / 2, lum, torch.zeros_like(lum))
    ys, xs = torch.meshgrid(torch.arange(lum.shape[0]), torch.arange(lum.shape[1]),
                            indexing="ij")
    total = weight.sum()
    return float((weight * xs).sum() / total), float((weight * ys).sum() / total)


def test_views_share_every_pixel_position() -> None:
    """Strong = grayscale(weak) pixel for pixel, under random resizes and flips: both views
    come from one geometric transform of the image."""
    shared = build_transforms(SHARED)
    strong = build_transforms([{"RandomGrayscale": {"prob": 1.0}}])
    views = PairedViews(_Marker(), shared, Compose([]), strong)
    sizes, flips = set(), set()
    for seed in range(24):
        weak, strong_view, target = views[(0, seed)]
        assert weak.shape == strong_view.shape and target["size"] == tuple(weak.shape[-2:])
        weak_u8 = (weak * 255).round().to(torch.uint8)
        expected = F.rgb_to_grayscale(weak_u8, num_output_channels=3)
        assert torch.equal((strong_view * 255).round().to(torch.uint8), expected)
        x0, y0, x1, y1 = target["boxes"][0].tolist()
        cx, cy = _centroid(weak)
        assert x0 <= cx <= x1 and y0 <= cy <= y1  # the box is on the marker
        sizes.add(weak.shape[-1])
        flips.add(cx < weak.shape[-1] / 2)
    assert sizes == {48, 64, 80} and flips == {True, False}  # the geometry did vary


def test_marker_lands_on_the_same_point_in_both_views_under_strong_photometry() -> None:
    shared = build_transforms(SHARED)
    weak = build_transforms([{"ColorJitter": {"brightness": 0.3, "contrast": 0.3,
                                              "prob": 1.0}}])
    strong = build_transforms([
        {"ColorJitter": {"prob": 1.0, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4,
                         "hue": 0.1}},
        {"GaussianBlur": {"prob": 1.0, "sigma": [0.1, 2.0]}},
        {"RandomGrayscale": {"prob": 0.5}}])
    views = PairedViews(_Marker(), shared, weak, strong)
    for seed in range(16):
        weak_view, strong_view, target = views[(0, seed)]
        assert not torch.equal(weak_view, strong_view)
        (wx, wy), (sx, sy) = _centroid(weak_view), _centroid(strong_view)
        assert abs(wx - sx) < 0.5 and abs(wy - sy) < 0.5, seed
        x0, y0, x1, y1 = target["boxes"][0].tolist()
        assert abs(wx - (x0 + x1) / 2) < 1.0 and abs(wy - (y0 + y1) / 2) < 1.0


def test_views_are_a_function_of_the_seed_and_leave_random_alone(shapes: Path) -> None:
    labeled = build_semi_loader(_config(shapes)).labeled
    random.seed(123)
    state = random.getstate()
    a, b, c = labeled[(0, 7)], labeled[(0, 7)], labeled[(0, 8)]
    assert random.getstate() == state
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])  # another seed, another sample
    assert not torch.equal(a[0], a[1])  # weak and strong differ (default strong aug)


# ------------------------------------------------------------------- unlabeled datasets

def test_semi_split_parts_are_disjoint_and_cover_the_file(shapes: Path) -> None:
    loader = build_semi_loader(_config(shapes))
    labeled_ids = set(loader.labeled.source.image_ids)
    unlabeled_ids = set(loader.unlabeled.source.image_ids.tolist())
    assert len(labeled_ids) == 12 and len(unlabeled_ids) == 18  # int(40% of 30)
    assert not labeled_ids & unlabeled_ids and len(labeled_ids | unlabeled_ids) == 30
    _, target = loader.unlabeled.source.load_raw(0)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_supervised_training_on_the_labeled_part_sees_the_same_images(shapes: Path) -> None:
    """The supervised baseline of a semi experiment: TrainDataset.semi_split alone."""
    from engine.data.loader import build_datasets

    cfg = _config(shapes)
    train, _ = build_datasets(cfg, with_eval=False)
    labeled = build_semi_loader(cfg).labeled.source
    assert train.image_ids == labeled.image_ids and len(train) == 12
    assert [im["id"] for im in train.coco_json["images"]] == sorted(train.image_ids)


def test_image_folder_lists_images_sorted_and_skips_other_files(tmp_path: Path) -> None:
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    for name, size in (("b.png", (30, 20)), ("a.JPG", (16, 24)), ("c.webp", (8, 8))):
        Image.new("RGB", size, (10, 200, 30)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub.png").mkdir()  # a folder with an image-like name
    ds = UnlabeledImages(UnsupDatasetConfig(name="ImageFolder", dataset_dir=str(tmp_path),
                                            image_dir="unlabeled"))
    assert ds.file_names.tolist() == ["a.JPG", "b.png", "c.webp"]
    image, target = ds.load_raw(1)
    assert image.shape == (3, 20, 30) and image.dtype == torch.uint8
    assert target["image_id"] == 2 and target["orig_size"] == (20, 30)


@pytest.mark.parametrize("make", ["missing", "empty", "no_images"])
def test_image_folder_without_images_is_a_clear_error(tmp_path: Path, make: str) -> None:
    folder = tmp_path / "unlabeled"
    if make != "missing":
        folder.mkdir()
    if make == "no_images":
        (folder / "readme.md").write_text("x")
    cfg = UnsupDatasetConfig(name="ImageFolder", dataset_dir=str(tmp_path),
                             image_dir="unlabeled")
    with pytest.raises(DataError) as err:
        UnlabeledImages(cfg)
    text = err.value.render()
    assert "UnsupTrainDataset.image_dir" in text and str(folder) in text
    assert ("not found" if make == "missing" else "no image files") in text


def test_coco_json_without_annotations_is_an_unlabeled_set(shapes: Path,
                                                           tmp_path: Path) -> None:
    data = json.loads((shapes / "annotations" / "train.json").read_text())
    (tmp_path / "info.json").write_text(json.dumps({"images": data["images"][:5]}))
    ds = UnlabeledImages(UnsupDatasetConfig(dataset_dir=str(shapes), image_dir="train",
                                            anno_path=str(tmp_path / "info.json")))
    assert len(ds) == 5 and ds.image_ids.tolist() == [1, 2, 3, 4, 5]
    (tmp_path / "none.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="lists no images"):
        UnlabeledImages(UnsupDatasetConfig(dataset_dir=str(shapes), image_dir="train",
                                           anno_path=str(tmp_path / "none.json")))


# ------------------------------------------------------------------------------ loader

def _plan(loader: SemiLoader, steps: range) -> list[tuple[list[int], list[int]]]:
    out = []
    for step in steps:
        sup, unsup = loader.plan(step)
        out.append(([i for i, _ in sup], [i for i, _ in unsup]))
    return out


def test_streams_cycle_and_reshuffle_independently(shapes: Path) -> None:
    cfg = _config(shapes, SemiTrainReader={"drop_last": False})
    loader = build_semi_loader(cfg)
    assert len(loader) == 6 and loader.unlabeled_batches_per_cycle == 6  # 12/2, 18/3
    cfg = _config(shapes, SemiTrainReader={"drop_last": False, "unsup_batch_size": 4})
    loader = build_semi_loader(cfg)
    assert (len(loader), loader.unlabeled_batches_per_cycle) == (6, 5)  # ceil(18/4)
    plan = _plan(loader, range(30))
    labeled_cycles = [sum((p[0] for p in plan[c * 6:(c + 1) * 6]), []) for c in range(5)]
    unlabeled_cycles = [sum((p[1] for p in plan[c * 5:(c + 1) * 5]), []) for c in range(6)]
    for cycle in labeled_cycles:
        assert sorted(cycle) == list(range(12))
    for cycle in unlabeled_cycles:
        assert sorted(cycle) == list(range(18))  # every unlabeled image, once per cycle
    assert len({tuple(c) for c in labeled_cycles}) == 5     # a new order every cycle
    assert len({tuple(c) for c in unlabeled_cycles}) == 6
    # each stream is located by the step alone: the other's batch size does not matter
    other = build_semi_loader(_config(shapes, SemiTrainReader={
        "drop_last": False, "unsup_batch_size": 4, "sup_batch_size": 3}))
    assert [p[1] for p in _plan(other, range(30))] == [p[1] for p in plan]
    # and the augmentation seeds differ between streams, steps and cycles
    seeds = [s for step in range(30) for part in loader.plan(step) for _, s in part]
    assert len(set(seeds)) == len(seeds)


def test_ranks_get_disjoint_shards_of_each_stream(shapes: Path) -> None:
    cfg = _config(shapes, SemiTrainReader={"drop_last": False})
    ranks = [build_semi_loader(cfg, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 3  # 6 labeled images per rank, batch 2
    for step in range(3):  # one labeled cycle
        (s0, u0), (s1, u1) = (_plan(r, range(step, step + 1))[0] for r in ranks)
        assert not set(s0) & set(s1) and not set(u0) & set(u1)
    for stream, n in ((0, 12), (1, 18)):
        per_cycle = len(ranks[0]) if stream == 0 else ranks[0].unlabeled_batches_per_cycle
        seen = [i for r in ranks for p in _plan(r, range(per_cycle)) for i in p[stream]]
        assert sorted(seen) == list(range(n))


def _take(it, n: int) -> list[SemiBatch]:
    return [next(it) for _ in range(n)]


def _same(a: SemiBatch, b: SemiBatch) -> bool:
    for (ia, ta), (ib, tb) in zip(a, b, strict=True):
        if [t["image_id"] for t in ta] != [t["image_id"] for t in tb]:
            return False
        if not all(torch.equal(x, y) for x, y in zip(ia, ib, strict=True)):
            return False
        if not all(torch.equal(x["boxes"], y["boxes"]) for x, y in zip(ta, tb, strict=True)):
            return False
    return True


@pytest.mark.parametrize("workers", [0, 2])
def test_restart_at_step_k_yields_what_an_uninterrupted_run_yields(shapes: Path,
                                                                   workers: int) -> None:
    cfg = _config(shapes, worker_num=workers)
    uninterrupted = _take(build_semi_loader(cfg).iter_from(0), 9)  # crosses both cycles
    batch = uninterrupted[0]
    assert [len(part[0]) for part in batch] == [2, 2, 3, 3]
    for (weak_imgs, weak_t), (strong_imgs, strong_t) in ((batch[0], batch[1]),
                                                         (batch[2], batch[3])):
        for w, s, tw, ts in zip(weak_imgs, strong_imgs, weak_t, strong_t, strict=True):
            assert w.shape == s.shape and tw["size"] == ts["size"] == tuple(w.shape[-2:])
            assert torch.equal(tw["boxes"], ts["boxes"]) and tw is not ts
    assert all(len(t["boxes"]) > 0 for t in batch.sup_weak[1])
    assert all(len(t["boxes"]) == 0 for t in batch.unsup_weak[1])

    resumed = build_semi_loader(cfg)  # a fresh process would build a fresh loader
    assert all(_same(a, b) for a, b in zip(_take(resumed.iter_from(5), 4),
                                           uninterrupted[5:], strict=True))
    # the same loader restarted (persistent workers are reset) is exact too
    assert all(_same(a, b) for a, b in zip(_take(resumed.iter_from(2), 3),
                                           uninterrupted[2:5], strict=True))
    if workers:
        serial = build_semi_loader(_config(shapes, worker_num=0))
        assert all(_same(a, b) for a, b in zip(_take(serial.iter_from(6), 2),
                                               uninterrupted[6:8], strict=True))


def test_state_dict_keeps_the_seed_and_warns_on_a_new_layout(
        shapes: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = build_semi_loader(_config(shapes), seed=21)
    b = build_semi_loader(_config(shapes), seed=0)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.seed == 21 and b.plan(7) == a.plan(7)
    assert "cannot continue exactly" not in caplog.text  # same layout: no warning
    c = build_semi_loader(_config(shapes, SemiTrainReader={"unsup_batch_size": 2}))
    c.load_state_dict(a.state_dict())
    assert "cannot continue exactly" in caplog.text
    assert "unlabeled_batch_size 3 -> 2" in caplog.text


def test_a_stream_too_small_for_one_batch_names_its_batch_size(shapes: Path) -> None:
    with pytest.raises(DataError) as err:
        build_semi_loader(_config(shapes, SemiTrainReader={"unsup_batch_size": 19}))
    assert "SemiTrainReader.unsup_batch_size" in err.value.render()
    assert "18 unlabeled images" in err.value.render()


def test_shapes_semi_config_generates_its_data_on_first_use(tmp_path: Path) -> None:
    from engine.config import load_and_validate
    from tests.conftest import REPO

    spec = "{num_images: 30, seed: 0, image_size: 64}"
    overrides = [f"{s}.dataset_dir={tmp_path}" for s in
                 ("TrainDataset", "UnsupTrainDataset", "EvalDataset")]
    overrides += [f"TrainDataset.synthesize={spec}", f"UnsupTrainDataset.synthesize={spec}",
                  "ssod_method=DenseTeacher", "worker_num=0",
                  "SemiTrainReader.sup_batch_size=2", "SemiTrainReader.unsup_batch_size=4"]
    _, cfg = load_and_validate(REPO / "configs/semi_det/_base_/shapes_semi_10pct.yml",
                               overrides)
    loader = build_semi_loader(cfg)
    assert (len(loader.labeled), len(loader.unlabeled)) == (3, 27)  # 10% / 90% of 30
    assert (tmp_path / "annotations" / "train.json").is_file()
    batch = next(loader.iter_from(0))
    assert all(im.shape == (3, 160, 160) for part in batch for im in part[0])  # Resize 160
