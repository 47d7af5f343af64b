"""Datasets, batch sampler and DataLoaders for training and evaluation.

Reproducibility contract: the order of training batches is a pure function of
``(seed, epoch, rank, world_size)`` (``TrainSampler``), so a run resumed mid-epoch can
continue from exactly the next batch. Augmentation randomness comes from the per-worker
seeds, derived from a seeded generator (``build_train_loader``): two runs with the same
seed draw the same augmentations, but a resumed run draws fresh ones (the workers' RNG
state is not checkpointed; the order of images is what matters for an exact resume).
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from engine.config.schema import Config
from engine.data.coco import CocoDetection
from engine.data.shapes import ensure_dataset
from engine.data.transforms import build_transforms
from engine.protocol.errors import DataError, UserError

log = logging.getLogger("dettui.data")

Batch = tuple[list[torch.Tensor], list[dict[str, Any]]]


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> Batch:
    """Keep images and targets as lists: images differ in size, and torchvision's
    detectors batch (pad) them themselves."""
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(targets)


class DetectionLoader(DataLoader):
    """A ``DataLoader`` whose workers' bad-input errors reach the user as they were raised.

    torch re-raises an exception from a worker process as ``type(exc)(text)``, the text
    being "Caught DataError in DataLoader worker process 0" and the whole worker
    traceback: the one clear message (say, which image cannot be decoded) would drown in
    it. A ``UserError`` is rebuilt here from its own last line of that traceback."""

    def __iter__(self):  # noqa: ANN204 - torch's iterator types are private
        return _UserErrorsIntact(super().__iter__())


class _UserErrorsIntact:
    def __init__(self, batches: Iterator) -> None:
        self._batches = batches

    def __iter__(self) -> _UserErrorsIntact:
        return self

    def __len__(self) -> int:
        return len(self._batches)  # type: ignore[arg-type]

    def __next__(self) -> Any:
        try:
            return next(self._batches)
        except UserError as exc:
            original = _from_worker(exc)
            if original is None:
                raise
            raise original from None


def _from_worker(exc: UserError) -> UserError | None:
    """The error a worker raised, if ``exc`` is torch's re-raise of it (else None)."""
    text = exc.message
    if not text.startswith(f"Caught {type(exc).__name__} in DataLoader worker"):
        return None
    marker = f"\n{type(exc).__module__}.{type(exc).__qualname__}: "
    at = text.rfind(marker)
    return type(exc)(text[at + len(marker):].rstrip()) if at >= 0 else None


