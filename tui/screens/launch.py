"""The launch form: trainer, weights, eval, determinism, AMP, device, processes, overrides.

The form is re-validated (in a thread, debounced) on every change with the same validator
the engine uses (``tui.process.spec.validate_spec``, no torch), so a bad key or a missing
weights file shows inline before anything starts. ``ctrl+s`` (or enter in a text field)
launches the engine detached and dismisses with ``(RunDirectory, Popen)``.

The fields follow the trainer the config (and the trainer choice) runs, read as the
validation runs (``tui.process.spec.config_facts``): a semi-supervised trainer shows the
teacher and student weights and the unlabeled set (its folder prefilled from
``UnsupTrainDataset``, overridable); co-tuning asks for the source detector's weights
(``pretrain_weights``), and the form refuses to launch without them, naming the key.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static
from textual.worker import get_current_worker

from engine.precision import amp_ignored_before_start
from engine.protocol.errors import ConfigError, UserError
from engine.protocol.rundir import RunDirectory
from engine.sysinfo import cuda_device_count, gpus, nvml_status
from engine.trainers.catalogue import TRAINERS
from engine.weightsource import plan as plan_source
from tui.process.launcher import engine_argv, launch, trainer_name
from tui.process.spec import WEIGHT_KEYS, ConfigFacts, LaunchSpec, config_facts, validate_spec
from tui.safetext import safe_text
from tui.screens.file_picker import FilePickerScreen
from tui.screens.weights_picker import WeightsPickerScreen

WEIGHT_MODES = (("none (random init)", "none"), ("pretrained weights", "pretrained"),
                ("resume a run or checkpoint", "resume"),
                ("teacher + student files", "teacher_student"))
TRAINER_LABELS = {"config": "from the config", **{t.choice: t.label for t in TRAINERS}}
"""The trainer choice: the config's, or one of the catalogue's (engine.trainers.catalogue)."""
PATH_FIELDS = ("config", "weights", "resume", "teacher", "student")
WEIGHTS_PLACEHOLDER = "file, URL, torchvision:…, hf:… or run:… (ctrl+g: pick)"
VALIDATE_DELAY = 0.3

LaunchResult = tuple[RunDirectory, subprocess.Popen]
"""What the screen dismisses with after a successful launch."""


def weights_mode_of(spec: LaunchSpec) -> str:
    if spec.resume:
        return "resume"
    if spec.teacher or spec.student:
        return "teacher_student"
    return "pretrained" if spec.weights else "none"


def device_options() -> tuple[list[tuple[str, str]], str]:
    """Device choices (auto, cpu, each NVIDIA GPU with its free memory) and a GPU note."""
    options = [("from the config", "config"), ("cpu", "cpu"), ("auto", "auto")]
    found = gpus()
    if not found:
        return options, nvml_status() or "no NVIDIA GPU"
    options.append(("cuda (all visible)", "cuda"))
    for gpu in found:
        options.append((f"cuda:{gpu.index}  {gpu.name}  {gpu.mem_free_mb / 1024:.1f} GiB free",
                        f"cuda:{gpu.index}"))
    return options, f"{len(found)} NVIDIA GPU{'s' if len(found) > 1 else ''}"


class LaunchScreen(Screen["LaunchResult | None"]):
    """The launch form, prefilled from a ``LaunchSpec``."""

    DEFAULT_CSS = """
    LaunchScreen #form {
        border: round $accent;
        border-title-style: bold;
        padding: 0 1;
        height: auto;
        max-height: 1fr;
    }
    LaunchScreen .row {
        height: auto;
    }
    LaunchScreen.-tall .row {
        margin-bottom: 1;
    }
    LaunchScreen .row > Label {
        width: 14;
        padding-right: 1;
        text-align: right;
        color: $text-muted;
    }
    LaunchScreen .row > Input, LaunchScreen .row > Select {
        width: 1fr;
    }
    LaunchScreen .row > .browse {
        min-width: 8;
        margin-left: 1;
    }
    LaunchScreen #switches > Checkbox {
        margin-right: 2;
    }
    LaunchScreen #device {
        width: 1fr;
        max-width: 60;
    }
    LaunchScreen #nproc, LaunchScreen #max-restarts {
        width: 8;
    }
    LaunchScreen .note {
        width: 1fr;
        padding-left: 2;
        color: $text-muted;
    }
    LaunchScreen #unlabeled-note {
        padding-left: 15;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    LaunchScreen #launch-status {
        height: auto;
        padding: 0 1;
        margin: 0 1;
    }
    LaunchScreen #launch-status.-error {
        color: $text-error;
        background: $error-muted;
    }
    LaunchScreen #launch-status.-ok {
        color: $text-success;
    }
    LaunchScreen #launch-command {
        height: 1;
        color: $text-muted;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    LaunchScreen #buttons {
        height: auto;
        padding: 0 1;
    }
    LaunchScreen #buttons > Button {
        margin-right: 2;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "launch", "Launch", priority=True),
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+o", "browse", "Browse file"),
        Binding("ctrl+g", "pick_weights", "Pick weights"),
    ]

    class Validated(Message):
        """The validation worker's verdict on the form (``error`` None when it is fine)."""

        def __init__(self, error: str | None, info: str, command: str,
                     facts: ConfigFacts | None = None) -> None:
            super().__init__()
            self.error = error
            self.info = info
            self.command = command
            self.facts = facts

    class FitReport(Message):
        """How the chosen weights fit the model (``python -m engine fit``), one line each."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, spec: LaunchSpec) -> None:
        super().__init__()
        self.spec = spec
        self.launching = False
        self._debounce: Timer | None = None
        self._path_target = "weights"
        self.facts: ConfigFacts | None = None
        """The trainer and data of the config as last read (None until then)."""
        self._unlabeled_prefill: str | None = None
        self._fits: dict[tuple, str] = {}  # (config, overrides, source, file time) -> line
        self._auto_mode: str | None = None
        """The weights mode before co-tuning set "pretrained" itself (None when the user
        chose the mode): restored when the trainer is no longer co-tuning."""

    # ----------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        spec = self.spec
        mode = weights_mode_of(spec)
        with VerticalScroll(id="form") as form:
            form.border_title = "New run"
            form.border_subtitle = "tab: next field · ctrl+s: launch · esc: cancel"
            yield from self._row("config", Input(str(spec.config), id="config", compact=True),
                                 browse=True)
            yield from self._row("run name", Input(spec.name or "", id="name", compact=True,
                                                   placeholder=Path(spec.config).stem))
            yield from self._row("trainer", Select(
                [(TRAINER_LABELS[t], t) for t in TRAINER_LABELS], value=spec.trainer,
                allow_blank=False, id="trainer", compact=True))
            yield from self._row("weights", Select(WEIGHT_MODES, value=mode, allow_blank=False,
                                                   id="weights-mode", compact=True))
            yield from self._row("pretrained", Input(
                spec.weights or "", id="weights", compact=True,
                placeholder=WEIGHTS_PLACEHOLDER), browse=True,
                classes="mode-pretrained")
            yield from self._row("resume from", Input(
                spec.resume or "", id="resume", compact=True,
                placeholder="run id, checkpoint file, or auto"), browse=True,
                classes="mode-resume")
            yield from self._row("teacher", Input(spec.teacher or "", id="teacher",
                                                  compact=True), browse=True,
                                 classes="mode-teacher_student")
            yield from self._row("student", Input(spec.student or "", id="student",
                                                  compact=True), browse=True,
                                 classes="mode-teacher_student")
            yield from self._row("unlabeled", Input(
                spec.unlabeled or "", id="unlabeled", compact=True,
                placeholder="folder of the unlabeled set (UnsupTrainDataset.dataset_dir)"),
                classes="semi-row")
            yield Static("", id="unlabeled-note", classes="semi-row")
            with Horizontal(classes="row", id="switches"):
                yield Label("options")
                yield Checkbox("eval", spec.eval, id="eval", compact=True)
                yield Checkbox("enable_ce (deterministic)", spec.enable_ce, id="enable-ce",
                               compact=True)
                yield Checkbox("AMP", spec.amp, id="amp", compact=True)
            with Horizontal(classes="row"):
                yield Label("device")
                yield Select([("from the config", "config")], value="config",
                             allow_blank=False, id="device", compact=True)
                yield Static("", id="gpu-note", classes="note")
            with Horizontal(classes="row"):
                yield Label("processes")
                yield Input(str(spec.nproc), id="nproc", restrict=r"[0-9]*", max_length=3,
                            compact=True)
                yield Static("per machine; more than 1 runs torchrun (DDP)", classes="note")
            with Horizontal(classes="row"):
                yield Label("restarts")
                yield Input(str(spec.max_restarts), id="max-restarts", restrict=r"[0-9]*",
                            max_length=2, compact=True)
                yield Static("relaunch a crashed engine from its last checkpoint up to this "
                             "often", classes="note")
            yield from self._row("overrides", Input(
                " ".join(shlex.quote(o) for o in spec.overrides), id="overrides",
                compact=True, placeholder="-o style: key=value section.key=value ..."))
        yield Static("checking…", id="launch-status")
        yield Static("", id="weights-fit")
        yield Static("", id="launch-command")
        with Horizontal(id="buttons"):
            yield Button("Launch (ctrl+s)", variant="success", id="launch", compact=True)
            yield Button("Cancel (esc)", id="cancel", compact=True)
        yield Footer(compact=True, show_command_palette=False)

    def _row(self, label: str, field: Widget, *, browse: bool = False,
             classes: str = "") -> ComposeResult:
        with Horizontal(classes=f"row {classes}".strip()):
            yield Label(label, id=f"label-{field.id}")
            yield field
            if browse:
                yield Button("browse", id=f"browse-{field.id}", classes="browse", compact=True)

    def on_mount(self) -> None:
        self._show_rows()
        self._load_devices()
        self.query_one("#name", Input).focus()
        self.validate_soon()

    @work(thread=True, exit_on_error=False, group="launch-devices")
    def _load_devices(self) -> None:
        options, note = device_options()
        self.app.call_from_thread(self._set_devices, options, note)

    def _set_devices(self, options: list[tuple[str, str]], note: str) -> None:
        select = self.query_one("#device", Select)
        select.set_options(options)
        wanted = self.spec.device or "config"
        values = {v for _, v in options}
        if wanted not in values:  # e.g. cuda:3 on a machine with two GPUs: keep it visible
            select.set_options([*options, (f"{wanted} (not found)", wanted)])
        select.value = wanted
        self.query_one("#gpu-note", Static).update(note)

    def _show_rows(self) -> None:
        """Show the fields the weights mode and the config's trainer ask for: a semi
        trainer's teacher, student and unlabeled set, co-tuning's source weights."""
        mode = str(self.query_one("#weights-mode", Select).value)
        facts = self.facts
        semi = facts is not None and facts.semi
        cot = facts is not None and facts.cotuning
        shown = {"pretrained": mode == "pretrained" or (cot and mode != "resume"),
                 "resume": mode == "resume",
                 "teacher_student": mode == "teacher_student" or (semi and mode == "none")}
        for name, show in shown.items():
            for row in self.query(f".mode-{name}"):
                row.display = show
        for row in self.query(".semi-row"):
            row.display = semi
        self.query_one("#label-weights", Label).update("source model" if cot else "pretrained")
        weights = self.query_one("#weights", Input)
        if cot:
            weights.placeholder = (f"from the config: {facts.pretrain_weights}"
                                   if facts and facts.pretrain_weights else
                                   "the source detector (pretrain_weights): required")
        else:
            weights.placeholder = WEIGHTS_PLACEHOLDER
        for which in ("teacher", "student"):
            self.query_one(f"#{which}", Input).placeholder = (
                f"pretrain_{which}_weights (optional)" if semi else "")

    def _shown(self, widget_id: str) -> bool:
        """Whether the row of a field is shown (hidden fields never reach the spec)."""
        row = self.query_one(f"#{widget_id}").parent
        return bool(row is not None and row.display)

    def _apply_facts(self, facts: ConfigFacts | None) -> None:
        if facts is None or facts == self.facts:
            return
        self.facts = facts
        field = self.query_one("#unlabeled", Input)
        if facts.semi and field.value.strip() in ("", self._unlabeled_prefill or ""):
            field.value = facts.unlabeled_dir or ""  # the config's own: no override
        self._unlabeled_prefill = facts.unlabeled_dir
        self.query_one("#unlabeled-note", Static).update(safe_text(facts.unlabeled_what))
        mode = self.query_one("#weights-mode", Select)
        if facts.cotuning and mode.value == "none":  # co-tuning starts from a source model
            self._auto_mode = "none"
            mode.value = "pretrained"
        elif not facts.cotuning and self._auto_mode is not None:
            # the trainer changed back: the mode the form had before co-tuning chose one
            # (unless a weights file was typed meanwhile: that stays the user's choice)
            if not self._value("weights"):
                mode.value = self._auto_mode
            self._auto_mode = None
        self._show_rows()

    # ----------------------------------------------------------------- form -> spec

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def _checked(self, widget_id: str) -> bool:
        return self.query_one(f"#{widget_id}", Checkbox).value

    def build_spec(self) -> LaunchSpec:
        """The ``LaunchSpec`` the form describes (``ConfigError`` for unparsable fields)."""
        mode = self.query_one("#weights-mode", Select).value
        try:
            overrides = shlex.split(self._value("overrides"))
        except ValueError as exc:
            raise ConfigError(f"overrides: {exc}", key="overrides",
                              hint="quote values with spaces: key='a b'") from None
        nproc_text = self._value("nproc") or "1"
        if not nproc_text.isdigit() or int(nproc_text) < 1:
            raise ConfigError(f"processes must be a whole number >= 1, got {nproc_text!r}",
                              key="nproc")
        nproc = int(nproc_text)
        restarts_text = self._value("max-restarts") or "0"
        if not restarts_text.isdigit():
            raise ConfigError(f"restarts must be a whole number >= 0, got {restarts_text!r}",
                              key="max_restarts")
        device = self.query_one("#device", Select).value
        config = self._value("config")
        if not config:
            raise ConfigError("choose a config file", key="config")
        return LaunchSpec(
            config=Path(config).expanduser(),
            overrides=overrides,
            runs_dir=self.spec.runs_dir,
            name=self._value("name") or None,
            eval=self._checked("eval"),
            resume=(self._value("resume") or None) if mode == "resume" else None,
            weights=(self._value("weights") or None) if self._shown("weights") else None,
            teacher=(self._value("teacher") or None) if self._shown("teacher") else None,
            student=(self._value("student") or None) if self._shown("student") else None,
            unlabeled=self._unlabeled_override(),
            enable_ce=self._checked("enable-ce"),
            amp=self._checked("amp"),
            device=None if device in ("config", Select.BLANK) else str(device),
            trainer=str(self.query_one("#trainer", Select).value),
            nproc=nproc,
            max_restarts=int(restarts_text),
            nnodes=self.spec.nnodes,
            node_rank=self.spec.node_rank,
            master_addr=self.spec.master_addr,
            master_port=self.spec.master_port,
            force=self.spec.force,
            tensorboard=self.spec.tensorboard,  # `dettui run CFG --tensorboard`: kept
            wandb=self.spec.wandb,
        )

    def _unlabeled_override(self) -> str | None:
        """The unlabeled folder typed in the form, unless it is the config's own."""
        value = self._value("unlabeled")
        if not self._shown("unlabeled") or not value or value == self._unlabeled_prefill:
            return None
        return value

    # ----------------------------------------------------------------- validation

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _form_changed(self, event: Message) -> None:
        if isinstance(event, Select.Changed) and event.select.id == "weights-mode":
            if self._auto_mode is not None and event.value != "pretrained":
                self._auto_mode = None  # the user chose: theirs to keep
            self._show_rows()
        if isinstance(event, Input.Changed) and event.input.id == "config":
            # the run is named after its config unless a name is typed
            self.query_one("#name", Input).placeholder = Path(event.value.strip()).stem
        self.validate_soon()

    def validate_soon(self) -> None:
        """Re-validate after a short pause in typing."""
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(VALIDATE_DELAY, self._validate_now)

    def _validate_now(self) -> None:
        try:
            spec = self.build_spec()
        except UserError as exc:
            self._show_verdict(exc.render(), "", "")
            return
        self._validate_worker(spec)

    @work(thread=True, exclusive=True, group="launch-validate", exit_on_error=False)
    def _validate_worker(self, spec: LaunchSpec) -> None:
        facts = config_facts(replace(spec, unlabeled=None))  # the config's own unlabeled set
        try:
            cfg = validate_spec(spec)
        except UserError as exc:
            self.post_message(self.Validated(exc.render(), "", "", facts))
            return
        if spec.resume:
            what = f"resume {spec.resume}"
        elif cfg.pretrain_teacher_weights and cfg.pretrain_student_weights:
            what = "teacher + student weights"
        elif cfg.pretrain_weights:
            what = "source weights" if facts and facts.cotuning else "pretrained weights"
        else:
            what = "random init"
        info = (f"✓ {cfg.architecture} · {cfg.backbone.name} · {cfg.num_classes} classes · "
                f"{cfg.epoch} epochs · {trainer_name(cfg)} · {what} · device {cfg.device}")
        amp = amp_ignored_before_start(cfg.amp, cfg.device, cuda_device_count())
        if amp is not None:  # the engine says it again in train.log and the console
            info += f" · ⚠ {amp}"
        command = shlex.join(engine_argv(spec.runs_dir / "<new run>", spec))
        self.post_message(self.Validated(None, info, command, facts))
        sources = {key: getattr(cfg, key) for key in WEIGHT_KEYS if getattr(cfg, key)}
        if spec.resume:
            sources = {}
        if not (cfg.pretrain_teacher_weights and cfg.pretrain_student_weights):
            sources.pop("pretrain_teacher_weights", None)
            sources.pop("pretrain_student_weights", None)
        else:
            sources.pop("pretrain_weights", None)
        lines = [self._fit_line(spec, key, source) for key, source in sources.items()]
        if not get_current_worker().is_cancelled:
            self.post_message(self.FitReport("\n".join(lines)))

    def _fit_line(self, spec: LaunchSpec, key: str, source: str) -> str:
        """The partial-load report of one weights source on the config's model, computed
        by the engine in a subprocess (torch), without training; memoised."""
        label = {"pretrain_weights": "weights", "pretrain_teacher_weights": "teacher",
                 "pretrain_student_weights": "student"}[key]
        try:
            where = plan_source(source, runs_dir=spec.runs_dir)
            stamp = where.path.stat().st_mtime_ns if where.path.is_file() else None
        except (UserError, OSError):
            return ""
        if where.remote and stamp is None:  # nothing to read yet: no need to ask the engine
            size = f" ({where.size / 1e6:.1f} MB)" if where.size else ""
            return f"{label}: {source} is not downloaded yet{size}; it downloads when the " \
                   "run starts"
        memo = (str(spec.config), tuple(spec.all_overrides()), source, stamp)
        if memo not in self._fits:
            argv = [sys.executable, "-m", "engine", "fit", str(spec.config), "--weights",
                    source, "--runs-dir", str(spec.runs_dir)]
            for override in spec.all_overrides():
                argv += ["-o", override]
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=180,
                                     check=False)
                report = json.loads(out.stdout.strip().splitlines()[-1]) \
                    if out.returncode == 0 and out.stdout.strip() else None
            except (OSError, subprocess.TimeoutExpired, ValueError):
                out, report = None, None
            if report is None:
                why = (out.stderr.strip().splitlines() or ["?"])[-1] if out else "no answer"
                line = f"{label}: the fit could not be computed ({why.removeprefix('error: ')})"
            elif not report.get("cached"):
                size = report.get("size")
                line = (f"{label}: {source} is not downloaded yet"
                        + (f" ({size / 1e6:.1f} MB)" if isinstance(size, int) else "")
                        + "; it downloads when the run starts")
            else:
                line = (f"{label}: {report['loaded']} of the model's {report['model_tensors']} "
                        f"tensors load from its {report['file_tensors']} ({report['skipped']} "
                        f"skipped for shape, {report['unused']} unused)")
            self._fits[memo] = line
        return self._fits[memo]

    def on_launch_screen_fit_report(self, message: FitReport) -> None:
        self.query_one("#weights-fit", Static).update(safe_text(message.text, newlines=True))

    def on_launch_screen_validated(self, message: Validated) -> None:
        if message.error:
            self.query_one("#weights-fit", Static).update("")
        self._apply_facts(message.facts)
        self._show_verdict(message.error, message.info, message.command)

    def _show_verdict(self, error: str | None, info: str, command: str) -> None:
        status = self.query_one("#launch-status", Static)
        status.set_classes("-error" if error else "-ok")
        # Errors and the command quote the config and its values: text, controls visible.
        status.update(safe_text(error, newlines=True) if error else safe_text(info))
        self.query_one("#launch-command", Static).update(
            safe_text("$ " + command) if command else "")

    # ----------------------------------------------------------------- launch

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#launch")
    def action_launch(self) -> None:
        if self.launching:
            return
        try:
            spec = self.build_spec()
        except UserError as exc:
            self._show_verdict(exc.render(), "", "")
            return
        self.launching = True
        self.query_one("#launch-status", Static).update("starting the engine…")
        self._launch_worker(spec)

    @work(thread=True, group="launch", exit_on_error=False)
    def _launch_worker(self, spec: LaunchSpec) -> None:
        try:
            result = launch(spec)
        except UserError as exc:
            self.app.call_from_thread(self._launch_refused, exc.render())
            return
        finally:
            self.launching = False
        self.app.call_from_thread(self.dismiss, result)

    def _launch_refused(self, message: str) -> None:
        self._show_verdict(message, "", "")
        self.notify("Not launched: fix the error shown in the form.", severity="error")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    # ----------------------------------------------------------------- file picker

    @on(Button.Pressed, ".browse")
    def _browse_pressed(self, event: Button.Pressed) -> None:
        self._pick((event.button.id or "").removeprefix("browse-"))

    def action_browse(self) -> None:
        focused = self.focused
        target = focused.id if isinstance(focused, Input) and focused.id in PATH_FIELDS \
            else {"pretrained": "weights", "resume": "resume", "teacher_student": "teacher",
                  "none": "config"}[str(self.query_one("#weights-mode", Select).value)]
        self._pick(target or "config")

    def _pick(self, target: str) -> None:
        current = self._value(target)
        if current and Path(current).expanduser().exists():
            start = Path(current).expanduser()
            start = start if start.is_dir() else start.parent
        elif target == "resume":
            start = self.spec.runs_dir
        elif target == "config":
            start = Path(self.spec.config).parent
        else:
            start = Path.cwd()
        suffixes = (".yml", ".yaml") if target == "config" else \
            (".pt", ".pth", ".safetensors", ".pdparams")

        def picked(path: Path | None) -> None:
            if path is not None:
                field = self.query_one(f"#{target}", Input)
                field.value = str(path)
                field.focus()

        self.app.push_screen(FilePickerScreen(start, suffixes, title=f"choose {target}"), picked)

    # ----------------------------------------------------------------- weights picker

    def action_pick_weights(self) -> None:
        """The weights picker for the focused weights field (else the mode's first)."""
        focused = self.focused
        target = focused.id if isinstance(focused, Input) and focused.id in \
            ("weights", "teacher", "student") else None
        if target is None:
            mode = str(self.query_one("#weights-mode", Select).value)
            target = "teacher" if self._shown("teacher") and mode != "pretrained" else "weights"
            if not self._shown(target):
                self.query_one("#weights-mode", Select).value = "pretrained"
        try:
            spec = self.build_spec()
        except UserError:
            spec = self.spec

        def picked(source: str | None) -> None:
            if source:
                field = self.query_one(f"#{target}", Input)
                field.value = source
                field.focus()

        label = {"weights": "pretrained", "teacher": "teacher", "student": "student"}[target]
        self.app.push_screen(WeightsPickerScreen(spec.config, spec.all_overrides(),
                                                 spec.runs_dir, field=label,
                                                 current=self._value(target)), picked)

