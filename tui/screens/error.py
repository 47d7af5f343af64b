"""The one error funnel of the TUI: a modal with the message and, on a key, the traceback.

Everything that goes wrong ends here: a launch that fails for a reason other than bad
input (bad input is shown inline in the form), a run that crashes while we watch, a worker
that raises, an action on a run that the engine refuses. ``ErrorReport`` gathers the text
(from an exception, or from a run's last ``error`` event and ``stderr.log``) without any UI.
"""

from __future__ import annotations

import os
import traceback as tb_module
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.syntax import Syntax
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from engine.protocol.errors import UserError
from engine.protocol.events import decode
from engine.protocol.rundir import EVENTS, STDERR_LOG, RunDirectory
from engine.protocol.safefiles import open_regular
from tui.safetext import printable, safe_text

# An error event is the last thing a dying engine writes; 256 KiB of tail is plenty.
_EVENTS_TAIL_BYTES = 262_144
_STDERR_TAIL_BYTES = 65_536


def _tail(path: Path, nbytes: int) -> str:
    try:
        with open_regular(path) as f:  # a planted FIFO must not freeze the UI
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - nbytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def last_error_event(run_dir: Path) -> dict | None:
    """The last ``error`` event of a run, or None."""
    for line in reversed(_tail(run_dir / EVENTS, _EVENTS_TAIL_BYTES).splitlines()):
        event = decode(line)
        if event is not None and event.get("type") == "error":
            return event
    return None


def stderr_traceback(run_dir: Path) -> str:
    """The last Python traceback in a run's ``stderr.log`` (or its last lines)."""
    text = _tail(run_dir / STDERR_LOG, _STDERR_TAIL_BYTES)
    start = text.rfind("Traceback (most recent call last)")
    if start >= 0:
        return text[start:].rstrip()
    return "\n".join(text.rstrip().splitlines()[-60:])


@dataclass
class ErrorReport:
    """What the error modal shows."""

    title: str
    message: str
    traceback: str | None = None
    """The full traceback, shown on a key (None when there is none, e.g. bad input)."""
    origin: str = ""
    """Where the traceback comes from (``stderr.log of run X``)."""

    @classmethod
    def from_exception(cls, exc: BaseException, title: str = "Error") -> ErrorReport:
        if isinstance(exc, UserError):
            return cls(title, exc.render())
        text = "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))
        return cls(title, f"{type(exc).__name__}: {exc}", text.rstrip(), "this TUI process")

    @classmethod
    def from_run(cls, run_dir: Path) -> ErrorReport:
        """Why a run failed: run.json's ``error``, its last ``error`` event, else
        ``stderr.log``."""
        run = RunDirectory(run_dir)
        try:
            meta = run.read_meta()
        except UserError:
            meta = {}
        title = f"Run {run.id} failed"
        event = last_error_event(run_dir)
        stderr_tb = stderr_traceback(run_dir)
        origin = f"{STDERR_LOG} of run {run.id}"
        # run.json's error is the current attempt's, written even when events.jsonl was
        # the file that filled the disk (then the last error event is an older one).
        error = meta.get("error")
        if (isinstance(error, dict) and isinstance(error.get("message"), str)
                and (event is None or event.get("message") != error["message"])):
            return cls(title, error["message"], stderr_tb or None, origin)
        if event is not None:
            message = str(event.get("message") or "no message")
            if not event.get("user_error") and event.get("error_type"):
                message = f"{event['error_type']}: {message}"
            traceback = event.get("traceback") or stderr_tb or None
            origin = "the run's error event" if event.get("traceback") else origin
            return cls(title, message, traceback, origin)
        code = meta.get("exit_code")
        status = meta.get("status", "?")
        if status in ("starting", "running"):
            message = ("the engine process is gone without reporting an error "
                       "(killed, out of memory, or the machine restarted)")
        else:
            message = f"the engine ended with status {status!r}"
            if code is not None:
                message += f" and exit code {code}"
        return cls(title, message, stderr_tb or None, origin)


