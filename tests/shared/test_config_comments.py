"""Issue 19.16: the co-tuning source config's comment names as many target kinds as the
co-tuning config trains (it said "four other kinds" where there are three)."""

from __future__ import annotations

from engine.config import load_and_validate
from tests.conftest import REPO

WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def test_source_config_names_the_target_kinds_of_the_cotuning_config() -> None:
    _, target = load_and_validate(REPO / "configs" / "cot" / "cotuning_shapes.yml")
    kinds = target.TrainDataset.synthesize.classes
    comment = (REPO / "configs" / "cot" / "shapes_source.yml").read_text()
    assert len(kinds) == target.num_classes
    said = " ".join(line.lstrip("# ") for line in comment.splitlines() if line.startswith("#"))
    assert f"transfers it to {WORDS[len(kinds)]} OTHER kinds ({', '.join(kinds)}:" in said, said
