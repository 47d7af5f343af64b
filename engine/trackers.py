"""Training curves for TensorBoard and Weights & Biases, made from a run's events.

PaddleDetection's ``--use_vdl`` / ``--use_wandb``, for the PyTorch world. One mapping,
:func:`scalars`, turns an event of ``events.jsonl`` into named numbers at a step; two sinks
write them: :class:`TensorBoardSink` (TensorBoard's own event-file writer and protobufs:
neither torch nor TensorFlow) and :class:`WandbSink` (``wandb``; ``WANDB_MODE=offline``
needs no network). The same :class:`TrackerFeed` serves both uses:

* live: the engine's recorder (rank 0) hands it every event it writes
  (``python -m engine train ... --tensorboard [DIR] --wandb``);
* afterwards: :func:`export_run` replays a past run's ``events.jsonl``
  (``dettui export RUN --tensorboard DIR``).

Importing this module needs only the standard library (the front-ends use it); each sink
imports its package when it is made, and :func:`require` says how to install a missing one.

Tags (the step is the global iteration, ``iter``: losses and AP share one x axis)::

    loss/total, loss/<term>          a train event's total loss and each of its terms
    train/lr, train/ips, train/batch_time, train/data_time, train/memory_mb
    stats/<name>                     a method's per-step statistics (semi trainers)
    eval/<metric>                    AP, AP50, AP75, APs, APm, APl (0-1) of the model
    eval/per_class/<class>           per-class AP
    eval/<model>/<metric>, eval/<model>/per_class/<class>
                                     the same for a named model of a semi-supervised
                                     trainer: ``teacher``, ``student``, ``ema``

A resumed run repeats the steps after its last checkpoint. Its ``start`` event says where
it starts (``start_iter``); TensorBoard is told to drop the abandoned attempt's values
from there on (a ``SessionLog.START`` "purge" at that step, as ``SummaryWriter``'s
``purge_step`` does), and an export keeps the same, last, values of each step.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from engine.protocol.errors import ConfigError, RunError
from engine.protocol.events import METRIC_KEYS, read_events
from engine.protocol.safefiles import RefusedFile, check_output_path

INSTALL = {"tensorboard": "pip install 'dettui[tensorboard]'",
           "wandb": "pip install 'dettui[wandb]'"}
"""How to install the package each tracker needs (the extras of ``pyproject.toml``)."""

TRAIN_FIELDS = {"lr": "train/lr", "ips": "train/ips", "batch_time": "train/batch_time",
                "data_time": "train/data_time", "memory": "train/memory_mb"}
DEFAULT_WANDB_PROJECT = "dettui"


def require(tracker: str) -> None:
    """Raise ``ConfigError`` (exit code 2 at the CLI) with the install command when the
    package ``tracker`` needs is missing. Cheap: nothing is imported."""
    try:
        found = importlib.util.find_spec(tracker) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"needs the {tracker} package, which is not installed",
                          key=f"--{tracker}", hint=f"install it with: {INSTALL[tracker]}")


def _number(value: Any) -> float | None:
    """A finite float, or None: null (a NaN on the engine's side), missing, or a number
    no curve can hold (an event file may be hand-edited or planted)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int of hundreds of digits
            return None
        return number if math.isfinite(number) else None
    return None


def scalars(event: dict[str, Any]) -> tuple[int, dict[str, float]] | None:
    """``(step, {tag: value})`` of one event, or None when it has no curve values."""
    step = event.get("iter")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < 2**63:
        return None  # TensorBoard's steps are int64
    out: dict[str, float] = {}

    def put(tag: str, value: Any) -> None:
        number = _number(value)
        if number is not None:
            out[tag] = number

    kind = event.get("type")
    if kind == "train":
        put("loss/total", event.get("loss"))
        for term, value in (event.get("losses") or {}).items():
            put(f"loss/{term}", value)
        for field, tag in TRAIN_FIELDS.items():
            put(tag, event.get(field))
        stats = event.get("stats")
        for name, value in (stats.items() if isinstance(stats, dict) else ()):
            put(f"stats/{name}", value)
    elif kind == "eval":
        model = event.get("model")
        prefix = "eval" if model in (None, "", "model") else f"eval/{model}"
        metrics = event.get("metrics") or {}
        for key in METRIC_KEYS:
            put(f"{prefix}/{key}", metrics.get(key))
        for name, value in (event.get("per_class") or {}).items():
            put(f"{prefix}/per_class/{name}", value)
    return (step, out) if out else None


class Sink(Protocol):
    def write(self, step: int, values: dict[str, float], wall_time: float) -> None: ...
    def restart_at(self, step: int, wall_time: float) -> None: ...
    def close(self) -> None: ...


def prepare_logdir(logdir: Path) -> None:
    """Make the TensorBoard folder, or say (``ConfigError``) why it can't be one: a file,
    a dangling link, a FIFO or a device there, or a folder we may not write."""
    try:
        check_output_path(logdir, folder=True)
        logdir.mkdir(parents=True, exist_ok=True)
    except RefusedFile as exc:
        raise ConfigError(f"cannot write TensorBoard scalars in {logdir}: {exc}",
                          key="--tensorboard", hint="give a folder (it is created if "
                          "missing)") from None
    except OSError as exc:
        raise ConfigError(f"cannot create the TensorBoard folder {logdir}: "
                          f"{exc.strerror or exc}", key="--tensorboard") from None
    if not os.access(logdir, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write TensorBoard scalars in {logdir}: permission "
                          "denied", key="--tensorboard")


class TensorBoardSink:
    """Scalars in a TensorBoard log folder (``tensorboard --logdir DIR`` shows them)."""

    name = "tensorboard"

    def __init__(self, logdir: str | Path, flush_secs: float = 5.0):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        self.logdir = Path(logdir)
        prepare_logdir(self.logdir)
        self._writer = EventFileWriter(str(self.logdir), flush_secs=flush_secs)

    def write(self, step: int, values: dict[str, float], wall_time: float) -> None:
        summary = self._summary_pb2.Summary(value=[
            self._summary_pb2.Summary.Value(tag=tag, simple_value=value)
            for tag, value in values.items()])
        self._writer.add_event(self._event_pb2.Event(wall_time=wall_time, step=step,
                                                     summary=summary))

    def restart_at(self, step: int, wall_time: float) -> None:
        """Readers drop what an earlier writer logged at ``step`` and after."""
        log = self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START)
        self._writer.add_event(self._event_pb2.Event(wall_time=wall_time, step=step,
                                                     session_log=log))

    def close(self) -> None:
        self._writer.close()  # flushes