class ErrorScreen(ModalScreen[None]):
    """A modal with an error message; ``t`` shows the traceback when there is one."""

    DEFAULT_CSS = """
    ErrorScreen {
        align: center middle;
    }
    ErrorScreen > #error-box {
        width: 90%;
        max-width: 120;
        height: auto;
        max-height: 90%;
        border: thick $error;
        border-title-color: $text-error;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    ErrorScreen #error-message {
        height: auto;
        max-height: 12;
        margin: 1 0;
    }
    ErrorScreen #error-traceback {
        height: auto;
        max-height: 30;
        display: none;
        border: round $panel-lighten-2;
    }
    ErrorScreen.-traceback #error-traceback {
        display: block;
    }
    ErrorScreen #error-hint {
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_error", "Close"),
        Binding("enter", "dismiss_error", "Close", show=False),
        Binding("q", "dismiss_error", "Close", show=False),  # q goes back, never quits here
        Binding("t", "toggle_traceback", "Traceback"),
    ]

    def __init__(self, report: ErrorReport) -> None:
        super().__init__()
        self.report = report

    def compose(self) -> ComposeResult:
        # Titles, messages and tracebacks quote run ids, events and files: text only, never
        # markup, control characters made visible.
        with Vertical(id="error-box") as box:
            box.border_title = safe_text(self.report.title)
            yield Static(safe_text(self.report.message, newlines=True), id="error-message")
            if self.report.traceback:
                with VerticalScroll(id="error-traceback") as scroll:
                    scroll.border_title = safe_text(f"traceback · {self.report.origin}")
                    yield Static(Syntax(printable(self.report.traceback, newlines=True),
                                        "pytb", theme="ansi_dark",
                                        background_color="default", word_wrap=True))
                hint = "t: traceback   esc: close"
            else:
                hint = "esc: close"
            yield Static(hint, id="error-hint")
        yield Footer(compact=True, show_command_palette=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_traceback":
            return bool(self.report.traceback)
        return True

    def action_toggle_traceback(self) -> None:
        self.toggle_class("-traceback")
        if self.has_class("-traceback"):
            self.query_one("#error-traceback").focus()

    def action_dismiss_error(self) -> None:
        self.dismiss(None)


def show_error(app: App, report: ErrorReport) -> None:
    """The funnel's one entry: open the error modal, unless this very error is already open
    (the home screen and the monitor may both see the same run crash)."""
    for screen in app.screen_stack:
        if isinstance(screen, ErrorScreen) and (screen.report.title, screen.report.message) \
                == (report.title, report.message):
            return
    app.push_screen(ErrorScreen(report))


def started_runs(app: App) -> set[Path] | None:
    """The run folders (resolved) this TUI launched or resumed (``DettuiApp.started_runs``);
    None in a host app that keeps no such record."""
    return getattr(app, "started_runs", None)


def note_started(app: App, run_dir: Path) -> None:
    """Record that this TUI launched or resumed the run in ``run_dir``."""
    started = started_runs(app)
    if started is not None:
        started.add(Path(run_dir).resolve())


def report_run_failure(app: App, run_dir: Path, *, notify: bool = True) -> None:
    """A run seen failing. One this TUI launched or resumed gets the error modal; one
    started from another shell (or another TUI) only a notification, with ``notify``: every
    open TUI sees it fail, and a modal in each would be one too many (its row's ``e`` and
    its monitor show the error)."""
    if Path(run_dir).resolve() in (started_runs(app) or ()):
        show_error(app, ErrorReport.from_run(run_dir))
    elif notify:
        report = ErrorReport.from_run(run_dir)
        first = (report.message.strip().splitlines() or ["no message"])[0]
        first = first if len(first) <= 200 else first[:199] + "…"
        app.notify(printable(f"{first}\nStarted elsewhere: e on its row shows the error."),
                   title=printable(report.title), severity="error", markup=False, timeout=10)
