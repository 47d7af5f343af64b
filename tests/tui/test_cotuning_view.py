"""The co-tuning relationship in the monitor: for each target class its top source classes
with probabilities, read from a ``cot_relationship.json`` written by the engine's own writer
(``engine.models.relationship.write_relationship_json`` on a real co-tuning Faster R-CNN),
and a message instead when the file is missing, garbled or shaped wrongly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.config import load_and_validate
from engine.models import build_model
from engine.models.cotuning import cotuning_heads
from engine.models.relationship import write_relationship_json
from tests.conftest import REPO
from tests.tui.conftest import make_run, plain, run_pilot, wait_for
from tests.tui.test_monitor import MonitorHost, loaded
from tui.runs.runmodel import RunModel
from tui.runs.semiinfo import read_relationship
from tui.widgets.semi_panel import SemiPanel

COT = REPO / "configs" / "cot" / "cotuning_shapes.yml"
TARGETS = ["ring", "frame", "diamond"]
SOURCES = ["circle", "square", "triangle", "[bold]cross[/]"]  # a name that looks like markup


@pytest.fixture(scope="module")
def cot_model() -> torch.nn.Module:
    """The real co-tuning model of the shapes config with a known relationship."""
    _, cfg = load_and_validate(COT, ["pretrain_weights=source.pt"])
    model = build_model(cfg)
    heads = cotuning_heads(model)
    heads.relationship.copy_(torch.tensor([[0.61, 0.20, 0.05, 0.10],
                                           [0.15, 0.70, 0.04, 0.06],
                                           [0.25, 0.25, 0.25, 0.25]]))
    heads.relationship_counts.copy_(torch.tensor([10, 10, 0]))  # diamond: no example
    return model


def cot_run(tmp_path: Path, model: torch.nn.Module | None) -> Path:
    run = make_run(tmp_path / "runs", "20250101-100000-cot", trainer="CoTuning")
    if model is not None:
        write_relationship_json(run.path, model, TARGETS, SOURCES,
                                source_names_from="checkpoint")
    return run.path


def test_relationship_is_read_as_the_engine_writes_it(tmp_path: Path, cot_model) -> None:
    path = cot_run(tmp_path, cot_model) / "cot_relationship.json"
    rel, error = read_relationship(path)
    assert error is None and rel is not None
    assert [row[0] for row in rel.rows] == TARGETS
    ring = rel.rows[0]
    assert [s for s, _ in ring[1]] == ["circle", "square", "[bold]cross[/]"]
    assert [round(p, 2) for _, p in ring[1]] == [0.61, 0.20, 0.10]
    assert (ring[2], rel.rows[2][2], rel.source_count) == (10, 0, 4)
    # without "top" the rows come from the matrix, best first
    doc = json.loads(path.read_text())
    del doc["top"]
    path.write_text(json.dumps(doc))
    rel2, _ = read_relationship(path)
    assert rel2.rows[:2] == rel.rows[:2]  # ring and frame: no ties, the same top 3
    assert [round(p, 2) for _, p in rel2.rows[2][1]] == [0.25, 0.25, 0.25]


@pytest.mark.parametrize(("content", "message"), [
    (None, "is not there yet"),
    (b'{"version": 1, "target_classes": ["ring"', "is not valid JSON (line 1)"),
    (b"\xff\xfe garbage", "is not UTF-8 text"),
    (b'["a list"]', "expected a JSON object"),
    (b'{"target_classes": ["ring"], "top": {"ring": [{"source": 3}]}}',
     "top['ring'] must list {source, p} entries"),
    (b'{"target_classes": ["ring"]}', "neither top nor matrix"),
])
def test_a_missing_or_garbled_file_gives_a_message(tmp_path: Path, content: bytes | None,
                                                   message: str) -> None:
    path = tmp_path / "cot_relationship.json"
    if content is not None:
        path.write_bytes(content)
    rel, error = read_relationship(path)
    assert rel is None and error is not None and message in error
    assert error.startswith("cot_relationship.json")


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    import os

    path = tmp_path / "cot_relationship.json"
    os.mkfifo(path)
    rel, error = read_relationship(path)
    assert rel is None and "cannot read cot_relationship.json" in error and "FIFO" in error


def test_monitor_shows_each_target_class_with_its_top_source_classes(tmp_path: Path,
                                                                     cot_model) -> None:
    run = cot_run(tmp_path, cot_model)

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        await wait_for(pilot, lambda: screen.run_kind == "cot", what="a co-tuning run")
        assert str(screen.query_one("#phase").render()) == (
            "co-tuning · relationship learned for 3 target classes · 5: top source classes")
        assert "5 Co-tuning" in str(screen.query_one("#tabs").render())
        await pilot.press("5")
        await pilot.pause()
        body = plain(screen.query_one(SemiPanel).query_one("#semi-body").content)
        lines = [line.strip() for line in body.splitlines()]
        ring = next(line for line in lines if line.startswith("ring"))
        assert ring.split() == ["ring", "10", "circle", "0.61", "·", "square", "0.20", "·",
                                "[bold]cross[/]", "0.10"]  # shown as text, not markup
        diamond = next(line for line in lines if line.startswith("diamond"))
        assert "0 (uniform)" in diamond and "0.25" in diamond
        assert "3 target classes · 4 source classes (names from: checkpoint)" in body

    run_pilot(MonitorHost(run), scenario, size=(80, 24))


def test_monitor_says_why_a_relationship_cannot_be_shown(tmp_path: Path) -> None:
    run = cot_run(tmp_path, None)

    async def scenario(pilot: Any) -> None:
        screen = await loaded(pilot)
        await wait_for(pilot, lambda: screen.run_kind == "cot", what="a co-tuning run")
        assert "is not there yet" in str(screen.query_one("#phase").render())
        (run / "cot_relationship.json").write_text('{"target_classes": [')
        await wait_for(pilot, lambda: "is not valid JSON" in str(
            screen.query_one("#phase").render()), what="the garbled file reported")
        await pilot.press("5")
        await pilot.pause()
        body = plain(screen.query_one(SemiPanel).query_one("#semi-body").content)
        assert "cot_relationship.json is not valid JSON" in body

    run_pilot(MonitorHost(run), scenario, size=(80, 24))


def test_a_run_that_is_not_co_tuning_reads_no_relationship(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", "20250101-100000-plain")
    model = RunModel(run.path)
    model.catch_up()
    model.refresh_meta()
    snap = model.snapshot()
    assert snap.relationship is None and snap.relationship_error is None
