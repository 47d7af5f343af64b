"""Point 2: strings from run folders, events, configs and datasets reach no terminal as raw
control characters (a window title, an OSC 8 hyperlink, a cleared screen) nor as Rich
markup (a clickable ``[link=...]``), in any front-end: ``runs``, ``logs``, ``attach``, and
the TUI's runs table, config preview, monitor, error modal and compare screen."""

from __future__ import annotations

import json
from pathlib import Path

from engine.protocol.events import encode, make_event
from tests.conftest import engine_env
from tests.security.helpers import dettui, out, write_run
from tests.tui.conftest import make_app, run_pilot, wait_for

TITLE = "\x1b]0;PWNED\x07"  # OSC 0: retitle the terminal window
LINK = "\x1b]8;;file:///etc/passwd\x1b\\click\x1b]8;;\x1b\\"  # OSC 8: a hyperlink
CLEAR = "\x1b[2J\x1b[H"  # clear the screen
MARKUP_LINK = "[link=file:///etc/passwd]y[/link]"


def _color_env() -> dict[str, str]:
    """As on a real terminal: Rich emits styles (and would emit links)."""
    env = engine_env()
    env.update(FORCE_COLOR="1", COLUMNS="250", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    return env


def _events(run: Path, *events: dict) -> None:
    with open(run / "events.jsonl", "w", encoding="utf-8") as f:
        for ev in events:
            f.write(encode(ev) + "\n")


def _no_terminal_control(data: bytes) -> None:
    """Styles (SGR, ``ESC [ ... m``) are the console's own; nothing else may get through."""
    assert b"\x1b]" not in data, data  # no OSC: no title, no hyperlink
    assert b"\x1b[2J" not in data and b"\x07" not in data and "\x9b".encode() not in data


def test_runs_prints_run_json_text_as_text(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # (`dettui runs` shows the config's file name only: the markup goes in a field it shows
    # whole, the trainer)
    write_run(runs, "r1", trainer=f"{TITLE}Trainer{MARKUP_LINK}", config_path=f"cfg/{LINK}.yml",
              name=LINK)
    proc = dettui("runs", "--runs-dir", str(runs), env=_color_env())
    assert proc.returncode == 0, out(proc)
    _no_terminal_control(proc.stdout)
    text = out(proc)
    assert "\\x1b]0;PWNED\\x07Trainer" in text  # shown, visibly
    assert MARKUP_LINK in text  # as written: not a link


def test_logs_drops_control_characters(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = write_run(runs, "r1")
    (run / "train.log").write_bytes(
        f"step 1 {TITLE}\n{CLEAR}step 2\n{LINK}\nC1 \x9b31m csi\n".encode())
    proc = dettui("logs", "r1", "--runs-dir", str(runs))
    assert proc.returncode == 0, out(proc)
    assert b"\x1b" not in proc.stdout and "\x9b".encode() not in proc.stdout, proc.stdout
    assert out(proc).splitlines() == ["step 1 ]0;PWNED", "[2J[Hstep 2",
                                      "]8;;file:///etc/passwd\\click]8;;\\", "C1 31m csi"]


def test_attach_shows_event_strings_as_text(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = write_run(runs, "r1", status="finished", exit_code=0)
    _events(run,
            make_event("start", trainer=f"{TITLE}Trainer", device=LINK, epochs=1,
                       iters_per_epoch=1, max_iters=1, start_iter=0),
            make_event("train", epoch=0, iter=1, iters_per_epoch=1, max_iters=1, loss=1.0,
                       losses={f"loss{CLEAR}": 1.0}, lr=0.01),
            make_event("log", level="warning", message=f"{MARKUP_LINK} {TITLE}"),
            make_event("eval", epoch=0, iter=1, model=LINK, metrics={"AP": 0.5},
                       per_class={LINK: 0.5, MARKUP_LINK: 0.25}, summary=[TITLE]),
            make_event("checkpoint", kind="best", path=f"/x/{LINK}", epoch=0, iter=1),
            make_event("status", status="finished"))
    proc = dettui("attach", "r1", "--runs-dir", str(runs), env=_color_env())
    assert proc.returncode == 0, out(proc)
    _no_terminal_control(proc.stdout + proc.stderr)
    assert MARKUP_LINK in out(proc)


def _assert_screen_clean(app, *visible: str) -> None:
    svg = app.export_screenshot()
    assert "\x1b" not in svg and "\x07" not in svg
    for text in visible:
        assert text in svg, text


def test_tui_runs_table_and_config_preview(tmp_path: Path) -> None:
    from tui.widgets.config_tree import ConfigTree
    from tui.widgets.runs_table import RunsTable
    from tui.widgets.yaml_view import YamlView

    runs, configs = tmp_path / "runs", tmp_path / "configs"
    write_run(runs, "r1", trainer=f"{TITLE}T", config_path=f"cfg/{LINK}.yml")
    configs.mkdir()
    # Raw control characters (YAML itself refuses the file, the preview shows it) ...
    (configs / "evil.yml").write_text(f"# a comment {TITLE}{CLEAR}\nnum_classes: 1\n",
                                      encoding="utf-8")
    # ... and YAML escapes, which put them in keys and values of a valid file.
    (configs / "escaped.yml").write_text('"key\\e]0;PWNED\\a": 1\nname: "\\e[2J"\n',
                                         encoding="utf-8")
    app = make_app(runs, configs)

    async def scenario(pilot) -> None:
        table = app.home.query_one(RunsTable)
        tree = app.home.query_one(ConfigTree)
        await wait_for(pilot, lambda: table.row_count == 1 and bool(tree.checks),
                       timeout=20, what="the scans")
        assert tree.select_path(configs / "evil.yml")
        view = app.home.query_one(YamlView)
        await wait_for(pilot, lambda: view.path == configs / "evil.yml", what="the preview")
        await pilot.pause(0.5)
        _assert_screen_clean(app, "\\x1b]0;PWNED")
        assert tree.select_path(configs / "escaped.yml")
        await wait_for(pilot, lambda: view.path == configs / "escaped.yml", what="preview 2")
        view.resolved = True
        await pilot.pause(0.8)
        _assert_screen_clean(app, "\\x1b]0;PWNED")

    run_pilot(app, scenario)


def test_tui_monitor_error_modal_and_compare(tmp_path: Path) -> None:
    from tui.screens.compare import CompareScreen
    from tui.screens.error import ErrorReport, ErrorScreen
    from tui.screens.monitor import MonitorScreen

    runs = tmp_path / "runs"
    run = write_run(runs, "r1", status="failed", exit_code=1, trainer=f"{TITLE}T",
                    host=f"h{LINK}")
    _events(run,
            make_event("start", trainer="T", epochs=1, iters_per_epoch=1, max_iters=1),
            make_event("train", epoch=0, iter=1, iters_per_epoch=1, max_iters=1, loss=1.0,
                       losses={f"term{TITLE}": 1.0}, lr=0.01),
            make_event("eval", epoch=0, iter=1, model=f"m{TITLE}", metrics={"AP": 0.5},
                       per_class={f"cls{LINK}": 0.5}),
            make_event("system", cpu_percent=1.0, gpus=[{"index": 0, "name": f"G{TITLE}"}]),
            make_event("error", error_type="RuntimeError", message=f"boom {TITLE}{LINK}",
                       traceback=f"Traceback (most recent call last):\n  x {CLEAR}\n",
                       user_error=False),
            make_event("status", status="failed"))
    (run / "stderr.log").write_text(f"Traceback (most recent call last):\n{TITLE}\n")
    (run / "config.yaml").write_text('lr: "\\e]0;PWNED\\a"\n', encoding="utf-8")
    other = write_run(runs, "r2")
    (other / "config.yaml").write_text("lr: 0.1\n", encoding="utf-8")
    app = make_app(runs)

    async def scenario(pilot) -> None:
        await pilot.pause(0.3)
        app.push_screen(MonitorScreen(run))
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen)
                       and app.screen.snapshot is not None
                       and not app.screen.snapshot.loading, what="the monitor")
        await pilot.pause(1.5)  # plots, tables, system panel and logs drawn
        _assert_screen_clean(app, "\\x1b]0;PWNED")
        app.push_screen(ErrorScreen(ErrorReport.from_run(run)))
        await pilot.pause(0.3)
        await pilot.press("t")  # the traceback too
        await pilot.pause(0.3)
        _assert_screen_clean(app, "\\x1b]0;PWNED")
        await pilot.press("escape", "escape")
        app.push_screen(CompareScreen([run, other]))
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen)
                       and app.screen.runs, what="the compare screen")
        await pilot.pause(0.5)
        _assert_screen_clean(app, "\\x1b]0;PWNED")

    run_pilot(app, scenario, size=(160, 50))
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
