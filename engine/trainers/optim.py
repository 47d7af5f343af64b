"""Optimizer and per-iteration learning-rate schedule builders."""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.config.schema import Config
from engine.models import lr_multiplier


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """SGD or AdamW; no weight decay on norm layers and biases (they only shift/scale).

    Parameters with a learning-rate multiplier (``lr_multiplier``: RT-DETR's backbone) go in
    extra groups after the two usual ones, at ``base_lr x multiplier``; the LambdaLR schedule
    scales every group's own initial lr.
    """
    oc = cfg.OptimizerBuilder
    lr = cfg.LearningRate.base_lr
    # (weight decay?, lr multiplier) -> parameters; the two plain groups always come first.
    kinds: dict[tuple[bool, float], list[nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim <= 1 or name.endswith(".bias"))
        kinds.setdefault((decay, lr_multiplier(cfg, name)), []).append(p)
    groups = [{"params": params, "weight_decay": oc.weight_decay if decay else 0.0,
               "lr": lr * mult} for (decay, mult), params in kinds.items()
              if params or mult == 1.0]
    if oc.type == "SGD":
        return torch.optim.SGD(groups, lr=lr, momentum=oc.momentum)
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(cfg: Config, it: int, iters_per_epoch: int, max_iters: int) -> float:
    """The lr multiplier at global iteration ``it`` (0-based): linear warmup, then decay."""
    lc = cfg.LearningRate
    if lc.schedule == "step":
        passed = sum(1 for m in lc.milestones if it >= m * iters_per_epoch)
        factor = lc.gamma ** passed
    elif lc.schedule == "cosine":
        progress = min(1.0, it / max(1, max_iters))
        factor = lc.min_lr_ratio + (1 - lc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        factor = 1.0
    if it < lc.warmup_iters:
        alpha = it / lc.warmup_iters
        factor *= lc.warmup_start_factor * (1 - alpha) + alpha
    return factor


def build_lr_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, iters_per_epoch: int,
                       max_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per iteration (its state dict is just the step count)."""

    def factor(it: int) -> float:
        return lr_factor(cfg, it, iters_per_epoch, max_iters)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
