"""The launch form: prefill, inline validation errors, weights modes, device list, picker,
and a launch that starts a detached process and opens its monitor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Input, Select

from engine.protocol.rundir import RunDirectory
from engine.sysinfo import GpuStats
from tests.tui.conftest import make_app, plain, run_pilot, type_text, wait_for
from tui.process.spec import LaunchSpec
from tui.screens import launch as launch_module
from tui.screens.file_picker import FilePickerScreen
from tui.screens.home import HomeScreen
from tui.screens.launch import LaunchScreen


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch) -> None:
    monkeypatch.setattr(launch_module, "gpus", lambda: [])
    monkeypatch.setattr(launch_module, "nvml_status", lambda: "no NVIDIA GPU (test)")


def _status(screen: LaunchScreen) -> str:
    return plain(screen.query_one("#launch-status").content)


async def _open_form(pilot, app) -> LaunchScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), what="launch form")
    screen = app.screen
    await wait_for(pilot, lambda: "checking" not in _status(screen), what="first validation")
    return screen


async def _type_into(pilot, screen: LaunchScreen, field: str, text: str) -> None:
    box = screen.query_one(f"#{field}", Input)
    box.focus()
    box.value = ""
    await type_text(pilot, text)
    assert box.value == text


def test_form_is_prefilled_from_the_launch_spec(runs_dir: Path, configs_dir: Path) -> None:
    good = configs_dir / "demo" / "good.yml"
    spec = LaunchSpec(config=good, runs_dir=runs_dir, overrides=["epoch=5", "seed=3"],
                      name="first try", eval=False, device="cpu", trainer="Trainer", amp=True,
                      nproc=2)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        assert screen.query_one("#config", Input).value == str(good)
        assert screen.query_one("#name", Input).value == "first try"
        assert screen.query_one("#overrides", Input).value == "epoch=5 seed=3"
        assert screen.query_one("#nproc", Input).value == "2"
        assert screen.query_one("#trainer", Select).value == "Trainer"
        await wait_for(pilot, lambda: screen.query_one("#device", Select).value == "cpu")
        built = screen.build_spec()
        assert (built.eval, built.amp, built.device, built.nproc) == (False, True, "cpu", 2)
        assert built.overrides == ["epoch=5", "seed=3"]
        assert "✓ FCOS" in _status(screen) and "5 epochs" in _status(screen)
        assert "no NVIDIA GPU (test)" in plain(screen.query_one("#gpu-note").content)

    run_pilot(app, scenario)


def test_bad_override_is_shown_inline_and_blocks_the_launch(runs_dir: Path,
                                                            configs_dir: Path) -> None:
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        await _type_into(pilot, screen, "overrides", "epochs=2")
        await wait_for(pilot, lambda: "did you mean 'epoch'" in _status(screen),
                       what="inline error")
        assert screen.query_one("#launch-status").has_class("-error")
        assert "-o epochs=2" in _status(screen)  # where the bad key came from
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert app.screen is screen  # not launched
        assert list(runs_dir.iterdir()) == []
        await _type_into(pilot, screen, "overrides", "epoch=2")
        await wait_for(pilot, lambda: "✓" in _status(screen), what="error cleared")

    run_pilot(app, scenario)


def test_weights_modes_show_their_fields_and_check_paths(runs_dir: Path, configs_dir: Path,
                                                         tmp_path: Path) -> None:
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)

        def shown(mode: str) -> bool:
            return all(row.display for row in screen.query(f".mode-{mode}"))

        assert not shown("pretrained") and not shown("resume") and not shown("teacher_student")
        screen.query_one("#weights-mode", Select).value = "pretrained"
        await pilot.pause()
        assert shown("pretrained") and not shown("resume")
        await _type_into(pilot, screen, "weights", str(tmp_path / "missing.pt"))
        await wait_for(pilot, lambda: "weights file not found" in _status(screen))
        weights = tmp_path / "w.pt"
        weights.write_bytes(b"PK\x03\x04 a torch.save zip, cut short")
        await _type_into(pilot, screen, "weights", str(weights))
        await wait_for(pilot, lambda: "pretrained weights" in _status(screen))
        assert screen.build_spec().weights == str(weights)
        screen.query_one("#weights-mode", Select).value = "teacher_student"
        await pilot.pause()
        assert shown("teacher_student") and not shown("pretrained")
        assert screen.build_spec().weights is None  # hidden fields do not leak into the spec

    run_pilot(app, scenario)


def test_device_list_shows_gpus_with_free_memory(runs_dir: Path, configs_dir: Path,
                                                 monkeypatch) -> None:
    monkeypatch.setattr(launch_module, "gpus", lambda: [
        GpuStats(0, "NVIDIA H100", 10.0, 2048.0, 81920.0, 40.0, 100.0),
        GpuStats(1, "NVIDIA H100", 90.0, 71680.0, 81920.0, 70.0, 600.0)])
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        select = screen.query_one("#device", Select)
        await wait_for(pilot, lambda: len(select._options) > 4, what="GPU options")
        labels = [plain(label).strip() for label, _ in select._options]
        assert "cuda:0  NVIDIA H100  78.0 GiB free" in labels
        assert "cuda:1  NVIDIA H100  10.0 GiB free" in labels
        assert "2 NVIDIA GPUs" in plain(screen.query_one("#gpu-note").content)
        select.value = "cuda:1"
        assert screen.build_spec().device == "cuda:1"

    run_pilot(app, scenario)


def test_file_picker_fills_the_weights_path(runs_dir: Path, configs_dir: Path,
                                            tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"x")
    (folder / "notes.txt").write_text("not a weights file", encoding="utf-8")
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir,
                      weights=str(folder / "nothing-yet.pt"))
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        screen.query_one("#weights", Input).value = str(folder)
        screen.query_one("#weights", Input).focus()
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, FilePickerScreen))
        picker = app.screen
        tree = picker.query_one("#picker-tree")
        await wait_for(pilot, lambda: len(tree.root.children) > 0, what="folder listed")
        assert [c.data.path.name for c in tree.root.children] == ["model.pt"]
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: app.screen is screen, what="picker closed")
        assert screen.query_one("#weights", Input).value == str(folder / "model.pt")

    run_pilot(app, scenario)


def test_launch_starts_the_run_and_opens_its_monitor(runs_dir: Path, configs_dir: Path,
                                                     monkeypatch) -> None:
    launched: list[LaunchSpec] = []

    def fake_launch(spec: LaunchSpec) -> tuple[RunDirectory, subprocess.Popen]:
        launched.append(spec)
        run = RunDirectory.create(spec.runs_dir, spec.name)
        run.write_meta({"id": run.id, "status": "starting", "created": "2025-01-01T10:00"})
        return run, subprocess.Popen([sys.executable, "-c", "pass"])

    monkeypatch.setattr(launch_module, "launch", fake_launch)
    opened: list[Path] = []
    monkeypatch.setattr(HomeScreen, "open_run", lambda self, path: opened.append(path))
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        await _type_into(pilot, screen, "name", "my run")
        await _type_into(pilot, screen, "overrides", "epoch=1 'LearningRate.base_lr=0.1'")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HomeScreen), what="form closed")
        assert launched[0].name == "my run"
        assert launched[0].overrides == ["epoch=1", "LearningRate.base_lr=0.1"]
        assert [p.name for p in opened] == [p.name for p in runs_dir.iterdir()]
        assert len(app.home.processes) <= 1  # tracked (and reaped once it exits)
        from tui.widgets.runs_table import RunsTable

        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.current_row is not None
                       and table.current_row.path == opened[0], what="cursor on the new run")

    run_pilot(app, scenario)


def test_escape_cancels(runs_dir: Path, configs_dir: Path) -> None:
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        await _open_form(pilot, app)
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)
        assert list(runs_dir.iterdir()) == []

    run_pilot(app, scenario)


def test_n_opens_the_form_for_the_highlighted_config(runs_dir: Path, configs_dir: Path) -> None:
    app = make_app(runs_dir, configs_dir)

    async def scenario(pilot) -> None:
        from tui.widgets.config_tree import ConfigTree

        tree = app.home.query_one(ConfigTree)
        await wait_for(pilot, lambda: tree.current_path is not None, what="a config selected")
        await pilot.press("n")
        screen = await _open_form(pilot, app)
        assert screen.query_one("#config", Input).value == str(configs_dir / "demo" / "good.yml")

    run_pilot(app, scenario)
