"""``SemiTrainer``: what every semi-supervised method shares (notes §4-§6).

- data: one labeled and one unlabeled batch per step, each with a weak and a strong view
  sharing their geometry (``engine.data.semi``); an epoch is ``epoch_iter`` steps, or one
  pass over the labeled batches;
- a ``Teacher``: a frozen copy of the student, started (hard copy) and updated (EMA) on
  one schedule (``follow_student``, docs/semi-schedule.md), saved in the checkpoint;
- phases: ``burn_in`` (supervised only) until ``semi_start_iters``, then ``semi``; a run
  whose semi phase would never start is warned about before training;
- weights: ``pretrain_weights`` go to the student and the teacher; ``pretrain_teacher_weights``
  + ``pretrain_student_weights`` load separately, each with its own report;
- evaluation: the teacher (once started) and the student, the teacher deciding ``best.pt``.

A method subclasses it and writes the step: ``train_module`` (what one DDP forward
computes) and ``forward_losses`` (sup + unsup terms, ``step_stats``, the unsup terms
through ``with_unsup_terms``), and calls ``follow_student`` where its method does (after
the optimizer step, or before the forward). It says which config keys set its teacher's
decay (``teacher_decay``), its schedule (``schedule_starts``) and the model evaluated first
(``inference_on``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from engine.config.schema import Config
from engine.data.loader import build_eval_dataset, build_eval_loader
from engine.data.semi import SemiBatch, build_semi_loader
from engine.env import DistEnv
from engine.protocol.errors import ConfigError, WeightsError
from engine.recorder import RunRecorder
from engine.trainers.base import Trainer
from engine.trainers.teacher import Teacher

PHASES = ("burn_in", "semi")


def resolve_iters(value: float, max_iters: int) -> int:
    """A schedule point given as iterations (>= 1, or 0) or as a fraction (< 1)."""
    if 0 < value < 1:
        return round(value * max_iters)
    return int(value)


class SemiTrainer(Trainer):
    """The shared base of DenseTeacher, ARSL and Semi-RT-DETR (not used on its own)."""

    def __init__(self, cfg: Config, env: DistEnv, recorder: RunRecorder,
                 config_dict: dict[str, Any], *, seed: int = 0):
        super().__init__(cfg, env, recorder, config_dict, seed=seed)
        self.teacher = Teacher(self.model_without_ddp, self.teacher_decay())
        self.semi_start, self.ema_start = self.schedule_starts()
        self.teacher_loaded = False
        self._warn_about_schedule()

    # --------------------------------------------------------------------------- model
    # The detector class the method trains (another architecture is refused before
    # training, naming why) and the reason, as "<method> <model_purpose>".
    model_class: type[nn.Module] | None = None
    model_purpose = ""

    def build_model(self) -> nn.Module:
        model = super().build_model()
        cls = self.model_class
        if cls is not None and not isinstance(model, cls):
            raise ConfigError(f"{self.cfg.ssod_method} {self.model_purpose}; architecture "
                              f"{self.cfg.architecture} is not supported", key="architecture",
                              hint=f"use architecture: {cls.__name__}")
        return model

    # ---------------------------------------------------------------------------- data
    def build_data(self) -> None:
        cfg, env = self.cfg, self.env
        self.semi_loader = build_semi_loader(cfg, rank=env.rank, world_size=env.world_size,
                                             seed=self.seed)
        self.train_ds = self.semi_loader.labeled.source     # the labeled CocoDetection
        self.unsup_ds = self.semi_loader.unlabeled.source
        self.eval_ds = build_eval_dataset(cfg)
        self.eval_loader = build_eval_loader(cfg, self.eval_ds)
        self.iters_per_epoch = cfg.epoch_iter or len(self.semi_loader)
        reader = cfg.SemiTrainReader
        self.images_per_step = (reader.sup_batch_size + reader.unsup_batch_size) * env.world_size

    def epoch_batches(self) -> Iterator[SemiBatch]:
        # Each stream's position is a function of the global step: resume is exact.
        return self.semi_loader.iter_from(self.iter)

    def data_state_dict(self) -> dict[str, Any]:
        return self.semi_loader.state_dict()

    def load_data_state_dict(self, state: dict[str, Any]) -> None:
        self.semi_loader.load_state_dict(state)

    # --------------------------------------------------------------------------- phases
    # The config keys that set semi_start / ema_start, as warnings name them.
    semi_start_key = "semi_start_iters"
    ema_start_key = "ema_start_iters"

    def schedule_starts(self) -> tuple[int, int]:
        """``(semi_start, ema_start)``: the iteration the semi phase starts at and the one
        the teacher is first copied at (``semi_start_iters``, ``ema_start_iters``; a method
        with its own schedule keys overrides this and the two ``*_key`` names)."""
        return (resolve_iters(self.cfg.semi_start_iters, self.max_iters),
                resolve_iters(self.cfg.ema_start_iters, self.max_iters))

    def phase(self, iteration: int | None = None) -> str:
        """``burn_in`` (supervised only) or ``semi`` at ``iteration`` (default: this step)."""
        it = self.iter if iteration is None else iteration
        return "semi" if it >= self.semi_start else "burn_in"

    def train_event_fields(self) -> dict[str, Any]:
        burn_in = self.phase(self.iter) == "burn_in"
        return {"phase": self.phase(max(0, self.iter - 1)),
                "next_phase": "semi" if burn_in else None,
                "next_phase_iter": self.semi_start if burn_in else None,
                "teacher": ("started" if self.teacher.started else "not started"),
                "teacher_start_iter": (self.teacher.started_at if self.teacher.started
                                       else self.ema_start)}

    def start_event_fields(self) -> dict[str, Any]:
        # Iterations as ``next_phase_iter`` counts them: steps done before the phase starts
        # (the first semi step is shown as iteration semi_start + 1).
        return {"phase": self.phase(self.iter), "semi_start_iter": self.semi_start,
                "teacher_start_iter": (self.teacher.started_at if self.teacher.started
                                       else self.ema_start)}

    def _warn_about_schedule(self) -> None:
        notes = []
        if self.semi_start >= self.max_iters:
            key = self.semi_start_key
            notes.append(f"the semi-supervised phase never starts: {key} is "
                         f"{self.semi_start} but the run has {self.max_iters} iterations "
                         f"({self.cfg.epoch} epochs x {self.iters_per_epoch}); only the "
                         f"supervised loss will be trained (lower {key}, or give it "
                         "as a fraction of the schedule, e.g. 0.3)")
        if self.ema_start >= self.max_iters and not self.teacher_loaded:
            notes.append(f"the teacher never starts: {self.ema_start_key} is {self.ema_start} "
                         f"but the run has {self.max_iters} iterations")
        for note in notes:
            self.recorder.note("warning", note)

    # -------------------------------------------------------------------------- teacher
    def follow_student(self, iteration: int) -> None:
        """The teacher schedule every method shares (docs/semi-schedule.md): nothing before
        ``ema_start``; at the first call from ``ema_start`` on, a hard copy of the student,
        which replaces the initial teacher (the student's copy, or weights loaded with
        ``pretrain_teacher_weights``; a loaded teacher is kept only when ``ema_start`` is
        0); an EMA update at every later call. Each method calls it at its own point of
        step ``iteration``, PaddleDetection's: DenseTeacher after the optimizer step, ARSL
        and Semi-RT-DETR before the forward."""
        if iteration < self.ema_start:
            return
        started = self.teacher.started_at
        if started is None or started < self.ema_start:
            self.teacher.copy_from(self.model_without_ddp, iteration)
            self.recorder.note("info", f"teacher started: a copy of the student at "
                                       f"iteration {iteration + 1}")
        else:
            self.teacher.update(self.model_without_ddp)

    def teacher_decay(self) -> float:
        """The teacher's EMA decay. DenseTeacher's is the top-level ``ema_decay``
        (PaddleDetection's key, the ``use_ema`` decay too); a method with its own key
        overrides this."""
        return self.cfg.ema_decay

    # ----------------------------------------------------------------------------- step
    # The unlabeled loss terms of the method, in the order every step reports them.
    unsup_terms: tuple[str, ...] = ()

    def with_unsup_terms(self, losses: dict[str, Tensor], unsup: dict[str, Tensor] | None,
                         weight: float) -> dict[str, Tensor]:
        """``losses`` plus each of ``unsup_terms`` times ``weight``, or zeros when the step
        computed none (burn-in): every step reports the same terms. ``weight`` is also
        the step's ``unsup_weight`` stat."""
        if unsup is None:
            zero = next(iter(losses.values())).new_zeros(())
            terms = dict.fromkeys(self.unsup_terms, zero)
        else:
            terms = {k: unsup[k] * weight for k in self.unsup_terms}
        self.step_stats["unsup_weight"] = weight
        return {**losses, **terms}

    # ------------------------------------------------------------------------ evaluation
    def inference_on(self) -> str:
        """``teacher`` or ``student``: which is evaluated first (and decides ``best.pt``)
        once the teacher has started; a method with a ``test_cfg.inference_on`` key
        overrides this."""
        return "teacher"

    def eval_models(self) -> list[tuple[nn.Module, str]]:
        """The teacher (once started) and the student, the one ``inference_on`` names
        first; the first decides ``best.pt``."""
        student = (self.model_without_ddp, "student")
        if not self.teacher.started:
            return [student]
        models = [(self.teacher.module, "teacher"), student]
        if self.inference_on() == "student":
            models.reverse()
        return models

    # -------------------------------------------------------------------------- weights
    def load_weights(self, path: str) -> None:
        """``pretrain_weights`` initialise the student, and the teacher as its copy."""
        self._load_into(self.model_without_ddp, path, "pretrained weights (student)")
        self.teacher.module.load_state_dict(self.model_without_ddp.state_dict())

    def load_semi_weights(self, teacher: str, student: str) -> None:
        """The seed's ``load_semi_weights``: each file into its model, each reported. A
        teacher given this way is a teacher from the start (evaluated, labelling the
        unlabeled images once the semi phase starts); ``follow_student`` replaces it by the
        student's copy at ``ema_start`` unless that is 0."""
        self._load_into(self.model_without_ddp, student, "student weights")
        report = self._load_into(self.teacher.module, teacher, "teacher weights")
        # The student may start from a backbone; a teacher labels data from its first step,
        # so it must be a whole detector of this architecture, not a partial one.
        lost = report.missing + [name for name, _, _ in report.skipped_shape]
        if lost:
            arch = self.cfg.architecture
            raise WeightsError(
                f"the teacher weights do not fit the {arch} teacher: {len(lost)} of "
                f"{len(report.loaded) + len(lost)} tensors are missing or of another shape "
                f"(e.g. {', '.join(lost[:3])}); a teacher must be a complete {arch} with "
                f"{self.cfg.num_classes} classes (weights of another architecture, backbone "
                "or class count cannot label data)", file=teacher,
                key="pretrain_teacher_weights")
        self.teacher.started_at = 0
        self.teacher_loaded = True

    def extra_state(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict(), "semi": {
            "semi_start": self.semi_start, "ema_start": self.ema_start}}

    def load_extra_state(self, state: dict[str, Any], path: str | Path) -> None:
        if not isinstance(state.get("teacher"), dict):
            raise WeightsError("the checkpoint has no teacher state (it was not written by a "
                               "semi-supervised trainer)", file=str(path))
        try:
            self.teacher.load_state_dict(state["teacher"])
        except RuntimeError as exc:
            raise WeightsError(f"the checkpoint's teacher does not fit this model: "
                               f"{str(exc)[:300]}", file=str(path)) from None
