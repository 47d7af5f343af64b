"""The run-directory contract: event round-trip, truncated lines, atomic run.json, ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.protocol.errors import RunError
from engine.protocol.events import SCHEMA_VERSION, EventTail, EventWriter, encode, read_events
from engine.protocol.rundir import RunDirectory, check_run_id, list_runs, resolve_run


def test_event_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        sent = [
            w.write("train", epoch=0, iter=1, loss=1.5, losses={"cls": 1.0, "box": 0.5}, lr=0.01),
            w.write("eval", epoch=0, iter=1, model="model",
                    metrics={"AP": 0.5, "AP50": 0.8, "AP75": 0.4, "APs": 0.1, "APm": 0.5,
                             "APl": 0.7}, per_class={"circle": 0.6}),
            w.write("checkpoint", path="/x/last.pt", kind="last", epoch=0, iter=1),
        ]
    got = read_events(path)
    assert got == sent
    assert all(e["v"] == SCHEMA_VERSION and isinstance(e["t"], float) for e in got)


def test_non_finite_floats_become_null() -> None:
    line = encode({"v": 1, "t": 0.0, "type": "train", "loss": float("nan")})
    assert json.loads(line)["loss"] is None


def test_tail_tolerates_truncated_and_growing_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read() == []  # not there yet
    full = encode({"v": 1, "t": 1.0, "type": "status", "status": "running"})
    path.write_text(full + "\n" + full[:10])  # a writer killed mid-line
    assert [e["type"] for e in tail.read()] == ["status"]
    with open(path, "a") as f:  # ... the line completes later
        f.write(full[10:] + "\n")
    assert [e["type"] for e in tail.read()] == ["status"]
    assert tail.read() == []


def test_writer_after_a_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"v": 1, "t": 1.0, "type": "tra')  # SIGKILLed mid-write
    with EventWriter(path) as w:
        w.write("status", status="running")
    assert [e["type"] for e in read_events(path)] == ["status"]


def test_run_json_rewrite_is_atomic_under_kill(tmp_path: Path) -> None:
    """A process SIGKILLed while rewriting run.json in a loop never leaves it torn."""
    run = RunDirectory.create(tmp_path, "atomic")
    run.write_meta({"id": run.id, "status": "running", "n": 0})
    code = ("import sys; from engine.protocol.rundir import RunDirectory\n"
            "r = RunDirectory(sys.argv[1])\n"
            "for n in range(100000): r.update_meta(n=n, pad='x' * 20000)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run.path)],
                            env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    import time

    time.sleep(1.0)
    proc.kill()
    proc.wait()
    meta = json.loads(run.run_json.read_text())
    assert meta["id"] == run.id and meta["n"] > 0


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", "/etc", "a\\b", ".hidden", "x" * 200])
def test_run_ids_cannot_escape_the_runs_dir(bad: str, tmp_path: Path) -> None:
    with pytest.raises(RunError):
        check_run_id(bad)
    with pytest.raises(RunError):
        RunDirectory.create(tmp_path, run_id=bad)


def test_resolve_and_list_runs(tmp_path: Path) -> None:
    a = RunDirectory.create(tmp_path, "alpha")
    a.write_meta({"id": a.id, "status": "finished", "created": "2026-01-01T00:00:00"})
    b = RunDirectory.create(tmp_path, "beta")
    b.write_meta({"id": b.id, "status": "running", "created": "2026-01-02T00:00:00",
                  "host": os.uname().nodename, "pid": 2**22 + 12345})  # a pid that is gone
    assert resolve_run(tmp_path, a.id).path == a.path
    assert resolve_run(tmp_path, "beta").path == b.path      # unique substring
    with pytest.raises(RunError, match="no run"):
        resolve_run(tmp_path, "gamma")
    runs = list_runs(tmp_path)
    assert [r["id"] for r in runs] == [b.id, a.id]           # newest first
    assert runs[0]["status"] == "failed"                      # its engine died silently


def test_semi_fields_round_trip_and_malformed_ones_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with EventWriter(path) as w:
        sent = [
            w.write("start", trainer="DenseTeacher", max_iters=4, phase="burn_in",
                    semi_start_iter=2, teacher_start_iter=1),
            w.write("train", iter=1, loss=1.0, losses={"cls": 1.0}, phase="burn_in",
                    next_phase="semi", next_phase_iter=2, teacher_start_iter=1,
                    stats={"unsup_weight": 0.0}),
            w.write("train", iter=3, loss=1.0, losses={"cls": 1.0}, phase="semi",
                    next_phase=None, next_phase_iter=None,
                    stats={"pseudo_points_per_image": 0.5, "pseudo_score": float("nan")}),
        ]
    with open(path, "a") as f:  # a reader must not get a stats or phase it can't use
        f.write('{"v":1,"t":1.0,"type":"train","iter":4,"stats":"many"}\n')
        f.write('{"v":1,"t":1.0,"type":"train","iter":4,"phase":3}\n')
        f.write('{"v":1,"t":1.0,"type":"start","semi_start_iter":"soon"}\n')
    got = read_events(path)
    assert got == sent
    assert got[2]["stats"]["pseudo_score"] is None  # NaN written as null
