"""Exponential moving averages of model weights: the one update kernel (``ema_update_``)
that both the ``use_ema`` average (``ModelEMA``, PaddleDetection's ``ModelEMA``) and a
semi-supervised method's teacher (``engine.trainers.teacher.Teacher``) follow the
trained model with."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode whose parameters take no gradient."""
    copied = copy.deepcopy(model).eval()
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied


@torch.no_grad()
def ema_update_(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``a <- decay * a + (1 - decay) * m`` in place, for every floating-point entry of
    ``average``'s state dict (BatchNorm running statistics included, no bias correction);
    integer entries (BatchNorm's step counters) are copied."""
    src = model.state_dict()
    for name, a in average.state_dict().items():
        m = src[name].detach()
        if a.dtype.is_floating_point:
            a.mul_(decay).add_(m.to(a.dtype), alpha=1 - decay)
        else:
            a.copy_(m)


class ModelEMA:
    """Keeps ``module``, a frozen copy of the model whose float tensors follow the weights.

    ``decay_type``: ``threshold`` uses ``min(decay, (1 + n) / (10 + n))`` so early
    averages are not dominated by the random init; ``exponential`` ramps with
    ``decay * (1 - exp(-n / 2000))``; ``constant`` uses ``decay``. The step count ``n`` is
    saved with the weights so a resumed run continues the same average.
    """

    def __init__(self, model: nn.Module, decay: float, decay_type: str = "threshold"):
        self.module = frozen_copy(model)
        self.decay = decay
        self.decay_type = decay_type
        self.step = 0

    def current_decay(self) -> float:
        n = self.step
        if self.decay_type == "threshold":
            return min(self.decay, (1 + n) / (10 + n))
        if self.decay_type == "exponential":
            return self.decay * (1 - math.exp(-(n + 1) / 2000))
        return self.decay

    def update(self, model: nn.Module) -> None:
        ema_update_(self.module, model, self.current_decay())
        self.step += 1

    @torch.no_grad()
    def restart(self, model: nn.Module) -> None:
        """Start the average again from ``model``'s weights (step 0)."""
        self.module.load_state_dict(model.state_dict())
        self.step = 0

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.step = int(state["step"])
