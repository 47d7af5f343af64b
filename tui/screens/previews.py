"""The prediction previews of a run (``previews/``, written by the engine at each
evaluation: :mod:`engine.previews`), shown as images in the terminal.

``textual-image`` draws them: with terminal graphics where the terminal has them (Kitty's
graphics protocol, Sixel), else with coloured unicode half-blocks. It asks the terminal what
it supports when it is first imported, which only works before Textual owns the terminal:
:func:`tui.app.run_app` imports this module before the app starts.

Each file is read like any file of a run folder (only a regular file, at most
``MAX_FILE_BYTES``, at most ``MAX_PIXELS`` pixels): a planted FIFO, link to a device or
decompression bomb shows a message instead of an image.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import ClassVar

from PIL import Image as PILImage
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual_image.widget import Image as AutoImage

from engine.data.images import IMAGE_ERRORS
from engine.previews import preview_epochs
from engine.protocol.safefiles import read_regular
from tui.safetext import safe_text

__all__ = ["PreviewScreen", "load_preview"]

MAX_FILE_BYTES = 32 << 20
MAX_PIXELS = 4096 * 4096
RESCAN_SECONDS = 2.0
IMAGE_GROUP = Binding.Group("Image")
EPOCH_GROUP = Binding.Group("Epoch")


def load_preview(path: Path) -> PILImage.Image:
    """A preview file as a decoded RGB image; ``OSError``/``ValueError`` saying why not
    (whatever Pillow raises on a hostile file, a decompression bomb included)."""
    data = read_regular(path, MAX_FILE_BYTES)
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{image.width}x{image.height} pixels, more than a preview "
                                 "has")
            return image.convert("RGB")
    except (OSError, ValueError):
        raise
    except IMAGE_ERRORS as exc:
        raise ValueError(f"not a readable image: {exc}") from None


class PreviewScreen(Screen[None]):
    """The latest previews of a run: ←/→ step through the images of an epoch, ↑/↓ through
    the epochs kept. It follows new evaluations while the latest epoch is shown."""

    DEFAULT_CSS = """
    PreviewScreen #preview-title {
        height: auto;
        padding: 0 1;
        background: $panel;
    }
    PreviewScreen #preview-image {
        width: auto;
        height: 1fr;
    }
    PreviewScreen #preview-message {
        height: 1fr;
        padding: 1 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,p", "app.pop_screen", "Back", key_display="q"),
        Binding("left", "step_image(-1)", "Image", group=IMAGE_GROUP),
        Binding("right", "step_image(1)", "Image", group=IMAGE_GROUP),
        Binding("up", "step_epoch(1)", "Epoch", group=EPOCH_GROUP),
        Binding("down", "step_epoch(-1)", "Epoch", group=EPOCH_GROUP),
    ]

    def __init__(self, run_dir: Path, renderer: type[Widget] = AutoImage) -> None:
        super().__init__()
        self.folder = Path(run_dir) / "previews"
        self.renderer = renderer
        self.epochs: dict[int, list[Path]] = {}
        self.epoch: int | None = None
        """The epoch shown (1-based, as in the file names); None: nothing to show yet."""
        self.index = 0
        self.shown: Path | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="preview-title")
        yield self.renderer(id="preview-image")
        yield Static(id="preview-message")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.rescan(first=True)
        self.set_interval(RESCAN_SECONDS, self.rescan)

    def rescan(self, first: bool = False) -> None:
        """Look for new (or pruned) previews; follow the latest epoch if it was shown."""
        epochs = preview_epochs(self.folder)
        if epochs == self.epochs and not first:
            return
        latest_shown = self.epoch is None or self.epoch == max(self.epochs, default=None)
        self.epochs = epochs
        if epochs and (latest_shown or self.epoch not in epochs):
            self.epoch = max(epochs)
        elif not epochs:
            self.epoch = None
        self.show()

    def action_step_image(self, step: int) -> None:
        if self.epoch is not None:
            self.index = (self.index + step) % len(self.epochs[self.epoch])
            self.show()

    def action_step_epoch(self, step: int) -> None:
        if self.epoch is None:
            return
        order = list(self.epochs)
        self.epoch = order[max(0, min(len(order) - 1, order.index(self.epoch) + step))]
        self.show()

    def show(self) -> None:
        title = self.query_one("#preview-title", Static)
        image = self.query_one("#preview-image")  # a textual-image widget: has ``image``
        message = self.query_one("#preview-message", Static)
        if self.epoch is None:
            self.shown, image.image = None, None  # type: ignore[attr-defined]
            image.display, message.display = False, True
            title.update(Text("Prediction previews", style="bold"))
            message.update(safe_text(f"No previews yet in {self.folder}: the engine writes "
                                     "them at each evaluation (preview_images in the "
                                     "config; 0 turns them off)."))
            return
        files = self.epochs[self.epoch]
        self.index = min(self.index, len(files) - 1)
        path = files[self.index]
        epochs = list(self.epochs)
        title.update(Text.assemble(
            ("Previews ", "bold"), f"epoch {self.epoch} ({epochs.index(self.epoch) + 1}/"
            f"{len(epochs)} kept) · image {self.index + 1}/{len(files)} · ",
            safe_text(path.name, "cyan"),
            "\nwhite: ground truth · coloured: predictions (class colour, score)"))
        try:
            picture = load_preview(path)
        except (OSError, ValueError) as exc:  # a pruned, half-copied or planted file
            self.shown, image.image = None, None  # type: ignore[attr-defined]
            image.display, message.display = False, True
            message.update(safe_text(f"cannot show {path}: {exc}"))
            return
        self.shown = path
        image.display, message.display = True, False
        image.image = picture  # type: ignore[attr-defined]
