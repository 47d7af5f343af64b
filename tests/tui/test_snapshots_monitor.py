"""Snapshots of the run monitor on a fixed run: wide (every pane) and 80x24 (one pane).

Regenerate after an intended change with ``python -m pytest tests/tui/test_snapshots_monitor.py
--snapshot-update`` and look at the SVGs in ``tests/tui/__snapshots__/`` before committing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from engine.protocol.events import encode, make_event
from engine.protocol.rundir import RunDirectory
from tests.tui.conftest import tables_settled, wait_for
from tests.tui.test_monitor import T0, TRACEBACK, MonitorHost, train_lines
from tui.screens.monitor import MonitorScreen


def write_fixed_run(runs_dir: Path) -> RunDirectory:
    """A finished 2-GPU semi-supervised run; every value is fixed, nothing is live."""
    run = RunDirectory.create(runs_dir, run_id="20250101-100000-fixed")
    run.write_meta({
        "schema": 1, "id": run.id, "name": "fixed", "config_path": "configs/semi.yml",
        "trainer": "DenseTeacher", "status": "finished", "host": "gpu-box", "pid": 1,
        "created": "2025-01-01T10:00:00+00:00", "ended": "2025-01-01T12:46:40+00:00",
        "best": {"metric": "AP", "value": 0.27, "epoch": 10, "checkpoint": "best.pt"}})
    lines = []

    def put(kind: str, t: float, **fields: Any) -> None:
        event = make_event(kind, **fields)
        event["t"] = t
        lines.append(encode(event) + "\n")

    put("start", T0, run_id=run.id, epochs=10, iters_per_epoch=10, max_iters=100)
    for block in range(10):
        lines.append(train_lines(10 * block + 1, 10 * block + 10))
        it = 10 * block + 10
        for model, gain in (("teacher", 0.02), ("student", 0.0)):
            ap = 0.025 * (block + 1) + gain
            put("eval", T0 + 10 * it, epoch=block, iter=it, model=model,
                metrics={"AP": ap, "AP50": ap * 1.6, "AP75": ap * 0.9, "APs": ap / 2,
                         "APm": ap, "APl": ap * 1.2},
                per_class={"circle": ap + 0.01, "square": ap - 0.01, "triangle": ap})
        for k in range(5):
            s = 10 * block + 2 * k
            put("system", T0 + 10 * s, cpu_percent=50 + 30 * math.sin(s / 7),
                ram_used_mb=20_000.0 + 50 * s, ram_total_mb=64_000.0, proc_rss_mb=3_000.0,
                gpus=[{"index": g, "name": "NVIDIA A100-SXM4-80GB",
                       "util": 60 + 35 * math.sin(s / 5 + g), "mem_used_mb": 40_000.0 + 100 * g,
                       "mem_total_mb": 81_920.0, "temperature": 60.0 + g,
                       "power_w": 250 + 100 * math.cos(s / 9)} for g in range(2)],
                gpu_status="")
    put("status", T0 + 1001, status="finished")
    run.events.write_text("".join(lines))
    run.train_log.write_text("".join(f"[{i:03d}] INFO epoch {(i - 1) // 10 + 1} iter {i}"
                                     f" loss {3.0 / (1 + 0.1 * i):.4f}\n"
                                     for i in range(1, 101)))
    run.stderr_log.write_text("some warning from a library\n" + TRACEBACK)
    return run


async def _settle(pilot: Any) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, MonitorScreen)
    await wait_for(pilot, lambda: screen.snapshot is not None and not screen.snapshot.loading
                   and screen.snapshot.events_read > 0, what="the history")
    await wait_for(pilot, lambda: screen.query_one("#pane-logs").view.lines,
                   what="the logs")
    summary = screen.query_one("#eval-summary")
    await wait_for(pilot, lambda: summary.row_count == 2, what="the eval table")
    screen._refresh_plots(force=True)
    await pilot.pause(0.2)
    await wait_for(pilot, lambda: tables_settled(screen), what="the tables measured")


def test_monitor_wide(snap_compare: Any, tmp_path: Path) -> None:
    run = write_fixed_run(tmp_path / "runs")
    assert snap_compare(MonitorHost(run.path), terminal_size=(200, 60), run_before=_settle)


def test_monitor_80x24_eval_pane(snap_compare: Any, tmp_path: Path) -> None:
    run = write_fixed_run(tmp_path / "runs")

    async def eval_pane(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("2")
        await pilot.pause(0.2)
        await wait_for(pilot, lambda: tables_settled(pilot.app.screen), what="the tables")

    assert snap_compare(MonitorHost(run.path), terminal_size=(80, 24), run_before=eval_pane)
