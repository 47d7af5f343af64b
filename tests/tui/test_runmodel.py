"""RunModel, the fast event parser and the curve maths (no Textual involved)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.protocol.events import EventWriter, encode, make_event
from engine.protocol.rundir import RunDirectory
from tui.downsample import ema, envelope, minmax_columns, smoothing_alpha
from tui.runs.eventscan import TrainRows, parse_block
from tui.runs.filetail import ByteTail, LogTail
from tui.runs.runmodel import RunModel

T0 = 1_735_725_600.0


def train_event(i: int, terms: dict[str, float] | None = None, **extra: Any) -> dict:
    losses = terms if terms is not None else {"loss_cls": 1.0 / i, "loss_box": 0.5 / i}
    event = make_event("train", epoch=(i - 1) // 10, iter=i, epoch_iter=(i - 1) % 10 + 1,
                       iters_per_epoch=10, max_iters=100, loss=sum(losses.values()),
                       losses=losses, lr=0.01, batch_time=0.1, data_time=0.01,
                       ips=32.0, eta=100.0 - i, memory=None, **extra)
    event["t"] = T0 + i
    return event


def line(event: dict) -> bytes:
    return (encode(event) + "\n").encode()


def new_run(tmp_path: Path, **meta: Any) -> RunDirectory:
    run = RunDirectory.create(tmp_path / "runs", run_id="r1")
    run.write_meta({"schema": 1, "id": "r1", "status": "running", "pid": os.getpid(),
                    "host": socket.gethostname(), **meta})
    return run


# -- downsampling ---------------------------------------------------------------------------

def test_minmax_columns_keep_a_single_spike() -> None:
    x = np.arange(1_000_000, dtype=float)
    y = np.ones_like(x)
    y[654_321] = 50.0
    y[10] = -3.0
    cols = minmax_columns(x, y, 100)
    assert len(cols.x) == 100
    assert cols.y_max.max() == 50.0 and cols.y_min.min() == -3.0
    assert np.count_nonzero(cols.y_max == 50.0) == 1
    assert cols.mean[0] == pytest.approx((10_000 - 1 - 3.0) / 10_000)


def test_minmax_columns_ignore_nan_and_share_a_range() -> None:
    x = np.arange(10, dtype=float)
    y = np.array([1, np.nan, 3, 4, np.nan, 6, 7, 8, 9, 10], dtype=float)
    cols = minmax_columns(x, y, 2, x_range=(0.0, 19.0))
    # With the shared range 0..19 all points fall into the first of two columns.
    assert cols.x.tolist() == [4.75]
    assert (cols.y_min[0], cols.y_max[0]) == (1.0, 10.0)


def test_envelope_is_bounded_and_passes_small_data_through() -> None:
    x = np.arange(5000, dtype=float)
    ex, ey = envelope(x, np.sin(x), 120)
    assert len(ex) <= 240 and ey.max() == pytest.approx(np.sin(x).max())
    small_x, small_y = envelope([1, 2, 3], [3.0, float("nan"), 1.0], 120)
    assert small_x.tolist() == [1, 3] and small_y.tolist() == [3.0, 1.0]


def test_envelope_strokes_each_column_and_steps_to_the_nearer_end() -> None:
    """Every column's whole min..max range is one stroke, and each stroke starts at the end
    nearer the previous stroke's end (a rising curve is not crossed diagonally)."""
    x = np.arange(4000, dtype=float)
    y = x / 40_000 + np.where(x % 2 == 0, 0.0, 1.0)  # a slowly rising band 1.0 thick
    ex, ey = envelope(x, y, 100)
    cols = minmax_columns(x, y, 100)
    pairs = ey.reshape(-1, 2)
    assert np.array_equal(np.sort(pairs, axis=1), np.stack([cols.y_min, cols.y_max], 1))
    assert np.array_equal(ex, np.repeat(cols.x, 2))
    # the strokes alternate up and down, each starting beside where the last one ended...
    jumps = np.abs(pairs[1:, 0] - pairs[:-1, 1])
    assert jumps.max() < 0.01  # ...never a diagonal across the band (a jump of 1.0)
    assert (pairs[1:, 0] > pairs[1:, 1]).sum() == 50  # every second stroke goes down


def test_ema_matches_the_recurrence_and_carries_over_nans() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(3000)
    y[[0, 1, 700]] = np.nan
    alpha = 0.05
    expected, state = [], None
    for value in y:
        if np.isnan(value):  # no value: the average stays (the leading ones take y[2])
            expected.append(state if state is not None else y[2])
            continue
        state = value if state is None else alpha * value + (1 - alpha) * state
        expected.append(state)
    np.testing.assert_allclose(ema(y, alpha), expected, rtol=1e-12)
    assert smoothing_alpha(1_000_000) < smoothing_alpha(100) <= 0.5


