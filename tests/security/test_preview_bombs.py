"""Issue 21 point 5: previews never crash the TUI. A 140-byte PNG declaring 100000 x 100000
pixels in ``previews/`` raised Pillow's ``DecompressionBombError`` (neither ``OSError`` nor
``ValueError``) and the TUI exited with a traceback; any image error is now "cannot show
..." in the pane."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from textual_image.widget import HalfcellImage

from engine.data.images import probe_image
from engine.protocol.errors import DataError
from tests.tui.conftest import run_pilot, wait_for
from tests.tui.test_previews_screen import Host, text, write_epoch
from tui.screens.previews import load_preview


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bomb(path: Path, side: int = 100_000) -> Path:
    """A PNG of ~140 bytes whose header declares ``side`` x ``side`` RGB pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    data = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))
    path.write_bytes(data)
    assert len(data) < 160
    return path


def test_load_preview_turns_a_decompression_bomb_into_a_value_error(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "epoch001_img0.png")
    with pytest.raises(ValueError, match="decompression bomb"):
        load_preview(bomb)
    with pytest.raises(DataError, match="too large to decode safely"):
        probe_image(bomb)  # the dataset side names it too


def test_a_decompression_bomb_in_previews_is_cannot_show(tmp_path: Path) -> None:
    write_epoch(tmp_path, 1)  # epoch001_img0.png and epoch001_img1.png, good ones
    png_bomb(tmp_path / "previews" / "epoch002_img0.png")
    (tmp_path / "previews" / "epoch002_img1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)

    async def scenario(pilot: Any) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.epoch == 2 and "cannot show" in text(screen))
        assert "epoch002_img0.png" in text(screen) and screen.shown is None
        await pilot.press("right")  # a truncated PNG: also a message, not a crash
        await wait_for(pilot, lambda: "cannot show" in text(screen)
                       and "epoch002_img1.png" in text(screen))
        await pilot.press("down")  # the good epoch still shows
        await wait_for(pilot, lambda: screen.shown is not None
                       and screen.shown.name.startswith("epoch001"))

    run_pilot(Host(tmp_path, HalfcellImage), scenario, size=(100, 30))
