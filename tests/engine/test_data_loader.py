"""Batch sampler, loaders and dataset builders, plus a real-data run on coco128."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from engine.config.schema import Config, DatasetConfig, validate
from engine.data.coco import CocoDetection
from engine.data.loader import (
    TrainSampler,
    build_datasets,
    build_eval_loader,
    build_train_loader,
    collate,
)
from engine.data.transforms import build_transforms
from engine.protocol.errors import DataError

COCO128 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco128"


def _epoch(sampler: TrainSampler) -> list[list[int]]:
    """The epoch's batches as plain indices (the sampler pairs each with a seed)."""
    return [[idx for idx, _seed in batch] for batch in sampler]


def test_each_sample_carries_a_seed_fixed_by_its_position() -> None:
    a = TrainSampler(20, 4, shuffle=True, drop_last=False, seed=5)
    a.set_epoch(2)
    full = list(a)
    a.set_epoch(2)
    a.skip(3)
    assert list(a) == full[3:]                       # the same seeds after a skip
    seeds = [seed for batch in full for _idx, seed in batch]
    assert len(set(seeds)) == len(seeds)
    a.set_epoch(3)
    assert [s for b in a for _i, s in b] != seeds    # new epoch, new augmentations


# ----------------------------------------------------------------------------- sampler

def test_order_is_a_pure_function_of_seed_and_epoch() -> None:
    a = TrainSampler(50, 4, shuffle=True, drop_last=False, seed=1)
    b = TrainSampler(50, 4, shuffle=True, drop_last=False, seed=1)
    a.set_epoch(3)
    _epoch(b)  # consuming epoch 0 first must not matter
    b.set_epoch(3)
    assert _epoch(a) == _epoch(b)
    b.set_epoch(4)
    assert _epoch(a) != _epoch(b)
    c = TrainSampler(50, 4, shuffle=True, drop_last=False, seed=2)
    c.set_epoch(3)
    assert _epoch(a) != _epoch(c)
    assert sorted(i for batch in _epoch(a) for i in batch) == list(range(50))


def test_no_shuffle_is_sequential() -> None:
    sampler = TrainSampler(7, 3, shuffle=False, drop_last=False, seed=0)
    assert _epoch(sampler) == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(sampler) == 3


def test_drop_last_drops_the_partial_batch() -> None:
    sampler = TrainSampler(7, 3, shuffle=False, drop_last=True, seed=0)
    assert len(sampler) == 2 and _epoch(sampler) == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize(("n", "world"), [(10, 3), (12, 4), (2, 3)])
def test_sharding_covers_the_dataset_evenly(n: int, world: int) -> None:
    shards = []
    for rank in range(world):
        sampler = TrainSampler(n, 2, shuffle=True, drop_last=False, seed=5, rank=rank,
                               world_size=world)
        sampler.set_epoch(1)
        shards.append([i for batch in _epoch(sampler) for i in batch])
        assert len(_epoch(sampler)) == len(sampler)
    per_rank = -(-n // world)
    assert all(len(s) == per_rank for s in shards)  # same number of batches everywhere
    assert set().union(*map(set, shards)) == set(range(n))
    if n % world == 0:  # no padding: the shards are disjoint
        assert sum(map(len, shards)) == n and len(set().union(*map(set, shards))) == n


def test_skip_resumes_at_exactly_the_next_batch() -> None:
    full = TrainSampler(37, 4, shuffle=True, drop_last=False, seed=9, rank=1, world_size=2)
    full.set_epoch(2)
    expected = _epoch(full)
    resumed = TrainSampler(37, 4, shuffle=True, drop_last=False, seed=9, rank=1, world_size=2)
    resumed.set_epoch(2)
    resumed.skip(3)
    assert _epoch(resumed) == expected[3:]
    resumed.set_epoch(3)  # a new epoch starts from its first batch again
    assert len(_epoch(resumed)) == len(resumed)
    with pytest.raises(ValueError):
        resumed.skip(len(resumed) + 1)


def test_state_dict_round_trip() -> None:
    a = TrainSampler(20, 3, shuffle=True, drop_last=False, seed=4)
    a.set_epoch(6)
    a.skip(2)
    b = TrainSampler(20, 3, shuffle=True, drop_last=False, seed=0)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))  # survives a JSON trip
    assert (b.seed, b.epoch) == (4, 6)
    assert _epoch(b) == _epoch(a)


def test_state_dict_with_a_changed_layout_warns(caplog: pytest.LogCaptureFixture) -> None:
    a = TrainSampler(20, 3, shuffle=True, drop_last=False, seed=4)
    b = TrainSampler(20, 5, shuffle=True, drop_last=False, seed=0)
    b.load_state_dict(a.state_dict())
    assert "batch_size 3 -> 5" in caplog.text


class _Indices(Dataset):
    def __len__(self) -> int:
        return 23

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        return torch.tensor([i]), {"index": i}


def test_dataloader_honours_set_epoch_and_skip() -> None:
    sampler = TrainSampler(23, 5, shuffle=True, drop_last=False, seed=3)
    loader = DataLoader(_Indices(), batch_sampler=sampler, collate_fn=collate)
    sampler.set_epoch(1)
    full = [[t["index"] for t in targets] for _, targets in loader]
    sampler.set_epoch(1)
    sampler.skip(2)
    assert [[t["index"] for t in targets] for _, targets in loader] == full[2:]


