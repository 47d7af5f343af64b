"""Where a run stands, told the same way by every front-end (no Textual, no torch).

The runs table, ``dettui runs``, the monitor's header and ``attach`` all show a run's
epoch as ``E/N``: ``E`` is the epoch of the last step done, counted from 1, as run.json's
``progress.epoch``, the engine's log and its train events (``epoch`` + 1) count it; a
finished run has done all ``N``. A run stopped in the middle of its second epoch is in
epoch 2 (``2/10``), one stopped early in its first epoch in epoch 1 (``1/1``), and a run
under way that has done no step yet is in epoch 1. The iteration is the steps done.

Where the numbers come from: while a run is active, its latest ``train`` event (run.json
is rewritten at most every 2 s); once it has ended, run.json's ``progress``, which the
engine writes at the end of every attempt, so it counts the steps done after the last
logged one too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.protocol.rundir import ACTIVE

__all__ = ["RunProgress", "epoch_of", "evaluating_text"]


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def epoch_of(steps_done: int, iters_per_epoch: int) -> int:
    """The epoch (from 1) of step ``steps_done``; 0 before the first step."""
    return -(-max(0, steps_done) // max(1, iters_per_epoch))


@dataclass(frozen=True)
class RunProgress:
    """A run's epoch and iteration, as shown to people."""

    epoch: int | None
    """Epoch of the last step done, from 1 (see the module's docstring)."""
    epochs: int | None
    iter: int | None
    """Steps done."""
    max_iters: int | None

    @classmethod
    def of(cls, status: str, epoch: int | None, epochs: int | None, iter: int | None,
           max_iters: int | None, iters_per_epoch: int | None = None) -> RunProgress:
        """From raw numbers: ``epoch`` is 1-based (run.json's), used only when the
        iterations cannot tell it."""
        if epochs is None and max_iters and iters_per_epoch:
            epochs = -(-max_iters // iters_per_epoch)
        if not iters_per_epoch and max_iters and epochs:
            iters_per_epoch = max(1, max_iters // epochs)
        if iter is not None and iters_per_epoch:
            epoch = epoch_of(iter, iters_per_epoch)
        if status == "finished" and epochs:
            epoch = epochs  # all of them, even if the last progress write was missed
            iter = max_iters if max_iters is not None else iter
        elif status in ACTIVE and epoch == 0:
            epoch = 1  # under way, no step done yet
        if epoch is not None and epochs:
            epoch = min(epoch, epochs)
        return cls(epoch, epochs, iter, max_iters)

    @classmethod
    def from_meta(cls, status: str, progress: Any) -> RunProgress:
        """From run.json's ``progress`` (or a dict of the same shape)."""
        prog = progress if isinstance(progress, dict) else {}
        return cls.of(status, _int(prog.get("epoch")), _int(prog.get("epochs")),
                      _int(prog.get("iter")), _int(prog.get("max_iters")))

    @classmethod
    def from_train(cls, status: str, train: dict[str, Any] | None) -> RunProgress:
        """From a ``train`` event (its ``epoch`` counts from 0)."""
        train = train or {}
        epoch = _int(train.get("epoch"))
        return cls.of(status, None if epoch is None else epoch + 1, None,
                      _int(train.get("iter")), _int(train.get("max_iters")),
                      _int(train.get("iters_per_epoch")))

    @classmethod
    def of_run(cls, status: str, meta: dict[str, Any],
               latest_train: dict[str, Any] | None) -> RunProgress:
        """The monitor's choice: the latest train event while the run is active, run.json's
        progress once it ended (the train event when run.json has none)."""
        if status not in ACTIVE and isinstance(meta.get("progress"), dict):
            shown = cls.from_meta(status, meta["progress"])
            if shown.iter is not None or latest_train is None:
                return shown
        return cls.from_train(status, latest_train)

    @property
    def fraction(self) -> float | None:
        """Steps done over all steps, in [0, 1], when known."""
        if self.iter is not None and self.max_iters:
            return max(0.0, min(1.0, self.iter / self.max_iters))
        return None

    def epoch_text(self) -> str:
        """``2/10`` (``2`` when the number of epochs is unknown), or ``-``."""
        if self.epoch is None:
            return "-"
        return f"{self.epoch}/{self.epochs}" if self.epochs else str(self.epoch)


def evaluating_text(event: dict[str, Any]) -> str:
    """``evaluating ema on 200 images…`` for an ``eval_start`` event."""
    models = [m for m in event.get("models") or [] if isinstance(m, str) and m != "model"]
    images = _int(event.get("images"))
    return ("evaluating" + (f" {', '.join(models)}" if models else "")
            + (f" on {images:,} image{'' if images == 1 else 's'}" if images is not None
               else "") + "…")
