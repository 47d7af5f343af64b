"""``dettui weights list | get | verify | rm``, and the console's download progress bar.

Torch-free (``torchvision:`` names are described by ``python -m engine.tvweights`` in a
subprocess). Downloads show a Rich progress bar (bytes, speed, ETA) on stderr.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.protocol.errors import WeightsError
from engine.protocol.rundir import RUNS_DIR_ENV, scan_runs
from engine.protocol.termtext import printable
from engine.weightcache import cache_entries, forget, load_index, remember
from engine.weightsource import (
    FORMS,
    OFFLINE_ENV,
    cache_dir,
    check,
    plan,
    resolve,
    sha256_file,
    torch_hub_checkpoints,
)

FORMS_HELP = FORMS.replace("[", "\\[")  # Rich markup would eat [:WEIGHTS]
weights_app = typer.Typer(
    help="Pretrained weights: the download cache ($DETTUI_CACHE/weights, torchvision names in "
         "$TORCH_HOME/hub/checkpoints). Sources: " + FORMS_HELP + ".", no_args_is_help=True)

RunsDir = Annotated[Path, typer.Option("--runs-dir", envvar=RUNS_DIR_ENV,
                                       help="Folder of run directories (for run: ids and "
                                            "which runs used a file).")]
Offline = Annotated[bool, typer.Option(
    "--offline", help="Never download: weights not in the cache are an error naming where to "
                      "put the file (also DETTUI_OFFLINE=1).")]


def set_offline(offline: bool) -> None:
    """``--offline``: for this process and the engine it starts."""
    if offline:
        os.environ[OFFLINE_ENV] = "1"


def fetch_with_progress(source: str, *, key: str | None = None,
                        runs_dir: Path | None = None) -> Any:
    """Resolve ``source``, with a Rich progress bar on stderr while it downloads."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    where = check(source, runs_dir=runs_dir, key=key)
    if not where.remote or where.cached or where.kind == "hf":
        return resolve(source, runs_dir=runs_dir, key=key)
    console = Console(stderr=True)
    head = "" if source == where.url else f"{printable(source)}\n  from "
    to = printable(str(where.path))
    console.print(f"downloading {head}{printable(where.url or '')}\n  to {to}",
                  markup=False, highlight=False, soft_wrap=True)
    with Progress(TextColumn("  "), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=console,
                  transient=False) as bar:
        task = bar.add_task("download", total=where.size)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        return resolve(source, runs_dir=runs_dir, key=key, progress=update)


def prefetch(sources: dict[str, str | None], runs_dir: Path | None = None) -> None:
    """Download every remote source not cached yet, before any run folder exists."""
    for key, source in sources.items():
        if source:
            fetch_with_progress(source, key=key, runs_dir=runs_dir)


def _runs_using(runs_dir: Path) -> dict[str, list[str]]:
    """sha256 (and file path) -> ids of the runs whose run.json records it."""
    used: dict[str, list[str]] = {}
    try:
        metas, _ = scan_runs(runs_dir)
    except OSError:
        return used
    for meta in metas:
        weights = meta.get("weights")
        resolved = weights.get("resolved") if isinstance(weights, dict) else None
        for item in resolved if isinstance(resolved, list) else []:
            if not isinstance(item, dict):
                continue
            for k in (item.get("sha256"), item.get("file")):
                if isinstance(k, str) and str(meta.get("id")) not in used.get(k, []):
                    used.setdefault(k, []).append(str(meta.get("id")))
    return used


def _size(n: object) -> str:
    if not isinstance(n, int):
        return "-"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"  # as Rich counts


def weights_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """The cached weights: file, size, source, sha256 and the runs that used each."""
    used = _runs_using(runs_dir)
    entries = cache_entries()
    for e in entries:
        e["runs"] = sorted({*used.get(e.get("sha256") or "", []), *used.get(e["file"], [])})
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from tui.safetext import safe_text

    console = Console()
    if not entries:
        console.print(f"the cache is empty ({cache_dir()}, {torch_hub_checkpoints()})",
                      markup=False, highlight=False)
        return
    table = Table(header_style="bold", show_edge=False, pad_edge=False)
    for name in ("source", "size", "sha256", "runs", "file"):
        table.add_column(name, overflow="fold")
    for e in entries:
        sha = e.get("sha256")
        table.add_row(safe_text(str(e.get("source") or "(not fetched by dettui)")),
                      _size(e.get("size")) + ("" if e["present"] else " (gone)"),
                      (sha[:12] + "…") if isinstance(sha, str) else "-",
                      safe_text(", ".join(e["runs"]) or "-"), safe_text(e["file"]))
    console.print(table)


