"""Point 6: one bad run hides or crashes nothing. A run.json that is ``[]``, not UTF-8, a
FIFO, or holds keys of the wrong type is listed as unreadable, with the reason, next to the
good runs (``dettui runs`` and the TUI). Malformed events are skipped by ``attach``, and an
overlong event line is skipped without being held in memory."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from engine.protocol.events import EventTail, encode, make_event
from tests.security.helpers import dettui, out, write_run
from tests.tui.conftest import make_app, run_pilot, wait_for

BAD_RUN_JSON: dict[str, bytes] = {
    "list": b"[]",
    "latin1": "{\"id\": \"caf\u00e9\"}".encode("latin-1"),
    "ended-number": json.dumps({"status": "finished", "ended": 5}).encode(),
    "best-string": json.dumps({"status": "finished",
                               "best": {"metric": "AP", "value": "0.5"}}).encode(),
    "id-number": json.dumps({"id": 5, "status": "finished"}).encode(),
    "status-odd": json.dumps({"status": "[/]"}).encode(),
    "pid-bool": json.dumps({"status": "running", "pid": True}).encode(),
}
REASONS = {"list": "must hold a JSON object", "latin1": "not UTF-8",
           "ended-number": "'ended' must be an ISO-8601 time",
           "best-string": "'best.value' must be a number", "id-number": "'id' must be a string",
           "status-odd": "'status' must be one of", "pid-bool": "'pid' must be an integer",
           "fifo": "named pipe"}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    write_run(runs, "good-1", created="2025-01-01T10:00:00+00:00")
    write_run(runs, "good-2", created="2025-01-02T10:00:00+00:00", status="failed",
              exit_code=1, best={"metric": "AP", "value": 0.25, "epoch": 0})
    for name, data in BAD_RUN_JSON.items():
        (runs / name).mkdir()
        (runs / name / "run.json").write_bytes(data)
    (runs / "fifo").mkdir()
    os.mkfifo(runs / "fifo" / "run.json")
    return runs


def test_runs_lists_good_runs_and_says_which_are_unreadable(runs: Path) -> None:
    proc = dettui("runs", "--runs-dir", str(runs), timeout=60)  # a FIFO must not hang it
    assert proc.returncode == 0, out(proc)
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    assert "good-1" in stdout and "good-2" in stdout and "0.250" in stdout
    for name, reason in REASONS.items():
        line = next(ln for ln in stderr.splitlines() if f"unreadable run {name}:" in ln)
        assert reason in line, (name, line)
    as_json = dettui("runs", "--json", "--runs-dir", str(runs), timeout=60)
    assert as_json.returncode == 0, out(as_json)
    assert [m["id"] for m in json.loads(as_json.stdout)] == ["good-2", "good-1"]


@pytest.mark.timeout(60)
def test_tui_lists_good_runs_beside_unreadable_ones(runs: Path) -> None:
    from tui.screens.error import ErrorScreen
    from tui.widgets.runs_table import RunsTable

    app = make_app(runs)
    total = 2 + len(REASONS)

    async def scenario(pilot) -> None:
        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == total, timeout=20,
                       what=f"{total} rows")
        rows = {r.id: r for r in table.view}
        assert rows["good-1"].status == "finished" and rows["good-2"].status == "failed"
        for name, reason in REASONS.items():
            assert rows[name].status == "unreadable" and reason in rows[name].meta["error"]
        assert not app.home.query_one("#runs-empty").display  # no "No runs ... yet"
        assert table.move_to("list")
        await pilot.press("e")  # what is wrong with it
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), what="the reason")
        assert "must hold a JSON object" in app.screen.report.message

    run_pilot(app, scenario)


def test_attach_skips_malformed_events(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = write_run(runs, "r1", status="finished", exit_code=0)
    lines = [
        encode(make_event("start", trainer="Trainer", epochs=1, iters_per_epoch=2,
                          max_iters=2)),
        '{"v": 1, "t": 1.0, "type": "train"}',  # missing every field
        encode(make_event("train", epoch="zero", iter=1, max_iters=2, loss=1.0, lr=0.1)),
        encode(make_event("eval", epoch=0, iter=1, model="model", metrics={"AP": "0.5"},
                          per_class={"a": "high"})),
        encode(make_event("eval", epoch=None, iter=1, model="model",
                          metrics={"AP": 0.5}, per_class={"a": 0.5})),
        '{"v": 1, "t": 1.0, "type": ["train"]}',
        '{"v": 1, "t": 1.0, "type": "checkpoint"}',
        '{"v": 1, "t": 1.0, "type": "error", "message": 7}',
        "[" * 100_000,  # nested too deep for the parser
        '{"v": 1, "t": 1.0, "type": "train", "iter": 1' + "0" * 5000 + "}",
        encode(make_event("train", epoch=0, iter=2, iters_per_epoch=2, max_iters=2, loss=0.5,
                          losses={"cls": None}, lr=0.1)),
        encode(make_event("status", status="finished")),
    ]
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")
    proc = dettui("attach", "r1", "--runs-dir", str(runs))
    assert proc.returncode == 0, out(proc)
    assert "Traceback" not in out(proc) and "could not be shown" not in out(proc)
    assert "epoch 1 iter 2/2" in out(proc)  # the good events are all there


def test_an_overlong_event_line_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    huge = 64 << 20
    with open(path, "w", encoding="utf-8") as f:
        f.write(encode(make_event("log", level="info", message="before")) + "\n")
        f.write(encode(make_event("log", level="info", message="x" * huge)) + "\n")
        f.write(encode(make_event("log", level="info", message="after")) + "\n")
    tracemalloc.start()
    try:
        events = EventTail(path).read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [e["message"] for e in events] == ["before", "after"]
    assert peak < 40 << 20, f"reading held {peak / 2**20:.0f} MiB for a {huge >> 20} MiB line"


def test_the_monitor_model_skips_an_overlong_line_too(tmp_path: Path) -> None:
    from tui.runs.runmodel import RunModel

    run = write_run(tmp_path / "runs", "r1")
    with open(run / "events.jsonl", "w", encoding="utf-8") as f:
        f.write(encode(make_event("train", epoch=0, iter=1, max_iters=3, loss=1.0)) + "\n")
        f.write(encode(make_event("log", level="info", message="x" * (32 << 20))) + "\n")
        f.write(encode(make_event("train", epoch=0, iter=2, max_iters=3, loss=0.5)) + "\n")
    model = RunModel(run)
    tracemalloc.start()
    try:
        model.catch_up()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert list(model.snapshot().train["iter"]) == [1.0, 2.0]
    assert peak < 40 << 20, f"the monitor held {peak / 2**20:.0f} MiB for a 32 MiB line"
