"""The runs index: incremental scans, effective status, sort and filter (no UI)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.tui.conftest import BASE_T, make_run
from tui.runs.index import RunsIndex, filter_rows, sort_rows, tail_progress


def test_scan_reads_rows_newest_first(runs_dir: Path, three_runs: list) -> None:
    result = RunsIndex(runs_dir).scan()
    assert [r.id for r in result.rows] == [
        "20250101-120000-charlie", "20250101-110000-bravo", "20250101-100000-alpha"]
    alpha = result.rows[-1]
    assert alpha.status == "finished"
    assert alpha.best_ap == 0.412
    assert (alpha.epoch, alpha.epochs) == (2, 2)
    assert alpha.config_name == "good"
    assert alpha.duration(now=0) == 600.0
    assert result.changed


def test_rescan_rereads_only_changed_run_json(runs_dir: Path, three_runs: list,
                                              monkeypatch) -> None:
    index = RunsIndex(runs_dir)
    index.scan()
    reads: list[str] = []
    from engine.protocol.rundir import RunDirectory

    original = RunDirectory.read_meta

    def counting(self: RunDirectory) -> dict:
        reads.append(self.id)
        return original(self)

    monkeypatch.setattr(RunDirectory, "read_meta", counting)
    assert not index.scan().changed
    assert reads == []
    run = three_runs[0]
    run.update_meta(name="renamed")
    reads.clear()
    result = index.scan()
    assert reads == [run.id]
    assert result.changed
    assert next(r for r in result.rows if r.id == run.id).name == "renamed"


def test_dead_engine_is_failed_and_reported_once(runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-live", status="running")
    index = RunsIndex(runs_dir)
    assert index.scan().rows[0].status == "running"  # our own pid: alive
    run.update_meta(pid=999_999_99)  # the engine "died" without a word
    result = index.scan()
    assert result.rows[0].status == "failed"
    assert [r.id for r in result.newly_failed] == [run.id]
    assert index.scan().newly_failed == []


def test_old_failed_runs_are_not_reported_as_new(runs_dir: Path, three_runs: list) -> None:
    assert RunsIndex(runs_dir).scan().newly_failed == []


def test_foreign_folders_are_skipped_and_unreadable_runs_listed(runs_dir: Path,
                                                                three_runs: list) -> None:
    (runs_dir / "not-a-run").mkdir()
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "run.json").write_text("{not json", encoding="utf-8")
    (runs_dir / "notes.txt").write_text("hello", encoding="utf-8")
    rows = RunsIndex(runs_dir).scan().rows
    assert len(rows) == 4
    broken = next(r for r in rows if r.id == "broken")
    assert broken.status == "unreadable" and "not valid JSON" in broken.meta["error"]


def test_missing_runs_dir_is_empty(tmp_path: Path) -> None:
    result = RunsIndex(tmp_path / "nope").scan()
    assert result.rows == []


def test_progress_falls_back_to_the_last_train_event(runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-live", status="running", progress=False,
                   epochs=4, iters_per_epoch=5)
    assert tail_progress(run.events) == {"epoch": 2, "epochs": 4, "iter": 10, "max_iters": 20}
    row = RunsIndex(runs_dir).scan().rows[0]
    assert (row.epoch, row.epochs, row.iter, row.max_iters) == (2, 4, 10, 20)
    assert row.fraction == 0.5


def test_tail_progress_tolerates_a_truncated_last_line(runs_dir: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-live", status="running", progress=False)
    with open(run.events, "a", encoding="utf-8") as f:
        f.write('{"v":1,"type":"train","iter":99')  # the writer was killed mid-line
    assert tail_progress(run.events)["iter"] == 5


def test_sort_by_each_column_keeps_missing_values_last(runs_dir: Path,
                                                       three_runs: list) -> None:
    rows = RunsIndex(runs_dir).scan().rows
    by_ap = sort_rows(rows, "best_ap", reverse=True, now=BASE_T)
    assert [r.id.split("-")[-1] for r in by_ap] == ["alpha", "bravo", "charlie"]
    by_ap_up = sort_rows(rows, "best_ap", reverse=False, now=BASE_T)
    assert [r.id.split("-")[-1] for r in by_ap_up] == ["bravo", "alpha", "charlie"]
    by_duration = sort_rows(rows, "duration", reverse=False, now=BASE_T)
    assert [r.id.split("-")[-1] for r in by_duration] == ["bravo", "alpha", "charlie"]
    by_status = sort_rows(rows, "status", reverse=False)
    assert [r.status for r in by_status] == ["failed", "finished", "interrupted"]


def test_filter_matches_every_word_anywhere(runs_dir: Path, three_runs: list) -> None:
    rows = RunsIndex(runs_dir).scan().rows
    assert [r.id for r in filter_rows(rows, "denseteacher")] == ["20250101-110000-bravo"]
    assert [r.id for r in filter_rows(rows, "GOOD fail")] == ["20250101-110000-bravo"]
    assert filter_rows(rows, "  ") == rows
    assert filter_rows(rows, "nothing-like-this") == []


def test_scan_of_hundreds_of_runs_is_cheap(runs_dir: Path, monkeypatch) -> None:
    import time

    from engine.protocol.rundir import RunDirectory

    for i in range(300):
        path = runs_dir / f"run-{i:03d}"
        path.mkdir()
        (path / "run.json").write_text(json.dumps(
            {"id": path.name, "status": "finished", "created": f"2025-01-01T10:{i % 60:02d}",
             "best": {"metric": "AP", "value": i / 1000}}), encoding="utf-8")
    index = RunsIndex(runs_dir)
    assert len(index.scan().rows) == 300
    reads = []
    real_read = RunDirectory.read_meta
    monkeypatch.setattr(RunDirectory, "read_meta",
                        lambda self: reads.append(self.id) or real_read(self))
    # CPU time of this thread, not wall time: other processes on a busy machine (the
    # suite runs engines beside it), or threads left by earlier tests, must not count.
    started = time.thread_time()
    for _ in range(5):
        index.scan()
    per_scan = (time.thread_time() - started) / 5
    assert reads == []  # an unchanged run.json is not read again
    assert per_scan < 0.05, f"a rescan of 300 unchanged runs took {per_scan * 1000:.1f} ms"
    assert os.path.isdir(runs_dir)


def test_shown_epoch_is_the_epoch_of_the_last_step_done(runs_dir: Path) -> None:
    from tui.runs.index import RunRow

    row = RunRow("a", "a", "running", "Trainer", "", runs_dir, epoch=0, epochs=12, iter=1,
                 max_iters=192)
    assert row.shown_epoch == 1  # the engine's epoch 0 is the first one
    done = RunRow("a", "a", "finished", "Trainer", "", runs_dir, epoch=11, epochs=12,
                  iter=192, max_iters=192)
    assert done.shown_epoch == 12
    stopped = RunRow("a", "a", "interrupted", "Trainer", "", runs_dir, epoch=3, epochs=12,
                     iter=70, max_iters=192)
    assert stopped.shown_epoch == 5  # stopped in epoch 5 (16 iterations each), as run.json says
    early = RunRow("a", "a", "interrupted", "Trainer", "", runs_dir, epoch=1, epochs=1,
                   iter=2, max_iters=16)
    assert early.shown_epoch == 1  # stopped early in its only epoch: 1/1, not 0/1
