"""``dettui run CFG --tensorboard --wandb`` without --headless opens the launch form: the
run it launches keeps the trackers (issue 11, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tui.conftest import make_app, run_pilot, wait_for
from tests.tui.test_launch_form import _open_form, no_gpus  # noqa: F401 (autouse)
from tui.process.launcher import train_argv
from tui.process.spec import LaunchSpec

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
pytest.importorskip("wandb", reason="the wandb extra is not installed")


def test_launch_form_keeps_the_trackers(runs_dir: Path, configs_dir: Path) -> None:
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir,
                      tensorboard="", wandb=True)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        await wait_for(pilot, lambda: screen.build_spec() is not None, what="a spec")
        built = screen.build_spec()
        assert (built.tensorboard, built.wandb) == ("", True)
        argv = train_argv(runs_dir / "r", built)
        assert "--tensorboard" in argv and "--wandb" in argv

    run_pilot(app, scenario)
