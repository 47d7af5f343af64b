"""Where weights come from: the one torch-free catalogue of weight sources.

Every place that takes weights (``pretrain_weights``, ``pretrain_teacher_weights``,
``pretrain_student_weights``, ``--weights/--teacher/--student``, ``dettui eval|infer
--weights``, the launch form) accepts the same five forms:

==============================  ===========================================================
``path/to/file.pt``             a local file (``.pt``/``.pth``/``.safetensors``)
``https://host/x.pth[#sha256=H]``  a URL (PaddleDetection's ``pretrain_weights`` form),
                                downloaded once into ``$DETTUI_CACHE/weights``
``torchvision:BUILDER[:WEIGHTS]``  torchvision's own weight enum (``fcos_resnet50_fpn:COCO_V1``,
                                ``resnet50:IMAGENET1K_V2``), into ``$TORCH_HOME/hub/checkpoints``
                                under torch.hub's file name, so either tool reuses the other's
``hf:REPO_ID[@REVISION]``       a transformers-format ``model.safetensors`` via huggingface_hub
                                (its cache, ``HF_HOME``, ``HF_HUB_OFFLINE``)
``run:RUN_ID[:best|:last]``     a past run's checkpoint (best, else last)
==============================  ===========================================================

:func:`plan` says where a source's file is or will be, without network and without torch
(a ``torchvision:`` name is described by ``python -m engine.tvweights`` in a subprocess);
:func:`resolve` also downloads what is missing (:mod:`engine.download`) and returns the file
and its sha256. Offline (``DETTUI_OFFLINE=1``, ``--offline``) a source that is not cached is
a ``WeightsError`` naming the URL and the exact path where the file can be put by hand.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.protocol.errors import UserError, WeightsError

CACHE_ENV = "DETTUI_CACHE"
OFFLINE_ENV = "DETTUI_OFFLINE"
TORCHVISION_URL_ENV = "DETTUI_TORCHVISION_URL"
"""A base URL that replaces torchvision's download host (a mirror; the tests' local server)."""
KINDS = ("file", "url", "torchvision", "hf", "run")
HF_FILE = "model.safetensors"
FORMS = ("a local file, an http(s):// URL, torchvision:BUILDER[:WEIGHTS], "
         "hf:REPO_ID[@REVISION] or run:RUN_ID[:best|:last]")
# torch.hub's convention: "name-<first hex digits of the sha256>.ext"
HASH_PREFIX_RE = re.compile(r"-([a-f0-9]{8,})\.")
# Which torchvision detector builders fit each architecture (the rest of the picker's zoo
# comes from torchvision's enums: names, URLs, sizes, categories).
ZOO_DETECTOR_PREFIX = {"FCOS": "fcos_", "RetinaNet": "retinanet_",
                       "FasterRCNN": "fasterrcnn_"}
ProgressFn = Callable[[int, int | None], None]


def offline_mode() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir() -> Path:
    """``$DETTUI_CACHE/weights``, by default in the platform's user cache folder."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("dettui")
    return Path(root).expanduser() / "weights"