def test_collate_keeps_lists() -> None:
    batch = [(torch.zeros(3, 4, 5), {"a": 1}), (torch.zeros(3, 6, 2), {"a": 2})]
    images, targets = collate(batch)
    assert [im.shape[-1] for im in images] == [5, 2] and targets == [{"a": 1}, {"a": 2}]


# ----------------------------------------------------------------------------- builders

def _shapes_config(root: Path, **overrides) -> Config:
    def dataset(split: str, n: int, seed: int) -> dict:
        return {"dataset_dir": str(root), "image_dir": split,
                "anno_path": f"annotations/{split}.json",
                "synthesize": {"num_images": n, "seed": seed, "image_size": 96}}
    raw = {"num_classes": 4, "worker_num": 2, "seed": 11,
           "TrainDataset": dataset("train", 24, 0), "EvalDataset": dataset("val", 6, 1),
           "TrainReader": {"batch_size": 4, "sample_transforms": [
               {"RandomResize": {"sizes": [64, 80, 96]}}, {"RandomFlip": {"prob": 0.5}},
               {"ColorJitter": {"brightness": 0.3, "hue": 0.05, "prob": 0.5}}]},
           "EvalReader": {"batch_size": 4, "sample_transforms": [{"Resize": {"target_size": 96}}]},
           **overrides}
    return validate(raw)


def test_build_datasets_generates_and_loads_shapes(tmp_path: Path) -> None:
    cfg = _shapes_config(tmp_path)
    train, evalset = build_datasets(cfg)
    assert (len(train), len(evalset)) == (24, 6)
    assert train.class_names == ["circle", "square", "triangle", "cross"]
    assert train.train and not evalset.train
    images, targets = next(iter(build_eval_loader(cfg, evalset)))
    assert len(images) == 4 and [t["image_id"] for t in targets] == [1, 2, 3, 4]
    assert all(t["size"] == (96, 96) for t in targets)
    assert build_datasets(cfg, with_eval=False)[1] is None


def test_train_loader_is_reproducible_with_workers(tmp_path: Path) -> None:
    cfg = _shapes_config(tmp_path)
    train, _ = build_datasets(cfg, with_eval=False)

    def two_batches(seed: int) -> list:
        loader, sampler = build_train_loader(cfg, train, seed=seed)
        assert loader.num_workers == 2 and loader.persistent_workers
        sampler.set_epoch(1)
        batches = []
        for images, targets in loader:
            batches.append((images, targets))
            if len(batches) == 2:
                break
        return batches

    first, again, other = two_batches(7), two_batches(7), two_batches(8)
    for (ia, ta), (ib, tb) in zip(first, again, strict=True):
        assert [t["image_id"] for t in ta] == [t["image_id"] for t in tb]
        assert all(torch.equal(a, b) for a, b in zip(ia, ib, strict=True))
        assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(ta, tb, strict=True))
    assert ([t["image_id"] for t in first[0][1]] != [t["image_id"] for t in other[0][1]])


def test_train_loader_without_full_batch_is_an_error(tmp_path: Path) -> None:
    cfg = _shapes_config(tmp_path, worker_num=0,
                         TrainReader={"batch_size": 32, "drop_last": True})
    train, _ = build_datasets(cfg, with_eval=False)
    with pytest.raises(DataError) as err:
        build_train_loader(cfg, train)
    assert "TrainReader.batch_size" in str(err.value) and "drop_last" in str(err.value)


def test_enable_ce_uses_seed_zero(tmp_path: Path) -> None:
    cfg = _shapes_config(tmp_path, worker_num=0, enable_ce=True)
    train, _ = build_datasets(cfg, with_eval=False)
    _, sampler = build_train_loader(cfg, train)
    assert sampler.seed == 0


# ----------------------------------------------------------------------------- real data

def test_coco128_real_images() -> None:
    if not (COCO128 / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"coco128 fixture not found at {COCO128} (shared/data/coco128)")
    ds_cfg = DatasetConfig(dataset_dir=str(COCO128), image_dir="train2017",
                           anno_path="annotations/instances_train2017.json")
    tf = build_transforms([{"Resize": {"target_size": 320}}, {"RandomFlip": {"prob": 0.5}}])
    ds = CocoDetection(ds_cfg, num_classes=80, transforms=tf, train=True)
    assert len(ds.class_names) == 80 and ds.class_names[0] == "person"
    assert ds.label_to_cat_id[80] == 90  # COCO ids have gaps; labels do not
    assert ds.stats["classes_present"] == 71 and ds.stats["crowd"] > 0
    assert ds.stats["images"] + ds.stats["skipped_empty"] == 128
    with pytest.raises(DataError, match="has 80 categories but num_classes is 20"):
        CocoDetection(ds_cfg, num_classes=20, transforms=tf, train=True)

    sampler = TrainSampler(len(ds), 4, shuffle=True, drop_last=False, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=2, collate_fn=collate)
    seen = 0
    for step, (images, targets) in enumerate(loader):
        for image, target in zip(images, targets, strict=True):
            h, w = target["size"]
            assert image.shape == (3, h, w) and max(h, w) == 320
            boxes = target["boxes"]
            assert len(boxes) > 0 and target["labels"].min() >= 1
            assert target["labels"].max() <= 80
            assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
            assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
            seen += 1
        if step == 3:
            break
    assert seen == 16
