"""The launch form for semi-supervised and co-tuning configs: the fields each trainer needs,
the unlabeled set prefilled from the config and overridable, and co-tuning refused before
launch without the source model's weights (``pretrain_weights``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Label, Select

from tests.conftest import SEMI_DIR
from tests.tui.conftest import make_app, plain, run_pilot, wait_for
from tests.tui.test_launch_form import _open_form, _status, _type_into
from tui.process.spec import LaunchSpec, config_facts
from tui.screens import launch as launch_module
from tui.screens.launch import LaunchScreen

DENSE = SEMI_DIR / "denseteacher" / "denseteacher_fcos_tiny_shapes.yml"
COT = SEMI_DIR.parent / "cot" / "cotuning_shapes.yml"


@pytest.fixture(autouse=True)
def no_gpus(monkeypatch) -> None:
    monkeypatch.setattr(launch_module, "gpus", lambda: [])
    monkeypatch.setattr(launch_module, "nvml_status", lambda: "no NVIDIA GPU (test)")


def shown(screen: LaunchScreen, field: str) -> bool:
    return screen._shown(field)


async def _facts(pilot, screen: LaunchScreen, trainer: str) -> None:
    await wait_for(pilot, lambda: screen.facts is not None and screen.facts.trainer == trainer,
                   what=f"the config read as {trainer}")
    await pilot.pause()


def test_a_semi_config_shows_teacher_student_and_the_unlabeled_set(runs_dir: Path,
                                                                   tmp_path: Path) -> None:
    app = make_app(runs_dir, None, launch=LaunchSpec(config=DENSE, runs_dir=runs_dir))

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        await _facts(pilot, screen, "DenseTeacher")
        assert all(shown(screen, f) for f in ("teacher", "student", "unlabeled"))
        assert not shown(screen, "weights") and not shown(screen, "resume")
        unlabeled = screen.query_one("#unlabeled", Input)
        assert unlabeled.value == "dataset/shapes"  # the config's UnsupTrainDataset
        note = plain(screen.query_one("#unlabeled-note").content).strip()
        assert note == ("COCODataSet · annotations/train.json (its unlabeled 90%) · "
                        "images: train")
        await wait_for(pilot, lambda: "✓ FCOS" in _status(screen), what="validated")
        assert "DenseTeacher · random init" in _status(screen)
        spec = screen.build_spec()
        assert (spec.teacher, spec.student, spec.unlabeled) == (None, None, None)
        # another unlabeled folder: an override, shown in the command
        await _type_into(pilot, screen, "unlabeled", str(tmp_path / "unlabeled"))
        spec = screen.build_spec()
        assert spec.unlabeled == str(tmp_path / "unlabeled")
        assert f'UnsupTrainDataset.dataset_dir="{tmp_path / "unlabeled"}"' in spec.all_overrides()
        await wait_for(pilot, lambda: "UnsupTrainDataset.dataset_dir" in str(
            screen.query_one("#launch-command").render()), what="the override in the command")
        # teacher and student weights, checked before launch under their keys
        await _type_into(pilot, screen, "teacher", str(tmp_path / "teacher.pt"))
        await wait_for(pilot, lambda: "pretrain_teacher_weights" in _status(screen)
                       and "not found" in _status(screen), what="the missing teacher")
        (tmp_path / "teacher.pt").write_bytes(b"PK\x03\x04")
        (tmp_path / "student.pt").write_bytes(b"PK\x03\x04")
        await _type_into(pilot, screen, "teacher", str(tmp_path / "teacher.pt"))
        await _type_into(pilot, screen, "student", str(tmp_path / "student.pt"))
        await wait_for(pilot, lambda: "teacher + student weights" in _status(screen),
                       what="both weights accepted")
        assert "pretrain_teacher_weights" in str(screen.query_one("#launch-command").render())

    run_pilot(app, scenario, size=(100, 36))


def test_choosing_a_semi_trainer_shows_the_semi_fields(runs_dir: Path,
                                                       configs_dir: Path) -> None:
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir)
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        await _facts(pilot, screen, "Trainer")
        assert not any(shown(screen, f) for f in ("teacher", "student", "unlabeled"))
        screen.query_one("#trainer", Select).value = "ARSL"
        await _facts(pilot, screen, "ARSL")
        assert all(shown(screen, f) for f in ("teacher", "student", "unlabeled"))
        assert "no UnsupTrainDataset in the config" in plain(
            screen.query_one("#unlabeled-note").content)
        screen.query_one("#trainer", Select).value = "Trainer"
        await _facts(pilot, screen, "Trainer")
        assert not shown(screen, "unlabeled")
        assert screen.build_spec().teacher is None  # hidden fields never reach the spec

    run_pilot(app, scenario, size=(100, 36))


def test_co_tuning_asks_for_the_source_weights_and_refuses_to_launch_without(
        runs_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "cot_no_weights.yml"
    config.write_text(f"_BASE_:\n  - {COT}\npretrain_weights: null\n")
    app = make_app(runs_dir, None, launch=LaunchSpec(config=config, runs_dir=runs_dir))

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        await _facts(pilot, screen, "CoTuning")
        assert screen.query_one("#weights-mode", Select).value == "pretrained"
        assert shown(screen, "weights") and not shown(screen, "unlabeled")
        assert str(screen.query_one("#label-weights", Label).render()) == "source model"
        assert "pretrain_weights): required" in screen.query_one("#weights", Input).placeholder
        await wait_for(pilot, lambda: "needs pretrain_weights" in _status(screen),
                       what="the missing source weights said before launch")
        assert "key 'pretrain_weights'" in _status(screen)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not screen.launching, what="the launch refused")
        await pilot.pause(0.2)
        assert isinstance(app.screen, LaunchScreen) and not any(runs_dir.iterdir())
        assert "needs pretrain_weights" in _status(screen)
        source = tmp_path / "source.pt"
        source.write_bytes(b"PK\x03\x04")
        await _type_into(pilot, screen, "weights", str(source))
        await wait_for(pilot, lambda: "CoTuning · source weights" in _status(screen),
                       what="the source weights accepted")

    run_pilot(app, scenario, size=(100, 36))


def test_config_facts_of_an_unreadable_config_is_none(tmp_path: Path) -> None:
    assert config_facts(LaunchSpec(config=tmp_path / "missing.yml")) is None
    facts = config_facts(LaunchSpec(config=COT))
    assert facts is not None and facts.cotuning and not facts.semi
    assert facts.pretrain_weights == "weights/shapes_source.pt"


def test_fields_follow_the_trainer_both_ways(runs_dir: Path) -> None:
    """Issue 19.9: co-tuning on a DenseTeacher config turns the weights into the source
    model; back to "from the config", the form is the DenseTeacher form again (teacher and
    student, no source model), as it first was."""
    app = make_app(runs_dir, None, launch=LaunchSpec(config=DENSE, runs_dir=runs_dir))

    def fields(screen: LaunchScreen) -> tuple:
        return (str(screen.query_one("#weights-mode", Select).value),
                tuple(f for f in ("weights", "teacher", "student", "unlabeled")
                      if shown(screen, f)),
                str(screen.query_one("#label-weights", Label).render()))

    async def scenario(pilot) -> None:
        screen = await _open_form(pilot, app)
        await _facts(pilot, screen, "DenseTeacher")
        first = fields(screen)
        assert first == ("none", ("teacher", "student", "unlabeled"), "pretrained"), first
        for _ in range(2):  # there and back, twice
            screen.query_one("#trainer", Select).value = "co-tuning"
            await _facts(pilot, screen, "CoTuning")
            assert fields(screen) == ("pretrained", ("weights",), "source model"), \
                fields(screen)
            screen.query_one("#trainer", Select).value = "config"
            await _facts(pilot, screen, "DenseTeacher")
            assert fields(screen) == first, fields(screen)
        # a mode the user chose stays chosen
        screen.query_one("#weights-mode", Select).value = "pretrained"
        await pilot.pause(0.2)
        screen.query_one("#trainer", Select).value = "co-tuning"
        await _facts(pilot, screen, "CoTuning")
        screen.query_one("#trainer", Select).value = "config"
        await _facts(pilot, screen, "DenseTeacher")
        assert fields(screen)[0] == "pretrained"

    run_pilot(app, scenario, size=(100, 36))
