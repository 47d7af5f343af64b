"""Issue 19.3: a newline in one of our messages stays a line break (the console's summary
and log blocks, the monitor's failure banner), and a newline inside a value shown on one
line becomes a visible mark: never the four characters ``\\x0a`` in the middle of a text."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from engine.protocol.events import encode, make_event
from engine.protocol.termtext import printable
from tests.tui.conftest import make_app, make_run, plain, run_pilot, wait_for

MESSAGE = ("README.md: not a plain weights file; nothing in it was executed\n"
           "  hint: re-save the weights with torch.save(model.state_dict(), ...)")
RELATIONSHIP = "co-tuning relationship (target: top source classes):\n  circle: disc 0.91"


def test_printable_keeps_lines_or_marks_them() -> None:
    assert printable("a\n  hint: b", newlines=True) == "a\n  hint: b"
    assert printable("a\r\nb", newlines=True) == "a\nb"
    one_line = printable("a\n  hint: b\x1b]0;x\x07")
    assert one_line == "a ⏎ hint: b\\x1b]0;x\\x07"  # the other controls stay escaped
    assert "\\x0a" not in one_line and "\n" not in one_line


def _failed_run(runs: Path):
    run = make_run(runs, "r-failed", status="failed", best=None,
                   error={"error_type": "WeightsError", "message": MESSAGE, "user_error": True})
    meta = run.read_meta()
    meta["error"] = {"type": "WeightsError", "message": MESSAGE}
    run.write_meta(meta)
    with open(run.events, "a", encoding="utf-8") as f:
        f.write(encode(make_event("log", level="info", message=RELATIONSHIP)) + "\n")
    return run


def test_console_summary_and_log_block_keep_their_lines(tmp_path: Path) -> None:
    from tui.cli.headless import HeadlessWatcher

    run = _failed_run(tmp_path / "runs")
    buffer = io.StringIO()
    console = Console(file=buffer, width=250, color_system=None, force_terminal=False)
    assert HeadlessWatcher(run, None, console=console, stop_on_ctrl_c=False).watch() == 1
    text = buffer.getvalue()
    assert "\\x0a" not in text, text
    lines = text.splitlines()
    # the summary's error: its hint on a line of its own, under the value column
    error_at = next(i for i, line in enumerate(lines) if line.startswith("error:"))
    assert lines[error_at].endswith("nothing in it was executed"), text
    assert lines[error_at + 1] == " " * 17 + "  hint: re-save the weights with " \
                                             "torch.save(model.state_dict(), ...)", text
    # the co-tuning relationship block: one class a line
    assert "co-tuning relationship (target: top source classes):\n  circle: disc 0.91" in text


def test_monitor_banner_of_a_failed_run_keeps_the_hint_on_its_own_line(tmp_path: Path) -> None:
    from textual.widgets import Static

    from tui.screens.monitor import MonitorScreen

    run = _failed_run(tmp_path / "runs")
    app = make_app(tmp_path / "runs")

    async def scenario(pilot) -> None:
        app.push_screen(MonitorScreen(run.path))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen)
                       and app.screen.snapshot is not None
                       and not app.screen.snapshot.loading, what="the monitor")
        await pilot.pause(0.3)
        banner = plain(app.screen.query_one("#banner", Static).render(), width=200)
        assert "\\x0a" not in banner, banner
        assert "nothing in it was executed\n  hint: re-save the weights" in banner, banner

    run_pilot(app, scenario, size=(200, 40))
