"""The weights picker: where a launch form's weights field can come from, in one list.

Opened with ``ctrl+g`` on a weights field (pretrained, teacher, student). It lists

* the model zoo entries that fit the config (torchvision's own enums, asked through
  ``python -m engine.tvweights --zoo`` in a thread: the TUI never imports torch), each
  marked cached or to download, with its size;
* past runs of the same architecture with a best/last checkpoint, their AP and classes;
* what the weights cache holds;
* and a path field for anything else (a file, a URL, ``hf:``..., ``run:``...).

It dismisses with the chosen source string (None on escape).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from engine.config.loader import load_config, read_yaml_mapping
from engine.protocol.errors import UserError
from engine.protocol.rundir import RunDirectory, scan_runs
from engine.weightcache import cache_entries
from engine.weightsource import torch_hub_checkpoints
from tui.safetext import safe_text


@dataclass(frozen=True)
class WeightChoice:
    section: str  # zoo | runs | cache
    source: str
    note: str


def _mb(n: object) -> str:
    if not isinstance(n, int):
        return "size unknown"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"  # as Rich counts


def zoo_choices(architecture: str, backbone: str) -> list[WeightChoice]:
    """torchvision's entries that fit (a subprocess: torchvision needs torch)."""
    try:
        out = subprocess.run([sys.executable, "-m", "engine.tvweights", "--zoo", architecture,
                              backbone], capture_output=True, text=True, timeout=120,
                             check=False)
        entries = json.loads(out.stdout) if out.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        entries = []
    choices = []
    for e in entries if isinstance(entries, list) else []:
        cached = (torch_hub_checkpoints() / str(e.get("file_name"))).is_file()
        what = (f"COCO detector, {len(e.get('categories') or [])} classes"
                + (f", box AP {e['box_map']}" if e.get("box_map") else "")
                if e.get("detector") else "ImageNet backbone")
        state = "cached" if cached else f"to download, {_mb(e.get('size'))}"
        choices.append(WeightChoice("zoo", str(e.get("source")), f"{what} · {state}"))
    return choices


def run_choices(runs_dir: Path, architecture: str) -> list[WeightChoice]:
    """best/last checkpoints of past runs of the same architecture, newest first."""
    try:
        metas, _ = scan_runs(runs_dir)
    except OSError:
        return []
    choices = []
    for meta in metas:
        if meta.get("architecture") != architecture or not isinstance(meta.get("id"), str):
            continue
        run = RunDirectory(runs_dir / meta["id"])
        best = meta.get("best") if isinstance(meta.get("best"), dict) else {}
        ap = best.get("value")
        classes = None
        try:
            config = read_yaml_mapping(run.config_yaml)
            classes = config.get("num_classes") if isinstance(config, dict) else None
        except (OSError, UserError):
            pass
        for which in ("best", "last"):
            if (run.checkpoints / f"{which}.pt").is_file():
                parts = [f"AP {ap:.3f}" if isinstance(ap, (int, float)) and which == "best"
                         else which, f"{classes} classes" if isinstance(classes, int) else "",
                         str(meta.get("status", "")), str(meta.get("trainer", ""))]
                choices.append(WeightChoice("runs", f"run:{meta['id']}:{which}",
                                            " · ".join(p for p in parts if p)))
    return choices


def cache_choices() -> list[WeightChoice]:
    out = []
    for e in cache_entries():
        if e.get("present"):
            source = e.get("source") if isinstance(e.get("source"), str) else e["file"]
            out.append(WeightChoice("cache", source, _mb(e.get("size"))))
    return out


def config_model(config: Path, overrides: list[str]) -> tuple[str, str]:
    """The config's architecture and backbone name, read without validating."""
    try:
        data = load_config(config, overrides).data
    except (UserError, OSError):
        return "FCOS", "tiny"
    backbone = data.get("backbone") if isinstance(data.get("backbone"), dict) else {}
    return str(data.get("architecture") or "FCOS"), str(backbone.get("name") or "tiny")


SECTIONS = {"zoo": "model zoo (torchvision) for {arch} · {backbone}",
            "runs": "past {arch} runs", "cache": "weights cache"}


class WeightsPickerScreen(ModalScreen["str | None"]):
    """Choose weights for one field; dismisses with the source (or None)."""

    DEFAULT_CSS = """
    WeightsPickerScreen {
        align: center middle;
    }
    WeightsPickerScreen > Vertical {
        width: 90%;
        max-width: 120;
        height: 85%;
        border: thick $primary;
        border-title-style: bold;
        background: $surface;
    }
    WeightsPickerScreen OptionList {
        height: 1fr;
    }
    WeightsPickerScreen #picker-hint {
        color: $text-muted;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, config: Path, overrides: list[str], runs_dir: Path, *,
                 field: str = "pretrained", current: str = "") -> None:
        super().__init__()
        self.config, self.overrides, self.runs_dir = config, overrides, runs_dir
        self.field, self.current = field, current
        self.choices: list[WeightChoice] = []
        self.arch, self.backbone = "?", "?"
        self._ids: dict[str, str] = {}  # option id -> source

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"weights for {self.field}"
            yield OptionList(Option("reading runs and the cache…", disabled=True),
                             id="weights-choices")
            yield Static("enter: choose · or type a file, URL, torchvision:…, hf:… or run:… "
                         "below and press enter · esc: cancel", id="picker-hint")
            yield Input(self.current, placeholder="path, URL or source", id="weights-path")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self._gather()

    @work(thread=True, exit_on_error=False, group="weights-picker")
    def _gather(self) -> None:
        arch, backbone = config_model(self.config, self.overrides)
        local = run_choices(self.runs_dir, arch) + cache_choices()
        self.app.call_from_thread(self._show, arch, backbone, local, None)
        zoo = zoo_choices(arch, backbone)
        self.app.call_from_thread(self._show, arch, backbone, local, zoo)

    def _show(self, arch: str, backbone: str, local: list[WeightChoice],
              zoo: list[WeightChoice] | None) -> None:
        self.arch, self.backbone = arch, backbone
        self.choices = (zoo or []) + local
        options: list[Option] = []
        self._ids = {}
        for section in ("zoo", "runs", "cache"):
            items = [c for c in self.choices if c.section == section]
            title = SECTIONS[section].format(arch=arch, backbone=backbone)
            options.append(Option(Text(title, style="bold"), disabled=True))
            if section == "zoo" and zoo is None:
                options.append(Option(Text("  asking torchvision…", style="dim"),
                                      disabled=True))
            elif not items:
                options.append(Option(Text("  none", style="dim"), disabled=True))
            for choice in items:
                label = Text("  ") + safe_text(choice.source) + Text("  ") + \
                    safe_text(choice.note, "dim")
                option_id = f"w{len(options)}"
                options.append(Option(label, id=option_id))
                self._ids[option_id] = choice.source
        option_list = self.query_one(OptionList)
        highlighted = option_list.highlighted
        option_list.clear_options()
        option_list.add_options(options)
        if highlighted is not None and highlighted < option_list.option_count:
            option_list.highlighted = highlighted

    def labels(self) -> list[str]:
        """The option texts, in order (for tests and captures)."""
        option_list = self.query_one(OptionList)
        return [str(option_list.get_option_at_index(i).prompt)
                for i in range(option_list.option_count)]

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        source = self._ids.get(event.option.id or "")
        if source:
            self.dismiss(source)

    @on(Input.Submitted, "#weights-path")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
