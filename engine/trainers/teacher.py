"""The teacher of a semi-supervised method: a frozen copy of the student that follows it.

Not the ``use_ema`` average (``EMAHook``): when a teacher is first copied from the
student, how often it follows and with which decay are part of each algorithm, so the
trainer calls ``copy_from`` and ``update`` itself (DenseTeacher: copy at ``ema_start_iters``,
then EMA every step; ARSL: copy at the end of burn-in; Semi-RT-DETR: EMA before the step).

Like PaddleDetection's ``SimpleModelEMA`` every floating-point entry of the state dict
follows the student, BatchNorm running statistics included, with a constant decay and no
bias correction; integer entries (BatchNorm's step counters) are copied: the update kernel
is ``ema_update_``, the one ``ModelEMA`` uses too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.trainers.ema import ema_update_, frozen_copy


class Teacher:
    """A frozen model that starts as a copy of the student and follows it by EMA.

    Attributes:
        module: the teacher network, always in eval mode, never trained by the optimizer.
        decay: the EMA decay of ``update`` (PaddleDetection's ``ema_decay``, 0.9996).
        started_at: the global iteration of the hard copy that started it, or None while it
            is still the initial copy (not yet a teacher the method should trust).
        updates: EMA updates applied since the hard copy.
    """

    def __init__(self, student: nn.Module, decay: float):
        self.module = frozen_copy(student)
        self.decay = decay
        self.started_at: int | None = None
        self.updates = 0

    @property
    def started(self) -> bool:
        return self.started_at is not None

    @torch.no_grad()
    def copy_from(self, student: nn.Module, iteration: int) -> None:
        """Become an exact copy of ``student`` (the start of the teacher), at ``iteration``."""
        self.module.load_state_dict(student.state_dict())
        self.started_at = iteration
        self.updates = 0

    def update(self, student: nn.Module, decay: float | None = None) -> None:
        """``t <- d * t + (1 - d) * s`` for every floating-point entry of the state dict."""
        ema_update_(self.module, student, self.decay if decay is None else decay)
        self.updates += 1

    def train(self, mode: bool = True) -> Teacher:
        """The teacher never trains: BatchNorm keeps using its running statistics."""
        self.module.eval()
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.module.state_dict(), "started_at": self.started_at,
                "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        started = state.get("started_at")
        self.started_at = None if started is None else int(started)
        self.updates = int(state.get("updates", 0))
