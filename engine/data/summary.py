"""``DatasetSummary``: what a dataset holds and what was left out of it, for people.

One shape for every source (an import, ``dettui data check`` on a COCO json, a VOC list, a
folder of unlabeled images) and one plain-text rendering, printed by the CLI and shown by
the TUI. Class names and paths come from the user's files: ``printable`` escapes control
characters so they cannot move the cursor or recolour a terminal.

stdlib only: the TUI imports this module.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

IGNORED_WHAT = "difficult/crowd"


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``1 image``, ``2 images`` (``many``: an irregular plural, ``1 class``/``2 classes``)."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"


def printable(text: object) -> str:
    """``text`` with control and format characters shown as escapes (``\\x1b``)."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch)[0] == "C" and ch != " ":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


@dataclass
class DatasetSummary:
    """Statistics of one dataset as the training pipeline will see it.

    ``boxes[k]`` / ``ignored[k]`` count the boxes of class ``class_names[k]`` that are
    trained on / kept only as ``iscrowd: 1`` (VOC ``difficult``; COCO crowd regions):
    training skips those and the COCO evaluator neither rewards nor penalises
    detections on them.
    """

    title: str
    """What was summarised: a config section (``TrainDataset``) or ``import``."""
    kind: str
    """The format: COCODataSet, VOCDataSet, YOLO, ImageFolder."""
    source: str
    """The file or folder read."""
    images: int = 0
    class_names: list[str] = field(default_factory=list)
    boxes: list[int] = field(default_factory=list)
    ignored: list[int] = field(default_factory=list)
    clipped: int = 0
    """Boxes partly outside their image, clipped to it (and kept)."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Boxes left out, by reason."""
    dropped_first: dict[str, str] = field(default_factory=dict)
    """Where the first box of each drop reason was (``file:line`` or ``file object[i]``)."""
    without_boxes: dict[str, int] = field(default_factory=dict)
    """Images without a trainable box, by reason."""
    notes: list[str] = field(default_factory=list)
    labeled: bool = True
    """False for unlabeled images (no box statistics)."""

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.dropped_first.setdefault(reason, where)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def total_boxes(self) -> int:
        return sum(self.boxes)

    def lines(self) -> list[str]:
        """The summary as plain-text lines (no markup, control characters escaped)."""
        out = [f"{printable(self.title)} ({self.kind}): {printable(self.source)}"]
        if self.images == 0 and not self.class_names:  # nothing read (not generated yet)
            return out + [f"  note: {printable(n)}" for n in self.notes]
        empty = sum(self.without_boxes.values())
        images = f"  images   {self.images}"
        if self.labeled and empty:
            why = ", ".join(f"{n} {printable(r)}" for r, n in self.without_boxes.items())
            images += f"  ({empty} without boxes: {why})"
        out.append(images)
        if not self.labeled:
            out += [f"  note: {printable(n)}" for n in self.notes]
            return out
        classes = plural(len(self.class_names), "class", "classes")
        out.append(f"  boxes    {self.total_boxes} in {classes}"
                   + (f" (+{sum(self.ignored)} {IGNORED_WHAT}, ignored)"
                      if sum(self.ignored) else ""))
        width = max((len(printable(n)) for n in self.class_names), default=0)
        for name, count, ignored in zip(self.class_names, self.boxes, self.ignored):
            row = f"    {printable(name):<{width}}  {count:>7}"
            if ignored:
                row += f"  (+{ignored} {IGNORED_WHAT})"
            if count == 0:
                row += "  no boxes"
            out.append(row)
        if self.clipped:
            out.append(f"  clipped  {plural(self.clipped, 'box', 'boxes')} partly outside "
                       f"{'its image' if self.clipped == 1 else 'their image'}")
        if self.dropped:
            total = sum(self.dropped.values())
            out.append(f"  dropped  {plural(total, 'box', 'boxes')}")
            for reason, n in self.dropped.items():
                first = self.dropped_first.get(reason)
                out.append(f"    {n:>7}  {printable(reason)}"
                           + (f" (first: {printable(first)})" if first else ""))
        out += [f"  note: {printable(n)}" for n in self.notes]
        return out
