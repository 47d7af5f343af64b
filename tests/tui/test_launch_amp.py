"""Issue 19.11: --amp without a CUDA device is said everywhere, in the same words: the
launch form's verdict warns before the run starts (the engine says it again in train.log
and the console: tests/cli/test_resume_finished.py runs one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.precision import amp_ignored, amp_ignored_before_start
from tests.tui.conftest import make_app, plain, run_pilot, wait_for
from tui.process.spec import LaunchSpec
from tui.screens import launch as launch_module
from tui.screens.launch import LaunchScreen


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch) -> None:
    monkeypatch.setattr(launch_module, "gpus", lambda: [])
    monkeypatch.setattr(launch_module, "nvml_status", lambda: "no NVIDIA GPU (test)")
    monkeypatch.setattr(launch_module, "cuda_device_count", lambda: 0)


def test_rule() -> None:
    assert amp_ignored_before_start(True, "cpu", None) == amp_ignored("cpu")
    assert amp_ignored_before_start(True, "auto", 0) == amp_ignored("cpu")
    assert amp_ignored_before_start(True, "auto", None) is None  # unknown: the engine says
    assert amp_ignored_before_start(True, "cuda", 1) is None
    assert amp_ignored_before_start(False, "cpu", 0) is None


@pytest.mark.parametrize("amp", [True, False])
def test_launch_form_warns_that_amp_is_ignored_on_a_cpu(runs_dir: Path, configs_dir: Path,
                                                        amp: bool) -> None:
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir,
                      device="cpu", amp=amp)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), what="the form")
        screen = app.screen

        def status() -> str:
            return plain(screen.query_one("#launch-status").content)

        await wait_for(pilot, lambda: "✓ FCOS" in status(), what="a verdict")
        assert ("⚠ amp (--amp) is ignored: mixed precision needs a CUDA device" in status()) \
            is amp, status()

    run_pilot(app, scenario)
