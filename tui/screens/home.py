"""The home screen: config browser + preview on top, the live runs table below.

The screen owns the state: the runs index (polled every second in a thread worker), the
engine processes this TUI started (reaped so they don't linger as zombies; they are in
their own session and keep running when the TUI quits), and what each key does to a run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from engine.protocol.errors import UserError
from engine.protocol.rundir import RunDirectory
from tui.process import launcher
from tui.process.spec import LaunchSpec
from tui.runs.index import UNREADABLE, RunRow, RunsIndex, ScanResult
from tui.safetext import printable, safe_text
from tui.screens.confirm import ConfirmScreen, stop_question
from tui.screens.error import ErrorReport, note_started, report_run_failure, show_error
from tui.screens.launch import LaunchScreen
from tui.screens.train_longer import TrainLongerScreen, nothing_left_to_train
from tui.widgets.config_tree import ConfigTree, no_configs_text
from tui.widgets.runs_table import RunsTable
from tui.widgets.yaml_view import YamlView

POLL_SECONDS = 1.0


class HomeScreen(Screen[None]):
    """Configs, preview and runs; every run action starts here."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_run", "New run"),
        # the config view's own title names this key (the footer has no room at 80 columns)
        Binding("v", "toggle_resolved", "Resolved", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("D", "data_stats", "Data check of the config", show=False),
        Binding("tab", "app.focus_next", "Focus", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class RunsScanned(Message):
        """Posted by the polling worker."""

        def __init__(self, result: ScanResult) -> None:
            super().__init__()
            self.result = result

    def __init__(self, runs_dir: Path, configs_dirs: list[Path]) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.configs_dirs = [Path(d) for d in configs_dirs]
        self.index = RunsIndex(self.runs_dir)
        """Read by the polling worker thread only; the UI uses ``rows``."""
        self.rows: list[RunRow] = []
        """The runs of the last scan, newest first."""
        self.processes: list[subprocess.Popen] = []
        self._scanning = False
        self._scans = 0
        self._cursor_to: str | None = None
        """A run (folder name) to put the cursor on once a scan has found it."""
        self._config_to: Path | None = None
        """A config for the tree to select once it is built."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="title-bar"):
            yield Static(id="title-text")
            yield Static(Text.assemble(("?", "bold"), " keys  ", ("q", "bold"), " quit"),
                         id="title-keys")
        with Horizontal(id="top"):
            tree = ConfigTree(self.configs_dirs, id="configs")
            tree.border_title = "Configs"
            yield tree
            yield YamlView(self.configs_dirs, id="preview")
        with Vertical(id="runs-panel"):
            yield RunsTable(id="runs")
            yield Static(id="runs-empty")
            yield Input(placeholder="filter runs: words in id, name, status, trainer, config",
                        id="runs-filter")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        if self._config_to is not None:
            self.query_one(ConfigTree).select_path(self._config_to)
        self._update_titles()
        self.poll_runs()
        self.set_interval(POLL_SECONDS, self.poll_runs)
        self.query_one(RunsTable).focus()

    # ----------------------------------------------------------------- runs polling

    def poll_runs(self) -> None:
        """Rescan the runs folder (skipped while the previous scan still runs)."""
        self.processes = [p for p in self.processes if p.poll() is None]  # reap
        if not self._scanning:
            self._scanning = True
            self._scan_worker()

    @work(thread=True, group="runs-scan", exit_on_error=False)
    def _scan_worker(self) -> None:
        try:
            result = self.index.scan()
        finally:
            self._scanning = False
        self.post_message(self.RunsScanned(result))

    def on_home_screen_runs_scanned(self, message: RunsScanned) -> None:
        table = self.query_one(RunsTable)
        self.rows = message.result.rows
        table.set_rows(self.rows)
        self._update_titles()
        self._scans += 1
        if self._scans == 1 and not message.result.rows and self.focused is table:
            self.query_one(ConfigTree).focus()  # nothing to look at yet: start with configs
        if self._cursor_to is not None and table.move_to(self._cursor_to):
            self._cursor_to = None
        for row in message.result.newly_failed:
            report_run_failure(self.app, row.path)

    def _update_titles(self) -> None:
        table = self.query_one(RunsTable)
        rows = self.rows
        active = sum(r.active for r in rows)
        # "dettui · 3 runs in runs/ · ● 1 running" (the folder is named once, as a folder)
        folder = str(self.runs_dir).rstrip("/") + "/"
        bar = Text.assemble(("dettui", "bold"), " · ",
                            f"{len(rows)} run{'' if len(rows) == 1 else 's'} in ",
                            safe_text(folder, "bold"))
        if active:
            bar.append(" · ")
            bar.append(f"● {active} running", style="bold green")
        self.query_one("#title-text", Static).update(bar)
        shown = f"{len(table.view)}/{len(rows)}" if table.filter_text else str(len(rows))
        title = f"Runs ({shown})"
        title += f" · sort {table.sort_label}"
        if table.filter_text:
            title += f" · filter “{table.filter_text}”"
        if table.selected:
            title += f" · {len(table.selected)} selected"
        panel = self.query_one("#runs-panel")
        panel.border_title = safe_text(title)  # the filter is typed text, not markup
        hidden = table.hidden_columns
        panel.border_subtitle = (f"{', '.join(hidden)}: wider terminal" if hidden else "")
        empty = self.query_one("#runs-empty", Static)
        if not rows:
            empty.update(Text.assemble(
                "No runs in ", safe_text(self.runs_dir, "bold"),
                " yet. Pick a config above and press ", ("n", "bold"), " to start one."))
        elif not table.view:
            empty.update(Text("No run matches the filter (esc clears it).", style="dim"))
        empty.display = not table.view
        panel.set_class(not table.view, "-empty")

    def on_runs_table_view_changed(self) -> None:
        self._update_titles()

    # ----------------------------------------------------------------- configs + preview

    def on_config_tree_config_highlighted(self, message: ConfigTree.ConfigHighlighted) -> None:
        check = message.check
        self.query_one(YamlView).show(message.path, check.error if check else None,
                                      check.summary if check else "")

    def on_config_tree_no_configs(self) -> None:
        self.query_one(YamlView).show_hint(no_configs_text(self.configs_dirs))

    def on_config_tree_launch_requested(self, message: ConfigTree.LaunchRequested) -> None:
        self.open_launch(LaunchSpec(config=message.path, runs_dir=self.runs_dir))

    def action_toggle_resolved(self) -> None:
        view = self.query_one(YamlView)
        view.resolved = not view.resolved

    def action_new_run(self) -> None:
        path = self.query_one(ConfigTree).current_path
        if path is None:
            row = self.query_one(RunsTable).current_row
            if isinstance(self.focused, RunsTable) and row is not None and row.config:
                path = Path(row.config)
        if path is None:
            self.notify("Move the cursor to a config file in the tree first.",
                        severity="warning")
            return
        self.open_launch(LaunchSpec(config=path, runs_dir=self.runs_dir))

    def action_data_stats(self) -> None:
        """Open the data check of the config under the cursor (``dettui data check``)."""
        path = self.query_one(ConfigTree).current_path
        if path is None:
            self.notify("Move the cursor to a config file in the tree first.",
                        severity="warning")
            return
        from tui.screens.data_stats import DataStatsScreen  # on use: the check pulls in PIL

        self.app.push_screen(DataStatsScreen(path))

    # ----------------------------------------------------------------- filter

    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if not box.display:
            return
        box.value = ""
        box.display = False
        self.query_one(RunsTable).focus()

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(RunsTable).filter_text = event.value

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.display = False
        self.query_one(RunsTable).focus()

    # ----------------------------------------------------------------- launch + open

    def open_launch(self, spec: LaunchSpec) -> None:
        """Show the launch form for ``spec``; a successful launch opens the monitor. The
        tree selects the same config, so `n` later starts from it again."""
        self._select_config(Path(spec.config))
        self.app.push_screen(LaunchScreen(spec), self._launched)

    def _select_config(self, path: Path) -> None:
        try:
            tree = self.query_one(ConfigTree)
        except NoMatches:  # a launch form opened at start-up: the tree is not built yet
            self._config_to = path
            return
        tree.select_path(path)

    def _launched(self, result: tuple[RunDirectory, subprocess.Popen] | None) -> None:
        if result is None:
            return
        run, proc = result
        self.processes.append(proc)
        note_started(self.app, run.path)
        self._cursor_to = run.path.name
        self.poll_runs()
        self.open_run(run.path)

    def open_run(self, path: Path) -> None:
        # Imported on use: the monitor pulls in plotext, and the home screen must open fast.
        from tui.screens.monitor import MonitorScreen

        self.app.push_screen(MonitorScreen(path))

    # ----------------------------------------------------------------- run actions

    def on_runs_table_run_action(self, message: RunsTable.RunAction) -> None:
        row = message.row
        if message.action == "open":
            self.open_run(row.path)
        elif message.action == "resume":
            self._resume(row)
        elif message.action == "stop":
            self._stop(row)
        elif message.action == "delete":
            self._delete(row)
        elif message.action == "error":
            self._show_error(row)

    def on_runs_table_compare_requested(self, message: RunsTable.CompareRequested) -> None:
        if len(message.rows) < 2:
            self.notify("Select two or more runs with space, then press c.",
                        severity="warning")
            return
        from tui.screens.compare import CompareScreen  # on use: pulls in plotext

        self.app.push_screen(CompareScreen([r.path for r in message.rows]))

    def _notify(self, message: str, **kwargs: object) -> None:
        """A notification quoting run ids, statuses or paths (from files): never markup."""
        self.notify(printable(message), markup=False, **kwargs)  # type: ignore[arg-type]

    def _resume(self, row: RunRow, overrides: list[str] | None = None) -> None:
        done = nothing_left_to_train(row.status, row.meta) if overrides is None else None
        if done is not None:  # resumed as it is, a finished run trains nothing: ask first

            def answered(epochs: int | None) -> None:
                if epochs is not None:
                    self._resume(row, [f"epoch={epochs}"])

            self.app.push_screen(TrainLongerScreen(row.id, done), answered)
            return
        try:
            run = RunDirectory(row.path)
            proc = (launcher.resume(run, overrides=overrides) if overrides
                    else launcher.resume(run))
        except UserError as exc:
            show_error(self.app, ErrorReport.from_exception(exc, f"Cannot resume {row.id}"))
            return
        self.processes.append(proc)
        note_started(self.app, row.path)
        self._notify(f"Resuming {row.id} from its last checkpoint.")
        self.poll_runs()
        self.open_run(row.path)

    def _stop(self, row: RunRow) -> None:
        if not row.active:
            self._notify(f"{row.id} is not running ({row.status}).", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            try:
                stopped = launcher.stop(RunDirectory(row.path))
            except UserError as exc:  # run.json names no process provably this run's engine
                show_error(self.app, ErrorReport.from_exception(exc, f"Cannot stop {row.id}"))
                return
            if stopped:
                self._notify(f"Stopping {row.id}: it saves a checkpoint, then exits.")
            else:
                self._notify(f"{row.id}: its process is already gone.", severity="warning")
            self.poll_runs()

        # One stray key over a laggy link must not interrupt a long training.
        self.app.push_screen(ConfirmScreen(stop_question(row.id), "Stop"), confirmed)

    def _delete(self, row: RunRow) -> None:
        if row.active:
            self._notify(f"Refusing to delete {row.id}: it is {row.status}. Stop it first (s).",
                         severity="error", title="Delete")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._delete_worker(row)

        if row.path.is_symlink():  # only the link goes: what it points at may be anyone's
            question = (f"Delete run {row.id}?\n\nIt is a link to {row.path.resolve()}; the "
                        f"link is removed, that folder is left alone:\n{row.path}")
        else:
            question = (f"Delete run {row.id}?\n\nIts folder, checkpoints and logs are "
                        f"removed for good:\n{row.path}")
        self.app.push_screen(ConfirmScreen(question, "Delete"), confirmed)

    @work(thread=True, group="run-delete", exit_on_error=False)
    def _delete_worker(self, row: RunRow) -> None:
        try:
            removed = RunDirectory(row.path).delete()
        except OSError as exc:  # say so: a delete that silently does nothing misleads
            self.app.call_from_thread(self._notify, f"Cannot delete {row.id}: {exc}",
                                      severity="error", title="Delete")
        else:
            self.app.call_from_thread(
                self._notify, f"Deleted the link {row.path} (its target is kept)."
                if removed == "link" else f"Deleted {row.id}.")
        self.app.call_from_thread(self.poll_runs)

    def _show_error(self, row: RunRow) -> None:
        if row.status == UNREADABLE:
            show_error(self.app, ErrorReport(f"Run {row.id} is unreadable",
                                             str(row.meta.get("error") or "")))
            return
        if row.status != "failed":
            self._notify(f"{row.id} has not failed ({row.status}).", severity="information")
            return
        show_error(self.app, ErrorReport.from_run(row.path))
