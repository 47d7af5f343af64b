"""Side jobs of the training loop, as hooks called in the explicit order of
``Trainer.build_hooks`` (STYLE.md: a small loop, a handful of hook points, no priorities).

A hook gets its periods and collaborators when it is built (detectron2's
``EvalHook(period, fn)``, ``PeriodicCheckpointer(checkpointer, period)``); from the trainer
it reads only where the loop stands (``epoch``, ``iter``, ``last_step``...). A hook with
state of its own (the EMA average, the best AP) owns it, and the trainer puts it in its
checkpoints.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.distributed as dist
from torch import nn

from engine.evaluation import EvalObserver, EvalResult
from engine.protocol.errors import DiskFull, StopTraining
from engine.sysinfo import SystemSampler
from engine.trainers.checkpoint import Checkpointer
from engine.trainers.ema import ModelEMA

if TYPE_CHECKING:
    from engine.recorder import RunRecorder
    from engine.trainers.base import Trainer

# What an evaluation returns on rank 0, per evaluated model, the first deciding ``best``:
# (model, which, result, seconds). Other ranks get an empty list.
Evaluation = list[tuple[nn.Module, str, EvalResult, float]]


def on_period(done: int, period: int, last: int) -> bool:
    """Whether an epoch-periodic job runs once ``done`` epochs are done: every ``period``
    epochs, and after the ``last`` one."""
    return done % period == 0 or done == last


class HookBase:
    """A no-op at every hook point; subclasses override what they need."""

    trainer: Trainer

    def before_train(self) -> None: ...
    def before_epoch(self) -> None: ...
    def before_step(self) -> None: ...
    def after_step(self) -> None: ...
    def after_epoch(self) -> None: ...
    def after_train(self) -> None: ...


def format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class LRSchedulerHook(HookBase):
    """Steps the per-iteration lr schedule after every optimizer step."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.scheduler = scheduler

    def after_step(self) -> None:
        if self.trainer.last_step.applied:
            self.scheduler.step()


class EMAHook(HookBase):
    """Owns the exponential moving average of ``model``'s weights (``use_ema``; MMEngine's
    ``EMAHook``): it starts from the weights training starts with (after
    ``pretrain_weights``, or co-tuning's relationship), or from a checkpoint's average
    (``load_state_dict``), and follows every optimizer step."""

    def __init__(self, model: nn.Module, decay: float, decay_type: str):
        self.model = model
        self.average = ModelEMA(model, decay, decay_type)
        self.restored = False

    @property
    def module(self) -> nn.Module:
        """The averaged model (what is evaluated and saved as ``ema``)."""
        return self.average.module

    def before_train(self) -> None:
        if not self.restored:
            self.average.restart(self.model)

    def after_step(self) -> None:
        if self.trainer.last_step.applied:
            self.average.update(self.model)

    def state_dict(self) -> dict[str, Any]:
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state)
        self.restored = True


