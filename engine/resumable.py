"""Whether resuming a run would train anything: the one rule for ``dettui resume`` and the
TUI's ``r`` (torch-free: it reads ``run.json`` and the run's ``config.yaml``).

A finished run has done its whole schedule; resuming it as it is would start an engine
that restores the last checkpoint, trains nothing and counts an attempt. It has something
left only when the resume changes the schedule: ``-o epoch=N`` with more epochs (or more
iterations per epoch) than it did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.config.loader import load_config
from engine.protocol.rundir import RunDirectory


@dataclass(frozen=True)
class TrainingLeft:
    """What a resume of a run would train, as far as can be told without its data."""

    status: str
    """The run's status now (``finished``, ``interrupted``...)."""
    done_iters: int | None
    """Steps its last attempt ended at (a finished run's whole schedule)."""
    max_iters: int | None
    """Steps of the schedule the resume would run; None when only the data can tell
    (an ``epoch_iter`` of 0 under a new iterations-per-epoch)."""
    epochs: int | None
    """Epochs of that schedule."""
    done_epochs: int | None

    @property
    def nothing_left(self) -> bool:
        """A finished run whose resume would train no step: start nothing."""
        return (self.status == "finished" and self.done_iters is not None
                and self.max_iters is not None and self.done_iters >= self.max_iters)

    def describe(self, run_id: str) -> str:
        """What to tell a user who asked to resume a run with nothing left."""
        epochs = self.done_epochs if self.done_epochs is not None else self.epochs
        more = f" (N > {epochs})" if isinstance(epochs, int) else ""
        return (f"run {run_id} is finished: {self.done_iters} of {self.done_iters} steps "
                f"done ({_epochs(epochs)}); there is nothing to resume. To train longer, "
                f"say how long: dettui resume {run_id} -o epoch=N{more}")


def _epochs(n: int | None) -> str:
    return "? epochs" if n is None else f"{n} epoch" + ("" if n == 1 else "s")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def training_left(run: RunDirectory, overrides: Sequence[str] = ()) -> TrainingLeft:
    """What resuming ``run`` with ``overrides`` (``-o key=value``) would train. Bad
    overrides, or an unreadable config, raise the ``UserError`` a launch would."""
    meta = run.read_meta()
    status = run.effective_status(meta)
    progress = meta.get("progress") if isinstance(meta.get("progress"), dict) else {}
    done_epochs = _int(meta.get("epochs")) or _int(progress.get("epochs"))
    run_max = _int(meta.get("max_iters")) or _int(progress.get("max_iters"))
    done = _int(progress.get("iter"))
    if status == "finished" and run_max is not None:
        done = max(done or 0, run_max)  # run.json's progress may lag by one write
    if not overrides:
        return TrainingLeft(status, done, run_max, done_epochs, done_epochs)
    old = load_config(run.config_yaml).data
    new = load_config(run.config_yaml, list(overrides)).data
    epochs = _int(new.get("epoch"))
    old_per_epoch, new_per_epoch = _int(old.get("epoch_iter")), _int(new.get("epoch_iter"))
    schedule = ("epoch", "epoch_iter")
    same_data = ({k: v for k, v in old.items() if k not in schedule}
                 == {k: v for k, v in new.items() if k not in schedule})
    if new_per_epoch:  # a fixed number of steps per epoch
        per_epoch: int | None = new_per_epoch
    elif old_per_epoch or not same_data or not run_max or not done_epochs:
        per_epoch = None  # one pass over the (maybe other) data: only the engine can count
    else:
        per_epoch = run_max // done_epochs
    max_iters = epochs * per_epoch if epochs is not None and per_epoch else None
    return TrainingLeft(status, done, max_iters, epochs, done_epochs)
