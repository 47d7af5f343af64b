"""``PreviewHook``: after each evaluation, the predictions on a few fixed eval images drawn
into ``previews/`` (:mod:`engine.previews`), and a ``preview`` event naming the files."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from engine.previews import PreviewCollector, write_previews
from engine.trainers.hooks import EvalHook, HookBase

if TYPE_CHECKING:
    from engine.data.coco import CocoDetection
    from engine.recorder import RunRecorder


@dataclass(eq=False)
class PreviewHook(HookBase):
    """Arms a :class:`PreviewCollector` as ``evaluation``'s observer each epoch (the
    evaluation then fills it with the first eval model's outputs, the model that decides
    ``best``), and writes the previews of the first ``count`` images of ``eval_ds`` once
    it has (boxes scoring ``score_threshold`` or more; the last ``keep_epochs`` epochs are
    kept). Rank 0 only; ``count`` 0 turns it off."""

    evaluation: EvalHook
    eval_ds: CocoDetection
    recorder: RunRecorder
    _: KW_ONLY
    count: int
    score_threshold: float
    keep_epochs: int
    image_ids: list[int] = field(default_factory=list, init=False)

    def before_train(self) -> None:
        count = min(self.count, len(self.eval_ds)) if self.evaluation.enabled else 0
        self.image_ids = self.eval_ds.image_ids[:count] if self.recorder.active else []

    def before_epoch(self) -> None:
        self.evaluation.observer = (PreviewCollector(self.image_ids) if self.image_ids
                                    else None)

    def after_epoch(self) -> None:
        t = self.trainer
        collector = self.evaluation.observer
        self.evaluation.observer = None
        if not isinstance(collector, PreviewCollector) or not collector.outputs:
            return  # no evaluation this epoch
        images = []
        for idx in range(len(self.image_ids)):
            image, target = self.eval_ds.load_raw(idx)
            images.append((Image.fromarray(image.permute(1, 2, 0).numpy()),
                           np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4)))
        which = t.eval_models()[0][1]
        folder = self.recorder.run.previews
        try:
            paths = write_previews(folder, t.epoch + 1, collector, images,
                                   self.eval_ds.class_names, self.score_threshold,
                                   self.keep_epochs)
        except OSError as exc:  # a preview is not worth the run: say so and train on
            self.recorder.note("warning", f"previews not written: {exc}")
            return
        self.recorder.logger.info(f"previews ({which}, epoch {t.epoch + 1}): {folder}")
        self.recorder.emit("preview", epoch=t.epoch, iter=t.iter, model=which,
                           dir=str(folder), files=[p.name for p in paths])
