"""The headless console: follow a run's directory and render it with Rich.

Used by ``dettui run --headless``, ``dettui resume --headless`` and ``dettui attach``. It
only reads the run directory (the engine is a separate process), so it can attach to any
run, live or finished. On a terminal it shows a live progress bar with the loss terms, lr,
images/s and ETA; redirected into a file (nohup) it prints one plain line per record
instead: no colour codes, never wrapped, so each line can be grepped.

Semi-supervised runs also get a line when the phase changes (burn-in → semi) and, after
each evaluation, the teacher's and the student's metrics side by side, besides each model's
own labelled per-class table.

A resumed run appends its new attempt to the same ``events.jsonl``: the watcher replays the
earlier attempts as history, but judges the run by its current attempt only. It follows
the run for as long as its engine lives (``run.json`` and the process say so), and an old
attempt's final ``status`` event never ends the watch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from engine.protocol.errors import RunError
from engine.protocol.events import METRIC_KEYS, EventTail, more_skipped
from engine.protocol.ownership import engine_pid
from engine.protocol.rundir import ACTIVE, RunDirectory, pid_alive, run_duration
from tui.runs.progress import evaluating_text
from tui.runs.semiinfo import phase_changed, phase_line, semi_schedule, stat_label
from tui.safetext import printable, safe_markup, safe_text

EXIT_BY_STATUS = {"finished": 0, "failed": 1, "interrupted": 130}
POLL_SECONDS = 0.25
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""What a job runner (``timeout``, SLURM, systemd) or a closed terminal sends a console."""


class StopSignals:
    """SIGTERM and SIGHUP to a console that follows its own run, handled like Ctrl-C: the
    engine (in its own session, so it never gets them itself) is asked to stop after its
    step with a checkpoint, and the console exits 128 + the signal once it has (143 /
    129), instead of dying and leaving the training running unwatched.

    A context manager around the launch and the watch, so a signal that comes while the
    engine is being started is not lost: the watcher acts on it as soon as it runs. On
    SIGHUP the terminal is gone, so the console writes to ``os.devnull`` from then on."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.on_hangup: list[Any] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signum)
        if signum == signal.SIGHUP:
            for callback in self.on_hangup:
                callback()

_KEY_WIDTH = 17
"""Width of the key column of the summary (``status:``, ``best checkpoint:``)."""


def plain_console() -> Console:
    """The console for the watcher: Rich on a terminal; redirected to a file, one line per
    record, never wrapped (Rich would wrap at 80 columns) and no colour codes."""
    console = Console()
    if not console.is_terminal:
        console = Console(soft_wrap=True, color_system=None)
    return console


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _num(value: object, fmt: str) -> str:
    """A number from an event, formatted; ``-`` when it is missing or null (NaN)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt.format(value)
    return "-"


def _count(n: object, noun: str) -> str:
    """``1 epoch``, ``10 epochs`` (``? epochs`` when the event lacks the number)."""
    return f"{n if n is not None else '?'} {noun}" + ("" if n == 1 else "s")


def _epoch(ev: dict[str, Any]) -> str:
    epoch = ev.get("epoch")
    return str(epoch + 1) if isinstance(epoch, int) else "?"


def eval_table(event: dict[str, Any]) -> Table:
    """Per-class AP of one eval event, sorted best first (class names are shown as text,
    never as markup: they come from the dataset)."""
    title = safe_text(f"per-class AP ({event.get('model') or 'model'}, "
                      f"epoch {_epoch(event)})")  # events count epochs from 0
    # as wide as its title at least: a table of short class names would wrap it
    table = Table(title=title, show_edge=False, header_style="bold", min_width=title.cell_len)
    table.add_column("class")
    table.add_column("AP", justify="right")
    for name, ap in sorted((event.get("per_class") or {}).items(),
                           key=lambda kv: -1 if kv[1] is None else -kv[1]):
        table.add_row(safe_text(name), _num(ap, "{:.3f}"))
    return table