class WandbSink:
    """The same scalars in a Weights & Biases run: project ``$WANDB_PROJECT`` (default
    ``dettui``), named after the dettui run, its resolved config as the W&B config.
    ``WANDB_MODE=offline`` writes it under ``DIR/wandb/`` for a later ``wandb sync``."""

    name = "wandb"

    def __init__(self, run_id: str, directory: str | Path, config: dict[str, Any] | None,
                 name: str | None = None):
        import wandb

        Path(directory).mkdir(parents=True, exist_ok=True)
        try:
            self._run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", DEFAULT_WANDB_PROJECT),
                name=name or run_id, id=_wandb_id(run_id), resume="allow",
                dir=str(directory), config=config or {},
                settings=wandb.Settings(console="off"))
        except Exception as exc:  # noqa: BLE001 - wandb's own errors: not logged in, offline...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"cannot start a Weights & Biases run: {first}",
                              key="--wandb", hint="run `wandb login`, or set "
                              "WANDB_MODE=offline to log without network") from exc
        self._last_step = -1

    @property
    def run_dir(self) -> Path:
        """The folder of this W&B run (``.../wandb/offline-run-...`` offline)."""
        return Path(self._run.dir).parent

    def write(self, step: int, values: dict[str, float], wall_time: float) -> None:
        # W&B keeps each step once and never goes back: a resumed attempt's repeated
        # steps (already logged by the attempt that died) are left out.
        if step < self._last_step:
            return
        self._last_step = step
        self._run.log(values, step=step)

    def restart_at(self, step: int, wall_time: float) -> None:
        """Nothing to do: W&B keeps what it was given for the steps already logged."""

    def close(self) -> None:
        self._run.finish()


