"""Checkpoint files: plain dicts, written atomically, read safely.

A checkpoint holds ``model``, ``optimizer``, ``scheduler``, ``scaler``, ``ema`` (weights and
step), ``epoch`` (0-based epoch the next step belongs to), ``epoch_iter`` (steps already
done in that epoch), ``iter`` (global steps done), ``sampler`` state, ``rng`` states
(python, numpy, torch, CUDA), ``best`` metric and the resolved ``config`` dict.

Writes go to a temp file in the same folder, are fsynced, then ``os.replace``d over the
target: a SIGKILL at any moment leaves either the old file or the new one, never a torn one.

``Checkpointer`` is what a trainer's checkpoint hook writes a run's checkpoints with.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
from torch import nn

from engine.protocol.errors import DiskFull, WeightsError
from engine.protocol.rundir import atomic_write

if TYPE_CHECKING:
    from engine.recorder import RunRecorder

CHECKPOINT_FORMAT = 1


class _WriteErrors:
    """A file that remembers the ``OSError`` a write raised: ``torch.save`` turns it into
    a ``RuntimeError`` ("unexpected pos ...") that no longer says the disk is full."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def _torch_save(state: dict[str, Any], file: BinaryIO) -> None:
    sink = _WriteErrors(file)
    try:
        torch.save(state, sink)
    except RuntimeError:
        if sink.error is not None:
            raise sink.error from None
        raise


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` to ``path`` (temp file + fsync + os.replace). Out of
    space, the temp file is removed, the old ``path`` is untouched, and
    :class:`~engine.protocol.errors.DiskFull` names ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: _torch_save({"format": CHECKPOINT_FORMAT, **state}, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a dettui checkpoint with ``weights_only=True``; clear errors for bad files."""
    path = Path(path)
    if not path.exists():
        raise WeightsError("checkpoint not found", file=str(path))
    if path.is_dir():
        raise WeightsError("is a directory, expected a checkpoint file", file=str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"not a readable checkpoint (truncated, corrupt or not a plain "
                           f"weights file): {first[:200]}", file=str(path)) from None
    if not isinstance(state, dict) or "model" not in state or "iter" not in state:
        raise WeightsError("not a dettui training checkpoint (no 'model'/'iter' entries); "
                           "use --weights for weights-only initialisation", file=str(path))
    return state


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a training step can draw from, in a weights_only-loadable form."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files that a write killed midway left behind (they are
    never read: a checkpoint only becomes visible through ``os.replace``). Call it only
    when no other process writes into ``folder``."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def checkpoint_candidates(folder: str | Path) -> list[Path]:
    """Checkpoints in a run's folder, the best resume point first: ``last.pt``, then the
    others newest first (``auto`` resume falls back along this list). ``best.pt`` holds
    weights only, never a training state, so it is not a candidate."""
    folder = Path(folder)
    others = [p for p in folder.glob("*.pt") if p.name not in ("last.pt", "best.pt")]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    last = folder / "last.pt"
    return ([last] if last.exists() else []) + others


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


@dataclass(eq=False)
class Checkpointer:
    """Writes one run's checkpoints into ``folder`` and reports each with a ``checkpoint``
    event (detectron2's ``Checkpointer``, which ``PeriodicCheckpointer`` is given):

    - ``last.pt``: the whole training state, ``training_state()``, to resume from;
    - ``best.pt``: the weights of the model that scored the best AP, as a plain detector
      state dict under ``model`` (``dettui eval``/``infer`` load it with the run's config,
      or the base detector's), plus where it came from;
    - ``epoch_NNNN.pt``: the same file as the ``last.pt`` just written (a hard link).

    ``folder`` None (a rank other than 0, or no run folder): nothing is written and every
    method returns None. A new checkpointer removes the temp files a kill left behind.
    """

    folder: Path | None
    recorder: RunRecorder
    training_state: Callable[[], dict[str, Any]]
    _: KW_ONLY
    trainer: str
    class_names: list[str]
    config: dict[str, Any]

    def __post_init__(self) -> None:
        if self.folder is not None:
            for tmp in remove_stale_temp_files(self.folder):
                self.recorder.logger.info(f"removed {tmp}: a checkpoint write cut short by "
                                          "a kill")

    @property
    def best_path(self) -> Path | None:
        """Where ``best.pt`` is written (run.json's ``best.checkpoint``)."""
        return self.folder / "best.pt" if self.folder is not None else None

    def _written(self, path: Path, kind: str, epoch: int, iteration: int) -> Path:
        self.recorder.emit("checkpoint", path=str(path), kind=kind, epoch=epoch,
                           iter=iteration)
        return path

    def save_last(self, kind: str, epoch: int, iteration: int) -> Path | None:
        """``last.pt`` (kind ``last``, or ``interval`` within an epoch)."""
        if self.folder is None:
            return None
        path = save_checkpoint(self.training_state(), self.folder / "last.pt")
        return self._written(path, kind, epoch, iteration)

    def save_best(self, model: nn.Module, best: dict[str, Any], epoch: int,
                  iteration: int) -> Path | None:
        """``best.pt``: ``model``'s weights; ``best`` is run.json's record of its AP."""
        if self.folder is None:
            return None
        state = {"model": model.state_dict(), "class_names": self.class_names,
                 "trainer": self.trainer, "which": best.get("model"), "best": best,
                 "config": self.config}
        path = save_checkpoint(state, self.folder / "best.pt")
        return self._written(path, "best", epoch, iteration)

    def link_epoch(self, epoch: int, iteration: int) -> Path | None:
        """``epoch_NNNN.pt`` (``NNNN`` = ``epoch + 1``) as the same file as ``last.pt``."""
        if self.folder is None:
            return None
        dst = self.folder / f"epoch_{epoch + 1:04d}.pt"
        hardlink_replace(self.folder / "last.pt", dst)
        return self._written(dst, "epoch", epoch, iteration)
