"""What the front-ends say about semi-supervised and co-tuning runs (no Textual, no torch).

* the phase: ``burn_in`` (supervised only) until the semi phase starts, then ``semi``, and
  when the next phase starts, from the ``start`` event (``semi_start_iter``) and the latest
  ``train`` event (``phase``, ``next_phase_iter``);
* pseudo-label statistics: the ``stats`` of train events, named for people;
* the co-tuning relationship: ``cot_relationship.json`` (written by
  ``engine.models.relationship.write_relationship_json``), read defensively: a missing,
  oversized or garbled file gives a message, never an exception.

Iterations are counted as train events count them (``iter`` = steps done): the semi phase
whose ``semi_start_iter`` is N starts with step N + 1, shown as "iter N + 1", as the
engine's log does ("teacher started ... at iteration 2").
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.protocol.safefiles import RefusedFile, read_regular

__all__ = ["PHASE_NAMES", "Relationship", "phase_changed", "phase_line", "read_relationship",
           "semi_schedule", "stat_label"]

PHASE_NAMES = {"burn_in": "burn-in", "semi": "semi"}
RELATIONSHIP_LIMIT = 4 << 20
"""Largest cot_relationship.json read (80 x 80 classes take ~60 KB)."""

STAT_LABELS = {
    "pseudo_points_per_image": "pseudo points/img",
    "pseudo_boxes_per_image": "pseudo boxes/img",
    "pseudo_images_kept": "images kept",
    "pseudo_pos_per_image": "pseudo pos/img",
    "pseudo_ambiguous_per_image": "ambiguous/img",
    "pseudo_mined_per_image": "mined/img",
    "pseudo_score": "teacher score",
    "pseudo_pos_score": "teacher score (pos)",
    "unsup_weight": "unsup weight",
}
"""Short names for the stats the trainers report (others are shown as they come)."""


def stat_label(name: str) -> str:
    return STAT_LABELS.get(name, name)


def _int(value: object) -> int | None:
    return value if type(value) is int else None


@dataclass(frozen=True)
class SemiSchedule:
    """Where a semi-supervised run stands: its phase and when the next one starts."""

    phase: str
    """``burn_in`` or ``semi`` (as the engine names them)."""
    semi_start: int | None
    """Steps done before the semi phase (its first step is ``semi_start + 1``)."""
    teacher_start: int | None
    done: int | None
    """Steps done (the latest train event's ``iter``)."""


def semi_schedule(start: dict[str, Any] | None,
                  latest_train: dict[str, Any] | None) -> SemiSchedule | None:
    """The phase of a run from its latest ``start`` and ``train`` events; None for a run
    whose events carry no phase (a supervised or co-tuning run)."""
    start = start or {}
    train = latest_train or {}
    phase = train.get("phase") if isinstance(train.get("phase"), str) else start.get("phase")
    if not isinstance(phase, str):
        return None
    semi_start = _int(start.get("semi_start_iter"))
    if semi_start is None:  # an older run: train events say it while the burn-in lasts
        semi_start = _int(train.get("next_phase_iter"))
    teacher = _int(train.get("teacher_start_iter"))
    if teacher is None:
        teacher = _int(start.get("teacher_start_iter"))
    done = _int(train.get("iter"))
    if done is None:
        done = _int(start.get("start_iter"))
    return SemiSchedule(phase, semi_start, teacher, done)


def phase_line(schedule: SemiSchedule) -> str:
    """``phase: burn-in → semi at iter 3 (in 1 iter) · teacher from iter 2``, or once the
    semi phase runs, ``phase: semi (since iter 3) · teacher from iter 2``."""
    name = PHASE_NAMES.get(schedule.phase, schedule.phase)
    first_semi = None if schedule.semi_start is None else schedule.semi_start + 1
    if schedule.phase == "burn_in":
        text = f"phase: {name} → semi at iter {first_semi if first_semi else '?'}"
        if first_semi is not None and schedule.done is not None and first_semi > schedule.done:
            left = first_semi - schedule.done
            text += f" (in {left:,} iter{'s' if left > 1 else ''})"
    else:
        text = f"phase: {name}" + (f" (since iter {first_semi:,})" if first_semi else "")
    if schedule.teacher_start is not None:
        text += f" · teacher from iter {schedule.teacher_start + 1:,}"
    return text


def phase_changed(previous: str | None, event: dict[str, Any],
                  start: dict[str, Any] | None = None) -> str | None:
    """The console line for a train event whose phase differs from ``previous`` (None when
    it does not, or when the event has no phase). The semi phase starts where the run's
    ``start`` event says (``semi_start_iter`` + 1), as :func:`phase_line` says it: train
    events come every ``log_iter`` steps, so the first semi one may be a few steps later."""
    phase = event.get("phase")
    if not isinstance(phase, str) or phase == previous:
        return None
    at = _int(event.get("iter"))
    semi_start = _int((start or {}).get("semi_start_iter"))
    if phase == "semi" and semi_start is not None and (at is None or semi_start < at):
        at = semi_start + 1
    where = f" at iter {at:,}" if at is not None else ""
    if previous is None:
        next_at = _int(event.get("next_phase_iter"))
        then = f"; semi from iter {next_at + 1:,}" if phase == "burn_in" and next_at is not None \
            else ""
        return f"phase: {PHASE_NAMES.get(phase, phase)}{where}{then}"
    return (f"phase: {PHASE_NAMES.get(previous, previous)} → {PHASE_NAMES.get(phase, phase)}"
            f"{where}")


# ------------------------------------------------------------------- co-tuning relationship

@dataclass(frozen=True)
class Relationship:
    """For each target class, its top source classes with their probabilities."""

    rows: list[tuple[str, list[tuple[str, float]], int | None]]
    """``(target class, [(source class, p), ...] best first, examples or None)``."""
    source_count: int
    source_names_from: str


def read_relationship(path: str | Path) -> tuple[Relationship | None, str | None]:
    """``(relationship, None)``, or ``(None, why it can't be shown)``."""
    name = Path(path).name
    try:
        data = read_regular(path, RELATIONSHIP_LIMIT)
    except FileNotFoundError:
        return None, (f"{name} is not there yet: co-tuning writes it once the relationship "
                      "is learned, before the first training step")
    except (RefusedFile, OSError) as exc:
        return None, f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}"
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None, f"{name} is not UTF-8 text"
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        return None, f"{name} is not valid JSON{where}"
    try:
        return _parse_relationship(doc), None
    except ValueError as exc:
        return None, f"{name}: {exc}"


