"""Typed errors shared by the engine and the front-ends (stdlib only).

A ``UserError`` is a problem with what the user gave us (a config, a path, a weights
file): the CLI prints its message and exits with code 2, the engine writes an ``error``
event and exits with code 2. Everything else is a bug or an environment failure and keeps
its traceback (in the run's ``stderr.log``).
"""

from __future__ import annotations

import errno

EXIT_USER_ERROR = 2

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
"""What a write fails with when there is no room: a full disk (ENOSPC), a quota (EDQUOT),
or the largest file the process may write (EFBIG, ``ulimit -f``)."""


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


class ConfigErrors(ConfigError):
    """Every error found in one config, in file order: a file with three mistakes is
    fixed in one go. Its ``file``/``line``/``key`` are the first error's."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line,
                         column=first.column, key=first.key, hint=first.hint)

    def render(self) -> str:
        if not getattr(self, "errors", None):  # while UserError.__init__ renders
            return super().render()
        items = "\n".join("  " + e.render().replace("\n", "\n  ") for e in self.errors)
        return f"{len(self.errors)} errors in the config:\n{items}"


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


class DiskFull(Exception):
    """A write into the run folder failed for want of space (see ``DISK_FULL_ERRNOS``).

    The file named was left as it was before the write (a checkpoint's temp file is
    removed, a half-written event or log line is cut off), so the last good checkpoint
    stands and ``dettui resume`` goes on from it once there is room again. Not a
    ``UserError`` (nothing the user typed is wrong) and not an ``OSError`` (code that copes
    with an unreadable file must not swallow it)."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"disk full: cannot write {path} ({reason})")

    @classmethod
    def from_os_error(cls, exc: OSError, path: object = None) -> DiskFull | None:
        """The ``DiskFull`` an ``OSError`` means (``path``: the file being written when the
        error does not name it), or None when it is another error."""
        if exc.errno not in DISK_FULL_ERRNOS:
            return None
        where = exc.filename if isinstance(exc.filename, str) and exc.filename else path
        return cls(str(where) if where is not None else "?",
                   exc.strerror or errno.errorcode.get(exc.errno or 0, "no space"))

    @classmethod
    def find(cls, exc: BaseException) -> DiskFull | None:
        """The disk-full failure behind ``exc``: ``exc`` itself, or one it was raised from
        or while handling (a cleanup that failed too must not hide why training stopped)."""
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, DiskFull):
                return current
            if isinstance(current, OSError):
                found = cls.from_os_error(current)
                if found is not None:
                    return found
            current = current.__cause__ or current.__context__
        return None
