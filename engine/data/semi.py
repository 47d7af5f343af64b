"""Semi-supervised data: weak and strong views of one image, and a loader that yields one
labeled and one unlabeled batch per step (``SemiTrainReader``, ``UnsupTrainDataset``).

Views. ``PairedViews`` loads an image once, runs the shared ``sample_transforms`` once
(flip, resize: all the geometry), then the photometric ``weak_aug`` and ``strong_aug``
separately. The two views therefore share every pixel position by construction, and so
does the target: a point of the teacher's dense output on the weak view is the same point
of the student's on the strong view (PaddleDetection's ``Compose_SSOD``).

Streams. The labeled and the unlabeled set are two streams with their own batch sizes.
Each cuts its samples into ``batches_per_cycle`` batches per pass ("cycle") and reshuffles
on every new cycle, independently of the other. At global step ``s`` a stream is in cycle
``s // batches_per_cycle`` at position ``s % batches_per_cycle``: nothing but the step
locates both streams, so a run resumed at step ``k`` sees exactly the batches an
uninterrupted run sees at step ``k``. Every cycle draws the whole unlabeled set (not
PaddleDetection's fixed subset of ``len(labeled)`` unlabeled images drawn once at start-up).

Seeds. A cycle's order is a pure function of ``(seed, stream, cycle)``; each sample's
augmentation seed a pure function of ``(seed, stream, cycle, rank, position)`` (the
scheme of ``TrainSampler``); the weak and strong views draw from seeds derived from it.
Which worker loads a sample, and whether the run was resumed, cannot change it.

Sharding. As ``TrainSampler``: each cycle's order is padded by wrapping so every rank has
as many samples, then dealt round-robin to the ranks.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from engine.config.ops import PHOTOMETRIC_OPS
from engine.config.schema import Config
from engine.data.coco import CocoDetection, Target, finish_sample
from engine.data.loader import Batch, TrainSampler, _mix, seed_worker
from engine.data.shapes import ensure_dataset
from engine.data.transforms import Compose, build_transforms
from engine.data.unlabeled import UnlabeledImages
from engine.protocol.errors import ConfigError, DataError

log = logging.getLogger("dettui.data")

LABELED, UNLABELED = 0, 1          # stream ids: part of every seed, never renumber
_WEAK, _STRONG = 1, 2              # view ids in the view seeds


class SemiBatch(NamedTuple):
    """One step of semi-supervised data. Each field is ``(images, targets)`` like the
    supervised loader's batch: float32 ``[3, H, W]`` images in ``[0, 1]`` and target dicts
    (``boxes`` xyxy pixels, ``labels``, ``image_id``, ``orig_size``, ``size``).

    ``sup_weak[i]`` and ``sup_strong[i]`` are two views of the same labeled image (same
    size, same boxes); likewise for the unlabeled fields, whose targets have empty
    ``boxes`` ``[0, 4]`` and ``labels`` ``[0]``. The targets of the two views are separate
    dicts holding the same tensors.
    """

    sup_weak: Batch
    sup_strong: Batch
    unsup_weak: Batch
    unsup_strong: Batch


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Draw from ``random`` seeded with ``seed`` inside the block; leave its state as it was
    (the transforms take their randomness from ``random``)."""
    saved = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved)


class PairedViews(Dataset):
    """Weak and strong views of each image of ``source`` (a ``CocoDetection`` or
    ``UnlabeledImages``: anything with ``load_raw(i) -> (uint8 image, target)``).

    ``dataset[(i, seed)]`` is ``(weak, strong, target)``: both images float32 ``[3, H, W]``
    in ``[0, 1]`` with the same ``H, W``; the target is the one the shared transforms
    produced (photometric ops never move boxes). All randomness comes from ``seed``.
    """

    def __init__(self, source: CocoDetection | UnlabeledImages, shared: Compose,
                 weak: Compose, strong: Compose):
        self.source = source
        self.shared = shared
        self.weak = weak
        self.strong = strong

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, Target]:
        idx, seed = item
        image, target = self.source.load_raw(int(idx))
        with _seeded(seed):
            image, target = self.shared(image, target)
        with _seeded(_mix(seed, _WEAK)):
            weak, _ = self.weak(image, target)
        with _seeded(_mix(seed, _STRONG)):
            strong, _ = self.strong(image, target)
        weak, target = finish_sample(weak, target)
        strong, _ = finish_sample(strong, dict(target))
        return weak, strong, target