def weights_get(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help=FORMS_HELP)],
    offline: Offline = False,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Download weights into the cache now (e.g. before going offline); print each file
    and its sha256."""
    set_offline(offline)
    for source in sources:
        got = fetch_with_progress(source, runs_dir=runs_dir)
        state = "downloaded" if got.downloaded else "cached"
        typer.echo(printable(f"{source}: {state} {got.path} ({_size(got.size)}, sha256 "
                             f"{got.sha256})"))


def weights_verify(
    sources: Annotated[list[str], typer.Argument(metavar="[SOURCE...]",
                                                 help="Default: every file in the cache.")
                       ] = [],  # noqa: B006 - Typer's way to say "none given"
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Re-hash cached files against their recorded sha256 and the source's own hash (a
    URL's #sha256=, torch.hub's file-name prefix); exit 1 when one differs."""
    index = load_index()
    targets: list[tuple[Path, str | None, str | None]] = []
    if sources:
        for source in sources:
            p = plan(source, runs_dir=runs_dir)
            if not p.path.is_file():
                raise WeightsError(f"{source} is not in the cache (it would be {p.path})")
            recorded = index.get(str(p.path.resolve()), {}).get("sha256")
            targets.append((p.path, p.sha256 or p.hash_prefix or recorded, source))
    else:
        for e in cache_entries():
            if e["present"]:
                expected = e.get("sha256")
                if not expected:
                    from engine.weightsource import HASH_PREFIX_RE

                    m = HASH_PREFIX_RE.search(Path(e["file"]).name)
                    expected = m.group(1) if m else None
                targets.append((Path(e["file"]), expected, e.get("source")))
    bad = 0
    for path, expected, source in targets:
        digest = sha256_file(path)
        ok = expected is None or digest.startswith(expected)
        bad += not ok
        verdict = "ok" if ok else f"MISMATCH (expected {expected})"
        if expected is None:
            verdict = "hashed (nothing to compare with)"
        typer.echo(printable(f"{verdict}: {path} sha256 {digest}"))
        if ok and source:
            remember(path, source=source, url=index.get(str(path.resolve()), {}).get("url"),
                     sha256=digest)
    if not targets:
        typer.echo(f"nothing cached in {cache_dir()} or {torch_hub_checkpoints()}")
    if bad:
        typer.echo(f"{bad} file(s) differ: `dettui weights rm SOURCE` and get them again",
                   err=True)
        raise typer.Exit(1)


def weights_rm(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...",
                                                 help="A source or a cached file's path.")],
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Remove cached weights (the file, a partial download of it, its index entry)."""
    for source in sources:
        p = plan(source, runs_dir=runs_dir)
        if p.kind in ("run",):
            raise WeightsError(f"{source} is a run's checkpoint, not a cached download; "
                               "`dettui weights rm` removes only cached files")
        if p.kind == "hf":
            raise WeightsError(f"{source} lives in the Hugging Face hub cache "
                               f"({p.info.get('hub_folder')})",
                               hint="remove it with `hf cache delete` (huggingface_hub)")
        path = p.path
        if p.kind == "file":
            inside = [cache_dir().resolve(), torch_hub_checkpoints().resolve()]
            if not any(path.resolve().is_relative_to(f) for f in inside):
                raise WeightsError(f"{path} is not in the cache ({cache_dir()}, "
                                   f"{torch_hub_checkpoints()}); nothing removed")
        removed = False
        for f in (path, path.with_name(path.name + ".part")):
            if f.is_file():
                f.unlink()
                removed = True
        forget(path)
        typer.echo(printable(f"removed {path}" if removed else f"{source}: not cached ({path})"))


def register(app: typer.Typer, user_errors: Any) -> None:
    """Add ``dettui weights ...`` to ``app``, each command behind the CLI's error funnel."""
    for name, fn in (("list", weights_list), ("get", weights_get), ("verify", weights_verify),
                     ("rm", weights_rm)):
        weights_app.command(name)(user_errors(fn))
    app.add_typer(weights_app, name="weights")
