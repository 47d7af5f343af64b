"""The run monitor's history of one run, as plain data (no Textual, no torch): growable
train columns, the AP series, system samples, and the immutable :class:`RunSnapshot` that
:class:`tui.runs.runmodel.RunModel` hands to the screen.

Train series live in growable float64 columns (8 bytes a value: a million events with three
loss terms take ~64 MB). A snapshot holds views of them; appends never touch a byte a view
can see, and a rewind (a resume) copies, so a snapshot never changes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from tui.runs.eventscan import (
    STATS_PREFIX,
    TERM_PREFIX,
    TRAIN_FIELDS,
    TrainRows,
)
from tui.runs.semiinfo import Relationship


class Column:
    """A growable float64 array with amortised O(1) appends."""

    def __init__(self, values: np.ndarray | None = None) -> None:
        values = np.empty(0) if values is None else np.asarray(values, dtype=np.float64)
        self._buf = np.empty(max(1024, 2 * values.size))
        self._buf[: values.size] = values
        self.n = values.size

    def extend(self, values: np.ndarray, owned: bool = False) -> None:
        """Append ``values``; ``owned``: nobody else holds them, so an empty column takes
        the array as its buffer instead of copying it (a first load's million rows)."""
        if owned and self.n == 0 and values.dtype == np.float64 and values.ndim == 1 \
                and values.flags.c_contiguous and values.flags.writeable \
                and values.base is None:
            self._buf, self.n = values, values.size
            return
        need = self.n + values.size
        if need > self._buf.size:
            bigger = np.empty(max(need, 2 * self._buf.size))
            bigger[: self.n] = self._buf[: self.n]
            self._buf = bigger
        self._buf[self.n:need] = values
        self.n = need

    def view(self) -> np.ndarray:
        """The values so far (a read-only view; later appends don't change it)."""
        out = self._buf[: self.n]
        out.flags.writeable = False
        return out

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` values, in a fresh buffer (views already handed out keep
        their old values)."""
        self._buf = self._buf[:n].copy() if n else np.empty(1024)
        self.n = n


class TrainHistory:
    """Per-iteration train series: ``t``, ``iter``, ``loss``, ``lr``, ``ips`` and each loss
    term (``losses.<term>``), all the same length ``n``."""

    def __init__(self) -> None:
        self.columns: dict[str, Column] = {name: Column() for name in TRAIN_FIELDS}
        self.n = 0

    def extend(self, rows: TrainRows) -> None:
        if rows.n == 0:
            return
        for name in rows.columns:
            if name not in self.columns:  # a term that appears late (e.g. after a warmup)
                self.columns[name] = Column(np.full(self.n, np.nan))
        for name, column in self.columns.items():
            values = rows.columns.get(name)
            column.extend(values if values is not None else np.full(rows.n, np.nan),
                          owned=rows.owned)
        self.n += rows.n

    def rewind(self, last_iter: float) -> None:
        """Drop rows logged after ``last_iter`` (their iterations are being redone)."""
        iters = self.columns["iter"].view()
        if self.n and iters[-1] > last_iter:
            keep = int(np.searchsorted(iters, last_iter, side="right"))
            for column in self.columns.values():
                column.truncate(keep)
            self.n = keep

    def views(self) -> dict[str, np.ndarray]:
        return {name: column.view() for name, column in self.columns.items()}

    def terms(self) -> list[str]:
        return [name[len(TERM_PREFIX):] for name in self.columns if name.startswith(TERM_PREFIX)]

    def stats(self) -> list[str]:
        """Names of a semi-supervised trainer's per-step stats (``stats.<name>`` columns)."""
        return [name[len(STATS_PREFIX):] for name in self.columns
                if name.startswith(STATS_PREFIX)]


@dataclass(frozen=True)
class ApSeries:
    """AP after each evaluation of one model (student, teacher, ema or model)."""

    iters: np.ndarray
    times: np.ndarray
    epochs: np.ndarray
    ap: np.ndarray


class SystemHistory:
    """The last ``maxlen`` system samples, as small per-quantity deques."""

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self.cpu: deque[float] = deque(maxlen=maxlen)
        self.ram: deque[float] = deque(maxlen=maxlen)
        self.rss: deque[float] = deque(maxlen=maxlen)
        self.gpus: dict[int, dict[str, deque[float]]] = {}

    def add(self, event: dict[str, Any]) -> None:
        self.cpu.append(as_float(event.get("cpu_percent")))
        self.ram.append(as_float(event.get("ram_used_mb")))
        self.rss.append(as_float(event.get("proc_rss_mb")))
        for gpu in event.get("gpus") or []:
            if not isinstance(gpu, dict):
                continue
            index = gpu.get("index")
            index = index if type(index) is int else 0  # a malformed event must not crash
            series = self.gpus.setdefault(index, {
                key: deque(maxlen=self.maxlen)
                for key in ("util", "mem_used_mb", "temperature", "power_w")})
            for key, values in series.items():
                values.append(as_float(gpu.get(key)))

    def copy(self) -> dict[str, Any]:
        return {"cpu": list(self.cpu), "ram": list(self.ram), "rss": list(self.rss),
                "gpus": {i: {k: list(v) for k, v in s.items()} for i, s in self.gpus.items()}}


def as_float(value: object) -> float:
    """A number of an event as a float; NaN for anything else (a malformed event must not
    crash the monitor)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int of 309+ digits (a hand-edited or planted line)
            return float("nan")
    return float("nan")


@dataclass(frozen=True)
class RunSnapshot:
    """An immutable picture of the run, handed from the worker to the screen.

    ``*_version`` counters change only when that part changed, so widgets can skip work.
    """

    run_id: str
    meta: dict[str, Any]
    meta_error: str | None
    status: str
    train: dict[str, np.ndarray]
    train_preview: dict[str, np.ndarray] | None
    """Sampled train series (see RunModel.load_preview) while the history is read."""
    terms: list[str]
    stats: list[str]
    """Names of the pseudo-label statistics series (``train["stats.<name>"]``)."""
    ap: dict[str, ApSeries]
    latest_train: dict[str, Any] | None
    latest_eval: dict[str, dict[str, Any]]
    latest_system: dict[str, Any] | None
    system: dict[str, Any]
    last_checkpoint: dict[str, Any] | None
    errors: list[dict[str, Any]]
    start: dict[str, Any] | None
    relationship: Relationship | None
    """A co-tuning run's learned class relationship (cot_relationship.json)..."""
    relationship_error: str | None
    """...or why it can't be shown (None for a run that is not co-tuning)."""
    caught_up: bool
    """The history has been read to its end once (later bytes are live updates)."""
    bytes_read: int
    bytes_total: int
    events_read: int
    train_version: int
    eval_version: int
    system_version: int
    meta_version: int
    download: dict[str, Any] | None = None
    """The latest ``download`` event (weights fetched before training starts)."""
    skipped: int = 0
    """Lines of events.jsonl skipped (unparsable, a value no reader can use, overlong)..."""
    skipped_shown: tuple[str, ...] = ()
    """...the first few of them, named (:func:`engine.protocol.events.skipped_line`)."""
    evaluating: dict[str, Any] | None = None
    """The ``eval_start`` event of the evaluation under way, if one is (see
    :func:`tui.runs.progress.evaluating_text`); None once its results, a later step or an end
    came."""

    @property
    def loading(self) -> bool:
        """True while the history is still being read for the first time."""
        return not self.caught_up

    @property
    def progress(self) -> float | None:
        """Fraction of the iterations done (from the latest train event), if known."""
        ev = self.latest_train
        if not ev:
            return None
        done, total = ev.get("iter"), ev.get("max_iters")
        if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            return min(1.0, max(0.0, done / total))
        return None
