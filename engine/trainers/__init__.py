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

# ssod_method -> trainer class. A name whose class is None is valid but not built yet.
SSOD_TRAINERS: dict[str, type[Trainer] | None] = {
    "DenseTeacher": DenseTeacherTrainer,
    "ARSL": ARSLTrainer,
    "Semi_RTDETR": None,
}
COT_TRAINER: type[Trainer] | None = CoTuningTrainer


def _not_available(what: str, key: str) -> ConfigError:
    return ConfigError(
        f"{what} is not available yet in this version of dettui; refusing to train "
        "something else instead", key=key,
        hint="remove the key to use the supervised Trainer")


def build_trainer(cfg: Config, env: DistEnv, recorder: RunRecorder, config_dict: dict[str, Any],
                  seed: int) -> Trainer:
    """``ssod_method`` -> that semi-supervised trainer; else ``use_cot`` -> co-tuning;
    else the supervised ``Trainer``."""
    if cfg.ssod_method is not None:
        if cfg.ssod_method not in SSOD_TRAINERS:
            raise ConfigError(f"unsupported ssod_method {cfg.ssod_method!r}; supported: "
                              + ", ".join(SSOD_METHODS), key="ssod_method")
        cls = SSOD_TRAINERS[cfg.ssod_method]
        if cls is None:
            raise _not_available(f"the {cfg.ssod_method} semi-supervised trainer",
                                 "ssod_method")
        return cls(cfg, env, recorder, config_dict, seed=seed)
    if cfg.use_cot:
        if COT_TRAINER is None:
            raise _not_available("the co-tuning trainer (use_cot: true)", "use_cot")
        return COT_TRAINER(cfg, env, recorder, config_dict, seed=seed)
    return Trainer(cfg, env, recorder, config_dict, seed=seed)
