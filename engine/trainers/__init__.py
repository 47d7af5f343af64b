"""Trainers. ``build_trainer`` is the seed's dispatch (notes §1.3), read from the trainer
catalogue (``engine.trainers.catalogue``).

This package's ``__init__`` imports no trainer (nor torch): the catalogue in it is read by
the schema, the CLI and the TUI. A trainer's module is imported when a run uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.trainers.catalogue import trainer_of

if TYPE_CHECKING:
    from engine.config.schema import Config
    from engine.env import DistEnv
    from engine.recorder import RunRecorder
    from engine.trainers.base import Trainer


def build_trainer(cfg: Config, env: DistEnv, recorder: RunRecorder, config_dict: dict[str, Any],
                  seed: int) -> Trainer:
    """The trainer the catalogue dispatches ``cfg`` to (``ssod_method`` > ``use_cot`` >
    the supervised ``Trainer``), built."""
    return trainer_of(cfg).load()(cfg, env, recorder, config_dict, seed=seed)
