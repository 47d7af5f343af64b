"""Downloading a weights file once, safely (stdlib only).

torch.hub's ``download_url_to_file`` checks a hash prefix but starts over after an
interruption and has no retries or size cap; huggingface_hub serves only the hub. This
module does the rest for plain URLs and torchvision names:

* the bytes go to ``<file>.part`` and are renamed into place only when complete and
  checked: a partial file is never used;
* an interrupted download resumes with an HTTP ``Range`` request (the next try, or the
  next use);
* sha256 is checked when the source gives one (``#sha256=`` on a URL) or a prefix of it
  (torch.hub's ``name-<hex>.pth``); a mismatch removes the file (``WeightsError``);
* connect/read timeouts (``DETTUI_DOWNLOAD_TIMEOUT`` s, default 30), a few retries with
  exponential backoff (``DETTUI_DOWNLOAD_RETRIES``, default 3), and a size cap
  (``DETTUI_DOWNLOAD_MAX_MB``, default 4096);
* one download per file at a time (an ``flock`` on ``<file>.lock``): two runs starting
  together share it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.protocol.errors import WeightsError

ProgressFn = Callable[[int, int | None], None]
CHUNK = 1 << 16


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default


@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    lock = dest.with_name(dest.name + ".lock")
    with open(lock, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        lock.unlink()


class _Retry(Exception):
    """A failure worth another try (a timeout, a cut connection, a 5xx)."""


def download(url: str, dest: Path, *, sha256: str | None = None,
             hash_prefix: str | None = None, progress: ProgressFn | None = None,
             source: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (see the module docstring); ``WeightsError`` naming the
    URL and ``dest`` when it cannot be done."""
    dest = Path(dest)
    what = source or url
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WeightsError(f"cannot create the cache folder {dest.parent}: "
                           f"{exc.strerror or exc}") from None
    retries = int(_env_number("DETTUI_DOWNLOAD_RETRIES", 3))
    timeout = _env_number("DETTUI_DOWNLOAD_TIMEOUT", 30.0) or 30.0
    backoff = _env_number("DETTUI_DOWNLOAD_BACKOFF", 1.0)
    cap = int(_env_number("DETTUI_DOWNLOAD_MAX_MB", 4096) * (1 << 20))
    part = dest.with_name(dest.name + ".part")
    with _locked(dest):
        if dest.is_file():  # another process finished it while we waited
            return dest
        last = ""
        for attempt in range(retries + 1):
            try:
                _fetch(url, part, timeout, cap, progress)
                break
            except _Retry as exc:
                last = str(exc)
                if attempt < retries:
                    time.sleep(backoff * 2 ** attempt)
        else:
            raise WeightsError(
                f"cannot download {what} from {url}: {last} (after {retries + 1} tries)",
                hint=f"a partial download stays in {part} and resumes next time; or put the "
                     f"file by hand at {dest}")
        digest = _sha256(part)
        expected = sha256 or hash_prefix
        if expected and not digest.startswith(expected.lower()):
            part.unlink(missing_ok=True)
            raise WeightsError(f"sha256 mismatch for {url}: got {digest}, expected "
                               f"{expected}{'...' if not sha256 else ''}; the download was "
                               "removed and nothing was cached",
                               hint="the file on the server changed or was corrupted on the "
                                    "way; check the URL (and its #sha256=)")
        os.replace(part, dest)
    return dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, part: Path, timeout: float, cap: int, progress: ProgressFn | None
           ) -> None:
    """One try: resume ``part`` with Range when it has bytes; ``_Retry`` on a transient
    failure, ``WeightsError`` on a final one (404, too large)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "dettui", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing after what we have: the .part is complete
            return
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise WeightsError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _Retry(f"{exc.reason}") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Retry(f"{type(exc).__name__}: {exc or 'timed out'}") from None
    with response:
        if response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range",
                                                                               ""))
            if not match or int(match.group(1)) != have:
                have = 0  # a range we did not ask for: start over
            total = int(match.group(2)) if match and match.group(2) != "*" else None
        else:
            have = 0  # the server ignored Range (or there was none): the whole file
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and total > cap:
            raise WeightsError(f"{url} is {total / 2**20:.0f} MB, more than the "
                               f"{cap / 2**20:.0f} MB cap (DETTUI_DOWNLOAD_MAX_MB)")
        done = have
        if progress:
            progress(done, total)
        try:
            with open(part, "ab" if have else "wb") as f:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    done += len(chunk)
                    if done > cap:
                        f.close()
                        part.unlink(missing_ok=True)
                        raise WeightsError(f"{url} sends more than the {cap / 2**20:.0f} MB "
                                           "cap (DETTUI_DOWNLOAD_MAX_MB)")
                    if progress:
                        progress(done, total)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Retry(f"{type(exc).__name__} after {done} bytes: {exc or 'timed out'}"
                         ) from None
        if total is not None and done < total:
            raise _Retry(f"the connection closed after {done} of {total} bytes")