# -- the block parser -----------------------------------------------------------------------

def test_fast_and_slow_paths_agree(tmp_path: Path) -> None:
    events = [make_event("start", start_iter=0)]
    for i in range(1, 41):
        events.append(train_event(i))
        if i % 10 == 0:
            events.append(make_event("eval", epoch=i // 10, iter=i, model="model",
                                     metrics={"AP": i / 100}, per_class={"a": 0.1}))
        if i % 7 == 0:
            events.append(make_event("system", cpu_percent=10.0, gpus=[]))
    data = b"".join(line(e) for e in events)
    fast, template = parse_block(data, None)
    assert fast.fast and template is not None
    # A block in the layout, parsed with the learned template:
    again, _ = parse_block(data, template)
    slow_data = data.replace(b'"type":"train"', b'"type": "train"')  # no longer the layout
    slow, _ = parse_block(slow_data, template)
    assert not slow.fast
    assert fast.n_events == slow.n_events == again.n_events == len(events)

    def train_of(block: Any) -> dict[str, np.ndarray]:
        rows = [item for item in block.items if isinstance(item, TrainRows)]
        return {k: np.concatenate([r.columns[k] for r in rows]) for k in rows[0].columns}

    fast_cols, slow_cols = train_of(fast), train_of(slow)
    for name in ("t", "iter", "loss", "lr", "ips", "losses.loss_cls", "losses.loss_box"):
        np.testing.assert_array_equal(fast_cols[name], slow_cols[name])
    last_train = json.loads(encode([e for e in events if e["type"] == "train"][-1]))
    assert fast.last_train == slow.last_train == last_train
    kinds = [item.get("type") for item in fast.items if isinstance(item, dict)]
    assert kinds[0] == "start" and kinds.count("eval") == 4 and kinds.count("system") == 5


def test_a_null_value_and_a_new_loss_term_are_handled() -> None:
    first = train_event(1)
    nan_loss = train_event(2)
    nan_loss["loss"] = float("nan")  # encode() writes null
    late_term = train_event(3, terms={"loss_cls": 0.3, "loss_box": 0.2, "distill": 0.1})
    block, template = parse_block(line(first) + line(nan_loss) + line(late_term), None)
    rows = [item for item in block.items if isinstance(item, TrainRows)]
    assert sum(r.n for r in rows) == 3
    loss = np.concatenate([r.columns["loss"] for r in rows])
    assert loss[0] == pytest.approx(1.5) and np.isnan(loss[1])
    assert template is not None and "losses.distill" in template.names


# -- RunModel -------------------------------------------------------------------------------

def test_truncated_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    whole = line(train_event(1)) + line(train_event(2))
    partial = line(train_event(3))
    run.events.write_bytes(whole + partial[:25])
    model = RunModel(run.path)
    model.catch_up()
    assert model.train.n == 2 and model.latest_train["iter"] == 2
    assert not model.more_to_read  # the monitor's worker sleeps instead of spinning
    assert model.bytes_read < model.bytes_total()  # the partial line is not "read"
    with open(run.events, "ab") as f:
        f.write(partial[25:])
    assert model.poll()
    assert model.train.n == 3
    assert model.train.views()["iter"].tolist() == [1.0, 2.0, 3.0]


