"""A yes/no question as a modal: deleting a run, stopping a training."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.safetext import safe_text

__all__ = ["ConfirmScreen", "stop_question"]


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; ``y`` confirms, ``n``/escape cancels."""

    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
    }
    ConfirmScreen > Vertical {
        width: auto;
        min-width: 40;
        max-width: 90%;
        height: auto;
        border: thick $warning;
        background: $surface;
        padding: 1 2;
    }
    ConfirmScreen Horizontal {
        height: auto;
        margin-top: 1;
        align-horizontal: right;
    }
    ConfirmScreen Button {
        margin-left: 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, confirm_label: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical():
            # The question may quote run ids and paths: text, never markup.
            yield Static(safe_text(self.question, newlines=True), id="confirm-question")
            with Horizontal():
                yield Button("Cancel (n)", id="confirm-no")
                yield Button(f"{self.confirm_label} (y)", variant="error", id="confirm-yes")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def stop_question(run_id: str) -> str:
    return (f"Stop run {run_id}?\n\nIt finishes the current step, saves a checkpoint and "
            f"exits (interrupted); `r` resumes it later.")