def _finite(value: object) -> bool:
    """A number a float holds, finite (``math.isfinite`` of a 400-digit int overflows)."""
    if type(value) is int:
        return -sys.float_info.max <= value <= sys.float_info.max
    return type(value) is float and math.isfinite(value)


def _parse_relationship(doc: object) -> Relationship:
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    targets = doc.get("target_classes")
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ValueError("target_classes must be a list of class names")
    sources = doc.get("source_classes")
    sources = sources if isinstance(sources, list) else []
    examples = doc.get("examples") if isinstance(doc.get("examples"), dict) else {}
    top = doc.get("top")
    rows = []
    for k, target in enumerate(targets):
        pairs = _top_of(top, target) if isinstance(top, dict) else None
        if pairs is None:
            pairs = _top_from_matrix(doc.get("matrix"), k, sources)
        count = examples.get(target)
        rows.append((target, pairs, count if type(count) is int else None))
    origin = doc.get("source_names_from")
    return Relationship(rows, len(sources), origin if isinstance(origin, str) else "?")


def _top_of(top: dict, target: str) -> list[tuple[str, float]] | None:
    entries = top.get(target)
    if not isinstance(entries, list):
        return None
    pairs = []
    for entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("source"), str)
                and _finite(entry.get("p"))):
            raise ValueError(f"top[{target!r}] must list {{source, p}} entries")
        pairs.append((entry["source"], float(entry["p"])))
    return pairs


def _top_from_matrix(matrix: object, row: int, sources: list, k: int = 3
                     ) -> list[tuple[str, float]]:
    if not isinstance(matrix, list) or row >= len(matrix) or not isinstance(matrix[row], list):
        raise ValueError("neither top nor matrix gives this target class's source classes")
    values = matrix[row]
    if not all(_finite(v) for v in values):
        raise ValueError(f"matrix row {row + 1} holds something other than numbers")
    order = sorted(range(len(values)), key=lambda j: -values[j])[:k]
    return [(str(sources[j]) if j < len(sources) else f"source {j + 1}", float(values[j]))
            for j in order]
