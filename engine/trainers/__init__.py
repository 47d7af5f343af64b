"""Trainers. ``build_trainer`` is the seed's dispatch (notes §1.3), as one explicit table."""

from __future__ import annotations

from typing import Any

from engine.config.schema import SSOD_METHODS, Config
from engine.env import DistEnv
from engine.errors import ConfigError
from engine.recorder import RunRecorder
from engine.trainers.arsl import ARSLTrainer
from engine.trainers.base import Trainer
from engine.trainers.cotuning import CoTuningTrainer
from engine.trainers.dense_teacher import DenseTeacherTrainer
from engine.trainers.semi_rtdetr import SemiRTDETRTrainer

# ssod_method -> trainer class (one per name of SSOD_METHODS).
SSOD_TRAINERS: dict[str, type[Trainer]] = {
    "DenseTeacher": DenseTeacherTrainer,
    "ARSL": ARSLTrainer,
    "Semi_RTDETR": SemiRTDETRTrainer,
}


def build_trainer(cfg: Config, env: DistEnv, recorder: RunRecorder, config_dict: dict[str, Any],
                  seed: int) -> Trainer:
    """``ssod_method`` -> that semi-supervised trainer; else ``use_cot`` -> co-tuning;
    else the supervised ``Trainer``."""
    if cfg.ssod_method is not None:
        if cfg.ssod_method not in SSOD_TRAINERS:
            raise ConfigError(f"unsupported ssod_method {cfg.ssod_method!r}; supported: "
                              + ", ".join(SSOD_METHODS), key="ssod_method")
        return SSOD_TRAINERS[cfg.ssod_method](cfg, env, recorder, config_dict, seed=seed)
    if cfg.use_cot:
        return CoTuningTrainer(cfg, env, recorder, config_dict, seed=seed)
    return Trainer(cfg, env, recorder, config_dict, seed=seed)
