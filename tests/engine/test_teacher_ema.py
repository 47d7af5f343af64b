"""The two weight averages on known tensors: a semi-supervised ``Teacher`` and the ``use_ema``
``ModelEMA``. Decays are asymmetric (0.75, 0.9...): with 0.5 an average taken the wrong way
round (``t * (1 - d) + s * d``) gives the same numbers and no test could tell.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from engine.trainers.ema import ModelEMA
from engine.trainers.teacher import Teacher


def net(weight: float, bias: float, running_mean: float, batches: int) -> nn.Sequential:
    """A linear layer and a BatchNorm with every float entry set to a known constant."""
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        model[0].weight.fill_(weight)
        model[0].bias.fill_(bias)
        model[1].running_mean.fill_(running_mean)
        model[1].num_batches_tracked.fill_(batches)
    return model


def set_to(model: nn.Module, other: nn.Module) -> None:
    model.load_state_dict(other.state_dict())


def test_teacher_update_keeps_decay_of_itself_and_takes_the_rest_from_the_student() -> None:
    student = net(weight=0.0, bias=0.0, running_mean=0.0, batches=0)
    teacher = Teacher(student, decay=0.75)
    # teacher: the student's copy (0); the student moves to 1.0 / 2.0 / 4.0, 7 batches.
    set_to(student, net(weight=1.0, bias=2.0, running_mean=4.0, batches=7))
    teacher.update(student)
    t = teacher.module
    # 0.75 * old + 0.25 * student
    assert t[0].weight.tolist() == [[0.25, 0.25], [0.25, 0.25]]
    assert t[0].bias.tolist() == [0.5, 0.5]
    assert t[1].running_mean.tolist() == [1.0, 1.0]  # BatchNorm statistics follow too
    assert int(t[1].num_batches_tracked) == 7         # integer entries are copied
    teacher.update(student)
    assert t[0].weight[0, 0].item() == pytest.approx(0.75 * 0.25 + 0.25 * 1.0)
    assert teacher.updates == 2
    # The student is untouched and gets no gradient from the teacher.
    assert student[0].weight[0, 0].item() == 1.0
    assert not any(p.requires_grad for p in t.parameters())


def test_teacher_update_with_an_explicit_decay_and_copy_from() -> None:
    student = net(weight=0.0, bias=0.0, running_mean=0.0, batches=0)
    teacher = Teacher(student, decay=0.75)
    set_to(student, net(weight=1.0, bias=1.0, running_mean=1.0, batches=3))
    teacher.update(student, decay=0.9)               # the decay given wins
    assert teacher.module[0].weight[0, 0].item() == pytest.approx(0.1)
    teacher.update(student, decay=0.0)               # decay 0: a copy
    assert teacher.module[0].weight[0, 0].item() == 1.0
    set_to(student, net(weight=3.0, bias=3.0, running_mean=3.0, batches=5))
    teacher.copy_from(student, iteration=12)
    assert torch.equal(teacher.module[0].weight, student[0].weight)
    assert teacher.started_at == 12 and teacher.updates == 0


def test_teacher_state_round_trips() -> None:
    student = net(weight=0.5, bias=0.5, running_mean=0.5, batches=1)
    teacher = Teacher(student, decay=0.75)
    teacher.copy_from(student, iteration=3)
    teacher.update(student)
    other = Teacher(net(0.0, 0.0, 0.0, 0), decay=0.75)
    other.load_state_dict(teacher.state_dict())
    assert other.started_at == 3 and other.updates == 1
    assert torch.equal(other.module[0].weight, teacher.module[0].weight)


def test_model_ema_threshold_decay_on_known_tensors() -> None:
    model = net(weight=0.0, bias=0.0, running_mean=0.0, batches=0)
    ema = ModelEMA(model, decay=0.9, decay_type="threshold")
    set_to(model, net(weight=1.0, bias=1.0, running_mean=1.0, batches=4))
    # step 0: min(0.9, 1/10) = 0.1 -> 0.1 * 0 + 0.9 * 1
    ema.update(model)
    assert ema.module[0].weight[0, 0].item() == pytest.approx(0.9)
    assert ema.module[1].running_mean[0].item() == pytest.approx(0.9)
    assert int(ema.module[1].num_batches_tracked) == 4
    # step 1: min(0.9, 2/11) -> 2/11 * 0.9 + 9/11 * 1
    ema.update(model)
    assert ema.module[0].weight[0, 0].item() == pytest.approx(2 / 11 * 0.9 + 9 / 11)
    # Many steps later the decay is capped at 0.9: 0.9 * e + 0.1 * w.
    ema.step = 1000
    with torch.no_grad():
        ema.module[0].weight.fill_(0.0)
    ema.update(model)
    assert ema.module[0].weight[0, 0].item() == pytest.approx(0.1)
    assert ema.step == 1001


def test_model_ema_constant_and_exponential_decays() -> None:
    model = net(weight=0.0, bias=0.0, running_mean=0.0, batches=0)
    const = ModelEMA(model, decay=0.75, decay_type="constant")
    expo = ModelEMA(model, decay=0.75, decay_type="exponential")
    set_to(model, net(weight=1.0, bias=1.0, running_mean=1.0, batches=1))
    const.update(model)
    assert const.module[0].weight[0, 0].item() == pytest.approx(0.25)
    expo.update(model)
    d = 0.75 * (1 - math.exp(-1 / 2000))
    assert expo.module[0].weight[0, 0].item() == pytest.approx(1 - d)
    state = const.state_dict()
    again = ModelEMA(net(0.0, 0.0, 0.0, 0), decay=0.75, decay_type="constant")
    again.load_state_dict(state)
    assert again.step == 1 and again.module[0].weight[0, 0].item() == pytest.approx(0.25)