def models_table(events: list[dict[str, Any]]) -> Table:
    """The summary metrics of several models evaluated at the same point (the teacher and
    the student of a semi-supervised run), one row per model."""
    title = safe_text(f"AP by model (epoch {_epoch(events[0])})")
    table = Table(title=title, show_edge=False, header_style="bold", min_width=title.cell_len)
    table.add_column("model")
    for key in METRIC_KEYS:
        table.add_column(key, justify="right")
    for ev in events:
        metrics = ev.get("metrics") or {}
        table.add_row(safe_text(ev.get("model") or "model"),
                      *(_num(metrics.get(key), "{:.3f}") for key in METRIC_KEYS))
    return table


def loss_line(ev: dict[str, Any]) -> str:
    """Loss, its terms, lr, throughput and ETA of a train event (plain text, no markup),
    then a semi-supervised trainer's pseudo-label statistics."""
    terms = " ".join(f"{printable(k)} {_num(v, '{:.4f}')}"
                     for k, v in (ev.get("losses") or {}).items())
    stats = ev.get("stats")
    if isinstance(stats, dict) and stats:
        terms += "  " + " ".join(f"{printable(stat_label(str(k)))} {_num(v, '{:.3g}')}"
                                 for k, v in stats.items())
    return (f"loss {_num(ev.get('loss'), '{:.4f}')}  {terms}  lr {_num(ev.get('lr'), '{:.2e}')}"
            f"  {_num(ev.get('ips') or 0, '{:.1f}')} img/s  eta {_fmt_seconds(ev.get('eta'))}")


