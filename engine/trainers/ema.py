"""Exponential moving average of model weights (PaddleDetection's ``ModelEMA``)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """Keeps ``module``, a deep copy of the model whose float tensors follow the weights.

    ``decay_type``: ``threshold`` uses ``min(decay, (1 + n) / (10 + n))`` so early
    averages are not dominated by the random init; ``exponential`` ramps with
    ``decay * (1 - exp(-n / 2000))``; ``constant`` uses ``decay``. The step count ``n`` is
    saved with the weights so a resumed run continues the same average.
    """

    def __init__(self, model: nn.Module, decay: float, decay_type: str = "threshold"):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
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

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        src = model.state_dict()
        for name, ema_t in self.module.state_dict().items():
            t = src[name].detach()
            if ema_t.dtype.is_floating_point:
                ema_t.mul_(d).add_(t.to(ema_t.dtype), alpha=1 - d)
            else:
                ema_t.copy_(t)  # counters such as BatchNorm's num_batches_tracked
        self.step += 1

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.step = int(state["step"])
