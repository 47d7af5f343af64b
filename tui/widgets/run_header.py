"""The run monitor's header: status, run, progress bar, ETA and the latest numbers."""

from __future__ import annotations

import datetime as _dt

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static

from engine.protocol.rundir import ACTIVE
from tui.runs.history import RunSnapshot
from tui.runs.progress import RunProgress, evaluating_text
from tui.safetext import safe_markup as escape  # text from run.json: no markup, no controls

__all__ = ["RunHeader", "format_duration", "set_subtitle", "short_time"]

STATUS_STYLES = {"starting": "bold cyan", "running": "bold green", "finished": "bold blue",
                 "failed": "bold white on red", "interrupted": "bold yellow"}


def format_duration(seconds: object) -> str:
    """``1:02:03`` (``2d 01:02:03`` past a day); ``-`` when unknown."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds != seconds:
        return "-"
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def short_time(value: object) -> str:
    """An ISO time from run.json as ``11-27 19:32`` (in the timezone it was recorded in,
    like the runs table); anything else as it is."""
    try:
        return _dt.datetime.fromisoformat(str(value)).strftime("%m-%d %H:%M")
    except ValueError:
        return str(value)


def set_subtitle(widget: Widget, text: str) -> None:
    """Set a border subtitle only when it changes (every assignment repaints the widget)."""
    if getattr(widget, "_subtitle_text", None) != text:
        widget._subtitle_text = text  # type: ignore[attr-defined]
        widget.border_subtitle = text


def _number(value: object, fmt: str) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return fmt.format(value)
    return None


def download_line(event: dict) -> str:
    """A weights download under way (``download`` events), as the header's progress line."""
    done, total = event.get("done"), event.get("total")
    mb = f"{done / 1e6:.1f}" if isinstance(done, int) else "?"
    if isinstance(total, int) and total > 0 and isinstance(done, int):
        mb += f"/{total / 1e6:.1f} MB {100 * min(done, total) // total}%"
    else:
        mb += " MB"
    verb = "downloaded" if event.get("state") == "done" else "downloading"
    return f"[b]{verb}[/] {escape(str(event.get('source') or ''))}  {mb}"


class RunHeader(Widget):
    """Two lines: the run and its status; epoch, iteration, a progress bar, ETA and the
    latest loss, learning rate and throughput. Both lines have a fixed size, so updating
    them four times a second repaints two lines and never re-lays out the screen.

    Epochs are 0-based in events (1-based in run.json); the TUI shows them 1-based
    ("epoch 10/10" is the last one). AP is a 0-1 fraction with 3 decimals. What matters
    most comes first on each line (the best AP before the long config path, the end time
    kept short), so a 120-column terminal cuts only the least useful part."""

    DEFAULT_CSS = """
    RunHeader {
        height: 2;
        background: $panel;
        padding: 0 1;
        Static { width: 1fr; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    }
    """

    BAR_WIDTH = 24

    def __init__(self, run_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_id = run_id
        self._lines: tuple[str, str] = ("", "")

    def compose(self) -> ComposeResult:
        yield Static(f"[b]{escape(self.run_id)}[/]  loading…", id="run-title")
        yield Static("", id="run-progress")

    def update_snapshot(self, snap: RunSnapshot) -> None:
        lines = (self._title(snap), self._progress(snap))
        for selector, old, new in zip(("#run-title", "#run-progress"), self._lines, lines):
            if new != old:
                self.query_one(selector, Static).update(new, layout=False)
        self._lines = lines

    def _title(self, snap: RunSnapshot) -> str:
        meta, status = snap.meta, snap.status
        parts = [f"[{STATUS_STYLES.get(status, 'bold')}] {status.upper()} [/]",
                 f"[b]{escape(snap.run_id)}[/]"]
        best = meta.get("best")
        value = _number(best.get("value"), "{:.3f}") if isinstance(best, dict) else None
        if value is not None:
            epoch = best.get("epoch")  # run.json counts epochs from 1
            which = best.get("model")  # a semi run's teacher or student
            parts.append(f"best {escape(str(best.get('metric', 'AP')))} [b]{value}[/]"
                         + (f" {escape(which)}" if isinstance(which, str)
                            and which != "model" else "")
                         + (f" @ epoch {epoch}" if isinstance(epoch, int) else ""))
        parts += [escape(str(meta[key])) for key in ("trainer", "host", "config_path")
                  if meta.get(key)]
        if isinstance(meta.get("slurm_job_id"), str):
            parts.append(f"SLURM job {escape(meta['slurm_job_id'])}")
        return "  ·  ".join(parts)

    def _progress(self, snap: RunSnapshot) -> str:
        train = snap.latest_train or {}
        shown = RunProgress.of_run(snap.status, snap.meta, snap.latest_train)
        done, total = shown.iter, shown.max_iters
        parts = []
        if shown.epoch is not None:
            parts.append(f"epoch {shown.epoch_text()}")
        if done is not None:
            parts.append(f"iter {done:,}" + (f"/{total:,}" if total is not None else ""))
        if not parts:
            parts.append(download_line(snap.download) if snap.download and snap.status in
                         ACTIVE else "no training step yet")
        if snap.status in ACTIVE and snap.evaluating is not None:
            parts.append(f"[b yellow]{escape(evaluating_text(snap.evaluating))}[/]")
        fraction = shown.fraction
        if fraction is not None:
            filled = round(fraction * self.BAR_WIDTH)
            parts.append(f"[green]{'━' * filled}[/][dim]{'━' * (self.BAR_WIDTH - filled)}[/]"
                         f" {100 * fraction:.0f}%")
        if snap.loading:
            parts.append(f"[b]reading the history "
                         f"{100 * snap.bytes_read / max(1, snap.bytes_total):.0f}%[/]")
        if snap.status in ACTIVE:
            parts.append(f"ETA {format_duration(train.get('eta'))}")
        elif snap.meta.get("ended"):
            parts.append(f"ended {escape(short_time(snap.meta['ended']))}")
        for label, key, fmt in (("loss", "loss", "{:.4f}"), ("lr", "lr", "{:.2e}"),
                                ("img/s", "ips", "{:.1f}")):
            text = _number(train.get(key), fmt)
            if text is not None:
                parts.append(f"{label} {text}")
        return "  ".join(parts)