class HeadlessWatcher:
    """Renders one run's events until the run ends; returns the run's exit code."""

    def __init__(self, run: RunDirectory, proc: subprocess.Popen | None = None,
                 console: Console | None = None, stop_on_ctrl_c: bool = True,
                 signals: StopSignals | None = None):
        self.run = run
        self.proc = proc
        self.console = console or plain_console()
        self.stop_on_ctrl_c = stop_on_ctrl_c
        self.signals = signals
        """SIGTERM/SIGHUP received by this console (see ``StopSignals``)."""
        self.signals_seen = 0
        if signals is not None:
            signals.on_hangup.append(self._terminal_gone)
        self.tail = EventTail(run.events)
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("eta {task.fields[eta]}"),
                                 console=self.console, transient=False)
        self.task = self.progress.add_task("starting", total=None, eta="-")
        self.last_train: dict[str, Any] | None = None
        self.phase: str | None = None
        self.start_event: dict[str, Any] | None = None
        self.evals: list[dict[str, Any]] = []
        """The eval events of the latest evaluation point (one per model)."""
        self.final_status: str | None = None
        self.attempt = 0
        """The attempt whose events are being shown (a ``running`` status starts one)."""
        self.done_iter: int | None = None
        """Steps done as far as the events tell (a train event, or a later checkpoint:
        a stop checkpoints the step in flight, which may not have been logged)."""
        self.schedule: tuple[int | None, int | None] = (None, None)
        """The attempt's iterations per epoch and in all, from its start event."""
        self.started = time.time()
        self.stop_sent = 0
        self.skips_said = 0
        """How many of ``tail.skipped_shown`` were printed."""

    # ------------------------------------------------------------------ event handling
    def handle(self, ev: dict[str, Any], live: Live | None) -> None:
        kind = ev.get("type")
        out = live.console if live is not None else self.console
        # Every string from an event is shown as text: never markup, no control characters.
        if kind == "start":
            self.start_event = ev
            resumed = f", resumed from {ev['resume_from']}" if ev.get("resume_from") else ""
            out.print(safe_text(self.run.id, "bold") + safe_text(
                f": {ev.get('trainer')} on {ev.get('device')}, "
                f"{_count(ev.get('epochs'), 'epoch')} x "
                f"{_count(ev.get('iters_per_epoch'), 'iter')}, "
                f"{ev.get('train_images')} train / {ev.get('eval_images')} eval "
                f"{'image' if ev.get('eval_images') == 1 else 'images'}{resumed}"))
            # A new attempt: the last one's progress line is history, not this one's
            self.last_train = None
            self.schedule = (ev.get("iters_per_epoch"), ev.get("max_iters"))
            self.done_iter = None
            self._reached(ev.get("start_iter"))
            self.progress.update(self.task, total=ev.get("max_iters"),
                                 completed=ev.get("start_iter") or 0,
                                 description="resumed" if resumed else "starting", eta="-")
            schedule = semi_schedule(ev, None)
            if schedule is not None:
                self.phase = schedule.phase
                out.print(safe_text(phase_line(schedule), "bold magenta"))
        elif kind == "train":
            self.last_train = ev
            self._reached(ev.get("iter"))
            change = phase_changed(self.phase, ev, self.start_event)
            if change is not None:
                self.phase = ev["phase"]
                out.print(safe_text(change, "bold magenta"))
            if isinstance(ev.get("iter"), int):
                self.progress.update(self.task, total=ev.get("max_iters"), completed=ev["iter"],
                                     description=f"epoch {_epoch(ev)}",
                                     eta=_fmt_seconds(ev.get("eta")))
            if live is None:
                out.print(Text(f"epoch {_epoch(ev)} iter {ev.get('iter')}/{ev.get('max_iters')}"
                               "  " + loss_line(ev)), highlight=False)
        elif kind == "eval_start":  # the bar stands still for a while: say why
            self.progress.update(self.task, description=safe_markup(evaluating_text(ev)))
        elif kind == "eval":
            self.progress.update(self.task, description=f"epoch {_epoch(ev)}")
            out.print(safe_text(f"COCO bbox eval, epoch {_epoch(ev)} ({ev.get('model')}, "
                                f"{_num(ev.get('eval_time') or 0, '{:.1f}')}s)", "bold"))
            for line in ev.get("summary") or []:
                out.print(safe_text(line), highlight=False, soft_wrap=True)
            out.print(eval_table(ev))
            if self.evals and self.evals[-1].get("iter") != ev.get("iter"):
                self.evals = []
            self.evals = [e for e in self.evals if e.get("model") != ev.get("model")] + [ev]
            if len(self.evals) > 1:
                out.print(models_table(self.evals))
        elif kind == "preview":
            files = ev.get("files") or []
            out.print(safe_text(f"previews (epoch {_epoch(ev)}, {ev.get('model')}): "
                                f"{_count(len(files), 'image')} in {ev.get('dir')}"),
                      highlight=False)
        elif kind == "download":  # weights fetched by the engine before training
            done, total = ev.get("done") or 0, ev.get("total")
            if ev.get("state") == "done":
                self.progress.update(self.task, description="starting")
                out.print(safe_text(f"downloaded {ev.get('source')} ({done / 1e6:.1f} MB) to "
                                    f"{ev.get('path')}", "dim"), soft_wrap=True)
            else:  # numbers only: the description is markup
                self.progress.update(self.task, description=f"downloading weights "
                                     f"{done / 1e6:.1f}" + (f"/{total / 1e6:.1f}" if
                                                            isinstance(total, int) else "")
                                     + " MB")
        elif kind == "checkpoint":
            self._reached(ev.get("iter"))
            if ev.get("kind") != "last":  # last.pt: in the summary
                out.print(safe_text(f"checkpoint ({ev.get('kind')}): {ev.get('path')}", "dim"))
        elif kind == "log" and ev.get("level") in ("warning", "error", "info"):
            out.print(safe_text(ev.get("message"), "yellow", newlines=True))  # a block: lines
        elif kind == "error":
            out.print(Text("error (", style="bold red") + safe_text(ev.get("error_type"),
                                                                   "bold red")
                      + Text("): ", style="bold red") + safe_text(ev.get("message") or "",
                                                                  newlines=True),
                      soft_wrap=True)
            # A full disk is no bug: its message says what to do, a traceback would not
            if not ev.get("user_error") and ev.get("error_type") != "DiskFull":
                out.print(safe_text(f"traceback: {self.run.stderr_log}", "dim"))
        elif kind == "status":
            # A new attempt (a resume, a supervisor restart) starts "running": whatever
            # an earlier attempt ended with is history, not how this run ends.
            status = ev.get("status")
            self.final_status = status if status in EXIT_BY_STATUS else None
            if status == "running":
                self.attempt += 1
            elif status in EXIT_BY_STATUS:
                self._attempt_ended(status, ev, out)

    def _attempt_ended(self, status: str, ev: dict[str, Any], out: Console) -> None:
        """Say how an attempt ended, where it stood, and clear its progress line: a
        replay (``attach``, a resumed run) shows that an earlier attempt was interrupted,
        and the next attempt's line never starts from the last one's numbers."""
        per_epoch, total = self.schedule
        it = self.done_iter
        where = ""
        if isinstance(it, int):
            epoch = f"epoch {-(-it // per_epoch)} " if isinstance(per_epoch, int) and \
                per_epoch > 0 and it > 0 else ""
            where = f" at {epoch}iter {it}/{total if total is not None else '?'}"
        message = ev.get("message") if status != "failed" else None  # the error said it
        out.print(safe_text(f"attempt {max(self.attempt, 1)} {status}{where}"
                            + (f": {message}" if message else ""),
                            {"finished": "green", "interrupted": "yellow"}.get(status, "red")),
                  highlight=False)
        if isinstance(it, int):  # the bar stops where the attempt did
            self.progress.update(self.task, completed=it)
        self.last_train = None
        self.done_iter = None
        self.progress.update(self.task, description=status, eta="-")

    def _reached(self, it: object) -> None:
        if isinstance(it, int) and not isinstance(it, bool):
            self.done_iter = max(it, self.done_iter or 0)

    def _renderable(self) -> Group:
        line = Text(loss_line(self.last_train), style="cyan") if self.last_train else Text("")
        return Group(self.progress, line)

    # ---------------------------------------------------------------------- main loop
    def _engine_alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            meta = self.run.read_meta()
        except RunError:  # unreadable this tick (e.g. deleted): the engine is not ours to wait for
            return False
        status = meta.get("status")
        # "failed" while the supervisor (the recorded pid) lives: a restart is on its way
        restarting = status == "failed" and bool(meta.get("max_restarts"))
        return ((status in ACTIVE or restarting)
                and pid_alive(meta.get("pid"), meta.get("pid_started")))

    def _request_stop(self, what: str = "Ctrl-C") -> None:
        self.stop_sent += 1
        if self.proc is not None:
            pid = self.proc.pid if self.proc.poll() is None else None  # our own child
        else:  # never on run.json's word alone (see engine.protocol.ownership)
            try:
                pid = engine_pid(self.run.path, self.run.read_meta())
            except RunError as exc:
                self.console.print(safe_text(f"{what}: not stopping it: {exc.message}",
                                             "yellow"))
                return
        if pid is not None:
            said = f"{what} again: stopping at once" if self.stop_sent > 1 else \
                f"{what}: stopping after this step (checkpoint first); {what} again to " \
                "stop at once"
            self.console.print(Text(said, style="yellow"))
            os.kill(pid, signal.SIGINT)

    def _terminal_gone(self) -> None:
        """SIGHUP: nobody reads this console any more, and a write to a hung-up terminal
        fails; what follows goes nowhere (the run folder has it all)."""
        self.console.file = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the console

    def _handle_signals(self) -> None:
        """Act on each SIGTERM/SIGHUP received since the last poll, as on a Ctrl-C."""
        received = self.signals.received if self.signals is not None else []
        while self.signals_seen < len(received):
            signum = received[self.signals_seen]
            self.signals_seen += 1
            self._request_stop(signal.Signals(signum).name)

    def _poll(self, live: Live | None) -> bool:
        """Handle new events; False once the engine is gone and everything was read.

        Only the engine's life decides when to stop, never a ``status`` event: replayed
        from the top, the file holds the final status of every earlier attempt, and a
        supervisor writes ``failed`` before it restarts a crashed engine."""
        for ev in self.tail.read():
            self._show(ev, live)
        self._say_skipped(live, final=False)
        if live is not None:
            live.update(self._renderable())
        if self._engine_alive():
            return True
        for ev in self.tail.read():  # the last events written before exit
            self._show(ev, live)
        self._say_skipped(live, final=True)
        return False

    def _say_skipped(self, live: Live | None, final: bool) -> None:
        """Name each line of events.jsonl the reader skipped (the first few; at the end,
        how many more), in the words the monitor uses."""
        out = live.console if live is not None else self.console
        shown = self.tail.skipped_shown
        for text in shown[self.skips_said:]:
            out.print(safe_text(text, "yellow"))
        self.skips_said = len(shown)
        if final and self.tail.skipped > len(shown):
            out.print(safe_text(more_skipped(self.tail.skipped - len(shown)), "yellow"))

    def _show(self, ev: dict[str, Any], live: Live | None) -> None:
        """``handle`` one event. An event this console cannot show is reported and passed
        over: how the console exits must say how the run ended, not how an event printed."""
        try:
            self.handle(ev, live)
        except Exception as exc:  # noqa: BLE001 - reported, and the watch goes on
            self.console.print(safe_text(f"(an event could not be shown: "
                                         f"{type(exc).__name__}: {exc})", "dim"))

    def watch(self) -> int:
        use_live = self.console.is_terminal
        live = Live(self._renderable(), console=self.console, refresh_per_second=4,
                    transient=False) if use_live else None
        if live is not None:
            live.start()
        try:
            while True:
                try:
                    self._handle_signals()
                    if not self._poll(live):
                        break
                    time.sleep(POLL_SECONDS)
                except KeyboardInterrupt:
                    if not self.stop_on_ctrl_c:
                        raise
                    self._request_stop()
        finally:
            if live is not None:
                live.stop()
        if self.proc is not None:
            # The engine may still be writing its last checkpoint; it is detached anyway.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        return self.summary()

    def summary(self) -> int:
        meta = self.run.read_meta()
        # run.json is the current attempt's verdict (the engine writes it with the event)
        status = self.run.effective_status(meta)
        if status in ACTIVE:  # the engine is gone but run.json was not updated in time
            status = self.final_status or "failed"
        best = meta.get("best")
        color = {"finished": "green", "interrupted": "yellow"}.get(status, "red")
        rows = [("run", safe_markup(f"{self.run.id}  ({Path(self.run.path).resolve()})")),
                ("status", f"[{color}]{safe_markup(status)}[/]")]
        if isinstance(best, dict):  # run.json's best.epoch counts from 1
            which = best.get("model")
            which = f"{safe_markup(which)}, " if which and which != "model" else ""
            rows += [("best AP", f"{_num(best.get('value'), '{:.3f}')} "
                                 f"({which}epoch {_num(best.get('epoch'), '{}')})"),
                     ("best checkpoint", safe_markup(best.get("checkpoint")))]
        last = self.run.last_checkpoint()
        if last:  # absolute, as the engine records best.pt: copyable from anywhere
            rows.append(("last checkpoint", safe_markup(Path(last).resolve())))
        attempts = meta.get("attempt")
        over = (f" ({attempts} attempts)" if isinstance(attempts, int) and attempts > 1
                else "")
        rows.append(("wall time", _fmt_seconds(run_duration(meta, status=status)) + over))
        if status == "failed":
            # run.json's error: written even when events.jsonl was the file that was full
            error = meta.get("error") if isinstance(meta.get("error"), dict) else {}
            if error.get("message"):
                # our own message's lines stay lines, under the value column
                rows.append(("error", safe_markup(error["message"], newlines=True)
                             .replace("\n", "\n" + " " * _KEY_WIDTH)))
            rows.append(("log", safe_markup(self.run.train_log)))
            if error.get("type") != "DiskFull":
                rows.append(("traceback", safe_markup(self.run.stderr_log)))
        if status in ("interrupted", "failed") and last:
            rows.append(("resume with", safe_markup(f"dettui resume {self.run.id}")))
        self.console.rule(f"[{color}]summary")
        for key, value in rows:  # plain lines: paths are never cut to the terminal width
            self.console.print(f"[bold]{key + ':':<{_KEY_WIDTH}}[/]{value}", soft_wrap=True,
                               highlight=False)
        if self.signals is not None and self.signals.received and status == "interrupted":
            return 128 + self.signals.received[0]  # as a shell reports a process it ended
        code = meta.get("exit_code")
        if isinstance(code, int):
            return code
        if self.proc is not None and self.proc.returncode is not None:
            return self.proc.returncode
        return EXIT_BY_STATUS.get(status, 1)
