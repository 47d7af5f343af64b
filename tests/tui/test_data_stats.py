"""``D`` on home: the data check of the selected config, computed in a worker."""

from __future__ import annotations

import json
from pathlib import Path

from engine.data.voc import import_voc
from tests.dataset_files import make_voc, tiny_config
from tests.tui.conftest import make_app, plain, run_pilot, wait_for
from tui.screens.data_stats import DataStatsScreen
from tui.widgets.config_tree import ConfigTree


def _config(tmp_path: Path) -> tuple[Path, dict]:
    voc = make_voc(tmp_path / "voc", n=8)
    coco, _ = import_voc(voc, split="train")
    (tmp_path / "train.json").write_text(json.dumps(coco))
    configs = tmp_path / "configs"
    configs.mkdir()
    section = {"dataset_dir": str(tmp_path), "anno_path": "train.json"}
    return tiny_config(configs / "mine.yml", section, section), coco


def _open_data_screen(app, pilot, config: Path):
    async def go() -> DataStatsScreen:
        tree = app.screen.query_one(ConfigTree)
        await wait_for(pilot, lambda: config in tree.checks, what="config tree")
        tree.focus()
        tree.select_path(config)
        await wait_for(pilot, lambda: tree.current_path == config, what="config selected")
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(app.screen, DataStatsScreen),
                       what="data screen")
        return app.screen
    return go()


def test_data_key_shows_the_statistics_of_the_selected_config(tmp_path: Path) -> None:
    config, coco = _config(tmp_path)
    app = make_app(tmp_path / "runs", config.parent)

    async def scenario(pilot) -> None:
        screen = await _open_data_screen(app, pilot, config)
        await wait_for(pilot, lambda: screen.status.startswith("ok"), timeout=30,
                       what="the check to finish")
        body = plain(screen.query_one("#data-body").content)
        assert "TrainDataset (COCODataSet)" in body and "EvalDataset (COCODataSet)" in body
        assert f"images   {len(coco['images'])}" in body
        assert screen.status == "ok: 12 images checked"
        await pilot.press("escape")
        assert not isinstance(app.screen, DataStatsScreen)

    run_pilot(app, scenario)


def test_data_screen_names_the_first_broken_file(tmp_path: Path) -> None:
    config, coco = _config(tmp_path)
    broken = Path(coco["images"][3]["file_name"])
    broken.write_bytes(b"not an image")
    app = make_app(tmp_path / "runs", config.parent)

    async def scenario(pilot) -> None:
        screen = await _open_data_screen(app, pilot, config)
        await wait_for(pilot, lambda: screen.failed, timeout=30, what="the check to fail")
        status = plain(screen.query_one("#data-status").content)
        assert f"{broken}: cannot read the image" in status
        assert "TrainDataset" not in plain(screen.query_one("#data-body").content)

    run_pilot(app, scenario)