def build_semi_datasets(cfg: Config) -> tuple[PairedViews, PairedViews]:
    """The labeled (``TrainDataset``) and unlabeled (``UnsupTrainDataset``) sets, each
    wrapped in ``PairedViews`` with ``SemiTrainReader``'s transforms. The shapes dataset is
    generated first where a config asks for it."""
    reader, unsup_cfg = _semi_sections(cfg)
    section = "SemiTrainReader"
    shared = build_transforms(reader.sample_transforms, section=f"{section}.sample_transforms")
    weak = build_transforms(reader.weak_aug, section=f"{section}.weak_aug",
                            allowed=PHOTOMETRIC_OPS)
    strong = build_transforms(reader.strong_aug, section=f"{section}.strong_aug",
                              allowed=PHOTOMETRIC_OPS)
    ensure_dataset(cfg.TrainDataset, section="TrainDataset")
    labeled = CocoDetection(cfg.TrainDataset, cfg.num_classes, None, train=True,
                            section="TrainDataset")
    unlabeled = UnlabeledImages(unsup_cfg, section="UnsupTrainDataset")
    return (PairedViews(labeled, shared, weak, strong),
            PairedViews(unlabeled, shared, weak, strong))


def _semi_sections(cfg: Config) -> tuple[Any, Any]:
    for key in ("SemiTrainReader", "UnsupTrainDataset"):
        if getattr(cfg, key) is None:
            raise ConfigError(f"semi-supervised training needs a {key} section", key=key,
                              hint="see configs/semi_det/_base_/ for an example")
    return cfg.SemiTrainReader, cfg.UnsupTrainDataset


class _Stream:
    """One stream's batch at any global step (see the module docstring)."""

    def __init__(self, sampler: TrainSampler):
        self.sampler = sampler
        self._cycle: int | None = None
        self._batches: list[list[int]] = []

    def __len__(self) -> int:
        return len(self.sampler)

    def batch(self, step: int) -> list[tuple[int, int]]:
        """``(dataset index, augmentation seed)`` of each sample of the batch at ``step``."""
        cycle, position = divmod(step, len(self.sampler))
        if cycle != self._cycle:  # one permutation per cycle, not per step
            self.sampler.set_epoch(cycle)
            self._batches = self.sampler.epoch_batches()
            self._cycle = cycle
        s = self.sampler
        first = position * s.batch_size
        return [(idx, _mix(s.seed, cycle, s.rank, first + j))
                for j, idx in enumerate(self._batches[position])]


class _StepSampler:
    """The DataLoader's batch sampler: from ``start`` on, forever, one list per step of
    ``(stream, index, seed)``, the labeled samples first. Runs in the main process."""

    def __init__(self, labeled: _Stream, unlabeled: _Stream):
        self.streams = (labeled, unlabeled)
        self.start = 0

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start
        while True:
            yield [(stream, idx, seed) for stream, s in enumerate(self.streams)
                   for idx, seed in s.batch(step)]
            step += 1


class _StepSource(Dataset):
    """Dispatches ``(stream, index, seed)`` to the labeled or unlabeled ``PairedViews``."""

    def __init__(self, labeled: PairedViews, unlabeled: PairedViews):
        self.parts = (labeled, unlabeled)

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[int, torch.Tensor,
                                                               torch.Tensor, Target]:
        stream, idx, seed = item
        return (stream, *self.parts[stream][(idx, seed)])

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)


def collate_semi(samples: list[tuple[int, torch.Tensor, torch.Tensor, Target]]) -> SemiBatch:
    """Sort one step's samples into the four ``(images, targets)`` lists of a SemiBatch."""
    out: tuple[list, ...] = ([], [], [], [], [], [], [], [])
    for stream, weak, strong, target in samples:
        base = 0 if stream == LABELED else 4
        out[base].append(weak)
        out[base + 1].append(target)
        out[base + 2].append(strong)
        out[base + 3].append(dict(target))
    return SemiBatch((out[0], out[1]), (out[2], out[3]), (out[4], out[5]), (out[6], out[7]))


