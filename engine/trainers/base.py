"""The supervised ``Trainer``: the loop, one ``run_step``, and the hooks around them.

Semi-supervised and co-tuning trainers subclass it and change the step, not the plumbing.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.config.schema import Config
from engine.data.loader import build_datasets, build_eval_loader, build_train_loader
from engine.env import DistEnv
from engine.errors import ConfigError, NonFiniteLoss, WeightsError
from engine.evaluation.coco import COCOEvaluator, EvalResult
from engine.models import build_model, count_parameters
from engine.models.weights import load_pretrained
from engine.recorder import RunRecorder
from engine.trainers.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    remove_stale_temp_files,
    restore_rng_state,
    save_checkpoint,
)
from engine.trainers.ema import ModelEMA
from engine.trainers.hooks import (
    CheckpointHook,
    EMAHook,
    EvalHook,
    HookBase,
    LRSchedulerHook,
    MetricsLogger,
    SignalHook,
    SystemMonitor,
    hardlink_replace,
)
from engine.trainers.optim import build_lr_scheduler, build_optimizer

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


class Trainer:
    """Supervised detection training (PaddleDetection's ``Trainer``, mode='train')."""

    name = "Trainer"

    def __init__(self, cfg: Config, env: DistEnv, recorder: RunRecorder,
                 config_dict: dict[str, Any], *, seed: int = 0):
        self.cfg = cfg
        self.env = env
        self.recorder = recorder
        self.logger = recorder.logger
        self.config_dict = config_dict
        self.device = env.device
        self.checkpoint_dir: Path | None = recorder.run.checkpoints if recorder.active else None
        if self.checkpoint_dir is not None:
            for tmp in remove_stale_temp_files(self.checkpoint_dir):
                self.logger.info(f"removed {tmp}: a checkpoint write cut short by a kill")

        self.train_ds, self.eval_ds = build_datasets(cfg)
        self.train_loader, self.sampler = build_train_loader(
            cfg, self.train_ds, rank=env.rank, world_size=env.world_size, seed=seed)
        self.eval_loader = build_eval_loader(cfg, self.eval_ds)
        batches = len(self.sampler)
        if batches < 1:
            raise ConfigError(f"the training set has {len(self.train_ds)} images, fewer than "
                              f"one batch of {cfg.TrainReader.batch_size} per process",
                              key="TrainReader.batch_size",
                              hint="lower TrainReader.batch_size or set drop_last: false")
        self.iters_per_epoch = cfg.epoch_iter or batches
        self.max_iters = cfg.epoch * self.iters_per_epoch
        self.images_per_step = cfg.TrainReader.batch_size * env.world_size

        model = build_model(cfg).to(self.device)
        if cfg.norm_type == "sync_bn" and env.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model_without_ddp = model
        self.model: nn.Module = model
        if env.distributed:
            self.model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer, self.iters_per_epoch,
                                            self.max_iters)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.ema = ModelEMA(model, cfg.ema_decay, cfg.ema_decay_type) if cfg.use_ema else None

        # Loop state; a checkpoint restores exactly these.
        self.epoch = 0          # the epoch the next step belongs to (0-based)
        self.epoch_iter = 0     # steps already done in that epoch
        self.iter = 0           # steps done in total
        self.best: dict[str, Any] | None = None
        self.improved = False
        self.validate = False
        self.rng_to_restore: dict | None = None
        self.nonfinite_skipped = 0

        # Per-step values the hooks read.
        self.loss_values: dict[str, float] = {}
        self.data_time = 0.0
        self.step_applied = False
        self.last_eval: EvalResult | None = None
        self.num_params = count_parameters(model)

    # ----------------------------------------------------------------- weights (seed's run)
    def load_weights(self, path: str) -> None:
        """``pretrain_weights``: weights only; mismatched tensors skipped and reported."""
        report = load_pretrained(self.model_without_ddp, path, logger=self.logger)
        self.recorder.emit("log", level="info", message=f"pretrained weights {path}: "
                           + report.summary())
        if self.ema is not None:  # the average starts from the loaded weights
            self.ema = ModelEMA(self.model_without_ddp, self.cfg.ema_decay,
                                self.cfg.ema_decay_type)

    def load_semi_weights(self, teacher: str, student: str) -> None:
        raise ConfigError(
            "pretrain_teacher_weights + pretrain_student_weights need a semi-supervised "
            "trainer (ssod_method); the supervised Trainer takes pretrain_weights",
            key="pretrain_teacher_weights")

    def resume_weights(self, path: str | Path, *, force: bool = False) -> None:
        """Restore the full training state; training goes on from the next step."""
        self.restore(load_checkpoint(path), path, force=force)

    def restore(self, state: dict[str, Any], path: str | Path, *, force: bool = False) -> None:
        """Restore the full training state from a loaded checkpoint (read from ``path``)."""
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
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.epoch = int(state["epoch"])
        self.epoch_iter = int(state["epoch_iter"])
        self.iter = int(state["iter"])
        self.best = state.get("best")
        if state.get("sampler"):
            self.sampler.load_state_dict(state["sampler"])
        self.rng_to_restore = state.get("rng")
        self.logger.info(f"resumed from {path}: epoch {self.epoch + 1}, step {self.epoch_iter} "
                         f"of {self.iters_per_epoch}, {self.iter} steps done")

    # ----------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_without_ddp.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.use_amp else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch if self.epoch_iter < self.iters_per_epoch else self.epoch + 1,
            "epoch_iter": self.epoch_iter if self.epoch_iter < self.iters_per_epoch else 0,
            "iter": self.iter,
            "sampler": self.sampler.state_dict(),
            "rng": capture_rng_state(),
            "best": self.best,
            "config": self.config_dict,
            "trainer": self.name,
            "class_names": self.train_ds.class_names,
        }

    def save(self, kind: str) -> Path | None:
        """Write ``last.pt`` (kind ``last`` or ``interval``); rank 0 only."""
        if self.checkpoint_dir is None:
            return None
        path = save_checkpoint(self.state_dict(), self.checkpoint_dir / "last.pt")
        self.recorder.emit("checkpoint", path=str(path), kind=kind, epoch=self.epoch,
                           iter=self.iter)
        return path

    def link_checkpoint(self, kind: str) -> Path | None:
        """``best.pt`` / ``epoch_NNNN.pt`` as the same file as the ``last.pt`` just saved."""
        if self.checkpoint_dir is None:
            return None
        name = "best.pt" if kind == "best" else f"epoch_{self.epoch + 1:04d}.pt"
        dst = self.checkpoint_dir / name
        hardlink_replace(self.checkpoint_dir / "last.pt", dst)
        self.recorder.emit("checkpoint", path=str(dst), kind=kind, epoch=self.epoch,
                           iter=self.iter)
        return dst

    # ------------------------------------------------------------------------ evaluation
    def eval_model(self) -> tuple[nn.Module, str]:
        if self.ema is not None:
            return self.ema.module, "ema"
        return self.model_without_ddp, "model"

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> EvalResult:
        was_training = model.training
        model.eval()
        evaluator = COCOEvaluator(self.eval_ds.coco_json, self.eval_ds.label_to_cat_id,
                                  self.eval_ds.class_names)
        for images, targets in self.eval_loader:
            images = [img.to(self.device, non_blocking=True) for img in images]
            with torch.autocast(self.device.type, enabled=self.use_amp):
                outputs = model(images)
            outputs = [{k: v.float().cpu() for k, v in o.items()} for o in outputs]
            evaluator.update(outputs, targets)
        model.train(was_training)
        return evaluator.evaluate()

    def run_evaluation(self) -> None:
        """Evaluate (rank 0), log the COCO summary, emit the event, track the best AP."""
        self.improved = False
        if self.env.is_main:
            model, which = self.eval_model()
            t0 = time.perf_counter()
            result = self.evaluate(model)
            seconds = time.perf_counter() - t0
            self.last_eval = result
            ap = result.metrics["AP"]
            self.logger.info(f"Eval epoch {self.epoch + 1} ({which}, {seconds:.1f}s):\n"
                             + "\n".join(result.summary_lines()))
            per_class = "\n".join(f"  {name:<24} {v:.3f}" for name, v in result.per_class.items())
            self.logger.info("Per-class AP:\n" + per_class)
            if self.best is None or ap > self.best["value"]:
                self.improved = True
                ckpt = str(self.checkpoint_dir / "best.pt") if self.checkpoint_dir else None
                # run.json's best.epoch counts from 1, like every epoch shown to people
                self.best = {"metric": "AP", "value": ap, "epoch": self.epoch + 1,
                             "checkpoint": ckpt}
                self.recorder.update_meta(best=self.best)
            self.recorder.emit("eval", epoch=self.epoch, iter=self.iter, model=which,
                               metrics=result.metrics, per_class=result.per_class,
                               stats=result.stats, summary=result.summary_lines(),
                               eval_time=seconds)
            self.logger.info(f"best AP so far: {self.best['value']:.3f} "
                             f"(epoch {self.best['epoch']})")
        self.env.barrier()

    # ------------------------------------------------------------------------- the loop
    def build_hooks(self) -> list[HookBase]:
        """The hooks, in the order they run at each hook point."""
        hooks: list[HookBase] = [
            MetricsLogger(),     # times the step, logs right after it
            LRSchedulerHook(),   # per-iteration lr, after the optimizer step
            EMAHook(),           # average the weights just updated
            EvalHook(),          # epoch end: evaluate before checkpointing (best.pt needs AP)
            CheckpointHook(),    # interval checkpoints; last/best/epoch at epoch end
            SystemMonitor(),     # background sampling of CPU/RAM/GPU
            SignalHook(),        # stop/save requests, acted on once the step is complete
        ]
        for h in hooks:
            h.trainer = self
        return hooks

    def _call(self, hooks: list[HookBase], point: str) -> None:
        for h in hooks:
            getattr(h, point)()

    def train(self, validate: bool) -> None:
        self.validate = validate
        hooks = self.build_hooks()
        self.model.train()
        if self.rng_to_restore is not None:
            restore_rng_state(self.rng_to_restore)
        self._call(hooks, "before_train")
        try:
            while self.epoch < self.cfg.epoch:
                self._train_epoch(hooks)
                self.epoch += 1
                self.epoch_iter = 0
        finally:
            self._call(hooks, "after_train")

    def _batches(self):
        """This epoch's batches from the current position, cycling the loader when
        ``epoch_iter`` asks for more steps than one pass has."""
        n = len(self.sampler)
        cycle, pos = divmod(self.epoch_iter, n)
        while True:
            self.sampler.set_epoch(self.epoch * 1000 + cycle)
            self.sampler.skip(pos)
            yield from self.train_loader
            cycle, pos = cycle + 1, 0

    def _train_epoch(self, hooks: list[HookBase]) -> None:
        self._call(hooks, "before_epoch")
        batches = self._batches()
        t_data = time.perf_counter()
        while self.epoch_iter < self.iters_per_epoch:
            batch = next(batches)
            self.data_time = time.perf_counter() - t_data
            self.recorder.iter = self.iter + 1
            self._call(hooks, "before_step")
            self.run_step(batch)
            self.iter += 1
            self.epoch_iter += 1
            self._call(hooks, "after_step")
            t_data = time.perf_counter()
        self.improved = False
        self._call(hooks, "after_epoch")

    def run_step(self, batch: tuple[list[torch.Tensor], list[dict]]) -> None:
        """One optimizer step on one batch; sets ``loss_values`` and ``step_applied``."""
        images, targets = batch
        images = [img.to(self.device, non_blocking=True) for img in images]
        targets = [{"boxes": t["boxes"].to(self.device, non_blocking=True),
                    "labels": t["labels"].to(self.device, non_blocking=True)} for t in targets]
        with torch.autocast(self.device.type, enabled=self.use_amp):
            loss_dict = self.model(images, targets)
        loss = sum(loss_dict.values())
        values = {k: float(v.detach()) for k, v in loss_dict.items()}
        values["loss"] = float(loss.detach())
        if not self._all_finite(values):
            self.step_applied = False
            self.loss_values = {}
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
        self.step_applied = True
        self.loss_values = values

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
            msg = (f"non-finite loss at iteration {step} ({terms}); step skipped "
                   f"({self.nonfinite_skipped}/{self.cfg.nonfinite_skip_steps})")
            self.logger.warning(msg)
            self.recorder.emit("log", level="warning", message=msg)
            return
        raise NonFiniteLoss(step, values)