def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder, computed as ``torch.hub.get_dir`` does (no torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def looks_like_source(text: str) -> bool:
    """Whether ``text`` names a non-file source (the rest are paths)."""
    return source_kind(text) != "file"


def source_kind(text: str) -> str:
    low = text.strip().lower()
    if low.startswith(("http://", "https://")):
        return "url"
    for kind in ("torchvision", "hf", "run"):
        if low.startswith(kind + ":"):
            return kind
    return "file"


@dataclass
class Plan:
    """Where a source's file is (or will be), known without network."""

    source: str
    kind: str
    path: Path
    """The file (a local file, a run's checkpoint, the cached download to be)."""
    url: str | None = None
    sha256: str | None = None        # expected, full hex (a URL's #sha256=)
    hash_prefix: str | None = None   # expected prefix (torch.hub file names)
    size: int | None = None          # expected bytes, when the source says
    info: dict[str, Any] = field(default_factory=dict)
    hf: tuple[str, str | None] | None = None  # (repo id, revision)

    @property
    def cached(self) -> bool:
        return self.path.is_file()

    @property
    def remote(self) -> bool:
        return self.kind in ("url", "torchvision", "hf")


@dataclass
class Resolved:
    """A source turned into a local file (downloaded when it had to be)."""

    source: str
    kind: str
    path: Path
    sha256: str
    size: int
    url: str | None = None
    downloaded: bool = False

    def record(self, key: str) -> dict[str, Any]:
        """What run.json keeps of it."""
        return {"key": key, "source": self.source, "kind": self.kind, "file": str(self.path),
                "sha256": self.sha256, "size": self.size, "url": self.url,
                "downloaded": self.downloaded}


# ----------------------------------------------------------------------------- planning
def plan(source: str, *, runs_dir: str | Path | None = None, key: str | None = None) -> Plan:
    """Where ``source`` is or will be; ``WeightsError`` for a malformed or unknown source."""
    text = source.strip()
    kind = source_kind(text)
    if kind == "file":
        return Plan(source, "file", Path(text).expanduser())
    body = text.split(":", 1)[1] if kind != "url" else text
    if kind == "url":
        return _plan_url(source, text, key)
    if kind == "torchvision":
        return _plan_torchvision(source, body, key)
    if kind == "hf":
        return _plan_hf(source, body, key)
    return _plan_run(source, body, runs_dir, key)


def _plan_url(source: str, text: str, key: str | None) -> Plan:
    from urllib.parse import urlsplit

    url, _, fragment = text.partition("#")
    sha = None
    if fragment:
        name, _, value = fragment.partition("=")
        if name != "sha256" or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise WeightsError(f"URL fragment #{fragment[:80]} is not #sha256=<64 hex digits>",
                               key=key)
        sha = value.lower()
    parts = urlsplit(url)
    name = Path(parts.path).name
    if not parts.netloc or not name:
        raise WeightsError(f"URL {url!r} names no file to download", key=key,
                           hint="the URL must end in the file's name, e.g. .../model.pth")
    # One folder per URL: two URLs ending in the same file name never share a file.
    folder = hashlib.sha256(url.encode()).hexdigest()[:12]
    match = HASH_PREFIX_RE.search(name)
    return Plan(source, "url", cache_dir() / "url" / folder / name, url=url, sha256=sha,
                hash_prefix=match.group(1) if match and not sha else None)


def _plan_torchvision(source: str, body: str, key: str | None) -> Plan:
    builder, _, weights = body.partition(":")
    if not re.fullmatch(r"[a-z0-9_]+", builder) or (weights and not
                                                    re.fullmatch(r"[A-Za-z0-9_]+", weights)):
        raise WeightsError(f"{source!r} is not torchvision:BUILDER[:WEIGHTS] (e.g. "
                           "torchvision:fcos_resnet50_fpn:COCO_V1)", key=key)
    info = describe_torchvision(builder, weights or None)
    if "error" in info:
        raise WeightsError(info["error"], key=key, hint=info.get("hint"))
    url = info["url"]
    base = os.environ.get(TORCHVISION_URL_ENV)
    if base:
        url = base.rstrip("/") + "/" + info["file_name"]
    match = HASH_PREFIX_RE.search(info["file_name"])
    return Plan(source, "torchvision", torch_hub_checkpoints() / info["file_name"], url=url,
                hash_prefix=match.group(1) if match else None, size=info.get("size"),
                info=info)


@functools.lru_cache(maxsize=64)
def _describe_cached(builder: str, weights: str | None) -> str:
    if "torchvision" in sys.modules:  # the engine: torchvision is loaded anyway
        from engine.tvweights import describe

        try:
            return json.dumps(describe(builder, weights))
        except WeightsError as exc:
            return json.dumps({"error": exc.message, "hint": exc.hint})
    name = builder + (f":{weights}" if weights else "")
    try:
        out = subprocess.run([sys.executable, "-m", "engine.tvweights", name],
                             capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WeightsError(f"cannot ask torchvision about {name}: {exc}") from None
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not line.startswith("{"):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise WeightsError(f"cannot ask torchvision about {name}: {tail[:200]}")
    return line


def describe_torchvision(builder: str, weights: str | None) -> dict[str, Any]:
    """torchvision's description of a weights enum entry (``engine.tvweights.describe``);
    ``{"error": ...}`` for an unknown name. Without torchvision loaded it runs as a
    subprocess: the front-ends never import torch."""
    return json.loads(_describe_cached(builder, weights))


def _plan_hf(source: str, body: str, key: str | None) -> Plan:
    repo, _, revision = body.partition("@")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", repo):
        raise WeightsError(f"{source!r} is not hf:REPO_ID[@REVISION] (e.g. "
                           "hf:PekingU/rtdetr_r50vd)", key=key)
    from huggingface_hub import constants, hf_hub_url, try_to_load_from_cache

    rev = revision or None
    found = try_to_load_from_cache(repo, HF_FILE, revision=rev)
    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    path = Path(found) if isinstance(found, str) else \
        folder / "snapshots" / (rev or "<commit of main>") / HF_FILE
    return Plan(source, "hf", path, url=hf_hub_url(repo, HF_FILE, revision=rev),
                hf=(repo, rev), info={"hub_folder": str(folder)})


def _plan_run(source: str, body: str, runs_dir: str | Path | None, key: str | None) -> Plan:
    from engine.protocol.rundir import default_runs_dir, resolve_run

    ref, _, which = body.partition(":")
    if which not in ("", "best", "last") or not ref:
        raise WeightsError(f"{source!r} is not run:RUN_ID[:best|:last]", key=key)
    try:
        run = resolve_run(Path(runs_dir) if runs_dir is not None else default_runs_dir(), ref)
    except UserError as exc:  # no such run, an ambiguous prefix, a bad id
        raise WeightsError(f"{source}: {exc.message}", key=key, hint=exc.hint) from None
    names = [f"{which}.pt"] if which else ["best.pt", "last.pt"]
    for name in names:
        path = run.checkpoints / name
        if path.is_file():
            return Plan(source, "run", path, info={"run": run.id})
    raise WeightsError(f"run {run.id} has no {' or '.join(names)} in {run.checkpoints}",
                       key=key, hint="a run writes last.pt at its first checkpoint and "
                                     "best.pt at its first evaluation")


# ----------------------------------------------------------------------------- checking
def describe_file(path: Path) -> str | None:
    """None when ``path`` starts like a weights file (torch.save's zip or pickle,
    safetensors), else what it looks like instead (for the error message)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        return f"a file that cannot be read ({exc.strerror or exc})"
    if head.startswith(b"PK\x03\x04") or (len(head) > 1 and head[0] == 0x80
                                         and 1 <= head[1] <= 5):
        return None  # torch.save: zip (since 1.6) or a legacy pickle
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= 100_000_000 and head[8:9] == b"{":
            return None  # safetensors: u64 header length, then a JSON header
    magic = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
             b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip archive", b"\x7fELF":
             "a program (ELF)", b"<!DOCTYPE": "an HTML page", b"<html": "an HTML page",
             b"\x93NUMPY": "a NumPy array file (.npy), not a torch checkpoint"}
    for start, what in magic.items():
        if head.startswith(start):
            return what
    if head[257:262] == b"ustar":
        return "a tar archive"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not a character cut by the 4096-byte read
            return "a binary file of unknown kind"
    kinds = {".md": "Markdown", ".txt": "plain text", ".yml": "YAML", ".yaml": "YAML",
             ".json": "JSON", ".py": "Python source", ".html": "HTML", ".csv": "CSV"}
    what = kinds.get(path.suffix.lower())
    return f"a text/{what} file" if what else "a text file"


def check_local(path: Path, key: str | None) -> None:
    """A local weights file exists, is a regular file and starts like one."""
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}", key=key,
                           hint=f"weights may be {FORMS}")
    if path.is_dir():
        raise WeightsError(f"is a directory, expected a weights file: {path}", key=key)
    if not path.is_file():
        raise WeightsError(f"not a regular file: {path}", key=key)
    if path.stat().st_size == 0:
        raise WeightsError(f"the weights file is empty: {path}", key=key)
    what = describe_file(path)
    if what is not None:
        raise WeightsError(f"{path} is {what}, not a checkpoint", key=key,
                           hint="weights are a torch.save file (.pt/.pth) or .safetensors; "
                                f"weights may be {FORMS}")


def check(source: str, *, runs_dir: str | Path | None = None, key: str | None = None,
          offline: bool | None = None) -> Plan:
    """The front-end check before any run folder exists: a local file (or a run's
    checkpoint) is there and looks like weights; a remote source is well-formed, and when
    offline it must already be cached."""
    p = plan(source, runs_dir=runs_dir, key=key)
    if not p.remote:
        check_local(p.path, key)
        return p
    offline = offline_mode() if offline is None else offline
    if p.kind == "hf" and os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "yes"):
        offline = True
    if offline and not p.cached:
        raise offline_error(p, key)
    return p


def offline_error(p: Plan, key: str | None) -> WeightsError:
    where = (f"into the hub cache {p.info.get('hub_folder')} (huggingface-cli download "
             f"{p.hf[0]} {HF_FILE} on a machine with network, then copy the folder)"
             if p.kind == "hf" and p.hf else f"at {p.path}")
    return WeightsError(f"offline, and {p.source} is not in the cache: it would be "
                        f"downloaded from {p.url}", key=key,
                        hint=f"download it on a machine with network (`dettui weights get "
                             f"{p.source}`) and copy it, or put the file by hand {where}")


# ----------------------------------------------------------------------------- resolving
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve(source: str, *, runs_dir: str | Path | None = None, key: str | None = None,
            offline: bool | None = None, progress: ProgressFn | None = None) -> Resolved:
    """``source`` as a local file: downloaded once (checked, renamed into place) when it
    is remote and not cached yet; its sha256 (a cached file's hash comes from the cache
    index when its size and time match, so a 300 MB file is not re-hashed every run)."""
    p = check(source, runs_dir=runs_dir, key=key, offline=offline)
    downloaded = False
    if p.kind == "hf":
        path, downloaded = _fetch_hf(p, progress)
        p.path = path
    elif p.remote and not p.cached:
        from engine.download import download

        download(p.url or "", p.path, sha256=p.sha256, hash_prefix=p.hash_prefix,
                 progress=progress, source=p.source)
        downloaded = True
    if p.remote:
        check_local(p.path, key)
    digest = cached_sha256(p)
    wrong = (p.sha256 and digest != p.sha256) or (p.hash_prefix and
                                                  not digest.startswith(p.hash_prefix))
    if p.remote and not downloaded and wrong:
        raise WeightsError(f"the cached file {p.path} does not match its sha256 "
                           f"({digest[:16]}..., expected "
                           f"{(p.sha256 or p.hash_prefix or '')[:16]}...)", key=key,
                           hint=f"remove it (`dettui weights rm {p.source}`) to download it "
                                "again")
    if p.remote:
        from engine.weightcache import remember

        remember(p.path, source=p.source, url=p.url, sha256=digest)
    return Resolved(p.source, p.kind, p.path, digest, p.path.stat().st_size, p.url,
                    downloaded)


def cached_sha256(p: Plan) -> str:
    from engine.weightcache import known_sha256

    return known_sha256(p.path) or sha256_file(p.path)


def _fetch_hf(p: Plan, progress: ProgressFn | None) -> tuple[Path, bool]:
    if p.cached:
        return p.path, False
    assert p.hf is not None
    from huggingface_hub import get_hf_file_metadata, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    repo, rev = p.hf
    try:
        path = Path(hf_hub_download(repo, HF_FILE, revision=rev))
    except EntryNotFoundError:
        raise WeightsError(f"{p.source}: the repository has no {HF_FILE} (only safetensors "
                           "weights are taken from the hub: a .bin is a pickle)") from None
    except LocalEntryNotFoundError:
        raise offline_error(p, None) from None
    except (HfHubHTTPError, OSError) as exc:
        raise WeightsError(f"{p.source}: cannot download {p.url}: "
                           f"{str(exc).splitlines()[0][:200]}") from None
    try:  # the hub's metadata: an LFS file's etag is its sha256
        etag = (get_hf_file_metadata(p.url or "").etag or "").strip('"')
    except (HfHubHTTPError, OSError):
        etag = ""
    if re.fullmatch(r"[0-9a-f]{64}", etag):
        digest = sha256_file(path)
        if digest != etag:
            path.unlink(missing_ok=True)
            raise WeightsError(f"{p.source}: sha256 mismatch ({digest[:16]}..., the hub says "
                               f"{etag[:16]}...); the file was removed")
    return path, True


def started_from(meta: dict[str, Any]) -> str:
    """What a run's weights were, from its run.json, in one line: each resolved source with
    the start of its sha256 (``none`` for a run from scratch)."""
    weights = meta.get("weights") if isinstance(meta.get("weights"), dict) else {}
    resolved = weights.get("resolved") if isinstance(weights.get("resolved"), list) else []
    parts = []
    for item in resolved:
        if isinstance(item, dict) and isinstance(item.get("source"), str):
            sha = item.get("sha256")
            role = {"pretrain_teacher_weights": "teacher ",
                    "pretrain_student_weights": "student "}.get(str(item.get("key")), "")
            parts.append(f"{role}{item['source']}"
                         + (f" (sha256 {sha[:12]})" if isinstance(sha, str) else ""))
    if parts:
        return "; ".join(parts)
    for key in ("pretrained", "teacher", "student"):
        if isinstance(weights.get(key), str):
            parts.append(weights[key])
    return "; ".join(parts) or ("none" if weights.get("mode") in ("none", None) else
                                str(weights.get("mode")))
