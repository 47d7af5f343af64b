"""The supervised ``Trainer``: the loop, one step, and the hooks around them.

Every other trainer subclasses it and changes the step, not the plumbing. The points it
is meant to be extended at (detectron2's ``DefaultTrainer.build_*`` style):

- ``build_data()`` / ``build_model()`` / ``train_module()`` / ``build_optimizer()``:
  factories called once by ``__init__``, in that order;
- ``epoch_batches()`` (the data of one epoch from the current position) with
  ``data_state_dict()`` / ``load_data_state_dict()`` for exact resume;
- ``forward_losses(batch) -> {term: Tensor}``: what a method computes on one batch;
  ``apply_losses(losses)`` is the one shared "check finite, scale, backward, clip, step";
- ``eval_models()``: the ``(model, which)`` pairs ``run_evaluation`` evaluates and reports,
  the first one deciding ``best`` (tracked by the ``EvalHook``);
- ``extra_state()`` / ``load_extra_state()``: what a method adds to the checkpoint;
- ``train_event_fields()``: what a method adds to every ``train`` event;
- ``build_hooks()``: the side jobs, in order (``engine.trainers.hooks``); the stateful ones
  are built first and kept: ``checkpointer``, ``ema_hook`` and ``eval_hook``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from engine.config.schema import Config, trainer_name
from engine.data.loader import Batch, build_datasets, build_eval_loader, build_train_loader
from engine.env import DistEnv
from engine.evaluation import EvalObserver, EvalResult, evaluate_model
from engine.models import build_model, count_parameters
from engine.models.weights import LoadReport, load_pretrained
from engine.precision import amp_ignored
from engine.protocol.errors import ConfigError, NonFiniteLoss, WeightsError
from engine.recorder import RunRecorder
from engine.trainers.checkpoint import Checkpointer, capture_rng_state, restore_rng_state
from engine.trainers.hooks import (
    CheckpointHook,
    EMAHook,
    EvalHook,
    Evaluation,
    HookBase,
    LRSchedulerHook,
    MetricsLogger,
    SignalHook,
    SystemMonitor,
)
from engine.trainers.optim import build_lr_scheduler, build_optimizer
from engine.trainers.previews import PreviewHook

# Config keys that may change between a run and its resume without changing the result.
RESUME_HARMLESS_KEYS = {"device", "worker_num", "log_iter", "EvalReader.batch_size"}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every config key that differs (harmless keys excluded)."""
    a, b = _flatten(old), _flatten(new)
    changes = []
    for key in sorted(set(a) | set(b)):
        if key in RESUME_HARMLESS_KEYS or a.get(key) == b.get(key):
            continue
        changes.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return changes


@dataclass
class StepOutcome:
    """What the last step did, for the hooks.

    Attributes:
        applied: the optimizer step was taken (False when a non-finite loss was skipped).
        losses: every loss term and the total ``loss``, as floats.
        stats: other per-step numbers a method reports (pseudo-label counts, loss weights).
        data_time: seconds spent waiting for the batch.
    """

    applied: bool = False
    losses: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    data_time: float = 0.0


