"""Boxes and labels drawn on a copy of an image (``dettui infer``); no torch here.

Labels never cover one another: each is placed at the first free spot among a few
positions around its box (above it, inside its top, below it, inside its bottom), else at
the free spot nearest to it, and the best-scored detections choose first. On a small
image with crowded boxes a label may still cover another box's outline, never another
label's text (unless the image has no room left at all).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


def label_colour(label: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(boxes: Sequence[Rect], sizes: Sequence[tuple[float, float]],
                 image_size: tuple[int, int]) -> list[Rect]:
    """Where to put the label of each box (``sizes``: each label's width and height), in
    the order given (put the most important first): inside the image, not on an earlier
    label. Only when the image has no room left may a label overlap another."""
    width, height = image_size
    placed: list[Rect] = []
    for (x0, y0, _x1, y1), (w, h) in zip(boxes, sizes):
        x = min(max(0.0, x0), max(0.0, width - w))

        def at(y: float, x: float = x, w: float = w, h: float = h) -> Rect:
            y = min(max(0.0, y), max(0.0, height - h))
            return (x, y, x + w, y + h)

        candidates = [at(y0 - h), at(y0), at(y1), at(y1 - h)]
        # else the free spot nearest to the box: just below or above a placed label, or
        # any row of the image
        rows = int(max(0.0, height - h) // max(1.0, h)) + 1
        others = {at(k * h) for k in range(rows)}
        others |= {at(p[3]) for p in placed} | {at(p[1] - h) for p in placed}
        candidates += sorted(others, key=lambda c: (abs(c[1] - (y0 - h)), c[1]))
        chosen = next((c for c in candidates if not any(_overlaps(c, p) for p in placed)),
                      candidates[0])
        placed.append(chosen)
    return placed


def draw_detections(image: Image.Image, detections: Sequence[tuple[Rect, float, int]],
                    names: Sequence[str]) -> int:
    """Draw ``(box, score, label)`` detections (labels 1-based into ``names``) on
    ``image``; returns how many were drawn. Boxes first, then every label on top."""
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    ordered = sorted(detections, key=lambda d: -d[1])  # the best placed first
    texts, sizes = [], []
    for box, score, label in ordered:
        draw.rectangle(box, outline=label_colour(label), width=2)
        name = names[label - 1] if 0 < label <= len(names) else f"class {label}"
        text = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        texts.append((text, left, top))
        sizes.append((right - left + 2, bottom - top + 2))
    rects = place_labels([d[0] for d in ordered], sizes, image.size)
    for (_, _, label), (text, left, top), rect in zip(ordered, texts, rects):
        draw.rectangle(rect, fill=label_colour(label))
        draw.text((rect[0] + 1 - left, rect[1] + 1 - top), text, fill=(0, 0, 0), font=font)
    return len(ordered)
