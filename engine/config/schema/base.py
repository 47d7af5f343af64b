"""What every section of the schema shares: ``doc`` (a field with its documentation) and
the limits and names the sections and their checks use. stdlib only."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

ARCHITECTURES = ("FCOS", "RetinaNet", "FasterRCNN", "RTDETR")
BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v3")
# Shape kinds the built-in shapes generator can draw (engine/data/shapes.py draws them); the
# first four are its default classes, the others are drawn only when a config asks for them.
SHAPE_KINDS = ("circle", "square", "triangle", "cross", "ellipse", "ring", "diamond",
               "hexagon", "star", "frame", "x")

MAX_IMAGE_SIDE = 8192
"""The largest image side a config may ask for (``model.min_size``/``max_size``,
``rtdetr.image_size``, ``synthesize.image_size``): 1e5 passed once and failed at
allocation, after the run had started."""
MAX_QUERIES = 10_000
"""The most RT-DETR object or denoising queries (300 and 100 in the paper)."""
MAX_BATCH = 4096
"""The most images in a batch of one process."""
MAX_INT = 2**31 - 1
"""Every integer key is at most this (in magnitude): a 100-digit count fails later, in a
library, with a message that names no key."""


def doc(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    """A dataclass field with its documentation in ``metadata['doc']``."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})
