"""Trainers. ``build_trainer`` is the seed's dispatch (notes §1.3), as one explicit table."""

from __future__ import annotations

import importlib
from typing import Any

from engine.config.schema import SSOD_METHODS, Config
from engine.env import DistEnv
from engine.errors import ConfigError
from engine.recorder import RunRecorder
from engine.trainers.base import Trainer
from engine.trainers.cotuning import CoTuningTrainer

# ssod_method -> "module:class" of its trainer (one per name of SSOD_METHODS), imported when
# a run uses it: Semi_RTDETR's transformers alone takes seconds to import, which every FCOS
# run (and every engine process a test starts) would otherwise pay.
SSOD_TRAINERS: dict[str, str] = {
    "DenseTeacher": "engine.trainers.dense_teacher:DenseTeacherTrainer",
    "ARSL": "engine.trainers.arsl:ARSLTrainer",
    "Semi_RTDETR": "engine.trainers.semi_rtdetr:SemiRTDETRTrainer",
}


def ssod_trainer(method: str) -> type[Trainer]:
    """The trainer class of ``ssod_method: method``."""
    module, name = SSOD_TRAINERS[method].split(":")
    return getattr(importlib.import_module(module), name)


def build_trainer(cfg: Config, env: DistEnv, recorder: RunRecorder, config_dict: dict[str, Any],
                  seed: int) -> Trainer:
    """``ssod_method`` -> that semi-supervised trainer; else ``use_cot`` -> co-tuning;
    else the supervised ``Trainer``."""
    if cfg.ssod_method is not None:
        if cfg.ssod_method not in SSOD_TRAINERS:
            raise ConfigError(f"unsupported ssod_method {cfg.ssod_method!r}; supported: "
                              + ", ".join(SSOD_METHODS), key="ssod_method")
        return ssod_trainer(cfg.ssod_method)(cfg, env, recorder, config_dict, seed=seed)
    if cfg.use_cot:
        return CoTuningTrainer(cfg, env, recorder, config_dict, seed=seed)
    return Trainer(cfg, env, recorder, config_dict, seed=seed)
