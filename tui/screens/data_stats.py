"""The data screen (``D`` on home): ``dettui data check`` for the selected config.

What each dataset of the config holds (images, boxes per class, difficult/crowd boxes,
boxes clipped or dropped and why, images without boxes) and the first broken file, if
any. Every image file is opened, which takes a while on a large set: the check runs in a
thread worker that posts each section as it is done and stops when the screen closes.
The statistics code is torch-free (``engine.data.check``); text from the dataset's files
arrives with its control characters escaped and is shown as plain text, never markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from engine.data.summary import printable
from engine.protocol.errors import UserError

PROGRESS_STEP = 200
"""Post a progress message every this many images (the check reports every 50)."""


class _Cancelled(Exception):
    """Raised from the progress callback to leave the check when the screen is closed."""


class DataStatsScreen(ModalScreen[None]):
    """The statistics of one config's datasets, computed in a worker."""

    DEFAULT_CSS = """
    DataStatsScreen {
        align: center middle;
    }
    DataStatsScreen > #data-box {
        width: 90%;
        max-width: 120;
        height: 90%;
        border: thick $primary;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    DataStatsScreen #data-status {
        color: $text-muted;
    }
    DataStatsScreen #data-status.-error {
        color: $error;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
    ]

    class SectionChecked(Message):
        """One dataset section is done."""

        def __init__(self, lines: list[str]) -> None:
            super().__init__()
            self.lines = lines

    class Progress(Message):
        """Images of ``section`` opened so far."""

        def __init__(self, section: str, done: int, total: int) -> None:
            super().__init__()
            self.section, self.done, self.total = section, done, total

    class Finished(Message):
        """The check ended: ``error`` is the first broken file's message, or None."""

        def __init__(self, images: int, error: str | None) -> None:
            super().__init__()
            self.images = images
            self.error = error

    def __init__(self, config: Path) -> None:
        super().__init__()
        self.config = Path(config)
        self.lines: list[str] = []
        """The summary lines received so far."""
        self.status = "checking…"
        self.failed = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="data-box") as box:
            box.border_title = f"Data · {self.config.name}"
            yield Static(Text(self.status), id="data-status")
            yield Static(id="data-body")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self._check_worker()

    @work(thread=True, exclusive=True, group="data-check", exit_on_error=False)
    def _check_worker(self) -> None:
        # Imported here: config loading is light, but the check pulls in numpy and PIL.
        from engine.config import load_and_validate
        from engine.data.check import iter_check_config

        worker = get_current_worker()

        def progress(section: str, done: int, total: int) -> None:
            if worker.is_cancelled:
                raise _Cancelled
            if done % PROGRESS_STEP == 0 or done == total:
                self.post_message(self.Progress(section, done, total))

        images = 0
        try:
            _, cfg = load_and_validate(self.config, [])
            for summary in iter_check_config(cfg, progress=progress):
                images += summary.images
                self.post_message(self.SectionChecked(summary.lines()))
        except _Cancelled:
            return
        except UserError as exc:
            self.post_message(self.Finished(images, exc.render()))
            return
        self.post_message(self.Finished(images, None))

    def on_data_stats_screen_section_checked(self, message: SectionChecked) -> None:
        self.lines += message.lines
        self.query_one("#data-body", Static).update(Text("\n".join(self.lines)))

    def on_data_stats_screen_progress(self, message: Progress) -> None:
        self._set_status(f"checking {message.section}: {message.done}/{message.total} "
                         "images opened…")

    def on_data_stats_screen_finished(self, message: Finished) -> None:
        if message.error is None:
            self._set_status(f"ok: {message.images} images checked")
        else:
            self.failed = True
            shown = "\n".join(printable(line) for line in message.error.splitlines())
            self._set_status(f"error: {shown}")

    def _set_status(self, text: str) -> None:
        self.status = text
        status = self.query_one("#data-status", Static)
        status.update(Text(text))
        status.set_class(self.failed, "-error")

    def action_close(self) -> None:
        self.workers.cancel_group(self, "data-check")
        self.dismiss(None)