class MetricsLogger(HookBase):
    """Every ``log_iter`` steps: one ``train`` event and one log line, with the losses (and
    a method's per-step ``stats``) averaged over the steps since the last one, lr, timings,
    images/s and ETA, plus the trainer's ``train_event_fields()``. ``period``: the
    ``log_iter``; ``epochs``: the run's length."""

    def __init__(self, recorder: RunRecorder, period: int, epochs: int, window: int = 50):
        self.recorder = recorder
        self.period = period
        self.epochs = epochs
        self.window_losses: dict[str, list[float]] = defaultdict(list)
        self.window_stats: dict[str, list[float]] = defaultdict(list)
        self.batch_times: deque[float] = deque(maxlen=window)
        self.data_times: deque[float] = deque(maxlen=window)
        self._step_start = 0.0

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_train(self) -> None:
        # Stopped between two log lines (a signal, a crash): run.json still gets where
        # training really stands, i.e. what the last checkpoint holds.
        t = self.trainer
        if t.iter:
            done_epochs = -(-t.iter // t.iters_per_epoch)
            self.recorder.progress(force=True, epoch=min(self.epochs, done_epochs),
                                   epochs=self.epochs, iter=t.iter, max_iters=t.max_iters,
                                   eta=0.0 if t.iter >= t.max_iters else None)

    def after_step(self) -> None:
        t = self.trainer
        step = t.last_step
        self.batch_times.append(time.perf_counter() - self._step_start + step.data_time)
        self.data_times.append(step.data_time)
        for name, value in step.losses.items():
            self.window_losses[name].append(value)
        for name, value in step.stats.items():
            self.window_stats[name].append(value)
        if t.iter % self.period == 0 or t.iter == 1 or t.epoch_iter == t.iters_per_epoch:
            self.flush()

    def flush(self) -> None:
        t = self.trainer
        if not self.window_losses:
            return
        losses = {k: sum(v) / len(v) for k, v in self.window_losses.items()}
        total = losses.pop("loss")
        stats = {k: sum(v) / len(v) for k, v in self.window_stats.items()}
        self.window_losses.clear()
        self.window_stats.clear()
        extra = t.train_event_fields()
        batch_time = sum(self.batch_times) / len(self.batch_times)
        data_time = sum(self.data_times) / len(self.data_times)
        ips = t.images_per_step / batch_time if batch_time > 0 else 0.0
        eta = batch_time * (t.max_iters - t.iter)
        lr = t.optimizer.param_groups[0]["lr"]
        mem = (torch.cuda.max_memory_allocated(t.env.device) / 2**20
               if t.env.device.type == "cuda" else None)
        self.recorder.emit("train", epoch=t.epoch, iter=t.iter, epoch_iter=t.epoch_iter,
                           iters_per_epoch=t.iters_per_epoch, max_iters=t.max_iters,
                           loss=total, losses=losses, lr=lr, batch_time=batch_time,
                           data_time=data_time, ips=ips, eta=eta, memory=mem,
                           **({"stats": stats} if stats else {}), **extra)
        # run.json and the log count epochs from 1, as people do (events keep 0-based).
        # The end of an epoch is always written: a finished run must not look unfinished.
        self.recorder.progress(force=t.epoch_iter == t.iters_per_epoch, epoch=t.epoch + 1,
                               epochs=self.epochs, iter=t.iter, max_iters=t.max_iters,
                               eta=eta)
        width = len(str(t.iters_per_epoch))
        terms = " ".join(f"{k}: {v:.4f}" for k, v in losses.items())
        if stats:
            terms += " " + " ".join(f"{k}: {v:.3g}" for k, v in stats.items())
        if "phase" in extra:
            terms = f"[{extra['phase']}] {terms}"
        mem_txt = f" mem: {mem:.0f}MB" if mem is not None else ""
        self.recorder.logger.info(
            f"Epoch: [{t.epoch + 1}/{self.epochs}] [{t.epoch_iter:>{width}}/{t.iters_per_epoch}] "
            f"eta: {format_seconds(eta)} lr: {lr:.6f} loss: {total:.4f} {terms} "
            f"batch_cost: {batch_time:.4f} data_cost: {data_time:.4f} "
            f"ips: {ips:.1f} images/s{mem_txt}")


class SystemMonitor(HookBase):
    """A background thread that writes a ``system`` event every ``interval`` seconds."""

    def __init__(self, recorder: RunRecorder, interval: float = 5.0):
        self.recorder = recorder
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before_train(self) -> None:
        if not self.recorder.active:
            return
        self._sampler = SystemSampler()
        self._thread = threading.Thread(target=self._loop, name="system-monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.recorder.emit("system", **self._sampler.sample())
            except DiskFull:
                # The training thread meets the full disk at its own next write and
                # records it; a traceback from this thread would only add noise.
                return
            if self._stop.wait(self.interval):
                return

    def after_train(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass(eq=False)
class EvalHook(HookBase):
    """Every ``period`` epochs and after the last of ``epochs``: ``evaluate(observer)``
    (the trainer's ``run_evaluation``: COCO evaluation of each model, one ``eval`` event
    each), then the best AP so far. ``enabled`` is False under ``--no-eval``.

    Best tracking: the first evaluated model's AP decides ``best`` (run.json's record,
    kept in checkpoints) and ``best_model``, the weights ``best.pt`` is written from;
    ``improved`` says whether this epoch's evaluation beat it. ``observer`` (set by the
    ``PreviewHook``) sees the first model's outputs.
    """

    period: int
    epochs: int
    evaluate: Callable[[EvalObserver | None], Evaluation]
    recorder: RunRecorder
    best_checkpoint: Path | None
    enabled: bool = True
    observer: EvalObserver | None = field(default=None, init=False)
    best: dict[str, Any] | None = field(default=None, init=False)
    best_model: nn.Module | None = field(default=None, init=False)
    improved: bool = field(default=False, init=False)

    def after_epoch(self) -> None:
        self.improved = False
        epoch = self.trainer.epoch
        if self.enabled and on_period(epoch + 1, self.period, self.epochs):
            self.track_best(self.evaluate(self.observer), epoch)

    def track_best(self, evaluation: Evaluation, epoch: int) -> None:
        """Keep the first model's AP if it is the best so far, and say the best."""
        if not evaluation:
            return  # not rank 0
        model, which, result, _ = evaluation[0]
        ap = result.metrics["AP"]
        if self.best is None or ap > self.best["value"]:
            self.improved = True
            self.best_model = model
            ckpt = str(self.best_checkpoint) if self.best_checkpoint is not None else None
            # run.json's best.epoch counts from 1, like every epoch shown to people
            self.best = {"metric": "AP", "value": ap, "epoch": epoch + 1,
                         "checkpoint": ckpt, "model": which}
            self.recorder.update_meta(best=self.best)
        which = self.best.get("model", "model")
        where = f"epoch {self.best['epoch']}"
        if which != "model":
            where = f"{which}, {where}"
        self.recorder.logger.info(f"best AP so far: {self.best['value']:.3f} ({where})")


@dataclass(eq=False)
class CheckpointHook(HookBase):
    """Writes with ``checkpointer``: ``last.pt`` after every epoch and every ``interval``
    steps (0: never within an epoch); ``best.pt`` when ``best`` (the eval hook) says the AP
    improved; ``epoch_NNNN.pt`` every ``epoch_period`` epochs and after the last of
    ``epochs`` if ``keep_epochs``."""

    checkpointer: Checkpointer
    _: KW_ONLY
    interval: int
    epoch_period: int
    epochs: int
    keep_epochs: bool
    best: EvalHook | None

    def after_step(self) -> None:
        t = self.trainer
        n = self.interval
        if n and t.iter % n == 0 and t.epoch_iter < t.iters_per_epoch:
            self.checkpointer.save_last("interval", t.epoch, t.iter)

    def after_epoch(self) -> None:
        t = self.trainer
        self.checkpointer.save_last("last", t.epoch, t.iter)
        best = self.best
        if best is not None and best.improved and best.best_model is not None:
            assert best.best is not None
            self.checkpointer.save_best(best.best_model, best.best, t.epoch, t.iter)
        if self.keep_epochs and on_period(t.epoch + 1, self.epoch_period, self.epochs):
            self.checkpointer.link_epoch(t.epoch, t.iter)


@dataclass(eq=False)
class SignalHook(HookBase):
    """SIGINT/SIGTERM: finish the current step, checkpoint, stop (``interrupted``).
    SIGUSR1: checkpoint and go on. A second SIGINT/SIGTERM stops at once.

    Two details make this hold under torchrun and SLURM:

    * DataLoader workers are forked after the handlers are installed and inherit them; a
      signal sent to the whole process group (torchrun's ``killpg``, a terminal's Ctrl-C,
      SLURM signalling every process of a step) must not make them act or log: only the
      process that installed the handlers does.
    * The same stop request often arrives twice within milliseconds (SLURM signals every
      process of the step, and torchrun forwards its own copy to the workers). Only a
      second request at least ``REPEAT_S`` seconds after the first means "stop at once".
    """

    REPEAT_S: ClassVar[float] = 1.0

    checkpointer: Checkpointer
    epochs: int
    logger: logging.Logger
    stop_requested: bool = field(default=False, init=False)
    save_requested: bool = field(default=False, init=False)
    _stop_time: float = field(default=0.0, init=False)
    _owner_pid: int = field(default_factory=os.getpid, init=False)
    _previous: dict[int, object] = field(default_factory=dict, init=False)

    def _on_stop(self, signum: int, frame: object) -> None:
        if os.getpid() != self._owner_pid:
            return  # a forked DataLoader worker: the training process decides
        now = time.monotonic()
        if self.stop_requested:
            if now - self._stop_time >= self.REPEAT_S:
                raise KeyboardInterrupt  # asked again: leave now, the last checkpoint stands
            return
        self.stop_requested = True
        self._stop_time = now
        self.logger.info(f"{signal.Signals(signum).name} received: stopping after "
                                 "this step (send it again to stop at once)")

    def _on_save(self, signum: int, frame: object) -> None:
        if os.getpid() == self._owner_pid:
            self.save_requested = True

    def before_train(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        self._owner_pid = os.getpid()
        for sig, handler in ((signal.SIGINT, self._on_stop), (signal.SIGTERM, self._on_stop),
                             (signal.SIGUSR1, self._on_save)):
            self._previous[sig] = signal.signal(sig, handler)

    def _agree(self, stop: bool, save: bool) -> tuple[bool, bool]:
        """Under DDP every rank must act at the same step: any rank's request counts
        (torchrun signals each local worker; the other nodes learn it here)."""
        t = self.trainer
        if not t.env.distributed:
            return stop, save
        x = torch.tensor([float(stop), float(save)], device=t.env.device)
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
        return bool(x[0].item() > 0), bool(x[1].item() > 0)

    def after_step(self) -> None:
        t = self.trainer
        stop, save = self._agree(self.stop_requested, self.save_requested)
        if stop:
            self.checkpointer.save_last("last", t.epoch, t.iter)
            raise StopTraining("stopped by a signal after a checkpoint")
        if save:
            self.save_requested = False
            self.checkpointer.save_last("last", t.epoch, t.iter)
            self.logger.info(f"SIGUSR1: checkpoint written at iteration {t.iter}; going on")

    def after_epoch(self) -> None:
        # A request that came during the epoch-end evaluation: CheckpointHook has just
        # written last.pt for this very point, so stop now instead of after one more step.
        t = self.trainer
        stop, _ = self._agree(self.stop_requested, False)
        if stop and t.epoch + 1 < self.epochs:  # after the last epoch: just finish
            raise StopTraining("stopped by a signal after a checkpoint")

    def after_train(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
