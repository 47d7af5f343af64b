"""``PreviewHook``: after each evaluation, the predictions on a few fixed eval images drawn
into ``previews/`` (:mod:`engine.previews`), and a ``preview`` event naming the files."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.previews import PreviewCollector, write_previews
from engine.trainers.hooks import HookBase


class PreviewHook(HookBase):
    """Arms a :class:`PreviewCollector` as the trainer's ``eval_observer`` each epoch (the
    evaluation then fills it with the first eval model's outputs, the model that decides
    ``best``), and writes the previews once it has. Rank 0 only; ``preview_images: 0``
    turns it off."""

    def before_train(self) -> None:
        t = self.trainer
        count = min(t.cfg.preview_images, len(t.eval_ds)) if t.validate else 0
        self.image_ids = t.eval_ds.image_ids[:count] if t.recorder.active else []

    def before_epoch(self) -> None:
        t = self.trainer
        t.eval_observer = PreviewCollector(self.image_ids) if self.image_ids else None

    def after_epoch(self) -> None:
        t = self.trainer
        collector = t.eval_observer
        t.eval_observer = None
        if not isinstance(collector, PreviewCollector) or not collector.outputs:
            return  # no evaluation this epoch
        images = []
        for idx in range(len(self.image_ids)):
            image, target = t.eval_ds.load_raw(idx)
            images.append((Image.fromarray(image.permute(1, 2, 0).numpy()),
                           np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4)))
        which = t.eval_models()[0][1]
        try:
            paths = write_previews(t.recorder.run.previews, t.epoch + 1, collector, images,
                                   t.eval_ds.class_names, t.cfg.preview_score_threshold,
                                   t.cfg.preview_keep_epochs)
        except OSError as exc:  # a preview is not worth the run: say so and train on
            msg = f"previews not written: {exc}"
            t.logger.warning(msg)
            t.recorder.emit("log", level="warning", message=msg)
            return
        t.logger.info(f"previews ({which}, epoch {t.epoch + 1}): {t.recorder.run.previews}")
        t.recorder.emit("preview", epoch=t.epoch, iter=t.iter, model=which,
                        dir=str(t.recorder.run.previews), files=[p.name for p in paths])
