"""The trainer catalogue (engine/trainers/catalogue.py): the engine dispatches with it, the
schema refuses what it says a trainer cannot do (before any run folder exists), and the
front ends read their names from it, so all of them agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load_and_validate
from engine.config.schema import ARCHITECTURES, trainer_name
from engine.config.schema.cotuning import cotuning_enabled
from engine.protocol.errors import ConfigError
from engine.trainers.catalogue import CHOICES, TRAINERS, TrainerInfo, trainer_for
from tests.conftest import REPO
from tui.process.spec import LaunchSpec, config_facts
from tui.screens.launch import TRAINER_LABELS

SEMI_SECTIONS = ("UnsupTrainDataset: {name: ImageFolder, dataset_dir: unlabeled, "
                 "image_dir: .}\nSemiTrainReader: {sup_batch_size: 2}\n")


def config_for(tmp_path: Path, architecture: str) -> Path:
    """A config of ``architecture`` that any trainer could take but for its architecture:
    the semi sections, and co-tuning's source classes and weights."""
    path = tmp_path / f"{architecture}.yml"
    path.write_text(f"num_classes: 2\narchitecture: {architecture}\n{SEMI_SECTIONS}"
                    "BBoxHead: {cot_classes: 80}\npretrain_weights: source.pt\n")
    return path


def select(info: TrainerInfo) -> list[str]:
    """The overrides of ``--trainer`` for ``info`` (what the CLI and the form send)."""
    return LaunchSpec(config=Path("x.yml"), trainer=info.choice).flag_overrides()


@pytest.mark.parametrize("info", TRAINERS, ids=lambda t: t.name)
def test_the_engine_dispatches_each_trainer_to_its_class(info: TrainerInfo,
                                                         tmp_path: Path) -> None:
    from engine.trainers.base import Trainer
    from engine.trainers.semi import SemiTrainer

    arch = (info.architectures or ARCHITECTURES)[0]
    _, cfg = load_and_validate(config_for(tmp_path, arch), select(info))
    assert trainer_for(cfg.ssod_method, cfg.use_cot) is info
    assert trainer_name(cfg) == info.name
    assert cotuning_enabled(cfg) is info.use_cot
    cls = info.load()
    assert issubclass(cls, Trainer)
    assert issubclass(cls, SemiTrainer) is info.semi


def test_each_trainer_class_is_its_own() -> None:
    classes = [t.load() for t in TRAINERS]
    assert len(set(classes)) == len(TRAINERS)
    assert len({t.name for t in TRAINERS}) == len({t.choice for t in TRAINERS}) == len(TRAINERS)


MISMATCHES = [(t, arch) for t in TRAINERS for arch in ARCHITECTURES if not t.supports(arch)]


@pytest.mark.parametrize(("info", "arch"), MISMATCHES,
                         ids=[f"{t.name}-{a}" for t, a in MISMATCHES])
def test_a_trainer_on_an_architecture_it_cannot_train_is_refused(info: TrainerInfo, arch: str,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_and_validate(config_for(tmp_path, arch), select(info))
    err = caught.value
    assert err.key == ("ssod_method" if info.semi else "use_cot")
    assert err.file.startswith("-o ")  # the trainer came from --trainer: it says so
    needed = " or ".join(info.architectures or ())
    assert f"{info.choice} {info.why}, so it needs architecture {needed}" in err.message
    assert f"this config has architecture {arch}" in err.message
    assert err.hint is not None
    assert all(t.choice in err.hint for t in TRAINERS if t.supports(arch))
    assert not any(t.choice in err.hint.split(": ")[-1].split(", ")
                   for t in TRAINERS if not t.supports(arch))


def test_mismatches_cover_every_restricted_trainer() -> None:
    restricted = {t.name for t in TRAINERS if t.architectures is not None}
    assert {t.name for t, _ in MISMATCHES} == restricted
    assert {"DenseTeacher", "ARSL", "Semi_RTDETR", "CoTuning"} <= restricted


@pytest.mark.parametrize("key", ["pretrain_teacher_weights", "pretrain_student_weights"])
def test_weights_a_trainer_does_not_take_are_refused(key: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(f"num_classes: 2\n{key}: t.pt\n")
    with pytest.raises(ConfigError) as caught:
        load_and_validate(path)
    assert caught.value.key == key and caught.value.line == 2
    assert "Trainer (supervised), which takes pretrain_weights" in caught.value.message
    semi = next(t for t in TRAINERS if t.semi)
    _, cfg = load_and_validate(path, ["SemiTrainReader={sup_batch_size: 2}",
                                      "UnsupTrainDataset={name: ImageFolder, dataset_dir: u}",
                                      *select(semi)])
    assert getattr(cfg, key) == "t.pt"


def test_unknown_names_get_a_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(f"num_classes: 2\n{SEMI_SECTIONS}ssod_method: DenseTeachr\n")
    with pytest.raises(ConfigError) as caught:
        load_and_validate(path)
    assert caught.value.key == "ssod_method" and caught.value.hint == \
        "did you mean 'DenseTeacher'?"
    with pytest.raises(ConfigError) as caught:
        LaunchSpec(config=path, trainer="cotuning").flag_overrides()
    assert caught.value.key == "trainer" and "'co-tuning'" in (caught.value.hint or "")


def test_the_front_ends_name_the_catalogue_s_trainers() -> None:
    assert tuple(TRAINER_LABELS) == CHOICES
    from typer.testing import CliRunner

    from tui.cli import app

    help_text = " ".join(CliRunner().invoke(app, ["run", "--help"],
                                            env={"COLUMNS": "400"}).output.split())
    for info in TRAINERS:
        assert info.summary() in help_text


def shipped_configs() -> list[Path]:
    return sorted(p for p in (REPO / "configs").rglob("*.yml") if "_base_" not in p.parts)


@pytest.mark.parametrize("choice", CHOICES)
def test_the_launch_form_reads_the_trainer_the_engine_runs(choice: str) -> None:
    """The form reads raw YAML (a config that does not validate yet still gets its fields);
    for every shipped config and every trainer choice it names the engine's trainer."""
    for path in shipped_configs():
        spec = LaunchSpec(config=path, trainer=choice)
        facts = config_facts(spec)
        assert facts is not None, path
        try:
            _, cfg = load_and_validate(path, spec.all_overrides())
        except ConfigError:
            continue  # e.g. co-tuning on an FCOS config: refused, shown by the form
        assert facts.trainer == trainer_name(cfg), (path, choice)
        info = trainer_for(cfg.ssod_method, cfg.use_cot)
        assert (facts.semi, facts.cotuning) == (info.semi, info.use_cot), (path, choice)
