"""Issue 21 point 7: the TUI never sticks at "loading...". A 400-digit number in
events.jsonl or in cot_relationship.json raised ``OverflowError`` in a reader (``float()``
or ``math.isfinite`` of the int) and left the monitor on "loading..." for good; a value the
reader cannot use is skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.tui.conftest import run_pilot
from tests.tui.test_monitor import MonitorHost, loaded, write_semi_run
from tui.runs.runmodel import RunModel
from tui.runs.semiinfo import read_relationship

HUGE = "9" * 400  # a valid JSON number that no float holds
T = 1_735_725_600.0


def _hostile_lines() -> str:
    lines = [
        f'{{"v":1,"t":{T},"type":"train","epoch":4,"iter":41,"loss":{HUGE},'
        f'"losses":{{"loss_cls":{HUGE}}},"lr":0.01}}',
        f'{{"v":1,"t":{T},"type":"train","epoch":4,"iter":{HUGE},"loss":1.0}}',
        f'{{"v":1,"t":{T},"type":"train","epoch":4,"iter":1e30,"loss":1.0}}',
        f'{{"v":1,"t":{T},"type":"system","cpu_percent":{HUGE},"ram_used_mb":{HUGE},'
        f'"gpus":[{{"index":0,"util":{HUGE},"mem_used_mb":{HUGE}}}]}}',
        f'{{"v":1,"t":{T},"type":"eval","epoch":4,"iter":50,"model":"student",'
        f'"metrics":{{"AP":{HUGE}}},"per_class":{{"circle":{HUGE}}}}}',
        f'{{"v":1,"t":{HUGE},"type":"log","level":"info","message":"x"}}',
        '{"v":1,"t":1,"type":"train","iter":' + "9" * 5000 + "}",
    ]
    return "\n".join(lines) + "\n"


def test_the_monitor_loads_a_run_with_numbers_no_reader_can_use(tmp_path: Path) -> None:
    run = write_semi_run(tmp_path / "runs", status="finished", alive=False)
    with open(run.events, "a", encoding="utf-8") as f:
        f.write(_hostile_lines())

    model = RunModel(run.path)
    model.load_history(workers=1)
    model.catch_up()
    snap = model.snapshot()
    assert not snap.loading and snap.events_read > 0

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        assert screen.snapshot is not None and not screen.snapshot.loading

    run_pilot(MonitorHost(run.path), scenario, size=(120, 40))


def test_a_relationship_file_with_a_huge_number_is_a_reason_not_a_crash(
        tmp_path: Path) -> None:
    path = tmp_path / "cot_relationship.json"
    path.write_text(json.dumps({"target_classes": ["a"], "source_classes": ["x", "y"],
                                "matrix": [[0.5, 0.5]]}).replace("0.5, 0.5", f"{HUGE}, 0.5"))
    relationship, why = read_relationship(path)
    assert relationship is None and "matrix row 1" in why
    path.write_text('{"target_classes": ["a"], "top": {"a": [{"source": "x", "p": '
                    + HUGE + "}]}}")
    relationship, why = read_relationship(path)
    assert relationship is None and "top['a']" in why
