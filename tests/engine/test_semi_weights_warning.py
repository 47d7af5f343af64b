"""Only one of ``pretrain_teacher_weights`` / ``pretrain_student_weights``: both load only
together, so the one given is ignored; that is said in the console, in ``train.log`` and in
the events, and the launch form can say it too (``semi_weights_warning``, torch-free)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from engine.config.semi_weights import semi_weights_warning
from engine.protocol.events import read_events
from tests.conftest import REPO, engine_env, semi_overrides
from tests.engine.test_semi_views import DENSE


def weights(teacher=None, student=None, pretrained=None) -> SimpleNamespace:
    return SimpleNamespace(pretrain_teacher_weights=teacher, pretrain_student_weights=student,
                           pretrain_weights=pretrained)


def test_the_warning_names_the_key_given_the_key_missing_and_what_is_used() -> None:
    assert semi_weights_warning(weights()) is None
    assert semi_weights_warning(weights("t.pt", "s.pt")) is None
    assert semi_weights_warning(weights(pretrained="p.pt")) is None
    teacher_only = semi_weights_warning(weights("t.pt"))
    assert teacher_only == (
        "pretrain_teacher_weights is set but pretrain_student_weights is not: they load only "
        "together, so pretrain_teacher_weights (t.pt) is ignored and the student and the "
        "teacher start from random init (no pretrain_weights); set pretrain_student_weights "
        "too, or give that file as pretrain_weights")
    student_only = semi_weights_warning(weights(student="s.pt", pretrained="p.pt"))
    assert student_only is not None
    assert student_only.startswith("pretrain_student_weights is set but "
                                   "pretrain_teacher_weights is not")
    assert "(s.pt) is ignored" in student_only and "start from pretrain_weights (p.pt)" in \
        student_only


def test_the_helper_does_not_import_torch() -> None:
    probe = ("import sys, engine.config.semi_weights\n"
             "print(any(m.split('.')[0] in ('torch', 'torchvision') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=engine_env(),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_lone_teacher_file_is_warned_about_in_console_log_and_events(tmp_path: Path) -> None:
    teacher = tmp_path / "teacher.pt"
    torch.save({}, teacher)
    argv = [sys.executable, "-m", "tui.cli", "run", str(DENSE), "--headless", "--no-eval",
            "--runs-dir", str(tmp_path / "runs")]
    for o in [*semi_overrides(tmp_path / "data", epochs=1, epoch_iter=1),
              f"pretrain_teacher_weights={teacher}"]:
        argv += ["-o", o]
    proc = subprocess.run(argv, cwd=tmp_path, env=engine_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    needle = "pretrain_teacher_weights is set but pretrain_student_weights is not"
    assert needle in " ".join(proc.stdout.split()), proc.stdout  # the console wraps lines
    (run,) = (tmp_path / "runs").iterdir()
    assert needle in (run / "train.log").read_text()
    warnings = [e["message"] for e in read_events(run / "events.jsonl")
                if e["type"] == "log" and e["level"] == "warning"]
    assert any(needle in w and str(teacher) in w for w in warnings), warnings