class Trainer:
    """Supervised detection training (PaddleDetection's ``Trainer``, mode='train')."""

    def __init__(self, cfg: Config, env: DistEnv, recorder: RunRecorder,
                 config_dict: dict[str, Any], *, seed: int = 0):
        self.cfg = cfg
        self.env = env
        self.recorder = recorder
        self.logger = recorder.logger
        self.config_dict = config_dict
        self.device = env.device
        self.seed = seed
        self.name = trainer_name(cfg)

        self.build_data()
        self.max_iters = cfg.epoch * self.iters_per_epoch

        model = self.build_model().to(self.device)
        if cfg.norm_type == "sync_bn" and env.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model_without_ddp = model
        module = self.train_module()
        self.model: nn.Module = module
        if env.distributed:
            self.model = DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)
        self.optimizer = self.build_optimizer()
        self.scheduler = build_lr_scheduler(cfg, self.optimizer, self.iters_per_epoch,
                                            self.max_iters)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        if cfg.amp and not self.use_amp:  # said in train.log and the console, not skipped
            self.recorder.note("warning", amp_ignored(str(self.device)))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

        # Loop state; a checkpoint restores exactly these (and the hooks' state below).
        self.epoch = 0          # the epoch the next step belongs to (0-based)
        self.epoch_iter = 0     # steps already done in that epoch
        self.iter = 0           # steps done in total
        self.rng_to_restore: dict | None = None
        self.nonfinite_skipped = 0

        self.last_step = StepOutcome()
        self.step_stats: dict[str, float] = {}  # filled by forward_losses, read once applied
        self.num_params = count_parameters(model)

        # The hooks with state of their own, kept for checkpoints and evaluation.
        self.checkpointer = Checkpointer(
            recorder.run.checkpoints if recorder.run is not None else None, recorder,
            self.state_dict, trainer=self.name, class_names=self.train_ds.class_names,
            config=config_dict)
        self.ema_hook = (EMAHook(model, cfg.ema_decay, cfg.ema_decay_type) if cfg.use_ema
                         else None)
        self.eval_hook = EvalHook(cfg.snapshot_epoch, cfg.epoch, self.run_evaluation,
                                  recorder, self.checkpointer.best_path)
        self.hooks = self.build_hooks()

    @property
    def best(self) -> dict[str, Any] | None:
        """The best AP so far (run.json's ``best``), as the eval hook tracks it."""
        return self.eval_hook.best

    # ------------------------------------------------------------------------ factories
    def build_data(self) -> None:
        """Datasets and loaders; sets ``train_ds``, ``eval_ds``, ``eval_loader``,
        ``iters_per_epoch`` and ``images_per_step``."""
        cfg = self.cfg
        self.train_ds, self.eval_ds = build_datasets(cfg)
        self.train_loader, self.sampler = build_train_loader(
            cfg, self.train_ds, rank=self.env.rank, world_size=self.env.world_size,
            seed=self.seed)
        self.eval_loader = build_eval_loader(cfg, self.eval_ds)
        batches = len(self.sampler)
        if batches < 1:
            raise ConfigError(f"the training set has {len(self.train_ds)} images, fewer than "
                              f"one batch of {cfg.TrainReader.batch_size} per process",
                              key="TrainReader.batch_size",
                              hint="lower TrainReader.batch_size or set drop_last: false")
        self.iters_per_epoch = cfg.epoch_iter or batches
        self.images_per_step = cfg.TrainReader.batch_size * self.env.world_size

    def build_model(self) -> nn.Module:
        """The detector being trained (before DDP; ``model_without_ddp`` afterwards)."""
        return build_model(self.cfg)

    def train_module(self) -> nn.Module:
        """The module whose forward a step calls, and which DDP wraps: the detector itself
        here; a method that needs several outputs from one forward wraps it."""
        return self.model_without_ddp

    def build_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.cfg, self.model_without_ddp)

    # ----------------------------------------------------------------------------- data
    def epoch_batches(self) -> Iterator[Batch]:
        """This epoch's batches from the current position, cycling the loader when
        ``epoch_iter`` asks for more steps than one pass has."""
        n = len(self.sampler)
        cycle, pos = divmod(self.epoch_iter, n)
        while True:
            self.sampler.set_epoch(self.epoch * 1000 + cycle)
            self.sampler.skip(pos)
            yield from self.train_loader
            cycle, pos = cycle + 1, 0

    def data_state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_data_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)

    # ------------------------------------------------------------------------- the step
    def to_device(self, images: list[Tensor], targets: list[dict]
                  ) -> tuple[list[Tensor], list[dict]]:
        """Images and the target fields the detectors read, on the training device."""
        images = [img.to(self.device, non_blocking=True) for img in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()
                    if k in ("boxes", "labels", "scores")} for t in targets]
        return images, targets

    def run_step(self, batch: Any) -> None:
        """One optimizer step on one batch."""
        self.step_stats = {}
        self.apply_losses(self.forward_losses(batch))

    def forward_losses(self, batch: Batch) -> dict[str, Tensor]:
        """The loss terms of one batch (the supervised detector's own losses)."""
        images, targets = self.to_device(*batch)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            return self.model(images, targets)

    def apply_losses(self, losses: dict[str, Tensor]) -> None:
        """Sum the terms, and unless any rank's loss is non-finite: backward (scaled under
        AMP), clip, optimizer step. Sets ``last_step``."""
        loss = sum(losses.values())
        values = {k: float(v.detach()) for k, v in losses.items()}
        values["loss"] = float(loss.detach())
        if not self._all_finite(values):
            self.last_step = StepOutcome(applied=False, data_time=self.last_step.data_time)
            self._on_nonfinite(values)
            return
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.OptimizerBuilder.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(),
                                     self.cfg.OptimizerBuilder.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.last_step = StepOutcome(applied=True, losses=values, stats=dict(self.step_stats),
                                     data_time=self.last_step.data_time)

    def _all_finite(self, values: dict[str, float]) -> bool:
        """Whether every rank's losses are finite (under DDP, all ranks skip together)."""
        ok = all(math.isfinite(v) for v in values.values())
        if self.env.distributed:
            flag = torch.tensor([0.0 if ok else 1.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            ok = flag.item() == 0.0
        return ok

    def _on_nonfinite(self, values: dict[str, float]) -> None:
        """Skip the step while the budget lasts, else stop with an ``error`` event."""
        step = self.iter + 1
        terms = ", ".join(f"{k}={v}" for k, v in values.items())
        self.nonfinite_skipped += 1
        if self.nonfinite_skipped <= self.cfg.nonfinite_skip_steps:
            self.recorder.note("warning", f"non-finite loss at iteration {step} ({terms}); "
                               f"step skipped ({self.nonfinite_skipped}/"
                               f"{self.cfg.nonfinite_skip_steps})")
            return
        raise NonFiniteLoss(step, values)

    def train_event_fields(self) -> dict[str, Any]:
        """Fields a method adds to every ``train`` event (the semi trainers: the phase)."""
        return {}

    def start_event_fields(self) -> dict[str, Any]:
        """Fields a method adds to the ``start`` event (the semi trainers: when each phase
        starts, so a front-end can say it before the first step)."""
        return {}

    # ------------------------------------------------------------------------ evaluation
    def eval_models(self) -> list[tuple[nn.Module, str]]:
        """``(model, which)`` to evaluate, the first deciding ``best`` and ``best.pt``."""
        if self.ema_hook is not None:
            return [(self.ema_hook.module, "ema")]
        return [(self.model_without_ddp, "model")]

    def evaluate(self, model: nn.Module, observe: EvalObserver | None = None) -> EvalResult:
        return evaluate_model(model, self.eval_loader, self.eval_ds, self.device,
                              amp=self.use_amp, observe=observe)

    def run_evaluation(self, observe: EvalObserver | None = None) -> Evaluation:
        """Evaluate every model of ``eval_models`` (rank 0) and report them; the first one's
        outputs are also shown to ``observe`` (the previews), if given. Returns what was
        evaluated (empty on other ranks), for the eval hook's best tracking."""
        results: Evaluation = []
        if self.env.is_main:
            models = self.eval_models()
            # an evaluation takes a while (tens of seconds on a CPU): front-ends say so
            self.recorder.emit("eval_start", epoch=self.epoch, iter=self.iter,
                               models=[which for _, which in models], images=len(self.eval_ds))
            for i, (model, which) in enumerate(models):
                t0 = time.perf_counter()
                result = self.evaluate(model, observe if i == 0 else None)
                results.append((model, which, result, time.perf_counter() - t0))
            self.report(results)
        self.env.barrier()
        return results

    def report(self, results: Evaluation) -> None:
        """Log each COCO summary and emit one ``eval`` event per model."""
        for _, which, result, seconds in results:
            self.logger.info(f"Eval epoch {self.epoch + 1} ({which}, {seconds:.1f}s):\n"
                             + "\n".join(result.summary_lines()))
            per_class = "\n".join(f"  {name:<24} {v:.3f}" for name, v in result.per_class.items())
            self.logger.info(f"Per-class AP ({which}):\n" + per_class)
            self.recorder.emit("eval", epoch=self.epoch, iter=self.iter, model=which,
                               metrics=result.metrics, per_class=result.per_class,
                               stats=result.stats, summary=result.summary_lines(),
                               eval_time=seconds)

    # -------------------------------------------------------------------------- weights
    def load_weights(self, path: str) -> None:
        """``pretrain_weights``: weights only; mismatched tensors skipped and reported (the
        EMA average starts from them when training starts)."""
        self._load_into(self.model_without_ddp, path, "pretrained weights")

    def _load_into(self, model: nn.Module, path: str, what: str) -> LoadReport:
        report = load_pretrained(model, path, logger=self.logger)
        self.recorder.emit("log", level="info", message=f"{what} {path}: " + report.summary())
        return report

    def load_semi_weights(self, teacher: str, student: str) -> None:
        raise ConfigError(
            "pretrain_teacher_weights + pretrain_student_weights need a semi-supervised "
            f"trainer (ssod_method); the {self.name} trainer takes pretrain_weights",
            key="pretrain_teacher_weights")

    def restore(self, state: dict[str, Any], path: str | Path, *, force: bool = False) -> None:
        """Restore the full training state from a loaded checkpoint (read from ``path``)."""
        made_by = state.get("trainer")
        if made_by is not None and made_by != self.name:
            # Not even --force: the state of one method cannot continue as another (a
            # teacher would be silently dropped, or be missing).
            raise ConfigError(f"the checkpoint was written by the {made_by} trainer; this "
                              f"config trains with {self.name}", file=str(path),
                              hint="resume with the config the run was started with, or "
                                   "start a new run with --weights to initialise from it")
        changes = config_changes(state.get("config") or {}, self.config_dict)
        if changes and not force:
            shown = "\n    ".join(changes[:20])
            more = f"\n    ... and {len(changes) - 20} more" if len(changes) > 20 else ""
            raise ConfigError(f"the config differs from the checkpoint's:\n    {shown}{more}",
                              file=str(path), hint="resume with the same config, or pass "
                              "--force to resume with the new one")
        try:
            self.model_without_ddp.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise WeightsError(f"checkpoint does not fit this model: {str(exc)[:300]}",
                               file=str(path)) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema_hook is not None and state.get("ema"):
            self.ema_hook.load_state_dict(state["ema"])
        self.epoch = int(state["epoch"])
        self.epoch_iter = int(state["epoch_iter"])
        self.iter = int(state["iter"])
        self.eval_hook.best = state.get("best")
        if state.get("sampler"):
            self.load_data_state_dict(state["sampler"])
        self.load_extra_state(state, path)
        self.rng_to_restore = state.get("rng")
        self.logger.info(f"resumed from {path}: epoch {self.epoch + 1}, step {self.epoch_iter} "
                         f"of {self.iters_per_epoch}, {self.iter} steps done")

    def extra_state(self) -> dict[str, Any]:
        """What a method adds to the checkpoint (a teacher, a learned matrix...)."""
        return {}

    def load_extra_state(self, state: dict[str, Any], path: str | Path) -> None:
        """Restore what ``extra_state`` saved."""

    # ---------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        done = self.epoch_iter >= self.iters_per_epoch
        state = {
            "model": self.model_without_ddp.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.use_amp else None,
            "ema": self.ema_hook.state_dict() if self.ema_hook is not None else None,
            "epoch": self.epoch + 1 if done else self.epoch,
            "epoch_iter": 0 if done else self.epoch_iter,
            "iter": self.iter,
            "sampler": self.data_state_dict(),
            "rng": capture_rng_state(),
            "best": self.eval_hook.best,
            "config": self.config_dict,
            "trainer": self.name,
            "class_names": self.train_ds.class_names,
        }
        state.update(self.extra_state())
        # Which entry holds the weights that are evaluated (dettui eval/infer take them).
        if self.eval_models()[0][1] != "model":
            state["eval_model"] = self.eval_models()[0][1]
        return state

    # ------------------------------------------------------------------------- the loop
    def build_hooks(self) -> list[HookBase]:
        """The hooks, in the order they run at each hook point (built once, by
        ``__init__``, after ``checkpointer``, ``ema_hook`` and ``eval_hook``)."""
        cfg = self.cfg
        hooks: list[HookBase | None] = [
            # times the step, logs right after it
            MetricsLogger(self.recorder, cfg.log_iter, cfg.epoch),
            LRSchedulerHook(self.scheduler),  # per-iteration lr, after the optimizer step
            self.ema_hook,       # average the weights just updated
            self.eval_hook,      # epoch end: evaluate before checkpointing (best.pt needs AP)
            # draws what the evaluation just predicted on a few images
            PreviewHook(self.eval_hook, self.eval_ds, self.recorder,
                        count=cfg.preview_images, score_threshold=cfg.preview_score_threshold,
                        keep_epochs=cfg.preview_keep_epochs),
            # interval checkpoints; last/best/epoch at epoch end
            CheckpointHook(self.checkpointer, interval=cfg.checkpoint_interval,
                           epoch_period=cfg.snapshot_epoch, epochs=cfg.epoch,
                           keep_epochs=cfg.save_epoch_checkpoints, best=self.eval_hook),
            SystemMonitor(self.recorder),  # background sampling of CPU/RAM/GPU
            # stop/save requests, acted on once the step is complete
            SignalHook(self.checkpointer, cfg.epoch, self.logger),
        ]
        built = [h for h in hooks if h is not None]
        for h in built:
            h.trainer = self
        return built

    def _call(self, point: str) -> None:
        for h in self.hooks:
            getattr(h, point)()

    def train(self, validate: bool) -> None:
        """Train to the last epoch; ``validate``: evaluate on the eval hook's epochs."""
        self.eval_hook.enabled = validate
        self.model.train()
        if self.rng_to_restore is not None:
            restore_rng_state(self.rng_to_restore)
        self._call("before_train")
        try:
            while self.epoch < self.cfg.epoch:
                self._train_epoch()
                self.epoch += 1
                self.epoch_iter = 0
        finally:
            self._call("after_train")

    def _train_epoch(self) -> None:
        self._call("before_epoch")
        batches = self.epoch_batches()
        t_data = time.perf_counter()
        while self.epoch_iter < self.iters_per_epoch:
            batch = next(batches)
            self.last_step.data_time = time.perf_counter() - t_data
            self.recorder.iter = self.iter + 1
            self._call("before_step")
            self.run_step(batch)
            self.iter += 1
            self.epoch_iter += 1
            self._call("after_step")
            t_data = time.perf_counter()
        self._call("after_epoch")