def _wandb_id(run_id: str) -> str:
    """A W&B run id for a dettui run id (W&B refuses some characters, and long ids)."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in run_id)[:64]


class TrackerFeed:
    """Hands events to sinks as scalars. A sink that fails is reported (``on_error``)
    and dropped: an experiment tracker must never stop training."""

    def __init__(self, sinks: Iterable[Sink], on_error: Any = None):
        self.sinks = list(sinks)
        self.on_error = on_error

    def handle(self, event: dict[str, Any]) -> None:
        wall_time = event.get("t") if isinstance(event.get("t"), (int, float)) else 0.0
        start_iter = event.get("start_iter")
        if event.get("type") == "start" and isinstance(start_iter, int) and start_iter > 0:
            self._each(lambda s: s.restart_at(start_iter + 1, wall_time))
        found = scalars(event)
        if found is not None:
            step, values = found
            self._each(lambda s: s.write(step, values, wall_time))

    def _each(self, call: Any) -> None:
        for sink in list(self.sinks):
            try:
                call(sink)
            except Exception as exc:  # noqa: BLE001 - reported, and training goes on
                self.sinks.remove(sink)
                if self.on_error is not None:
                    self.on_error(f"{sink.name} stopped logging: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - the run's own files are what counts
                if self.on_error is not None:
                    self.on_error(f"{sink.name} did not close: {type(exc).__name__}: {exc}")
        self.sinks = []


def history(events: Iterable[dict[str, Any]]) -> list[tuple[int, float, dict[str, float]]]:
    """``(step, wall time, {tag: value})`` of a run's events, in step order, keeping for
    each step the values of the last attempt that logged it (a resumed attempt replaces
    what the attempt that died logged after the checkpoint it resumed from)."""
    points: dict[int, tuple[float, dict[str, float]]] = {}
    for event in events:
        start_iter = event.get("start_iter")
        if event.get("type") == "start" and isinstance(start_iter, int):
            for step in [s for s in points if s > start_iter]:
                del points[step]
        found = scalars(event)
        if found is None:
            continue
        step, values = found
        t = event.get("t") if isinstance(event.get("t"), (int, float)) else 0.0
        _, known = points.get(step, (t, {}))
        points[step] = (t, {**known, **values})
    return [(step, t, values) for step, (t, values) in sorted(points.items())]


def export_run(run_dir: str | Path, *, tensorboard: str | Path | None = None,
               wandb: bool = False) -> dict[str, Any]:
    """Write a past run's curves (from its ``events.jsonl``) to TensorBoard and/or W&B;
    returns ``{"steps": n, "tags": n, "tensorboard": dir, "wandb": dir}``."""
    from engine.protocol.rundir import RunDirectory

    run = RunDirectory(run_dir)
    if not run.events.is_file():
        raise RunError(f"{run.path} has no events to export (no {run.events.name})")
    for tracker, wanted in (("tensorboard", tensorboard), ("wandb", wandb)):
        if wanted:
            require(tracker)
    points = history(read_events(run.events))
    sinks: list[Sink] = []
    out: dict[str, Any] = {"steps": len(points),
                           "tags": len({tag for _, _, values in points for tag in values})}
    if tensorboard is not None:
        sinks.append(TensorBoardSink(tensorboard))
        out["tensorboard"] = str(tensorboard)
    if wandb:
        meta = run.read_meta() if run.exists() else {}
        sink = WandbSink(run.id, run.path, _run_config(run), name=meta.get("name"))
        sinks.append(sink)
        out["wandb"] = str(sink.run_dir)
    try:
        for step, t, values in points:
            for sink in sinks:
                sink.write(step, values, t)
    finally:
        for sink in sinks:
            sink.close()
    return out


def _run_config(run: Any) -> dict[str, Any] | None:
    """The run's resolved config (for the W&B run), or None if it can't be read."""
    from engine.config.loader import read_yaml_mapping

    try:
        config = read_yaml_mapping(run.config_yaml)
    except (OSError, ConfigError):
        return None
    return config if isinstance(config, dict) else None
