"""The dettui Textual app: home screen, launch form, run monitor, compare, help, errors.

``run_app`` is what the CLI calls for ``dettui`` (no command) and for ``dettui run CONFIG``
without ``--headless`` (then the launch form opens prefilled). The app never imports torch:
training runs in its own detached process and reaches us only through the run directory,
so quitting (``q``) leaves every training running.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import Worker, WorkerState

from engine.protocol.errors import UserError
from engine.protocol.rundir import resolve_run
from tui.process.spec import LaunchSpec
from tui.screens.error import ErrorReport, show_error
from tui.screens.help import HelpScreen
from tui.screens.home import HomeScreen


class DettuiApp(App[int]):
    """The control room. ``launch`` opens the launch form, ``open_run`` a run's monitor."""

    CSS_PATH = "app.tcss"
    TITLE = "dettui"
    # Screens get "-short" below 36 rows (an 80x24 terminal) and "-tall" above.
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (36, "-tall")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, runs_dir: Path, configs_dirs: list[Path],
                 launch: LaunchSpec | None = None, open_run: str | None = None) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.configs_dirs = [Path(d) for d in configs_dirs]
        self.launch_spec = launch
        self.open_run_ref = open_run
        self.home = HomeScreen(self.runs_dir, self.configs_dirs)
        self.exit_message: Text | None = None
        """What the terminal is told on quitting (runs that keep training)."""
        self.started_runs: set[Path] = set()
        """Run folders (resolved) this TUI launched or resumed: their failure opens the
        error modal; a run started elsewhere only notifies (tui.screens.error)."""

    def on_mount(self) -> None:
        self.push_screen(self.home)
        if self.launch_spec is not None:
            self.home.open_launch(self.launch_spec)
        elif self.open_run_ref is not None:
            try:
                run = resolve_run(self.runs_dir, self.open_run_ref)
            except UserError as exc:
                self.show_error(ErrorReport.from_exception(exc, "Cannot open run"))
            else:
                self.home.open_run(run.path)

    def show_error(self, report: ErrorReport) -> None:
        """The error funnel: every error the user must see ends up in this modal."""
        show_error(self, report)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Workers run with exit_on_error=False; a worker that raises lands here instead of
        # killing the app (and the user's view of their runs).
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            title = f"Background task {event.worker.name or event.worker.group!r} failed"
            self.show_error(ErrorReport.from_exception(event.worker.error, title))

    def action_quit(self) -> None:  # type: ignore[override]
        """Quit; runs still training keep training, and the terminal says so."""
        self.exit_message = keep_running_message([r.id for r in self.home.rows if r.active],
                                                 self.runs_dir)
        self.exit(message=self.exit_message)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def keep_running_message(active: list[str], runs_dir: Path = Path("runs")) -> Text | None:
    """What the terminal shows after quitting while runs train (None when none does)."""
    if not active:
        return None
    where = "" if runs_dir == Path("runs") else f" --runs-dir {runs_dir}"
    shown = ", ".join(active[:3]) + (f" and {len(active) - 3} more" if len(active) > 3 else "")
    runs = "run keeps" if len(active) == 1 else "runs keep"
    return Text(f"{len(active)} {runs} training in the background: {shown}\n"
                f"follow with `dettui attach {active[0]}{where}`, or open `dettui{where}` again",
                style="yellow")


def run_app(runs_dir: Path, configs_dirs: list[Path], launch: LaunchSpec | None = None,
            open_run: str | None = None) -> int:
    """Run the TUI until the user quits; the exit code for the CLI (0)."""
    # textual-image asks the terminal which graphics it supports as it is imported, which
    # it cannot do once Textual reads the terminal: import the previews screen first.
    import tui.screens.previews  # noqa: F401

    app = DettuiApp(runs_dir, configs_dirs, launch=launch, open_run=open_run)
    app.run()
    return app.return_code or 0
