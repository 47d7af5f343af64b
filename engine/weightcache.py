"""The weights cache's index: what each downloaded file is (stdlib only).

``$DETTUI_CACHE/weights/index.json`` maps a cached file's path to its source, URL, sha256,
size and modification time. The files themselves live in the cache (URLs) and in torch.hub's
checkpoint folder (``torchvision:`` names); the hub keeps ``hf:`` files. A file whose size
or time no longer match its entry is hashed again: the index only saves re-hashing.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from engine.protocol.rundir import atomic_write
from engine.protocol.safefiles import RefusedFile, read_regular

MAX_INDEX_BYTES = 16 << 20


def index_path() -> Path:
    from engine.weightsource import cache_dir

    return cache_dir() / "index.json"


def load_index() -> dict[str, dict[str, Any]]:
    """The index (empty when missing or unreadable: it is only a memo)."""
    try:
        data = json.loads(read_regular(index_path(), MAX_INDEX_BYTES))
    except (OSError, RefusedFile, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}


def _save(index: dict[str, dict[str, Any]]) -> None:
    path = index_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(index, indent=1, sort_keys=True).encode()
    atomic_write(path, lambda f: f.write(data))


def remember(path: Path, *, source: str, url: str | None, sha256: str) -> None:
    """Record (or refresh) a cached file's entry; a cache on a read-only disk is left as is."""
    key = str(Path(path).resolve())
    try:
        st = Path(path).stat()
        index = load_index()
        entry = index.get(key, {})
        sources = sorted({*entry.get("sources", []), source})
        index[key] = {"source": entry.get("source", source), "sources": sources, "url": url,
                      "sha256": sha256, "size": st.st_size, "mtime": st.st_mtime,
                      "added": entry.get("added", time.time())}
        _save(index)
    except OSError:
        pass


def known_sha256(path: Path) -> str | None:
    """The recorded sha256 of ``path`` when its size and time still match."""
    entry = load_index().get(str(Path(path).resolve()))
    if not entry:
        return None
    with contextlib.suppress(OSError):
        st = Path(path).stat()
        if st.st_size == entry.get("size") and st.st_mtime == entry.get("mtime"):
            sha = entry.get("sha256")
            return sha if isinstance(sha, str) else None
    return None


def forget(path: Path) -> None:
    key = str(Path(path).resolve())
    index = load_index()
    if index.pop(key, None) is not None:
        with contextlib.suppress(OSError):
            _save(index)


def cache_entries() -> list[dict[str, Any]]:
    """Every file in the cache: the index's entries, and files found there unindexed
    (torch.hub's own downloads in $TORCH_HOME/hub/checkpoints, hand-placed files)."""
    from engine.weightsource import cache_dir, torch_hub_checkpoints

    index = load_index()
    entries = []
    for path, entry in sorted(index.items()):
        entries.append({"file": path, **entry, "present": Path(path).is_file()})
    seen = set(index)
    for folder in (cache_dir() / "url", torch_hub_checkpoints()):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith((".part", ".lock")) \
                    and str(path.resolve()) not in seen:
                entries.append({"file": str(path.resolve()), "source": None, "url": None,
                                "sha256": None, "size": path.stat().st_size, "present": True})
    return entries
