"""First loads of long histories: helper processes, their failure, and the sampled preview."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from engine.protocol.events import EventWriter
from engine.protocol.rundir import RunDirectory
from tui.runs import eventscan, runmodel
from tui.runs.runmodel import RunModel


def long_run(tmp_path: Path, n: int = 6000) -> RunDirectory:
    run = RunDirectory.create(tmp_path / "runs", run_id="long")
    with EventWriter(run.events) as writer:
        writer.write("start", start_iter=0, max_iters=n)
        for i in range(1, n + 1):
            writer.write("train", epoch=i // 1000, iter=i, max_iters=n, loss=1.0 + math.sin(i),
                         losses={"a": 1.0, "b": math.sin(i)}, lr=0.01, ips=10.0)
            if i % 1000 == 0:
                writer.write("eval", epoch=i // 1000, iter=i, model="model",
                             metrics={"AP": i / n})
                writer.write("system", cpu_percent=float(i), gpus=[])
    return run


def columns(model: RunModel) -> dict[str, np.ndarray]:
    return {name: values.copy() for name, values in model.train.views().items()}


def test_helper_processes_read_the_same_history(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run = long_run(tmp_path)
    serial = RunModel(run.path)
    serial.catch_up()
    monkeypatch.setattr(runmodel, "PARALLEL_MIN_BYTES", 0)
    parallel = RunModel(run.path)
    blocks = []
    assert parallel.load_history(workers=3, on_block=lambda: blocks.append(1)) is None
    assert parallel.caught_up and len(blocks) >= 3
    assert parallel.bytes_read == run.events.stat().st_size
    for name, values in columns(serial).items():
        np.testing.assert_array_equal(columns(parallel)[name], values, err_msg=name)
    assert parallel.events_read == serial.events_read
    assert parallel.ap_series()["model"].ap.tolist() == serial.ap_series()["model"].ap.tolist()
    assert parallel.latest_train == serial.latest_train
    assert not parallel.poll()  # nothing left, nothing read twice


def test_a_failing_helper_process_costs_time_not_data(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run = long_run(tmp_path, n=3000)
    monkeypatch.setattr(runmodel, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(eventscan.sys, "executable", "/bin/false")
    model = RunModel(run.path)
    warning = model.load_history(workers=2)
    assert warning is not None and "read again" in warning
    assert model.train.n == 3000 and model.caught_up


def test_the_preview_samples_the_whole_history(tmp_path: Path) -> None:
    run = long_run(tmp_path, n=20_000)
    model = RunModel(run.path)
    model.peek_tail()
    assert model.load_preview(samples=16, window=2048)
    preview = model.snapshot().train_preview
    iters = preview["iter"]
    assert 16 < iters.size < 20_000 and np.all(np.diff(iters) > 0)
    assert iters[0] < 2000 and iters[-1] > 18_000  # from the start to the end
    assert model.snapshot().loading and model.train.n == 0
    model.load_history(workers=1)
    assert model.snapshot().train_preview is None and model.train.n == 20_000


def test_no_preview_for_a_short_history(tmp_path: Path) -> None:
    run = long_run(tmp_path, n=100)
    assert not RunModel(run.path).load_preview()
