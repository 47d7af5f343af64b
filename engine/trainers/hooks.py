"""Side jobs of the training loop, as hooks called in the explicit order of
``Trainer.build_hooks`` (STYLE.md: a small loop, a handful of hook points, no priorities).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from engine.protocol.errors import DiskFull, StopTraining
from engine.sysinfo import SystemSampler

if TYPE_CHECKING:
    from engine.trainers.base import Trainer


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

    def after_step(self) -> None:
        if self.trainer.last_step.applied:
            self.trainer.scheduler.step()


class EMAHook(HookBase):
    """Updates the weight average after every optimizer step."""

    def after_step(self) -> None:
        t = self.trainer
        if t.ema is not None and t.last_step.applied:
            t.ema.update(t.model_without_ddp)


class MetricsLogger(HookBase):
    """Every ``log_iter`` steps: one ``train`` event and one log line, with the losses (and
    a method's per-step ``stats``) averaged over the steps since the last one, lr, timings,
    images/s and ETA, plus the trainer's ``train_event_fields()``."""

    def __init__(self, window: int = 50):
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
            t.recorder.progress(force=True, epoch=min(t.cfg.epoch, done_epochs),
                                epochs=t.cfg.epoch, iter=t.iter, max_iters=t.max_iters,
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
        if t.iter % t.cfg.log_iter == 0 or t.iter == 1 or t.epoch_iter == t.iters_per_epoch:
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
        t.recorder.emit("train", epoch=t.epoch, iter=t.iter, epoch_iter=t.epoch_iter,
                        iters_per_epoch=t.iters_per_epoch, max_iters=t.max_iters, loss=total,
                        losses=losses, lr=lr, batch_time=batch_time, data_time=data_time,
                        ips=ips, eta=eta, memory=mem, **({"stats": stats} if stats else {}),
                        **extra)
        # run.json and the log count epochs from 1, as people do (events keep 0-based).
        # The end of an epoch is always written: a finished run must not look unfinished.
        t.recorder.progress(force=t.epoch_iter == t.iters_per_epoch, epoch=t.epoch + 1,
                            epochs=t.cfg.epoch, iter=t.iter, max_iters=t.max_iters, eta=eta)
        width = len(str(t.iters_per_epoch))
        terms = " ".join(f"{k}: {v:.4f}" for k, v in losses.items())
        if stats:
            terms += " " + " ".join(f"{k}: {v:.3g}" for k, v in stats.items())
        if "phase" in extra:
            terms = f"[{extra['phase']}] {terms}"
        mem_txt = f" mem: {mem:.0f}MB" if mem is not None else ""
        t.logger.info(
            f"Epoch: [{t.epoch + 1}/{t.cfg.epoch}] [{t.epoch_iter:>{width}}/{t.iters_per_epoch}] "
            f"eta: {format_seconds(eta)} lr: {lr:.6f} loss: {total:.4f} {terms} "
            f"batch_cost: {batch_time:.4f} data_cost: {data_time:.4f} "
            f"ips: {ips:.1f} images/s{mem_txt}")


class SystemMonitor(HookBase):
    """A background thread that writes a ``system`` event every ``interval`` seconds."""

    def __init__(self, interval: float = 5.0):
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before_train(self) -> None:
        if not self.trainer.recorder.active:
            return
        self._sampler = SystemSampler()
        self._thread = threading.Thread(target=self._loop, name="system-monitor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.trainer.recorder.emit("system", **self._sampler.sample())
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


class EvalHook(HookBase):
    """Every ``snapshot_epoch`` epochs (and after the last), COCO-evaluate when validating."""

    def after_epoch(self) -> None:
        t = self.trainer
        done = t.epoch + 1
        if t.validate and (done % t.cfg.snapshot_epoch == 0 or done == t.cfg.epoch):
            t.run_evaluation()


class CheckpointHook(HookBase):
    """``last.pt`` after every epoch and every ``checkpoint_interval`` steps; ``best.pt``
    (the evaluated weights) when the AP improves; ``epoch_NNNN.pt`` on snapshot epochs if
    asked."""

    def after_step(self) -> None:
        t = self.trainer
        n = t.cfg.checkpoint_interval
        if n and t.iter % n == 0 and t.epoch_iter < t.iters_per_epoch:
            t.save("interval")

    def after_epoch(self) -> None:
        t = self.trainer
        done = t.epoch + 1
        t.save("last")
        if t.improved:
            t.save_best()
        if t.cfg.save_epoch_checkpoints and (done % t.cfg.snapshot_epoch == 0
                                             or done == t.cfg.epoch):
            t.link_checkpoint("epoch")


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

    REPEAT_S = 1.0

    def __init__(self) -> None:
        self.stop_requested = False
        self.save_requested = False
        self._stop_time = 0.0
        self._owner_pid = os.getpid()
        self._previous: dict[int, object] = {}

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
        self.trainer.logger.info(f"{signal.Signals(signum).name} received: stopping after "
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
            t.save("last")
            raise StopTraining("stopped by a signal after a checkpoint")
        if save:
            self.save_requested = False
            t.save("last")
            t.logger.info(f"SIGUSR1: checkpoint written at iteration {t.iter}; going on")

    def after_epoch(self) -> None:
        # A request that came during the epoch-end evaluation: CheckpointHook has just
        # written last.pt for this very point, so stop now instead of after one more step.
        t = self.trainer
        stop, _ = self._agree(self.stop_requested, False)
        if stop and t.epoch + 1 < t.cfg.epoch:  # after the last epoch: just finish
            raise StopTraining("stopped by a signal after a checkpoint")

    def after_train(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def hardlink_replace(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` atomically (hard link, or copy where links
    are not supported). ``src`` is later replaced, never modified, so ``dst`` keeps its
    content."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # a copy cut short must not linger
        full = DiskFull.from_os_error(exc, dst)
        if full is not None:
            raise full from exc
        raise

