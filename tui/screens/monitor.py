"""The run monitor: one run, live. Header with status, progress and ETA; loss curves; AP
curve and the latest evaluation; the machine; the logs.

Data flow (toolong-style): a thread worker owns a :class:`~tui.runs.runmodel.RunModel` and the
log tails. It reads only new bytes, four times a second, and posts an immutable
:class:`~tui.runs.runmodel.RunSnapshot` (``Updated``, replaceable: a newer one supersedes a
queued one) and batches of log lines (``LogLines``, which can't be dropped, so the worker
holds new lines back until the screen has taken the previous batch). The screen owns the
snapshot and passes it down; plots are rebuilt at most every ``PLOT_INTERVAL`` seconds,
and less often when a rebuild is slow, so a run writing thousands of events a second
costs a few percent of a core.

Wide terminals show every pane in a grid; below ``NARROW_WIDTH`` columns one pane at a
time, picked with 1-4 (the tab strip shows which). Semi-supervised and co-tuning runs get a
phase line under the header and a fifth pane (5: pseudo-label statistics, or the co-tuning
class relationship; see :mod:`tui.widgets.semi_panel`).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from engine.protocol.errors import UserError
from engine.protocol.events import skipped_summary
from engine.protocol.rundir import ACTIVE, RunDirectory
from tui.process import launcher
from tui.runs.eventscan import TERM_PREFIX
from tui.runs.filetail import LogTail
from tui.runs.history import RunSnapshot
from tui.runs.runmodel import RunModel
from tui.safetext import printable, safe_text
from tui.screens.confirm import ConfirmScreen, stop_question
from tui.screens.error import ErrorReport, ErrorScreen, note_started, report_run_failure
from tui.screens.train_longer import TrainLongerScreen, nothing_left_to_train
from tui.widgets.curves import Curve, CurvePlot
from tui.widgets.eval_table import MODEL_ORDER, EvalTable
from tui.widgets.log_panel import SOURCES, LogPanel
from tui.widgets.run_header import RunHeader, set_subtitle
from tui.widgets.semi_panel import SemiPanel, run_kind, strip_text
from tui.widgets.system_panel import SystemPanel

__all__ = ["MonitorScreen"]

POLL_INTERVAL = 0.25
"""Seconds between reads of the run directory once the history is loaded."""
META_INTERVAL = 1.0
"""Seconds between checks of run.json and of the engine's process."""
PAINT_WAIT = 1.0
"""Most seconds the worker waits for a first picture to be painted before it reads a long
history."""
LOG_INTERVAL = 0.5
"""Least seconds between two batches of log lines (each re-lays out the log view, which
costs a reflow of the screen)."""
PLOT_INTERVAL = 1.0
"""Least seconds between two rebuilds of a plot as data stream in (a key that changes a
plot redraws it at once)..."""
PLOT_COST_FACTOR = 8.0
"""...and at least this many times what the last rebuild took (bounds the CPU use)."""
NARROW_WIDTH = 120
PANES = ("loss", "eval", "system", "logs", "semi")
PANE_LABELS = {"loss": "Loss", "eval": "Eval", "system": "System", "logs": "Logs",
               "semi": "Semi", "cot": "Co-tuning"}
