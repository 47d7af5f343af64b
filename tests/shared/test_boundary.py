"""The hard boundary: the front-ends never import torch (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import DEMO_CONFIG, REPO

PROBE = """
import sys, importlib
for mod in {mods!r}:
    importlib.import_module(mod)
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))
print(','.join(heavy))
"""


def _heavy_modules(mods: list[str]) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE.format(mods=mods)], cwd=REPO,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_cli_and_shared_modules_do_not_import_torch() -> None:
    assert _heavy_modules(["tui.cli", "tui.launcher", "tui.headless", "engine.config",
                           "engine.events", "engine.rundir", "engine.sysinfo",
                           "engine.errors", "engine.main", "engine.trainers.catalogue"]) == ""


def test_tui_app_does_not_import_torch() -> None:
    import importlib.util

    if importlib.util.find_spec("tui.app") is None:
        raise AssertionError("tui.app is missing")
    assert _heavy_modules(["tui.app", "tui.screens.monitor", "tui.screens.compare",
                           "tui.screens.launch", "tui.runmodel", "tui.eventscan",
                           "tui.eventindex", "tui.screens.previews", "engine.previews",
                           "engine.eventindex",
                           "tui.screens.data_stats", "engine.data.check", "engine.data.voc",
                           "engine.data.yolo"]) == ""


def test_dettui_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom tui.cli import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "print(any(m.startswith('torch') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_a_semi_rtdetr_run_imports_its_trainer() -> None:
    """The catalogue imports a trainer's module when a run uses it: an FCOS run's engine
    builds its trainer class without Semi-RT-DETR's module and transformers (seconds)."""
    code = ("import sys\nimport engine.main, engine.run\n"
            "from engine.config import load_and_validate\n"
            "from engine.trainers.catalogue import trainer_of\n"
            f"_, cfg = load_and_validate({str(DEMO_CONFIG)!r})\n"
            "print(trainer_of(cfg).load().__name__)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'transformers'"
            " or m == 'engine.trainers.semi_rtdetr')[:3])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["Trainer", "[]"], out.stdout
