"""The trainer catalogue: every trainer dettui has, in one torch-free table.

One entry per trainer says what everyone needs to know of it before torch is imported:
the name the engine, run.json and checkpoints give it, how a config selects it (the
seed's dispatch: ``ssod_method`` > ``use_cot`` > the supervised ``Trainer``), the
architectures it trains, its label in the launch form, and the weights keys it takes.
The schema validates with it (an unknown ``ssod_method``, a trainer on an architecture it
cannot train, weights it does not take: all refused before anything starts), the engine
dispatches with it (``engine.trainers.build_trainer``), and the CLI's ``--trainer``, the
launch form and the config tree read their names from it.

Adding a trainer: its module under ``engine/trainers/`` and one entry in ``TRAINERS``
(with the function that imports its class when a run uses it: a trainer's module pulls in
torch, Semi-RT-DETR's also transformers, seconds that no other run should pay).

stdlib only: the CLI and the TUI import it (tests/shared/test_boundary.py).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.protocol.errors import ConfigError

if TYPE_CHECKING:
    from engine.config.schema import Config
    from engine.trainers.base import Trainer

SUPERVISED_WEIGHTS = ("pretrain_weights",)
SEMI_WEIGHTS = ("pretrain_weights", "pretrain_teacher_weights", "pretrain_student_weights")


@dataclass(frozen=True)
class TrainerInfo:
    """One trainer: what it is called, how a config picks it, what it can train."""

    name: str
    """As the engine, run.json, checkpoints and every front end name it."""
    load: Callable[[], type[Trainer]]
    """Imports the trainer's module (on use) and returns its class."""
    choice: str
    """Its value of ``dettui run --trainer`` and of the launch form's trainer field."""
    label: str
    """Its line in the launch form's trainer choice."""
    architectures: tuple[str, ...] | None
    """The ``architecture`` values it trains (None: every one)."""
    why: str
    """Why only those, completing "<choice> ...": the refusal of another architecture says
    it."""
    weights: tuple[str, ...]
    """The weights keys it takes; a config giving another one is refused."""
    ssod_method: str | None = None
    """The ``ssod_method`` that selects it (a semi-supervised trainer), else None."""
    use_cot: bool = False
    """Whether ``use_cot: true`` (without ``ssod_method``) selects it."""

    @property
    def semi(self) -> bool:
        """Whether it trains on labeled and unlabeled images (a teacher and a student)."""
        return self.ssod_method is not None

    def supports(self, architecture: str) -> bool:
        return self.architectures is None or architecture in self.architectures

    def overrides(self) -> list[str]:
        """The ``-o`` overrides that make a config train with it."""
        if self.semi:
            return [f"ssod_method={json.dumps(self.ssod_method)}"]
        return ["ssod_method=null", f"use_cot={json.dumps(self.use_cot)}"]

    def summary(self) -> str:
        """``--trainer`` help: its choice and what it trains."""
        kind = "semi-supervised" if self.semi else ("transfer" if self.use_cot else "supervised")
        archs = "any architecture" if self.architectures is None else \
            " or ".join(self.architectures)
        return f"{self.choice} ({kind}, {archs})"


# ----------------------------------------------------------------------------- loaders
# One per trainer: imports written out, so "go to definition" reaches each class, and
# importing this module imports none of them.

def _supervised() -> type[Trainer]:
    from engine.trainers.base import Trainer

    return Trainer


def _dense_teacher() -> type[Trainer]:
    from engine.trainers.dense_teacher import DenseTeacherTrainer

    return DenseTeacherTrainer


def _arsl() -> type[Trainer]:
    from engine.trainers.arsl import ARSLTrainer

    return ARSLTrainer


def _semi_rtdetr() -> type[Trainer]:
    from engine.trainers.semi_rtdetr import SemiRTDETRTrainer  # imports transformers

    return SemiRTDETRTrainer


def _cotuning() -> type[Trainer]:
    from engine.trainers.cotuning import CoTuningTrainer

    return CoTuningTrainer


TRAINERS: tuple[TrainerInfo, ...] = (
    TrainerInfo("Trainer", _supervised, choice="Trainer", label="Trainer (supervised)",
                architectures=None, why="", weights=SUPERVISED_WEIGHTS),
    TrainerInfo("DenseTeacher", _dense_teacher, choice="DenseTeacher",
                label="DenseTeacher (semi-supervised, FCOS)", architectures=("FCOS",),
                why="distils FCOS's dense outputs", weights=SEMI_WEIGHTS,
                ssod_method="DenseTeacher"),
    TrainerInfo("ARSL", _arsl, choice="ARSL", label="ARSL (semi-supervised, FCOS)",
                architectures=("FCOS",), why="trains FCOS with an IoU branch",
                weights=SEMI_WEIGHTS, ssod_method="ARSL"),
    TrainerInfo("Semi_RTDETR", _semi_rtdetr, choice="Semi_RTDETR",
                label="Semi_RTDETR (semi-supervised, RTDETR)", architectures=("RTDETR",),
                why="trains RT-DETR on its pseudo-labels", weights=SEMI_WEIGHTS,
                ssod_method="Semi_RTDETR"),
    TrainerInfo("CoTuning", _cotuning, choice="co-tuning",
                label="co-tuning (transfer, FasterRCNN)", architectures=("FasterRCNN",),
                why="keeps the source classifier as a second head of Faster R-CNN's box "
                    "head", weights=SUPERVISED_WEIGHTS, use_cot=True),
)

SSOD_METHODS: tuple[str, ...] = tuple(t.ssod_method for t in TRAINERS if t.ssod_method)
"""The values of ``ssod_method``, each selecting its semi-supervised trainer."""

CHOICES: tuple[str, ...] = ("config", *(t.choice for t in TRAINERS))
"""``--trainer`` values: ``config`` (whatever the config selects), then one per trainer."""


def trainer_for(ssod_method: str | None, use_cot: bool) -> TrainerInfo | None:
    """The trainer a config with these keys trains with (PaddleDetection's dispatch:
    ``ssod_method`` > ``use_cot`` > the supervised ``Trainer``); None for an unknown
    ``ssod_method``."""
    if ssod_method is not None:
        return next((t for t in TRAINERS if t.ssod_method == ssod_method), None)
    return next(t for t in TRAINERS if not t.semi and t.use_cot == use_cot)


def trainer_of(cfg: Config) -> TrainerInfo:
    """The trainer ``cfg`` trains with (the schema has refused an unknown ``ssod_method``;
    a ``Config`` built without it gets the same refusal here)."""
    info = trainer_for(cfg.ssod_method, cfg.use_cot)
    if info is None:
        raise ConfigError(f"unsupported ssod_method {cfg.ssod_method!r}; supported: "
                          + ", ".join(SSOD_METHODS), key="ssod_method")
    return info


def by_choice(choice: str) -> TrainerInfo | None:
    """The trainer of a ``--trainer`` value; None for ``config`` or an unknown value
    (``CHOICES`` tells them apart)."""
    return next((t for t in TRAINERS if t.choice == choice), None)


def closest(word: str, words: tuple[str, ...]) -> str | None:
    """The closest of ``words`` to a mistyped ``word`` (for "did you mean"), if any."""
    close = difflib.get_close_matches(word, words, n=1)
    return close[0] if close else None


def for_architecture(architecture: str) -> list[TrainerInfo]:
    """The trainers that train ``architecture``."""
    return [t for t in TRAINERS if t.supports(architecture)]
