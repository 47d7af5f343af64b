"""A torch-free check of the teacher / student weights of a config, for the engine (console,
``train.log``, events) and the launch form alike.

``pretrain_teacher_weights`` and ``pretrain_student_weights`` load only together (as in
PaddleDetection's ``tools/train.py``); one of them alone used to be ignored in silence.
"""

from __future__ import annotations

from typing import Any


def semi_weights_warning(cfg: Any) -> str | None:
    """The warning for a config (anything with ``pretrain_teacher_weights``,
    ``pretrain_student_weights`` and ``pretrain_weights``) that gives exactly one of the
    teacher and student weights, or None. Not for a resumed run (resuming loads neither)."""
    teacher = getattr(cfg, "pretrain_teacher_weights", None)
    student = getattr(cfg, "pretrain_student_weights", None)
    if bool(teacher) == bool(student):
        return None
    given, missing = (("pretrain_teacher_weights", "pretrain_student_weights") if teacher
                      else ("pretrain_student_weights", "pretrain_teacher_weights"))
    pretrained = getattr(cfg, "pretrain_weights", None)
    start = (f"pretrain_weights ({pretrained})" if pretrained
             else "random init (no pretrain_weights)")
    return (f"{given} is set but {missing} is not: they load only together, so "
            f"{given} ({teacher or student}) is ignored and the student and the teacher "
            f"start from {start}; set {missing} too, or give that file as pretrain_weights")
