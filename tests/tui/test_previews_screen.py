"""The previews screen: real preview files (written by the engine's own writer), shown with
both renderers of textual-image (terminal graphics and unicode half-blocks), stepped through
with keys, following new evaluations, and refusing files it must not read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from textual.app import App
from textual_image.widget import HalfcellImage, TGPImage

from engine.previews import PreviewCollector, write_previews
from tests.tui.conftest import run_pilot, wait_for
from tests.tui.test_monitor import MonitorHost, write_semi_run
from tui.screens.previews import PreviewScreen

TGP_PLACEHOLDER = "\U0010eeee"


def colour(epoch: int, image: int) -> tuple[int, int, int]:
    return (200, 30 * epoch, 10) if image == 0 else (10, 200, 30 * epoch)


def write_epoch(run: Path, epoch: int, keep: int = 3) -> None:
    """Two previews of ``epoch``, each a flat colour that says which one it is."""
    images = [(Image.new("RGB", (64, 48), colour(epoch, k)), np.zeros((0, 4))) for k in (0, 1)]
    write_previews(run / "previews", epoch, PreviewCollector([1, 2]), images, ["a"], 0.5,
                   keep_epochs=keep)


class Host(App[None]):
    def __init__(self, run: Path, renderer: Any) -> None:
        super().__init__()
        self.run, self.renderer = run, renderer

    def on_mount(self) -> None:
        self.push_screen(PreviewScreen(self.run, self.renderer))


def rows(screen: Any) -> list[list[Any]]:
    return [list(strip) for strip in screen._compositor.render_strips()]


def text(screen: Any) -> str:
    return "\n".join("".join(seg.text for seg in row) for row in rows(screen))


def halfcell_colours(screen: Any) -> set[tuple[int, int, int]]:
    """The colours of the half-block cells on screen."""
    found = set()
    for row in rows(screen):
        for seg in row:
            if "▀" in seg.text and seg.style and seg.style.color:
                found.add(seg.style.color.get_truecolor())
    return {tuple(c) for c in found}


def test_halfcell_previews_step_through_images_and_epochs(tmp_path: Path) -> None:
    for epoch in (1, 2, 3):
        write_epoch(tmp_path, epoch)

    async def scenario(pilot: Any) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.shown is not None, what="the first preview")
        await wait_for(pilot, lambda: screen.shown.name == "epoch003_img0.png")
        assert "epoch 3 (3/3 kept) · image 1/2" in text(screen)
        assert halfcell_colours(screen) == {colour(3, 0)}
        await pilot.press("right")
        assert screen.shown.name == "epoch003_img1.png"
        await wait_for(pilot, lambda: halfcell_colours(screen) == {colour(3, 1)})
        await pilot.press("down", "left")
        assert screen.shown.name == "epoch002_img0.png"
        await wait_for(pilot, lambda: halfcell_colours(screen) == {colour(2, 0)})
        assert "epoch 2 (2/3 kept) · image 1/2" in text(screen)
        await pilot.press("down", "down")  # stops at the oldest kept
        assert screen.epoch == 1
        # a new evaluation while an old epoch is shown: stay; once on the latest: follow
        write_epoch(tmp_path, 4)  # prunes epoch 1, the one shown: go to the latest
        screen.rescan()
        assert screen.shown.name == "epoch004_img0.png"
        write_epoch(tmp_path, 5)
        screen.rescan()
        assert screen.epoch == 5

    run_pilot(Host(tmp_path, HalfcellImage), scenario, size=(80, 24))


def test_terminal_graphics_previews_place_the_image(tmp_path: Path) -> None:
    write_epoch(tmp_path, 1)

    async def scenario(pilot: Any) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.shown is not None, what="the first preview")
        await pilot.pause(0.1)
        cells = [row for row in rows(screen) if any(TGP_PLACEHOLDER in s.text for s in row)]
        assert len(cells) > 5  # Kitty's unicode placeholders, one row per image row
        ids = {seg.style.color.get_truecolor() for row in cells for seg in row
               if TGP_PLACEHOLDER in seg.text}
        assert len(ids) == 1  # every cell of the one image carries its id (as a colour)
        await pilot.press("right")
        assert screen.shown.name == "epoch001_img1.png"

    run_pilot(Host(tmp_path, TGPImage), scenario, size=(80, 24))


def test_no_previews_yet_and_files_that_must_not_be_read(tmp_path: Path) -> None:
    async def scenario(pilot: Any) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.epoch is None and "No previews yet" in text(screen))
        folder = tmp_path / "previews"
        folder.mkdir()
        os.mkfifo(folder / "epoch001_img0.png")  # would block a reader for ever
        (folder / "epoch001_img1.png").write_bytes(b"not a png")
        screen.rescan()
        await wait_for(
            pilot, lambda: screen.shown is None and "not a regular file" in text(screen))
        await pilot.press("right")
        await wait_for(pilot, lambda: screen.shown is None and "cannot show" in text(screen))

    run_pilot(Host(tmp_path, HalfcellImage), scenario, size=(80, 24))


def test_the_monitor_opens_the_previews_with_p(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs")
    write_epoch(run.path, 1)

    async def scenario(pilot: Any) -> None:
        await pilot.pause(0.2)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, PreviewScreen),
                       what="the previews screen")
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.shown is not None, what="a preview")
        assert screen.shown.name == "epoch001_img0.png"
        await pilot.press("q")
        assert not isinstance(pilot.app.screen, PreviewScreen)

    run_pilot(MonitorHost(run.path), scenario, size=(80, 24))
