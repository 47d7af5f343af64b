"""Opening files that someone else may have put there (stdlib only).

Configs, run folders and datasets come from other users on a shared server, from a copied
run folder or from the internet. Reading one must not hang (a FIFO never sends EOF), nor
eat all memory (a link to ``/dev/zero``, a 50 MB "config"); writing into a run folder must
not follow a symbolic link out of it. These helpers refuse such files with
:class:`RefusedFile`, whose message says what the file is; callers turn it into their own
typed error (``ConfigError``, ``RunError``...), which names the file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import IO, Any

__all__ = ["MAX_IMAGE_BYTES", "MAX_TEXT_BYTES", "RefusedFile", "check_output_path",
           "file_kind", "open_append", "open_regular", "read_regular", "read_regular_text"]

MAX_TEXT_BYTES = 64 << 20
"""A text file of a dataset (a YOLO label file, a VOC xml, an image or class list): the
largest real ones are a few MB."""
MAX_IMAGE_BYTES = 1 << 30
"""An image file (Pillow's decompression-bomb limit guards the decoded size)."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class RefusedFile(OSError):
    """A file that is not read or written: not a regular file, too large, or a link. An
    ``OSError``, so code that copes with unreadable files copes with these too."""


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def _size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.0f} KiB"


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    A FIFO, a device or a socket is refused before anything is read from it (it is opened
    non-blocking, so not even the open waits for a writer), and so is a file larger than
    ``limit``, without reading it. Raises ``FileNotFoundError``/``PermissionError``/
    ``IsADirectoryError`` as ``open`` would, and :class:`RefusedFile`."""
    mode = os.stat(path).st_mode  # follows links: a link to /dev/zero is a device
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(mode):
        raise RefusedFile(f"{file_kind(mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC)
    try:
        st = os.fstat(fd)  # the file opened, which may not be the one stat()ed
        if not stat.S_ISREG(st.st_mode):
            raise RefusedFile(f"{file_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise RefusedFile(f"too large: {_size_text(st.st_size)}, the limit is "
                              f"{_size_text(limit)}")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # it grew while we read it
            raise RefusedFile(f"too large: more than {_size_text(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_regular_text(path: str | Path, limit: int = MAX_TEXT_BYTES,
                      encoding: str = "utf-8") -> str:
    """:func:`read_regular`, decoded (``UnicodeDecodeError`` when it is not ``encoding``)."""
    return read_regular(path, limit).decode(encoding)


def open_regular(path: str | Path, limit: int | None = None) -> IO[bytes]:
    """``open(path, "rb")``, refusing (:class:`RefusedFile`) anything but a regular file
    without waiting on it (a FIFO planted as a log would block its reader for ever), and a
    file larger than ``limit`` bytes when a limit is given."""
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(st.st_mode):
            raise RefusedFile(f"{file_kind(st.st_mode)}, not a regular file")
        if limit is not None and st.st_size > limit:
            raise RefusedFile(f"too large: {_size_text(st.st_size)}, the limit is "
                              f"{_size_text(limit)}")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def check_output_path(path: str | Path, *, folder: bool = False) -> None:
    """Refuse (:class:`RefusedFile`) to write ``path`` when it exists and is not what is
    written there: a regular file (``folder=False``) or a directory (``folder=True``). A
    device, a FIFO or a socket is never written over (as root, a JSON written to
    ``/dev/null`` replaced the device), a folder is not a file and a file is not a folder.
    A symbolic link is judged by what it points at; a dangling one is refused."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise RefusedFile(f"a symbolic link to {os.readlink(path)}, which does not "
                              "exist") from None
        return
    except NotADirectoryError:
        raise RefusedFile("a file is in the way of one of its folders") from None
    if folder and not stat.S_ISDIR(mode):
        what = "a regular file" if stat.S_ISREG(mode) else file_kind(mode)
        raise RefusedFile(f"{what}, not a folder")
    if not folder and not stat.S_ISREG(mode):
        raise RefusedFile(f"{file_kind(mode)}, not a regular file")


def open_append(path: str | Path, mode: str = "ab", **kwargs: Any) -> IO[Any]:
    """Open ``path`` for appending (created if missing), never through a symbolic link and
    only if it is a regular file: ``mode`` is ``"ab"`` or ``"a"`` (then ``kwargs`` such as
    ``encoding`` go to ``os.fdopen``). Raises :class:`RefusedFile`, or ``OSError``."""
    if mode not in ("a", "ab"):
        raise ValueError(f"mode must be 'a' or 'ab', got {mode!r}")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK | _CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            target = os.readlink(path) if os.path.islink(path) else "?"
            raise RefusedFile(f"it is a symbolic link (to {target})") from None
        if exc.errno == errno.ENXIO:  # a FIFO that nobody reads
            raise RefusedFile("a named pipe (FIFO), not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RefusedFile(f"{file_kind(st.st_mode)}, not a regular file")
        if _NONBLOCK:  # only needed for the open itself; writes to a log should block
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, mode, **kwargs)