class MonitorScreen(Screen[None]):
    """Everything about one run, live; ``escape``/``q`` goes back."""

    DEFAULT_CSS = """
    MonitorScreen {
        layout: vertical;
        /* a long message leaves the panes in sight: the logs (e) and the error modal show it */
        #banner { display: none; height: auto; max-height: 7; background: $error 30%;
                  padding: 0 1; }
        #banner.-shown { display: block; }
        #tabs { display: none; height: 1; padding: 0 1; background: $panel; }
        #phase { display: none; height: 1; padding: 0 1; background: $panel;
                 text-wrap: nowrap; text-overflow: ellipsis; }
        #pane-semi { display: none; }
        &.-semi {
            #phase { display: block; }
            #body { grid-size: 2 3; grid-rows: 3fr 2fr 2fr; }
        }
        &.-semi.-wide #pane-semi { display: block; column-span: 2; }
        #body {
            grid-size: 2 2;
            grid-columns: 3fr 2fr;
            grid-rows: 3fr 2fr;
            height: 1fr;
        }
        .pane {
            border: round $panel-lighten-2;
            border-title-color: $text-accent;
            border-subtitle-color: $text-muted;
            height: 1fr;
            &:focus-within { border: round $accent; }
        }
        #pane-eval #ap-plot { height: 2fr; min-height: 6; }
        #pane-eval EvalTable { height: 3fr; }
        &.-narrow {
            #tabs { display: block; }
            #body { layout: vertical; }
            .pane { display: none; }
            .pane.-active { display: block; height: 1fr; }
            #pane-semi.-active { display: block; }
        }
    }
    """

    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-narrow"), (NARROW_WIDTH, "-wide")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "back", "Back", key_display="q"),
        # short labels: at 80 columns the footer must still reach "? Help"
        Binding("1", "pane('loss')", "Pane", key_display="1-4"),
        Binding("1", "first_pane", "Pane", key_display="1-5"),  # with the semi pane
        Binding("2", "pane('eval')", "Eval pane", show=False),
        Binding("3", "pane('system')", "System pane", show=False),
        Binding("4", "pane('logs')", "Logs pane", show=False),
        Binding("5", "pane('semi')", "Semi pane", show=False),
        Binding("p", "previews", "Previews"),
        Binding("z", "zoom", "Zoom"),
        # plot toggles: named in the loss plot's subtitle and in help, not in the footer
        Binding("m", "toggle_smooth", "Smooth", show=False),
        Binding("y", "toggle_log_y", "Log y"),
        Binding("x", "toggle_x", "X axis", show=False),
        Binding("slash", "search", "Find", key_display="/"),
        Binding("e", "first_error", "Error"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        # Log keys work everywhere; the footer shows them (from LogPanel) when the log
        # has the focus, so an 80-column footer keeps room for the rest.
        Binding("f", "toggle_follow", "Follow log", show=False),
        Binding("n", "next_match", "Next match", show=False),
        Binding("N", "previous_match", "Previous match", show=False),
        Binding("t", "switch_log", "Other log file", show=False),
    ]

    pane: reactive[str] = reactive("loss")
    """The pane shown when the terminal is narrow (and focused when wide)."""
    x_time: reactive[bool] = reactive(False)
    """Plot against wall time instead of iterations."""

    class Updated(Message):
        """A new picture of the run (replaceable: only the newest one matters).

        With ``painted`` set, the screen sets that event once the picture is on screen
        (the worker waits for it before hogging the CPU with a long read)."""

        def __init__(self, snapshot: RunSnapshot,
                     painted: threading.Event | None = None) -> None:
            super().__init__()
            self.snapshot = snapshot
            self.painted = painted

        def can_replace(self, message: Message) -> bool:
            if not isinstance(message, MonitorScreen.Updated):
                return False
            message.painted = message.painted or self.painted  # the newer one owes it
            return True

    class LogLines(Message):
        """New lines of the log files: ``{source: lines}``."""

        def __init__(self, lines: dict[str, list[str]]) -> None:
            super().__init__()
            self.lines = lines

    def __init__(self, run_dir: Path, *, name: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.run_dir = Path(run_dir)
        self.snapshot: RunSnapshot | None = None
        """The latest picture of the run (None until the worker's first post)."""
        self._logs_taken = threading.Event()
        self._logs_taken.set()
        self._wake = threading.Event()
        self._shown: dict[str, object] = {}
        self._plots_dirty = False
        self._last_plot = 0.0
        self._processes: list[subprocess.Popen] = []
        self._banner_text = ""
        self._preview_drawn: dict[str, Any] | None = None
        self.run_kind: str | None = None
        """``semi``, ``cot`` (co-tuning) or None, once the run's events say so."""

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield RunHeader(self.run_dir.name, id="header")
        yield Static("", id="banner")
        yield Static("", id="tabs")
        yield Static("", id="phase")
        with Grid(id="body"):
            loss = CurvePlot(x_label="iter", id="loss-plot", classes="pane -active")
            loss.border_title = "1 Loss"
            yield loss
            with Vertical(id="pane-eval", classes="pane") as eval_pane:
                eval_pane.border_title = "2 Eval"
                yield CurvePlot(x_label="iter", y_format="{:.3f}", id="ap-plot")
                yield EvalTable(id="eval-table")
            log_panel = LogPanel(id="pane-logs", classes="pane")
            yield log_panel
            system = SystemPanel(id="pane-system", classes="pane")
            system.border_title = "3 System"
            yield system
            yield SemiPanel(id="pane-semi", classes="pane")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#loss-plot", CurvePlot).empty_text = "loading…"
        self.query_one("#ap-plot", CurvePlot).empty_text = "no evaluation yet"
        self._update_tabs()
        self.set_interval(PLOT_INTERVAL, self._refresh_plots)
        self._poll()

    def on_unmount(self) -> None:
        self._wake.set()

    def on_resize(self) -> None:
        self.query_one(Footer).compact = self.size.width < NARROW_WIDTH
        self.refresh_bindings()

    def _pane_widget(self, pane: str) -> Any:
        return self.query_one({"loss": "#loss-plot", "eval": "#pane-eval",
                               "system": "#pane-system", "logs": "#pane-logs",
                               "semi": "#pane-semi"}[pane])

    def watch_pane(self, pane: str) -> None:
        for name in PANES:
            self._pane_widget(name).set_class(name == pane, "-active")
        self._update_tabs()
        self.refresh_bindings()

    def _update_tabs(self) -> None:
        panes = PANES if self.run_kind else PANES[:-1]
        labels = {**PANE_LABELS, "semi": PANE_LABELS[self.run_kind or "semi"]}
        self.query_one("#tabs", Static).update("  ".join(
            f"[b reverse] {i} {labels[p]} [/]" if p == self.pane else f" {i} {labels[p]} "
            for i, p in enumerate(panes, 1)))

    # -- the worker ----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="monitor-poll", exit_on_error=False)
    def _poll(self) -> None:
        worker = get_current_worker()
        model = RunModel(self.run_dir)
        tails = {source: LogTail(self.run_dir / source) for source in SOURCES}
        pending: dict[str, list[str]] = {source: [] for source in SOURCES}
        model.refresh_meta()
        model.peek_tail()  # where the run stands, before its history is read
        self._logs_taken.clear()
        self.post_message(self.LogLines({s: tail.read() for s, tail in tails.items()}))
        # Let the screen paint what it has (and then the sampled curves) before reading
        # the whole history takes the CPU and the GIL.
        if model.indexed:
            # The engine's index reads in well under a second, much of it outside the GIL:
            # read it while the first picture is painted.
            self.post_message(self.Updated(model.snapshot()))
        else:
            self._post_and_wait(model.snapshot())
        if model.load_preview():
            self._post_and_wait(model.snapshot())
        last_post = time.monotonic()

        def loading_progress() -> None:
            nonlocal last_post
            if time.monotonic() - last_post >= 0.25:
                self.post_message(self.Updated(model.snapshot()))
                last_post = time.monotonic()

        warning = model.load_history(cancelled=lambda: worker.is_cancelled,
                                     on_block=loading_progress)
        if warning:
            self.app.call_from_thread(self.notify, warning, severity="warning", timeout=10)
        self.post_message(self.Updated(model.snapshot()))
        last_meta = last_logs = time.monotonic()
        while not worker.is_cancelled:
            changed = model.poll()
            now = time.monotonic()
            if now - last_meta >= META_INTERVAL:
                changed = model.refresh_meta() or changed
                last_meta = now
            for source, tail in tails.items():
                lines = tail.read()
                if lines:
                    pending[source].extend(lines)
                    del pending[source][:-50_000]  # the view keeps no more anyway
            if (any(pending.values()) and self._logs_taken.is_set()
                    and now - last_logs >= LOG_INTERVAL):
                self._logs_taken.clear()
                self.post_message(self.LogLines(pending))
                pending = {source: [] for source in SOURCES}
                last_logs = now
            if changed:
                self.post_message(self.Updated(model.snapshot()))
            if model.more_to_read:
                continue  # more than a block arrived: read on at once
            if self._wake.wait(POLL_INTERVAL):
                self._wake.clear()

    def _post_and_wait(self, snapshot: RunSnapshot) -> None:
        painted = threading.Event()
        self.post_message(self.Updated(snapshot, painted))
        painted.wait(PAINT_WAIT)

    # -- updates -------------------------------------------------------------------------

    def on_monitor_screen_log_lines(self, message: LogLines) -> None:
        panel = self.query_one(LogPanel)
        for source, lines in message.lines.items():
            if lines:
                panel.append(source, lines)
        self._logs_taken.set()

    def on_monitor_screen_updated(self, message: Updated) -> None:
        if message.painted is not None:
            self.call_after_refresh(message.painted.set)
        old, snap = self.snapshot, message.snapshot
        self.snapshot = snap
        self._processes = [p for p in self._processes if p.poll() is None]  # reap
        self.query_one(RunHeader).update_snapshot(snap)
        if old is None or old.status != snap.status:
            self.refresh_bindings()
            if old is not None and old.status in ACTIVE and snap.status == "failed":
                # the home screen below notifies of a run started elsewhere; the banner
                # here shows its error
                report_run_failure(self.app, self.run_dir, notify=False)
        self._update_banner(snap)
        self._update_semi(snap)
        # While the history is read, the panels keep what peek_tail() found (the latest
        # values); the history read so far is older, so only the progress moves.
        if old is None or not snap.loading:
            if self._changed("eval", snap.eval_version):
                self.query_one(EvalTable).update_evals(snap.latest_eval)
                self._plots_dirty = True
            # (again when the run ends: one that recorded no sample has none to wait for)
            if self._changed("system", (snap.system_version, snap.status in ACTIVE)):
                self.query_one(SystemPanel).update_system(snap.latest_system, snap.system,
                                                          snap.status)
        if self._changed("train", snap.train_version):
            self._plots_dirty = True
        self._refresh_plots(force=old is not None and old.loading and not snap.loading)

    def _changed(self, part: str, version: object) -> bool:
        if self._shown.get(part) == version:
            return False
        self._shown[part] = version
        return True

    def _update_banner(self, snap: RunSnapshot) -> None:
        banner = self.query_one("#banner", Static)
        text = ""
        if snap.meta_error:
            text = f"run.json: {snap.meta_error}"
        elif snap.status == "failed":
            last = snap.errors[-1] if snap.errors else None
            why = (f"{last.get('error_type') or 'error'}: {last.get('message') or ''}"
                   if last else "the engine process is gone")
            text = f"failed (e: first error in the logs) · {why}"
        if snap.skipped:  # lines of events.jsonl no reader can use: say which
            text = "\n".join(filter(None, [text, skipped_summary(snap.skipped,
                                                                 list(snap.skipped_shown))]))
        if text != self._banner_text:  # a layout per snapshot would repaint everything
            self._banner_text = text
            # quotes run.json and error events: never markup; a message's lines stay lines
            banner.update(safe_text(text, newlines=True))
            banner.set_class(bool(text), "-shown")

    def _update_semi(self, snap: RunSnapshot) -> None:
        """The phase line and the semi pane of a semi-supervised or co-tuning run."""
        kind = run_kind(snap)
        if kind != self.run_kind and kind is not None:  # a run never stops being one
            self.run_kind = kind
            self.add_class("-semi")
            self.query_one("#pane-semi").border_title = f"5 {PANE_LABELS[kind]}"
            self._update_tabs()
            self.refresh_bindings()
        if self.run_kind is None:
            return
        text = strip_text(snap, self.run_kind)
        phase = self.query_one("#phase", Static)
        if getattr(phase, "_text", None) != text:  # a repaint per snapshot costs
            phase._text = text  # type: ignore[attr-defined]
            phase.update(safe_text(text), layout=False)  # stat names come from events
        if not snap.loading and self._changed("semi", snap.meta_version):
            self.query_one(SemiPanel).update_snapshot(snap)

    def _refresh_plots(self, force: bool = False) -> None:
        snap = self.snapshot
        if snap is None:
            return
        loss_plot = self.query_one("#loss-plot", CurvePlot)
        ap_plot = self.query_one("#ap-plot", CurvePlot)
        if snap.loading:
            self._show_loading(snap, loss_plot, force)
            return
        if not (self._plots_dirty or force):
            return
        cost = max(loss_plot.last_build_seconds, ap_plot.last_build_seconds)
        now = time.monotonic()
        if not force and now - self._last_plot < max(PLOT_INTERVAL, PLOT_COST_FACTOR * cost):
            return
        self._plots_dirty = False
        self._last_plot = now
        train = snap.train
        loss_plot.set_curves(self._loss_curves(train, snap.terms))
        loss_plot.empty_text = "no train event yet"
        set_subtitle(loss_plot, self._plot_subtitle(len(train["iter"])))
        models = [m for m in MODEL_ORDER if m in snap.ap] + sorted(
            m for m in snap.ap if m not in MODEL_ORDER)
        ap_plot.set_curves([
            Curve(f"{m} AP", snap.ap[m].times if self.x_time else snap.ap[m].iters,
                  snap.ap[m].ap) for m in models])
        if self.run_kind is not None:  # the pseudo-label trends: as often as the curves
            self.query_one(SemiPanel).update_snapshot(snap)

    def _loss_curves(self, train: dict[str, Any], terms: list[str]) -> list[Curve]:
        xs = train["t"] if self.x_time else train["iter"]
        if not len(xs):
            return []
        return [Curve("loss", xs, train["loss"]),
                *(Curve(term, xs, train["losses." + term]) for term in terms)]

    def _show_loading(self, snap: RunSnapshot, plot: CurvePlot, force: bool) -> None:
        """The first read of a long history: its sampled preview, if any (the header shows
        the progress). Partial histories are not drawn: each drawing would slow the
        reading down, and a changing subtitle would repaint the whole pane."""
        preview = snap.train_preview
        if preview is not None and (force or preview is not self._preview_drawn):
            self._preview_drawn = preview
            terms = [n[len(TERM_PREFIX):] for n in preview if n.startswith(TERM_PREFIX)]
            plot.set_curves(self._loss_curves(preview, terms))
        elif preview is None:
            if plot.curves:
                plot.set_curves([])
            plot.empty_text = "reading the history…"
        set_subtitle(plot, "sampled preview · reading the history" if preview is not None
                     else "reading the history")

    def _plot_subtitle(self, points: int) -> str:
        plot = self.query_one("#loss-plot", CurvePlot)
        flags = [f"{points:,} iters", "x: time" if self.x_time else "x: iter"]
        if plot.smooth:
            flags.append("smoothed")
        if plot.log_y:
            flags.append("log y")
        return " · ".join(flags)

    # -- actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if (action in ("toggle_smooth", "toggle_log_y", "toggle_x")
                and self.has_class("-narrow") and self.pane not in ("loss", "eval")):
            return False  # no plot in sight (and the footer needs the room)
        if action == "first_pane" or parameters == ("semi",):
            return self.run_kind is not None
        if action == "pane" and parameters == ("loss",):
            return self.run_kind is None  # else "first_pane" shows "1-5" in its place
        status = self.snapshot.status if self.snapshot else None
        if action == "stop":
            return status in ACTIVE
        if action == "resume":
            return status is not None and status not in ACTIVE
        if action in ("next_match", "previous_match"):
            return bool(self.query(LogPanel) and self.query_one(LogPanel).view.search)
        return True

    def action_first_pane(self) -> None:
        self.action_pane("loss")

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_pane(self, pane: str) -> None:
        self.pane = pane
        if self.maximized is not None:
            self.maximized = self._pane_widget(pane)
        widget = self._pane_widget(pane)
        focusable = [w for w in (widget, *widget.query("*")) if w.focusable
                     and w.display and not (isinstance(w, Widget) and w.id == "log-search")]
        self.set_focus(focusable[0] if focusable else None)

    def action_zoom(self) -> None:
        """Let the current pane fill the screen, or put it back."""
        if self.maximized is not None:
            self.minimize()
        else:
            self.maximized = self._pane_widget(self.pane)

    def _set_plots(self, attribute: str, value: bool) -> None:
        for plot in self.query(CurvePlot):
            setattr(plot, attribute, value)
        self._refresh_plots(force=True)

    def action_toggle_smooth(self) -> None:
        self._set_plots("smooth", not self.query_one("#loss-plot", CurvePlot).smooth)

    def action_toggle_log_y(self) -> None:
        self._set_plots("log_y", not self.query_one("#loss-plot", CurvePlot).log_y)

    def action_toggle_x(self) -> None:
        self.x_time = not self.x_time
        self._set_plots("x_time", self.x_time)

    def _show_logs(self) -> LogPanel:
        if self.has_class("-narrow"):
            self.pane = "logs"
        return self.query_one(LogPanel)

    def action_toggle_follow(self) -> None:
        self._show_logs().toggle_follow()

    def action_search(self) -> None:
        self._show_logs().open_search()

    def action_next_match(self) -> None:
        self._show_logs().next_match()

    def action_previous_match(self) -> None:
        self._show_logs().next_match(backwards=True)

    def action_switch_log(self) -> None:
        self._show_logs().switch_source()

    def action_previews(self) -> None:
        """The prediction previews of the run, as images (a screen of their own)."""
        from tui.screens.previews import PreviewScreen  # textual-image: see run_app

        self.app.push_screen(PreviewScreen(self.run_dir))

    def action_first_error(self) -> None:
        if not self._show_logs().jump_to_first_error():
            self.notify("No error or traceback in train.log or stderr.log.", timeout=3)

    def action_stop(self) -> None:
        """Ask first (as the runs table does): one stray key must not end a training."""
        def confirmed(yes: bool | None) -> None:
            if yes:
                self._stop_now()

        self.app.push_screen(ConfirmScreen(stop_question(self.run_dir.name), "Stop"),
                             confirmed)

    def _stop_now(self) -> None:
        run = RunDirectory(self.run_dir)
        try:
            stopped = launcher.stop(run)
        except UserError as exc:
            self._show_error(ErrorReport.from_exception(exc, f"Cannot stop {run.id}"))
            return
        if stopped:
            self.notify(printable(f"Stopping {run.id}: it saves a checkpoint, then exits."),
                        markup=False)
        else:
            self.notify(printable(f"{run.id}: its process is already gone."),
                        severity="warning", markup=False)
        self._wake.set()

    def action_resume(self, overrides: list[str] | None = None) -> None:
        run = RunDirectory(self.run_dir)
        snap = self.snapshot
        done = (nothing_left_to_train(snap.status, snap.meta)
                if snap is not None and overrides is None else None)
        if done is not None:  # resumed as it is, a finished run trains nothing: ask first

            def answered(epochs: int | None) -> None:
                if epochs is not None:
                    self.action_resume([f"epoch={epochs}"])

            self.app.push_screen(TrainLongerScreen(run.id, done), answered)
            return
        try:
            proc = (launcher.resume(run, overrides=overrides) if overrides
                    else launcher.resume(run))
        except UserError as exc:
            self._show_error(ErrorReport.from_exception(exc, f"Cannot resume {run.id}"))
            return
        self._processes.append(proc)
        note_started(self.app, run.path)
        self.notify(printable(f"Resuming {run.id} from its last checkpoint."), markup=False)

    def _show_error(self, report: ErrorReport) -> None:
        show = getattr(self.app, "show_error", None)
        if callable(show):
            show(report)
        else:
            self.app.push_screen(ErrorScreen(report))
