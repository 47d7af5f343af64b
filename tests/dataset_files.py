"""Real dataset files for the import tests: PIL images, Pascal VOC XML, YOLO txt labels.

Every image is a flat background with solid rectangles at known places, so a test can
find an object in the decoded pixels and compare it with the imported box.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from tests.conftest import REPO

BACKGROUND = (30, 30, 30)
COLOURS = {"red": (230, 40, 40), "blue": (40, 60, 230)}

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (end-exclusive pixel edges)


def write_image(path: Path, size: tuple[int, int], rects: list[tuple[Rect, tuple]] = (),
                *, mode: str = "RGB", orientation: int | None = None,
                **save: object) -> Path:
    """A ``size`` (w, h) image with filled ``rects`` (pixel edges, end exclusive), saved in
    ``mode`` (L, CMYK, RGBA, P...) with an EXIF ``orientation`` tag if given. The rects are
    drawn on the *stored* bitmap."""
    w, h = size
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    for (x0, y0, x1, y1), colour in rects:
        pixels[y0:y1, x0:x1] = colour
    img = Image.fromarray(pixels)
    if mode == "P":
        img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
        save.setdefault("transparency", 0)
    elif mode != "RGB":
        img = img.convert(mode)
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        save["exif"] = exif.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save)
    return path


def voc_xml(filename: str, size: tuple[int, int] | None,
            objects: list[tuple[str, tuple[float, float, float, float], int]]) -> str:
    """A Pascal VOC annotation; each object is ``(name, (xmin, ymin, xmax, ymax), difficult)``
    with the devkit's 1-based inclusive coordinates."""
    parts = ["<annotation>", "  <folder>VOC</folder>",
             f"  <filename>{escape(filename)}</filename>"]
    if size is not None:
        parts.append(f"  <size><width>{size[0]}</width><height>{size[1]}</height>"
                     "<depth>3</depth></size>")
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        parts += ["  <object>", f"    <name>{escape(name)}</name>",
                  "    <pose>Unspecified</pose>", "    <truncated>0</truncated>",
                  f"    <difficult>{difficult}</difficult>",
                  f"    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                  f"<ymax>{ymax}</ymax></bndbox>", "  </object>"]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def voc_objects(rects: list[tuple[Rect, str]]) -> list:
    """VOC objects (1-based inclusive) for rects given as pixel edges."""
    return [(name, (x0 + 1, y0 + 1, x1, y1), 0) for (x0, y0, x1, y1), name in rects]


def shapes_scene(i: int, size: int = 64) -> list[tuple[Rect, str]]:
    """One or two rectangles, red and/or blue, at places that depend on ``i``."""
    rng = np.random.default_rng(i)
    out = []
    for name in ("red", "blue")[: 1 + i % 2]:
        side = int(rng.integers(size // 5, size // 2))
        x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
        out.append(((x0, y0, x0 + side, y0 + side), name))
    return out


def make_voc(root: Path, n: int = 12, size: int = 64) -> Path:
    """A standard-layout VOC folder: JPEGImages/, Annotations/, ImageSets/Main/{train,val}."""
    ids = [f"{i:06d}" for i in range(n)]
    for i, image_id in enumerate(ids):
        scene = shapes_scene(i, size)
        write_image(root / "JPEGImages" / f"{image_id}.jpg", (size, size),
                    [(r, COLOURS[c]) for r, c in scene], quality=95)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            voc_xml(f"{image_id}.jpg", (size, size), voc_objects(scene)))
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    cut = n * 3 // 4
    (sets / "train.txt").write_text("\n".join(ids[:cut]) + "\n")
    (sets / "val.txt").write_text("\n".join(ids[cut:]) + "\n")
    return root


def make_yolo(root: Path, n: int = 8, size: int = 64, names_as: str = "list") -> Path:
    """An Ultralytics layout: data.yaml, images/{train,val}/, labels/{train,val}/."""
    for split, count in (("train", n), ("val", max(2, n // 4))):
        for i in range(count):
            scene = shapes_scene(100 * (split == "val") + i, size)
            write_image(root / "images" / split / f"im{i}.png", (size, size),
                        [(r, COLOURS[c]) for r, c in scene])
            lines = [yolo_line(["red", "blue"].index(c), r, size, size) for r, c in scene]
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"im{i}.txt").write_text("\n".join(lines) + "\n")
    names = ("names: [red, blue]" if names_as == "list" else
             "names:\n  0: red\n  1: blue")
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\n{names}\n")
    return root


def yolo_line(cls: int, rect: Rect, w: int, h: int) -> str:
    x0, y0, x1, y1 = rect
    return (f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} "
            f"{(y1 - y0) / h:.6f}")


def tiny_config(path: Path, train: dict, val: dict, num_classes: int = 2) -> Path:
    """A tiny FCOS config (64 px, 2 iterations, eval) on the given dataset sections."""
    import yaml

    base = REPO / "configs" / "_base_"
    cfg = {
        "_BASE_": [str(base / "runtime.yml"), str(base / "tiny_fcos.yml"),
                   str(base / "optimizer_adamw_cosine.yml")],
        "num_classes": num_classes, "epoch": 1, "epoch_iter": 2, "snapshot_epoch": 1,
        "log_iter": 1, "worker_num": 0,
        "model": {"min_size": 64, "max_size": 64},
        "LearningRate": {"warmup_iters": 1},
        "TrainDataset": train, "EvalDataset": {**val, "allow_empty": True},
        "TrainReader": {"batch_size": 4, "drop_last": False,
                        "sample_transforms": [{"Resize": {"target_size": 64}}]},
        "EvalReader": {"batch_size": 4, "sample_transforms": [{"Resize": {"target_size": 64}}]},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