class SemiLoader:
    """Labeled + unlabeled batches for one rank: ``iter_from(step)`` yields the
    ``SemiBatch`` of steps ``step, step + 1, ...`` forever.

    ``len(loader)`` is the number of labeled batches per pass over the labeled set (one
    "epoch" of a semi run); ``unlabeled_batches_per_cycle`` the same for the unlabeled
    set. With workers, the workers persist; calling ``iter_from`` again restarts them at
    the new step (an earlier iterator must not be used after that).
    """

    def __init__(self, labeled: PairedViews, unlabeled: PairedViews, *, sup_batch_size: int,
                 unsup_batch_size: int, shuffle: bool, drop_last: bool, seed: int,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 pin_memory: bool = False):
        self.labeled = labeled
        self.unlabeled = unlabeled
        self.rank = rank
        self.world_size = world_size
        self._layout = {"labeled": (len(labeled), sup_batch_size),
                        "unlabeled": (len(unlabeled), unsup_batch_size)}
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._sampler = _StepSampler(*self._make_streams(seed))
        self.seed = seed
        self._loader = DataLoader(
            _StepSource(labeled, unlabeled), batch_sampler=self._sampler,
            num_workers=num_workers, collate_fn=collate_semi, pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            worker_init_fn=seed_worker if num_workers > 0 else None,
            generator=torch.Generator().manual_seed(_mix(seed, rank)))

    def _make_streams(self, seed: int) -> tuple[_Stream, _Stream]:
        streams = []
        for stream, (name, key) in enumerate((("labeled", "sup_batch_size"),
                                              ("unlabeled", "unsup_batch_size"))):
            length, batch_size = self._layout[name]
            sampler = TrainSampler(length, batch_size, self.shuffle, self.drop_last,
                                   _mix(seed, stream), rank=self.rank,
                                   world_size=self.world_size)
            if len(sampler) == 0:
                raise DataError(
                    f"no {name} batches: {length} {name} images over {self.world_size} "
                    f"process(es) do not fill one batch of {batch_size} and drop_last is on",
                    key=f"SemiTrainReader.{key}",
                    hint=f"lower {key} or set SemiTrainReader.drop_last: false")
            streams.append(_Stream(sampler))
        return streams[0], streams[1]

    def __len__(self) -> int:
        return len(self._sampler.streams[LABELED])

    @property
    def unlabeled_batches_per_cycle(self) -> int:
        return len(self._sampler.streams[UNLABELED])

    def plan(self, step: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """``(dataset index, augmentation seed)`` of the labeled and the unlabeled samples
        of ``step``, without loading anything."""
        labeled, unlabeled = self._sampler.streams
        return labeled.batch(step), unlabeled.batch(step)

    def iter_from(self, step: int) -> Iterator[SemiBatch]:
        """The batches of steps ``step, step + 1, ...`` (infinite)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        self._sampler.start = step
        return iter(self._loader)

    def state_dict(self) -> dict[str, Any]:
        """Seed and layout, for a checkpoint (the position is the trainer's global step)."""
        return {"seed": self.seed, "shuffle": self.shuffle, "drop_last": self.drop_last,
                "world_size": self.world_size,
                **{f"{name}_len": n for name, (n, _) in self._layout.items()},
                **{f"{name}_batch_size": b for name, (_, b) in self._layout.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take the checkpoint's seed. If the layout changed (dataset sizes, batch sizes,
        world size...) the batches cannot continue exactly; say so and go on."""
        mine = self.state_dict()
        changed = [f"{k} {state[k]} -> {mine[k]}" for k in mine
                   if k != "seed" and k in state and state[k] != mine[k]]
        if changed:
            log.warning("the semi-supervised data cannot continue exactly where the "
                        "checkpoint left off (%s); resuming with the new layout",
                        ", ".join(changed))
        self.seed = int(state["seed"])
        self._sampler.streams = self._make_streams(self.seed)


def build_semi_loader(cfg: Config, rank: int = 0, world_size: int = 1,
                      seed: int | None = None) -> SemiLoader:
    """The semi-supervised loader of a config (``SemiTrainReader``, ``TrainDataset``,
    ``UnsupTrainDataset``, ``worker_num``). ``seed`` defaults to the config's (0 under
    ``enable_ce``)."""
    if seed is None:
        seed = 0 if cfg.enable_ce else cfg.seed
    labeled, unlabeled = build_semi_datasets(cfg)
    reader = cfg.SemiTrainReader
    assert reader is not None  # build_semi_datasets checked
    return SemiLoader(labeled, unlabeled, sup_batch_size=reader.sup_batch_size,
                      unsup_batch_size=reader.unsup_batch_size, shuffle=reader.shuffle,
                      drop_last=reader.drop_last, seed=seed, rank=rank,
                      world_size=world_size, num_workers=cfg.worker_num,
                      pin_memory=cfg.device != "cpu" and torch.cuda.is_available())