def test_a_file_that_grows_between_polls_is_read_incrementally(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    model = RunModel(run.path)
    assert not model.poll()  # no events.jsonl yet
    with EventWriter(run.events) as writer:
        writer.write("start", start_iter=0, max_iters=100)
        for i in range(1, 6):
            writer.write("train", **{k: v for k, v in train_event(i).items()
                                     if k not in ("v", "t", "type")})
        model.catch_up()
        first_offset = model.bytes_read
        snap = model.snapshot()
        for i in range(6, 9):
            writer.write("train", **{k: v for k, v in train_event(i).items()
                                     if k not in ("v", "t", "type")})
        writer.write("eval", epoch=0, iter=8, model="teacher", metrics={"AP": 0.25},
                     per_class={"circle": 0.3})
        writer.write("eval", epoch=0, iter=8, model="student", metrics={"AP": 0.2},
                     per_class={"circle": 0.1})
    model.catch_up()
    assert model.bytes_read == run.events.stat().st_size > first_offset
    assert model.train.n == 8 and model.events_read == 11
    assert len(snap.train["iter"]) == 5  # an earlier snapshot does not change
    latest = model.snapshot()
    assert sorted(latest.latest_eval) == ["student", "teacher"]
    assert latest.ap["teacher"].ap.tolist() == [0.25]
    assert latest.eval_version > snap.eval_version


def test_a_resume_rewinds_the_history_to_its_checkpoint(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    events = [make_event("start", start_iter=0)]
    events += [train_event(i) for i in range(1, 31)]
    events.append(make_event("eval", epoch=2, iter=30, model="model", metrics={"AP": 0.3}))
    # Killed at 30; the last checkpoint was at 20; the resumed attempt logs 21.. again.
    events.append(make_event("start", start_iter=20))
    events += [train_event(i) for i in range(21, 26)]
    run.events.write_bytes(b"".join(line(e) for e in events))
    model = RunModel(run.path)
    model.catch_up()
    iters = model.train.views()["iter"]
    assert iters.tolist() == list(map(float, range(1, 26)))
    assert model.ap_series()["model"].ap.size == 0  # evaluated at 30: redone later


def test_status_follows_run_json_and_the_engine_process(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    model = RunModel(run.path)
    assert model.refresh_meta() and model.status == "running"
    assert not model.refresh_meta()  # nothing changed
    run.update_meta(pid=999_999_999)  # the engine died without saying so
    assert model.refresh_meta() and model.status == "failed"
    run.run_json.write_text("{not json")
    assert model.refresh_meta()
    assert model.meta_error and model.meta["id"] == "r1"  # last good metadata kept


def test_system_history_is_bounded_and_keeps_the_no_gpu_reason(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    with EventWriter(run.events) as writer:
        for i in range(50):
            writer.write("system", cpu_percent=float(i), ram_used_mb=1000.0,
                         ram_total_mb=2000.0, proc_rss_mb=300.0, gpus=[],
                         gpu_status="no NVIDIA GPU (driver not loaded)")
    model = RunModel(run.path, system_history=20)
    model.catch_up()
    snap = model.snapshot()
    assert snap.system["cpu"] == [float(i) for i in range(30, 50)]
    assert snap.latest_system["gpu_status"].startswith("no NVIDIA GPU")


def test_peek_tail_shows_where_a_long_run_stands_before_reading_it(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    run.events.write_bytes(b"".join(line(train_event(i)) for i in range(1, 2001)))
    model = RunModel(run.path)
    model.peek_tail(nbytes=4096)
    assert model.latest_train["iter"] == 2000 and model.train.n == 0
    model.poll(max_bytes=50_000)
    snap = model.snapshot()
    assert snap.loading and 0 < snap.bytes_read < snap.bytes_total
    assert snap.latest_train["iter"] == 2000  # older blocks don't roll the header back
    assert 0 < len(snap.train["iter"]) < 2000


def test_byte_tail_starts_over_when_the_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}\n')
    tail = ByteTail(path)
    assert tail.read() == b'{"a":1}\n{"b":2}\n'
    path.write_bytes(b'{"c":3}\n')
    assert tail.read() == b'{"c":3}\n' and tail.restarted


def test_log_tail_starts_near_the_end_of_a_big_log(tmp_path: Path) -> None:
    path = tmp_path / "train.log"
    path.write_text("".join(f"line {i}\n" for i in range(10_000)))
    tail = LogTail(path, initial_bytes=1000)
    lines = tail.read()
    assert lines[-1] == "line 9999" and 50 < len(lines) < 120
    assert tail.skipped_bytes > 0
    with open(path, "a") as f:
        f.write("new\npart")
    assert tail.read() == ["new"]
    assert LogTail(tmp_path / "missing.log").read() == []



def test_a_replaced_events_file_is_read_again_from_scratch(tmp_path: Path) -> None:
    run = new_run(tmp_path)
    run.events.write_bytes(b"".join(line(train_event(i)) for i in range(1, 30)))
    model = RunModel(run.path)
    model.catch_up()
    assert model.train.n == 29
    run.events.write_bytes(line(train_event(1)))  # e.g. a run folder restored from backup
    assert model.poll()
    assert model.train.n == 1 and model.latest_train["iter"] == 1


def test_log_tail_hands_out_progress_bars_and_endless_lines(tmp_path: Path) -> None:
    path = tmp_path / "stderr.log"
    path.write_bytes(b"start\n 10%|#   |\r 20%|##  |\r 30%")
    tail = LogTail(path)
    assert tail.read() == ["start", " 10%|#   |", " 20%|##  |"]  # " 30%" is still being drawn
    path.write_bytes(b"x" * 5000)  # replaced by one line with no end at all
    assert tail.read(max_bytes=1000) == ["x" * 1000]  # pieces, not a wait for ever