def _mix(*values: int) -> int:
    """A well-spread 63-bit seed from a few integers (``seed + epoch`` would make
    (seed 1, epoch 0) and (seed 0, epoch 1) identical)."""
    digest = hashlib.blake2b(":".join(map(str, values)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class TrainSampler(Sampler[list[tuple[int, int]]]):
    """A batch sampler: yields lists of ``(dataset index, augmentation seed)``, one list per
    batch, for one rank (``CocoDetection`` accepts both plain and seeded indices).

    Each epoch's permutation is a pure function of ``(seed, epoch)``. It is padded by
    wrapping around so every rank gets the same number of samples, then dealt out
    round-robin (rank ``r`` takes positions ``r, r + world_size, ...``) and cut into
    batches. ``len()`` is the number of batches per epoch for one rank.

    To resume mid-epoch: ``set_epoch(e)`` then ``skip(k)`` before creating the epoch's
    iterator; it then yields batches ``k, k + 1, ...`` of that epoch, exactly as an
    uninterrupted run would have.
    """

    def __init__(self, dataset_len: int, batch_size: int, shuffle: bool, drop_last: bool,
                 seed: int, rank: int = 0, world_size: int = 1):
        if dataset_len < 1:
            raise ValueError(f"dataset_len must be >= 1, got {dataset_len}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, "
                             f"world_size {world_size}")
        self.dataset_len = dataset_len
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._skip = 0

    @property
    def samples_per_rank(self) -> int:
        return math.ceil(self.dataset_len / self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.samples_per_rank // self.batch_size
        return math.ceil(self.samples_per_rank / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation; also clears any ``skip``."""
        self.epoch = epoch
        self._skip = 0

    def skip(self, n_batches: int) -> None:
        """Make the next iterator start at batch ``n_batches`` of the current epoch."""
        if not 0 <= n_batches <= len(self):
            raise ValueError(f"can skip 0..{len(self)} batches, got {n_batches}")
        self._skip = n_batches

    def epoch_indices(self) -> list[int]:
        """This rank's sample indices for the current epoch, in order (padded)."""
        if self.shuffle:
            gen = torch.Generator()
            gen.manual_seed(_mix(self.seed, self.epoch))
            order = torch.randperm(self.dataset_len, generator=gen)
        else:
            order = torch.arange(self.dataset_len)
        total = self.samples_per_rank * self.world_size
        if total > self.dataset_len:  # wrap around; repeat as often as a tiny set needs
            order = order.repeat(math.ceil(total / self.dataset_len))[:total]
        return order[self.rank:total:self.world_size].tolist()

    def epoch_batches(self) -> list[list[int]]:
        """Every batch of the current epoch for this rank (ignoring ``skip``)."""
        indices = self.epoch_indices()
        size = self.batch_size
        return [indices[i:i + size] for i in range(0, len(self) * size, size)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        # Built eagerly: the DataLoader calls iter() when the epoch's iterator is created,
        # so set_epoch/skip take effect then, not at some later first next().
        # Each index travels with its own augmentation seed, a pure function of (seed,
        # epoch, rank, position): which worker loads it, and whether the run was resumed
        # mid-epoch, then cannot change the sample (exact resume with workers).
        batches = self.epoch_batches()
        size = self.batch_size
        return iter([[(idx, _mix(self.seed, self.epoch, self.rank, b * size + j))
                      for j, idx in enumerate(batch)]
                     for b, batch in enumerate(batches) if b >= self._skip])

    def state_dict(self) -> dict[str, Any]:
        """Position and layout, for a checkpoint."""
        return {"seed": self.seed, "epoch": self.epoch, "skip": self._skip,
                "dataset_len": self.dataset_len, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "drop_last": self.drop_last,
                "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore seed, epoch and skip. If the layout changed (dataset size, batch size,
        world size...) the order cannot match the original run; say so and go on."""
        layout = ("dataset_len", "batch_size", "shuffle", "drop_last", "world_size")
        changed = [f"{k} {state[k]} -> {getattr(self, k)}" for k in layout
                   if k in state and state[k] != getattr(self, k)]
        if changed:
            log.warning("the data order cannot continue exactly where the checkpoint left "
                        "off (%s); resuming with the new layout", ", ".join(changed))
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._skip = min(int(state.get("skip", 0)), len(self))


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed ``random`` and numpy from torch's per-worker seed (itself
    ``base_seed + worker_id``, with ``base_seed`` drawn from the loader's generator)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_train_loader(cfg: Config, dataset: Dataset, rank: int = 0, world_size: int = 1,
                       seed: int | None = None) -> tuple[DataLoader, TrainSampler]:
    """The training DataLoader and its batch sampler (call ``sampler.set_epoch`` per epoch).

    ``seed`` defaults to the config's (0 under ``enable_ce``). Each rank seeds its worker
    generator differently so ranks do not draw identical augmentations.
    """
    if seed is None:
        seed = 0 if cfg.enable_ce else cfg.seed
    reader = cfg.TrainReader
    sampler = TrainSampler(len(dataset), reader.batch_size, reader.shuffle, reader.drop_last,
                           seed, rank=rank, world_size=world_size)
    if len(sampler) == 0:
        raise DataError(f"no training batches: {len(dataset)} images over {world_size} "
                        f"process(es) do not fill one batch of {reader.batch_size} and "
                        f"drop_last is on", key="TrainReader.batch_size",
                        hint="lower batch_size or set TrainReader.drop_last: false")
    workers = cfg.worker_num
    loader = DetectionLoader(
        dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
        pin_memory=_pin_memory(cfg), persistent_workers=workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(_mix(seed, rank)))
    return loader, sampler


def build_eval_loader(cfg: Config, dataset: Dataset) -> DataLoader:
    """The evaluation DataLoader: every image once, in order, ``EvalReader.batch_size``."""
    workers = cfg.worker_num
    return DetectionLoader(
        dataset, batch_size=cfg.EvalReader.batch_size, shuffle=False, drop_last=False,
        num_workers=workers, collate_fn=collate, pin_memory=_pin_memory(cfg),
        # Evaluation runs every snapshot_epoch: keep its workers instead of re-forking.
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None)


def _pin_memory(cfg: Config) -> bool:
    return cfg.device != "cpu" and torch.cuda.is_available()


def build_datasets(cfg: Config, *, with_eval: bool = True
                   ) -> tuple[CocoDetection, CocoDetection | None]:
    """The training and evaluation datasets (the shapes dataset is generated first where a
    config asks for it). With ``with_eval=False`` the eval set is not built (None)."""
    ensure_dataset(cfg.TrainDataset, section="TrainDataset")
    train_tf = build_transforms(cfg.TrainReader.sample_transforms,
                                section="TrainReader.sample_transforms")
    train_ds = CocoDetection(cfg.TrainDataset, cfg.num_classes, train_tf, train=True,
                             section="TrainDataset")
    if not with_eval:
        return train_ds, None
    return train_ds, build_eval_dataset(cfg)


def build_eval_dataset(cfg: Config) -> CocoDetection:
    """The evaluation dataset (``EvalDataset`` with ``EvalReader``'s transforms)."""
    ensure_dataset(cfg.EvalDataset, section="EvalDataset")
    eval_tf = build_transforms(cfg.EvalReader.sample_transforms,
                               section="EvalReader.sample_transforms")
    return CocoDetection(cfg.EvalDataset, cfg.num_classes, eval_tf, train=False,
                         section="EvalDataset")
