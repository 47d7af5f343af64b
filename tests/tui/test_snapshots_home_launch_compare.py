"""Snapshots of the home, launch and compare screens (pytest-textual-snapshot).

Content is deterministic: fixed run times in a fixed timezone, relative paths (the test
runs in its tmp folder), no GPUs, and the engine command shown as ``python -m engine``.
Update after an intended change with ``pytest --snapshot-update tests/tui/test_snapshots_*``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import make_app, tables_settled, wait_for
from tui.process.spec import LaunchSpec
from tui.screens import launch as launch_module
from tui.screens.compare import CompareScreen
from tui.screens.launch import LaunchScreen
from tui.widgets.config_tree import ConfigTree
from tui.widgets.runs_table import RunsTable
from tui.widgets.yaml_view import YamlView


@pytest.fixture
def in_tmp(tmp_path: Path, configs_dir: Path, three_runs, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(launch_module, "gpus", lambda: [])
    monkeypatch.setattr(launch_module, "nvml_status", lambda: "no NVIDIA GPU (test)")
    real_argv = launch_module.engine_argv
    monkeypatch.setattr(launch_module, "engine_argv",
                        lambda *a, **k: ["python", *real_argv(*a, **k)[1:]])
    return tmp_path


def _home_app():
    return make_app(Path("runs"), Path("configs"))


async def _home_ready(pilot) -> None:
    home = pilot.app.home
    tree = home.query_one(ConfigTree)
    view = home.query_one(YamlView)
    table = home.query_one(RunsTable)
    await wait_for(pilot, lambda: len(tree.checks) == 4 and table.row_count == 3
                   and view.path is not None and view.path.name == "good.yml")
    await pilot.pause(0.3)  # the preview's worker renders the file
    await wait_for(pilot, lambda: tables_settled(pilot.app.screen), what="the runs table")


def test_home(in_tmp: Path, snap_compare) -> None:
    assert snap_compare(_home_app(), terminal_size=(120, 36), run_before=_home_ready)


def test_home_80x24_resolved(in_tmp: Path, snap_compare) -> None:
    async def resolved(pilot) -> None:
        await _home_ready(pilot)
        await pilot.press("v")
        await pilot.pause(0.3)
        await wait_for(pilot, lambda: tables_settled(pilot.app.screen), what="the tables")

    assert snap_compare(_home_app(), terminal_size=(80, 24), run_before=resolved)


def test_launch(in_tmp: Path, snap_compare) -> None:
    spec = LaunchSpec(config=Path("configs/demo/good.yml"), runs_dir=Path("runs"),
                      overrides=["epoch=2"], name="lr sweep")
    app = make_app(Path("runs"), Path("configs"), launch=spec)

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen))
        screen = pilot.app.screen
        await wait_for(pilot, lambda: "✓" in str(screen.query_one("#launch-status").content))
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)


def test_launch_form_looks_the_same_whenever_it_is_captured(in_tmp: Path) -> None:
    """What made ``test_launch`` flaky: the focused field's text cursor blinked, so two
    captures half a second apart differed. A snapshot must not depend on its timing."""
    import asyncio

    spec = LaunchSpec(config=Path("configs/demo/good.yml"), runs_dir=Path("runs"),
                      overrides=["epoch=2"], name="lr sweep")
    app = make_app(Path("runs"), Path("configs"), launch=spec)

    async def main() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen))
            status = pilot.app.screen.query_one("#launch-status")
            await wait_for(pilot, lambda: "✓" in str(status.content))
            await pilot.pause(0.2)
            captures = []
            for _ in range(3):  # across more than one blink period (0.5 s)
                captures.append(pilot.app.export_screenshot())
                await pilot.pause(0.35)
            assert captures[0] == captures[1] == captures[2]

    asyncio.run(main())


def test_compare(in_tmp: Path, snap_compare) -> None:
    async def ready(pilot) -> None:
        await _home_ready(pilot)
        await pilot.press("space", "space", "c")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen)
                       and len(pilot.app.screen.runs) == 2)
        await pilot.pause(0.3)
        await wait_for(pilot, lambda: tables_settled(pilot.app.screen), what="the tables")

    assert snap_compare(_home_app(), terminal_size=(120, 36), run_before=ready)
