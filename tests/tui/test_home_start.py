"""Issue 19.12 and 19.13: where the home screen starts. An empty Configs tree says where
it looked and how to point dettui elsewhere; a fresh clone opens on the demo config, not
on a config whose data is absent (that one is marked ✗ and says why); the pane with the
focus shows it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import REPO, engine_env
from tests.tui.conftest import CONFIG_FILES, make_app, plain, run_pilot, wait_for

GOOD = textwrap.dedent(CONFIG_FILES["demo/good.yml"]).replace("../_base_", "../_base_")
MISSING_DATA = GOOD.replace(
    "TrainDataset: {dataset_dir: data/shapes, synthesize: {num_images: 8}}",
    "TrainDataset: {dataset_dir: /nonexistent/coco128, anno_path: train.json}")


def _configs(root: Path) -> Path:
    configs = root / "configs"
    (configs / "_base_").mkdir(parents=True)
    (configs / "_base_" / "runtime.yml").write_text(
        textwrap.dedent(CONFIG_FILES["_base_/runtime.yml"]), encoding="utf-8")
    for rel, text in (("coco128/fcos_r18_coco128.yml", MISSING_DATA),
                      ("demo/fcos_tiny_shapes.yml", GOOD)):
        (configs / rel).parent.mkdir(parents=True, exist_ok=True)
        (configs / rel).write_text(text, encoding="utf-8")
    return configs


def test_tree_opens_on_the_demo_config_and_marks_absent_data(tmp_path: Path,
                                                             runs_dir: Path) -> None:
    from tui.widgets.config_tree import ConfigTree
    from tui.widgets.yaml_view import YamlView

    configs = _configs(tmp_path)
    coco = configs / "coco128" / "fcos_r18_coco128.yml"
    app = make_app(runs_dir, configs)

    async def scenario(pilot: Any) -> None:
        tree = app.home.query_one(ConfigTree)
        await wait_for(pilot, lambda: tree.current_path is not None, what="the first config")
        assert tree.current_path == configs / "demo" / "fcos_tiny_shapes.yml"
        check = tree.checks[coco]
        assert check.error is not None and "/nonexistent/coco128" in check.error, check
        assert "✗" in str(tree._path_nodes[coco].label)
        assert tree.select_path(coco)
        view = app.home.query_one(YamlView)
        await wait_for(pilot, lambda: view.path == coco, what="the preview")
        assert "dataset folder not found" in plain(view.query_one("#yaml-banner").render())

    run_pilot(app, scenario)


def test_the_focused_pane_shows_it(tmp_path: Path, runs_dir: Path, make_runs: Any) -> None:
    from tui.widgets.config_tree import ConfigTree
    from tui.widgets.runs_table import RunsTable

    make_runs("20250101-100000-alpha")
    app = make_app(runs_dir, _configs(tmp_path))

    def edge(selector: str) -> str:
        return app.home.query_one(selector).styles.border_top[0]

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: len(app.home.rows) == 1, what="the scan")
        await pilot.pause(0.2)
        assert isinstance(app.focused, RunsTable)  # runs exist: the table has the focus
        assert (edge("#runs-panel"), edge("#configs")) == ("heavy", "round")
        app.home.query_one(ConfigTree).focus()
        await pilot.pause(0.2)
        assert (edge("#runs-panel"), edge("#configs")) == ("round", "heavy")

    run_pilot(app, scenario)


def test_an_empty_tree_says_where_it_looked_and_how_to_look_elsewhere(
        tmp_path: Path, runs_dir: Path) -> None:
    from tui.widgets.config_tree import ConfigTree
    from tui.widgets.yaml_view import YamlView

    nowhere = tmp_path / "elsewhere" / "configs"  # as `dettui` started outside the repo
    app = make_app(runs_dir, nowhere)

    async def scenario(pilot: Any) -> None:
        view = app.home.query_one(YamlView)
        body = lambda: plain(view.query_one("#yaml-body").render())  # noqa: E731
        await wait_for(pilot, lambda: "No configs found" in body(), what="the hint")
        text = body()
        assert f"Looked in {nowhere} (not there)" in text, text
        assert "dettui --configs DIR" in text and "dettui run CONFIG.yml" in text, text
        tree = app.home.query_one(ConfigTree)
        labels = [str(n.label) for n in tree.root.children[0].children]
        assert labels == ["no .yml configs here"], labels

    run_pilot(app, scenario)


def test_dettui_outside_the_repo_looks_in_configs_and_takes_configs_option(
        tmp_path: Path) -> None:
    env = engine_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    code = ("from pathlib import Path; from tui.cli.main import _configs_dirs; "
            "print(_configs_dirs([]), _configs_dirs([Path('x')]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[PosixPath('configs')] [PosixPath('x')]", out.stderr
    helped = subprocess.run([sys.executable, "-m", "tui.cli", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert "--configs" in helped.stdout, helped.stdout
