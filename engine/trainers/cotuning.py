"""``use_cot: true`` (notes §7): co-tuning, PaddleDetection's ``TrainerCot``.

The supervised step is unchanged (the co-tuning Faster R-CNN adds ``loss_cot`` to its own
loss dict, ``engine.models.cotuning``); what this trainer changes is the weight loading:
the source detector's weights are loaded (the source classifier must have ``cot_classes``
classes), then, before the first step, one pass over the training set with the ground-truth
boxes as RoIs learns the target -> source relationship (``engine.models.relationship``). The
relationship is a buffer of the model, so checkpoints carry it and a resumed run neither
recomputes nor changes it; it is also written to the run folder as
``cot_relationship.json`` for people and the TUI.
"""

from __future__ import annotations

from engine.models.cotuning import cotuning_heads, load_cotuning_weights
from engine.models.relationship import (
    learn_relationship,
    source_class_names,
    write_relationship_json,
)
from engine.trainers.base import Trainer


class CoTuningTrainer(Trainer):
    """Fine-tuning with the co-tuning loss; see the module docstring."""

    def load_weights(self, path: str) -> None:
        """The source detector's weights, then the relationship learned with them (the EMA
        average, if any, starts from both when training starts)."""
        report = load_cotuning_weights(self.model_without_ddp, path, logger=self.logger)
        self.recorder.emit("log", level="info",
                           message=f"source detector weights {path}: " + report.summary())
        self._learn_relationship(path)

    def _learn_relationship(self, source_weights: str) -> None:
        """One pass over this rank's share of the training set (all ranks together)."""
        cfg = self.cfg
        self.logger.info("co-tuning: learning the target -> source class relationship "
                         f"({len(self.train_ds)} training images, ground-truth boxes as RoIs)")
        learn_relationship(self.model_without_ddp, self.train_loader, cfg.num_classes,
                           self.device, distributed=self.env.distributed)
        heads = cotuning_heads(self.model_without_ddp)
        names, origin = source_class_names(source_weights, cfg.BBoxHead.cot_classes)
        target_names = self.train_ds.class_names
        lines = []
        for k, name in enumerate(target_names):
            row = heads.relationship[k]
            top = row.topk(min(3, row.numel()))
            pairs = ", ".join(f"{names[j]} {p:.2f}" for p, j in zip(top.values.tolist(),
                                                                    top.indices.tolist()))
            count = int(heads.relationship_counts[k])
            lines.append(f"  {name}: {pairs}" + ("" if count else " (no example: uniform)"))
        self.recorder.note("info", "co-tuning relationship (target: top source classes):\n"
                           + "\n".join(lines))
        if self.recorder.run is not None:
            path = write_relationship_json(self.recorder.run.path, self.model_without_ddp,
                                           target_names, names, source_names_from=origin)
            self.recorder.note("info", f"co-tuning relationship written to {path}")
