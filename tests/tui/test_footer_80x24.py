"""At 80x24 every screen's footer shows its essential keys, whole (nothing cut off)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tui.conftest import make_app, run_pilot, wait_for
from tests.tui.test_monitor import write_semi_run
from tui.screens.compare import CompareScreen
from tui.screens.data_stats import DataStatsScreen
from tui.screens.error import ErrorReport, ErrorScreen
from tui.screens.file_picker import FilePickerScreen
from tui.screens.help import HelpScreen
from tui.screens.monitor import MonitorScreen
from tui.screens.previews import PreviewScreen


def footer_line(screen: Any) -> str:
    """The bottom row of the screen as drawn."""
    strips = screen._compositor.render_strips()
    return "".join(seg.text for seg in strips[-1]) if strips else ""  # "": not laid out yet


def assert_shows(line: str, keys: list[str]) -> None:
    """Each ``"key Description"`` is on the footer line, whole, in order."""
    pos = 0
    for key in keys:
        found = line.find(key, pos)
        assert found >= 0, f"{key!r} not (whole) on the 80-column footer: {line!r}"
        pos = found + len(key)


async def settled_footer(pilot: Any) -> str:
    """The footer of the current screen once drawn and no longer changing."""
    lines = [""]

    def steady() -> bool:
        lines.append(footer_line(pilot.app.screen))
        return bool(lines[-1].strip()) and lines[-1] == lines[-2]

    await wait_for(pilot, steady, what="the footer")
    return lines[-1]


async def popped(pilot: Any) -> None:
    screen = pilot.app.screen
    pilot.app.pop_screen()
    await wait_for(pilot, lambda: pilot.app.screen is not screen, what="the screen closed")
    await pilot.pause(0.1)


async def shown(pilot: Any, screen: Any) -> str:
    pilot.app.push_screen(screen)
    await wait_for(pilot, lambda: pilot.app.screen is screen, what="the screen")
    return await settled_footer(pilot)


@pytest.fixture
def home_app(tmp_path: Path, configs_dir: Path, three_runs) -> Any:
    return make_app(tmp_path / "runs", configs_dir)


def test_home_footer(home_app: Any) -> None:
    async def scenario(pilot: Any) -> None:
        assert_shows(await settled_footer(pilot),
                     ["⏎ Open", "space Select", "c Compare", "n New run", "/ Filter",
                      "q Quit", "? Help"])

    run_pilot(home_app, scenario, size=(80, 24))


def test_launch_footer(home_app: Any) -> None:
    async def scenario(pilot: Any) -> None:
        from tui.widgets.config_tree import ConfigTree

        tree = pilot.app.home.query_one(ConfigTree)
        await wait_for(pilot, lambda: tree.current_path is not None, what="a config selected")
        await pilot.press("n")
        await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "LaunchScreen",
                       what="the launch form")
        assert_shows(await settled_footer(pilot), ["^s Launch", "esc Cancel"])

    run_pilot(home_app, scenario, size=(80, 24))


def test_monitor_compare_previews_and_dialog_footers(home_app: Any, tmp_path: Path,
                                                     three_runs) -> None:
    running = write_semi_run(tmp_path / "semi", status="running")
    first, second = three_runs[0].path, three_runs[1].path

    async def scenario(pilot: Any) -> None:
        await settled_footer(pilot)  # the home screen first
        monitor = ["q Back", "1-4 Pane", "p Previews", "/ Find", "e Error"]
        line = await shown(pilot, MonitorScreen(running.path))
        assert_shows(line, [*monitor, "s Stop", "? Help"])
        await popped(pilot)
        line = await shown(pilot, MonitorScreen(first))  # a finished run
        assert_shows(line, [*monitor, "r Resume", "? Help"])
        await popped(pilot)
        line = await shown(pilot, CompareScreen([first, second]))
        assert_shows(line, ["q Back", "t Loss term", "m Metric", "? Help"])
        await popped(pilot)
        line = await shown(pilot, PreviewScreen(first))
        assert_shows(line, ["q Back", "← → Image", "↑ ↓ Epoch", "? Help"])
        await popped(pilot)
        for screen, keys in [
                (HelpScreen(), ["esc Close"]),
                (ErrorScreen(ErrorReport.from_exception(ValueError("x"), "Failed")),
                 ["esc Close", "t Traceback"]),
                (DataStatsScreen(Path("nope.yml")), ["esc Close"]),
                (FilePickerScreen(tmp_path, (".yml",)), ["esc Cancel", "⌫ Parent folder"])]:
            assert_shows(await shown(pilot, screen), keys)
            await popped(pilot)

    run_pilot(home_app, scenario, size=(80, 24))
