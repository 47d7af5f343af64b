"""``torchvision:<builder>[:<WEIGHTS>]``: what torchvision's own weight enums say of a name.

This module imports torchvision (and so torch): the front-ends run it as a subprocess,
``python -m engine.tvweights NAME...``, which prints one JSON object per name (``--zoo
ARCHITECTURE BACKBONE``: the list of entries that fit a config, for the TUI's picker); the engine
calls :func:`describe` directly. No URL table is kept here: the URL, file name, size and
categories all come from ``torchvision.models.get_model_weights``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from engine.protocol.errors import WeightsError


def describe(builder: str, weights: str | None) -> dict[str, Any]:
    """The enum entry ``builder``/``weights`` (``DEFAULT`` when None): url, file name,
    size in bytes (torchvision's ``_file_size``, MB), categories, the model family."""
    from torchvision.models import get_model_weights, list_models

    try:
        enum = get_model_weights(builder)
    except (ValueError, KeyError):
        names = list_models()
        close = [n for n in names if builder.split("_")[0] in n][:6]
        raise WeightsError(
            f"torchvision has no model builder {builder!r}",
            hint=("close names: " + ", ".join(close)) if close else
                 "see torchvision.models.list_models() for the names") from None
    members = [m for m in enum.__members__ if m != "DEFAULT"]
    name = weights or "DEFAULT"
    if name not in enum.__members__:
        raise WeightsError(f"torchvision's {builder} has no weights {name!r}",
                           hint="its weights: " + ", ".join(members))
    entry = enum[name]
    meta = entry.meta
    size = meta.get("_file_size")
    from torchvision.models import detection

    return {"builder": builder, "weights": entry.name, "enum": f"{type(entry).__name__}."
            f"{entry.name}", "url": entry.url, "file_name": entry.url.rsplit("/", 1)[-1],
            "size": int(size * 1024 * 1024) if isinstance(size, (int, float)) else None,
            "categories": list(meta.get("categories") or []),
            "num_params": meta.get("num_params"),
            "detector": builder in detection.__dict__,
            "box_map": (meta.get("_metrics") or {}).get("COCO-val2017", {}).get("box_map"),
            "members": members}


def zoo(architecture: str, backbone: str) -> list[dict[str, Any]]:
    """The torchvision weights that fit a config: its architecture's COCO detectors on the
    same backbone (``ZOO_DETECTOR_PREFIX``), then ImageNet weights of the backbone alone."""
    from torchvision.models import detection, get_model_weights, list_models

    from engine.weightsource import ZOO_DETECTOR_PREFIX

    prefix = ZOO_DETECTOR_PREFIX.get(architecture)
    backbone_name = {"mobilenet_v3": "mobilenet_v3_large"}.get(backbone, backbone)
    builders = [n for n in list_models(module=detection)
                if prefix and n.startswith(prefix) and backbone_name in n]
    if backbone_name in list_models():
        builders.append(backbone_name)
    out = []
    for builder in builders:
        for member in get_model_weights(builder).__members__:
            if member != "DEFAULT":
                entry = describe(builder, member)
                entry["source"] = f"torchvision:{builder}:{member}"
                out.append(entry)
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["--zoo"] and len(argv) == 3:
        print(json.dumps(zoo(argv[1], argv[2])))
        return 0
    for name in argv:
        builder, _, weights = name.partition(":")
        try:
            print(json.dumps(describe(builder, weights or None)))
        except WeightsError as exc:
            print(json.dumps({"error": exc.message, "hint": exc.hint}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
