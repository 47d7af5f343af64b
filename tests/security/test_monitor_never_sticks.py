"""Issue 21 point 7: the TUI never sticks at "loading...". A 400-digit number in
events.jsonl or in cot_relationship.json raised ``OverflowError`` in a reader (``float()``
or ``math.isfinite`` of the int) and left the monitor on "loading..." for good; a value the
reader cannot use is skipped, and the monitor (and the headless watcher) says which line
of events.jsonl it skipped, and why."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.protocol.events import MAX_LINE_BYTES, EventWriter
from engine.protocol.rundir import RunDirectory
from tests.tui.conftest import run_pilot, wait_for
from tests.tui.test_monitor import MonitorHost, loaded, train_lines, write_semi_run
from tui.cli.headless import HeadlessWatcher
from tui.runs.eventscan import iter_range, parse_block
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


# Hostile lines and why each is skipped, in the words every reader uses.
SKIPS = [
    ("a line cut short {", "not valid JSON"),
    (f'{{"v":1,"t":{T},"type":"train","epoch":4,"iter":41,"loss":{HUGE},"lr":0.01}}',
     '"loss" holds a number no float holds'),
    (f'{{"v":1,"t":{T},"type":"train","epoch":4,"iter":1e30,"loss":1.0}}',
     '"iter" is not an int'),
    ('{"v":1,"t":1,"type":"train","iter":' + "9" * 5000 + "}", "a number too long to read"),
    ('{"v":1,"t":1,"type":"log","message":"' + "x" * (MAX_LINE_BYTES + 10) + '"}',
     f"longer than {MAX_LINE_BYTES} bytes"),
    (f'{{"v":1,"t":{HUGE},"type":"log","level":"info","message":"x"}}',
     '"t" holds a number no float holds'),
    (f'{{"v":1,"t":{T},"type":"system","cpu_percent":{HUGE}}}',
     '"cpu_percent" holds a number no float holds'),
]


def _hostile_run(runs_dir: Path) -> tuple[RunDirectory, list[int]]:
    """A finished run with the SKIPS lines spread among good ones; their line numbers."""
    run = write_semi_run(runs_dir, status="finished", alive=False)
    lines = run.events.read_bytes().decode().splitlines(keepends=True)
    at: list[int] = []
    for k, (line, _) in enumerate(SKIPS):
        cut = 5 + 9 * k  # between good lines, at known places
        lines.insert(cut, line + "\n")
        at.append(cut + 1)
    run.events.write_text("".join(lines))
    return run, at


def _expected(at: list[int]) -> list[str]:
    return [f"events.jsonl line {n} skipped: " for n in at]


def _check(shown: list[str] | tuple[str, ...], at: list[int]) -> None:
    assert len(shown) == 5
    for text, start, (_, why) in zip(shown, _expected(at), SKIPS):
        assert text.startswith(start) and why in text, (text, start, why)


@pytest.mark.parametrize("how", ["load_history", "small_polls"])
def test_the_run_model_names_each_skipped_line(tmp_path: Path, how: str) -> None:
    run, at = _hostile_run(tmp_path / "runs")
    model = RunModel(run.path)
    if how == "load_history":
        model.load_history(workers=1)
    else:  # small reads: the overlong line is dropped by the tail, unread
        while model.poll(max_bytes=4096):
            pass
    snap = model.snapshot()
    assert not snap.loading and snap.skipped == len(SKIPS)
    _check(snap.skipped_shown, at)
    good = sum(1 for line in run.events.read_bytes().split(b"\n") if line) - len(SKIPS)
    assert snap.events_read == good and model.lines_read == good + len(SKIPS)


def test_the_parallel_scanner_blocks_number_their_skipped_lines(tmp_path: Path) -> None:
    run, at = _hostile_run(tmp_path / "runs")
    size = run.events.stat().st_size
    for block_bytes in (4096, 8 << 20):  # 4096: the overlong line is skipped unread
        lines, found = 0, []
        for _, block in iter_range(run.events, 0, size, block_bytes):
            found += [(lines + i + 1, why) for i, why in block.skipped]
            lines += block.lines
        assert [n for n, _ in found] == at
        assert all(expected in why for (_, why), (_, expected) in zip(found, SKIPS))


def test_a_second_writers_bad_lines_between_indexed_ones_are_named(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "runs", run_id="20250101-100000-idx")
    at = []
    with EventWriter(run.events, index=run.events_index) as writer:
        for i in range(1, 200):
            writer.write("train", epoch=0, iter=i, loss=1.0 / i, losses={"a": 1.0 / i},
                         lr=0.01, ips=10.0)
            if i in (50, 120):  # another process appends a line the reader cannot use
                with open(run.events, "ab") as f:
                    f.write(SKIPS[2][0].encode() + b"\n")
                at.append(i + len(at) + 1)
    model = RunModel(run.path)
    model.load_history(workers=1)
    snap = model.snapshot()
    assert snap.skipped == 2 and snap.train["iter"].size == 199
    assert list(snap.skipped_shown) == [
        f'events.jsonl line {n} skipped: "iter" is not an int' for n in at]


def test_the_headless_watcher_names_them_in_the_same_words(tmp_path: Path) -> None:
    run, at = _hostile_run(tmp_path / "runs")
    out = io.StringIO()
    watcher = HeadlessWatcher(run, console=Console(file=out, width=200, color_system=None))
    assert watcher._poll(None) is False  # the engine is gone: everything read once
    model = RunModel(run.path)
    model.catch_up()
    printed = out.getvalue()
    for text in model.snapshot().skipped_shown:
        assert text in printed
    assert f"... and {len(SKIPS) - 5} more skipped lines of events.jsonl" in printed
    assert watcher.tail.skipped_shown == list(model.snapshot().skipped_shown)


def test_the_monitor_banner_says_which_lines_it_skipped(tmp_path: Path) -> None:
    run, at = _hostile_run(tmp_path / "runs")
    with open(run.events, "a", encoding="utf-8") as f:  # one more, plus a fast block
        f.write(train_lines(41, 60))

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        banner = screen.query_one("#banner")
        await wait_for(pilot, lambda: "skipped" in str(banner.render()), what="the notice")
        text = str(banner.render())
        for start in _expected(at)[:5]:
            assert start in text
        assert f"and {len(SKIPS) - 5} more skipped lines" in text
        assert banner.has_class("-shown")

    run_pilot(MonitorHost(run.path), scenario, size=(160, 40))


def test_a_bad_value_in_a_line_shaped_like_the_others_is_named_too() -> None:
    """The fast path (one regex over lines of the same layout) reads a 400-digit loss as
    infinity and an iter of 1e30 as a number: it must hand such a block to the line-by-line
    reader, which skips those lines as decode() does and says so."""
    lines = train_lines(1, 30).splitlines(keepends=True)
    good = lines[9]
    lines[9] = good.replace(good.split('"loss":')[1].split(",")[0], HUGE)
    lines[20] = lines[20].replace('"iter":21,', '"iter":1e30,')
    block, _ = parse_block("".join(lines).encode(), None)
    assert block.lines == 30 and block.n_events == 28
    assert [(i, why) for i, why in block.skipped] == [
        (9, '"loss" holds a number no float holds'), (20, '"iter" is not an int')]
