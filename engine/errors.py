"""Typed errors shared by the engine and the front-ends (stdlib only).

A ``UserError`` is a problem with what the user gave us (a config, a path, a weights
file): the CLI prints its message and exits with code 2, the engine writes an ``error``
event and exits with code 2. Everything else is a bug or an environment failure and keeps
its traceback (in the run's ``stderr.log``).
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input: one clear message that names the file, key or line and what is allowed."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, key: str | None = None, hint: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.hint = hint
        super().__init__(self.render())

    def location(self) -> str:
        """``file:line:col`` (as much of it as is known), or an empty string."""
        if not self.file:
            return ""
        loc = str(self.file)
        if self.line is not None:
            loc += f":{self.line}"
            if self.column is not None:
                loc += f":{self.column}"
        return loc

    def render(self) -> str:
        parts = []
        loc = self.location()
        if loc:
            parts.append(f"{loc}: ")
        if self.key:
            parts.append(f"key '{self.key}': ")
        parts.append(self.message)
        text = "".join(parts)
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "message": self.render(), "file": self.file,
                "line": self.line, "key": self.key}


class ConfigError(UserError):
    """A config file or override is missing, malformed, or does not fit the schema."""


class DataError(UserError):
    """A dataset folder, image or annotation file is missing or malformed."""


class WeightsError(UserError):
    """A weights or checkpoint file is missing, corrupt, unsafe or does not fit the model."""


class RunError(UserError):
    """A run id or run directory that does not exist or cannot be used that way."""


class NonFiniteLoss(RuntimeError):
    """A loss went NaN/Inf; the step was not applied and the last checkpoint is untouched."""

    def __init__(self, iteration: int, losses: dict[str, float]):
        self.iteration = iteration
        self.losses = losses
        terms = ", ".join(f"{k}={v}" for k, v in losses.items())
        super().__init__(f"non-finite loss at iteration {iteration}: {terms}")


class StopTraining(Exception):
    """Raised inside the training loop to leave it cleanly after a checkpoint (a graceful
    stop requested by SIGINT/SIGTERM). Not an error: the run ends ``interrupted``."""
