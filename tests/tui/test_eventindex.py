"""``events.idx``: the engine's index gives the monitor exactly what parsing events.jsonl
gives, and a missing, stale, torn or corrupted index costs time, never data."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np

from engine.protocol.eventindex import MAGIC
from engine.protocol.events import EventWriter
from engine.protocol.rundir import RunDirectory
from tui.runs.eventindex import index_blocks
from tui.runs.runmodel import RunModel


def write_attempt(run: RunDirectory, first: int, last: int, *, start_iter: int | None = None,
                  late_term_from: int = 10**9, stats_from: int = 10**9) -> None:
    """One attempt of a run, as the engine's recorder writes it (with the index)."""
    with EventWriter(run.events, index=run.events_index) as w:
        w.write("status", status="running", message="")
        w.write("start", start_iter=start_iter or 0, max_iters=last)
        for i in range(first, last + 1):
            losses = {"loss_cls": 1.0 / i, "loss_box": math.sin(i)}
            if i >= late_term_from:
                losses["loss_extra"] = 0.5
            # a semi-supervised trainer's pseudo-label stats, from its semi phase on
            semi = {"stats": {"pseudo_score": 1.0 / i, "pseudo_points_per_image": i % 7}}
            w.write("train", epoch=i // 50, iter=i, epoch_iter=i % 50, max_iters=last,
                    loss=sum(losses.values()) if i % 37 else float("nan"), losses=losses,
                    lr=0.01 * i, ips=100.0 + i, eta=1.0, memory=None,
                    **(semi if i >= stats_from else {}))
            if i % 3 == 0:
                w.write("system", cpu_percent=float(i), ram_used_mb=1.0, proc_rss_mb=2.0, gpus=[])
            if i % 50 == 0:
                for model in ("teacher", "student"):
                    w.write("eval", epoch=i // 50, iter=i, model=model,
                            metrics={"AP": i / 1000, "AP50": i / 500}, per_class={"a": 0.1})
                w.write("checkpoint", path="last.pt", kind="last", epoch=i // 50, iter=i)
            if i % 70 == 0:
                w.write("log", level="warning", message=f"step {i}")


def loaded(run: RunDirectory, *, index: bool) -> RunModel:
    model = RunModel(run.path, system_history=40)
    if index:
        model.load_history(workers=1)
    else:
        model.catch_up()
    return model


def assert_same(a: RunModel, b: RunModel) -> None:
    va, vb = a.train.views(), b.train.views()
    assert sorted(va) == sorted(vb)
    for name in va:
        np.testing.assert_array_equal(va[name], vb[name], err_msg=name)  # NaN == NaN here
    sa, sb = a.ap_series(), b.ap_series()
    assert sorted(sa) == sorted(sb)
    for model in sa:
        np.testing.assert_array_equal(sa[model].iters, sb[model].iters)
        np.testing.assert_array_equal(sa[model].ap, sb[model].ap)
    assert a.eval_metrics() == b.eval_metrics()
    assert a.latest_train == b.latest_train
    assert a.latest_eval == b.latest_eval
    assert a.latest_system == b.latest_system
    assert a.system.copy() == b.system.copy()
    assert a.last_checkpoint == b.last_checkpoint
    assert a.start == b.start
    assert a.events_read == b.events_read
    assert a.bytes_read == b.bytes_read


def without_index(run: RunDirectory, tmp_path: Path) -> RunDirectory:
    copy = RunDirectory(tmp_path / "plain" / run.id)
    copy.path.mkdir(parents=True)
    shutil.copy(run.events, copy.events)
    return copy


def test_index_and_full_parse_give_identical_series(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="r")
    write_attempt(run, 1, 300, late_term_from=120, stats_from=150)
    # killed mid-line, then resumed from iteration 200: a new segment, a rewind
    with open(run.events, "ab") as f:
        f.write(b'{"v":1,"t":1.0,"type":"train","iter":3')
    write_attempt(run, 201, 400, start_iter=200, stats_from=150)
    assert run.events_index.stat().st_size < run.events.stat().st_size / 2
    blocks = list(index_blocks(run.events, run.events_index, run.events.stat().st_size))
    assert blocks and blocks[-1][0] == run.events.stat().st_size  # all of it from the index
    fast, plain = loaded(run, index=True), loaded(without_index(run, tmp_path), index=False)
    assert fast.train.n == 400 and fast.train.terms() == ["loss_cls", "loss_box", "loss_extra"]
    assert np.isnan(fast.train.views()["loss"][36])  # a null loss stays NaN
    assert fast.train.stats() == ["pseudo_score", "pseudo_points_per_image"]
    assert np.isnan(fast.train.views()["stats.pseudo_score"][0])  # burn-in: no stats yet
    assert_same(fast, plain)


def test_other_writers_lines_and_a_lagging_index_are_parsed(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="r")
    write_attempt(run, 1, 100)
    with EventWriter(run.events) as supervisor:  # no index: e.g. the supervisor's log line
        supervisor.write("log", level="warning", message="supervisor: restarting")
        supervisor.write("status", status="running", message="restart")
    write_attempt(run, 101, 200, start_iter=100)
    with EventWriter(run.events) as late:  # events the index never saw
        late.write("train", iter=201, loss=0.5, losses={"loss_cls": 0.1, "loss_box": 0.2})
        late.write("eval", iter=201, model="student", metrics={"AP": 0.9})
    fast, plain = loaded(run, index=True), loaded(without_index(run, tmp_path), index=False)
    assert fast.train.n == 201
    assert_same(fast, plain)


def test_a_corrupt_torn_or_foreign_index_is_not_trusted(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="r")
    write_attempt(run, 1, 200)
    plain = loaded(without_index(run, tmp_path), index=False)
    good = run.events_index.read_bytes()
    width = 3 + 5 + 2  # the fields and two loss terms
    tail = np.frombuffer(good[-8 * width * 200:], "<f8").reshape(200, width).copy()
    train = np.flatnonzero(tail[:, 0] == 2)

    def with_tail(change: int, word: int, value: float) -> bytes:
        rows = tail.copy()
        rows[change, word] = value
        return good[: -8 * width * 200] + rows.tobytes()

    flipped = with_tail(train[-1], 3 + 2, 123.0)  # the last train row's loss
    back = with_tail(train[len(train) // 2], 1, 5.0)  # an offset that goes back
    other = RunDirectory.create(tmp_path / "runs", run_id="other")
    write_attempt(other, 1, 150)
    cases = {"torn": good[: len(good) - 13], "flipped value": flipped, "offset": back,
             "another run's": other.events_index.read_bytes(),
             "garbage": MAGIC + b"\x07" * 4000, "empty": b""}
    for name, content in cases.items():
        run.events_index.write_bytes(content)
        assert_same(loaded(run, index=True), plain), name
    run.events_index.unlink()
    run.events_index.symlink_to(other.events_index)  # read through: it is checked anyway
    assert_same(loaded(run, index=True), plain)


def test_a_writer_starts_a_torn_index_afresh(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="r")
    write_attempt(run, 1, 50)
    run.events_index.write_bytes(run.events_index.read_bytes()[:-5])  # killed mid-record
    write_attempt(run, 51, 100, start_iter=50)
    assert run.events_index.read_bytes().startswith(MAGIC)
    blocks = list(index_blocks(run.events, run.events_index, run.events.stat().st_size))
    assert blocks[-1][0] == run.events.stat().st_size
    assert_same(loaded(run, index=True), loaded(without_index(run, tmp_path), index=False))


def test_the_index_is_never_written_through_a_link(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="r")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"")
    run.events_index.symlink_to(outside)
    write_attempt(run, 1, 20)  # the events are written; the index is given up
    assert outside.read_bytes() == b""
    assert loaded(run, index=True).train.n == 20
