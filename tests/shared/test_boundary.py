"""The hard boundary: the front-ends never import torch (DESIGN.md), and they reach into the
engine only through the run-folder protocol (``engine.protocol``) and a named list of
torch-free helpers."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import DEMO_CONFIG, REPO

PROTOCOL = "engine.protocol"
#: What ``tui/`` may import from ``engine`` besides :mod:`engine.protocol`, and why. A new
#: entry must be torch-free (checked below) and earn its place: most things the front-end
#: needs from a run belong to the protocol.
TUI_HELPERS = {
    "engine.config": "load and validate a config (the launch form, `dettui run`)",
    "engine.config.loader": "YAML loading, overrides and the config's key lines",
    "engine.config.schema": "the schema's sections and defaults (the config tree, help)",
    "engine.trainers.catalogue": "the torch-free trainer catalogue",
    "engine.weightsource": "weights sources (URL, torchvision:, hf:, run:) as text",
    "engine.weightcache": "the downloaded weights cache (`dettui weights`)",
    "engine.resumable": "whether resuming a run trains anything",
    "engine.precision": "the amp-without-CUDA warning, same words as the engine's",
    "engine.sysinfo": "CPU/GPU/memory figures for the system panel (psutil, nvidia-smi)",
    "engine.trackers": "`dettui export`: TensorBoard / W&B from a run's events",
    "engine.previews": "image previews of a dataset (Pillow)",
    "engine.data.check": "`dettui data check`, the data-stats screen",
    "engine.data.summary": "the dataset summary lines",
    "engine.data.sources": "which dataset files a config reads",
    "engine.data.split": "`dettui data split`",
    "engine.data.cocobuild": "`dettui data import` (VOC / YOLO / image folder to COCO)",
    "engine.data.voc": "VOC import",
    "engine.data.yolo": "YOLO import",
    "engine.data.imagefolder": "image-folder import",
    "engine.data.images": "image probing (Pillow)",
}


def _engine_imports_of_tui() -> dict[str, list[str]]:
    """Every ``engine`` module a file under ``tui/`` imports (at any depth), with where."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "tui").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = ([f"{node.module}.{alias.name}" for alias in node.names]
                         if node.module == "engine" else [node.module])
            else:
                continue
            for name in names:
                if name == "engine" or name.startswith("engine."):
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    found.setdefault(name, []).append(where)
    return found


def test_tui_imports_from_engine_only_the_protocol_and_named_helpers() -> None:
    imports = _engine_imports_of_tui()
    assert any(name.startswith(PROTOCOL + ".") for name in imports)  # the scan sees them
    outside = {name: where for name, where in imports.items()
               if name != PROTOCOL and not name.startswith(PROTOCOL + ".")
               and name not in TUI_HELPERS}
    assert outside == {}, ("tui/ imports engine modules outside engine.protocol and "
                           f"TUI_HELPERS: {outside}")


def test_the_protocol_and_the_named_helpers_do_not_import_torch() -> None:
    protocol = sorted(f"{PROTOCOL}.{p.stem}" for p in (REPO / "engine" / "protocol").glob("*.py")
                      if p.stem != "__init__")
    assert len(protocol) >= 8
    assert _heavy_modules([PROTOCOL, *protocol, *TUI_HELPERS]) == ""

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
    assert _heavy_modules(["tui.cli", "tui.process.launcher", "tui.cli.headless", "engine.config",
                           "engine.protocol.events", "engine.protocol.rundir", "engine.sysinfo",
                           "engine.protocol.errors", "engine.main", "engine.trainers.catalogue"]) == ""


def test_tui_app_does_not_import_torch() -> None:
    import importlib.util

    if importlib.util.find_spec("tui.app") is None:
        raise AssertionError("tui.app is missing")
    assert _heavy_modules(["tui.app", "tui.screens.monitor", "tui.screens.compare",
                           "tui.screens.launch", "tui.runs.runmodel", "tui.runs.eventscan",
                           "tui.runs.eventindex", "tui.screens.previews", "engine.previews",
                           "engine.protocol.eventindex",
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
