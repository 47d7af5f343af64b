"""``r`` on a finished run: a question first, since resuming it as it is trains nothing.

A finished run has done its whole schedule: the engine would restore the last checkpoint,
train no step and count an attempt. So the key asks whether to train it longer, and to how
many epochs in all; the answer becomes ``-o epoch=N`` on the resume (what
``dettui resume RUN -o epoch=N`` does from the shell).
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui.runs.progress import RunProgress
from tui.safetext import safe_text

__all__ = ["TrainLongerScreen", "nothing_left_to_train"]


def nothing_left_to_train(status: str, meta: dict[str, Any]) -> RunProgress | None:
    """Where a run stands when resuming it as it is would train nothing (a finished run:
    its whole schedule is done); None when a resume has steps left."""
    if status != "finished":
        return None
    return RunProgress.from_meta(status, meta.get("progress"))


class TrainLongerScreen(ModalScreen["int | None"]):
    """Asks how many epochs in all a finished run should reach; dismisses with that number,
    or None (esc)."""

    DEFAULT_CSS = """
    TrainLongerScreen { align: center middle; }
    TrainLongerScreen > Vertical {
        width: 72; max-width: 95%; height: auto;
        border: thick $warning; background: $surface; padding: 1 2;
    }
    TrainLongerScreen Horizontal { height: auto; margin-top: 1; }
    TrainLongerScreen Label { padding: 0 1 0 0; }
    TrainLongerScreen #epochs { width: 10; }
    TrainLongerScreen #train-longer-error { color: $text-error; height: auto; }
    TrainLongerScreen #buttons { align-horizontal: right; }
    TrainLongerScreen Button { margin-left: 2; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, run_id: str, done: RunProgress) -> None:
        super().__init__()
        self.run_id = run_id
        self.done = done

    def compose(self) -> ComposeResult:
        epochs = self.done.epochs
        steps = f", {self.done.iter:,} steps" if self.done.iter is not None else ""
        did = (f"all {epochs} epoch{'' if epochs == 1 else 's'}{steps}" if epochs
               else "its whole schedule")
        with Vertical():
            yield Static(safe_text(f"{self.run_id} is finished: it trained {did}. Resumed as "
                                   "it is, it would train nothing.\n\nTrain it longer?",
                                   newlines=True))  # the run id: text; our breaks: breaks
            with Horizontal():
                yield Label("epochs in all")
                yield Input(str(2 * epochs) if epochs else "", id="epochs",
                            restrict=r"[0-9]*", max_length=6, compact=True)
            yield Static("", id="train-longer-error")
            with Horizontal(id="buttons"):
                yield Button("Train longer (enter)", variant="warning", id="yes", compact=True)
                yield Button("Cancel (esc)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#epochs", Input).focus()

    def on_input_submitted(self) -> None:
        self._confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self._confirm()
        else:
            self.dismiss(None)

    def _confirm(self) -> None:
        text = self.query_one("#epochs", Input).value.strip()
        least = (self.done.epochs or 0) + 1
        if not text.isdigit() or int(text) < least:
            self.query_one("#train-longer-error", Static).update(
                f"a whole number of epochs, at least {least}")
            return
        self.dismiss(int(text))

    def action_cancel(self) -> None:
        self.dismiss(None)
