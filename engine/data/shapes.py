"""The built-in synthetic "shapes" dataset, written in COCO format.

Every image is a pure function of ``(seed, image index, image size)``: the same seed always
gives the same pixels and the same json, on any machine, so the demo needs no download and
its numbers are reproducible. By default four shape kinds (``SHAPE_CLASSES``) are the four
classes; ``classes`` picks others among ``SHAPE_KINDS`` (ellipse, ring, diamond, hexagon,
star, frame and x are drawn only when asked for), e.g. a source set and a few-shot target set
of different but related kinds for co-tuning. The default output never changes (the demo and
its benchmark depend on it): the extra kinds draw no random numbers unless they are drawn.
Boxes are the exact pixel extent of each shape (``[x0, y0, x1 - x0, y1 - y0]`` in pixel-edge
coordinates), and placement keeps every shape clearly visible: an object may be partly
covered by a later one, but it keeps most of its pixels and all four of its extreme
rows/columns, so its box is both the drawn and the visible extent. That is what lets a
tiny detector reach a high AP.

numpy + PIL only (no torch): ``dettui data shapes`` imports this module directly.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import logging
import os
import re
import shutil
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.config.schema.base import SHAPE_KINDS
from engine.config.schema.data import DatasetConfig, UnsupDatasetConfig
from engine.protocol.errors import DataError

log = logging.getLogger("dettui.data")

SHAPE_CLASSES: tuple[str, ...] = SHAPE_KINDS[:4]  # the default classes, in label order

GENERATOR_NAME = "dettui synthetic shapes"
GENERATOR_VERSION = 1  # bump when the drawing changes, so old folders are recognisably stale

_SIZE_RANGE = (0.1, 0.4)     # object side as a fraction of the image side (16-64 px at 160)
_MAX_OBJECTS = 4
_MIN_CONTRAST = 110.0        # RGB distance between an object and what it is drawn over
_MIN_VISIBLE = 0.75          # fraction of an object's pixels a later object may not cover
_NOISE_STD = 8.0             # "light noise" background
_PLACEMENT_TRIES = 30
_MIN_IMAGE_SIZE = 64         # below this the smallest shapes are a few pixels wide
_IMAGE_NAME = re.compile(r"\d{6}\.png")
_SHOT_SCAN_FACTOR = 200      # a few-shot split gives up after shots x classes x this images


@dataclass
class _Shape:
    """One drawn object while an image is being composed."""

    label: int               # index into the split's classes
    mask: np.ndarray         # bool [S, S]: the pixels this shape was drawn on
    visible: np.ndarray      # bool [S, S]: ``mask`` minus what later shapes cover
    colour: np.ndarray       # float [3]
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of ``mask``


# --------------------------------------------------------------------------- drawing

def _extent(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The tight box ``(x0, y0, x1, y1)``, end-exclusive, of a boolean mask."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _shape_mask(kind: str, x0: int, y0: int, side: int, rng: np.random.Generator,
                size: int) -> np.ndarray:
    """Rasterise one shape inside the ``side``-pixel square at (x0, y0), without antialiasing
    (so a pixel either belongs to the shape or not, and the box is exact)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    x1, y1 = x0 + side - 1, y0 + side - 1  # PIL includes both end coordinates
    if kind in _EXTRA_DRAWINGS:
        _EXTRA_DRAWINGS[kind](draw, x0, y0, x1, y1, side, rng)
    elif kind == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=255)
    elif kind == "square":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif kind == "triangle":
        # Isosceles, filling the square, pointing up, down, left or right: it spans the
        # same box as the other kinds (an arbitrary rotation shrinks small ones to ~12 px).
        mid = x0 + (side - 1) // 2, y0 + (side - 1) // 2
        corners = {0: [(mid[0], y0), (x0, y1), (x1, y1)],   # up
                   1: [(mid[0], y1), (x0, y0), (x1, y0)],   # down
                   2: [(x0, mid[1]), (x1, y0), (x1, y1)],   # left
                   3: [(x1, mid[1]), (x0, y0), (x0, y1)]}   # right
        draw.polygon(corners[int(rng.integers(4))], fill=255)
    elif kind == "cross":
        # A plus sign; arms thick enough to stay a cross (not a line) at 16 px.
        thick = max(3, round(side * rng.uniform(0.28, 0.4)))
        off = (side - thick) // 2
        draw.rectangle((x0, y0 + off, x1, y0 + off + thick - 1), fill=255)
        draw.rectangle((x0 + off, y0, x0 + off + thick - 1, y1), fill=255)
    else:  # SHAPE_KINDS and the drawings are edited together
        raise AssertionError(f"no drawing for shape {kind!r}")
    return np.asarray(canvas) > 0


# The kinds beyond the default four, each visually related to one of them (ellipse and ring to
# circle, diamond to square, hexagon to circle and square, star to triangle and cross, frame
# to square, x to cross), so a detector of the default kinds has something to transfer. Each
# gets the drawing context, the square's corners (inclusive), its side and the image's
# random stream.

def _draw_ellipse(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, side: int,
                  rng: np.random.Generator) -> None:
    # Clearly not a circle: the short axis is 45-70% of the long one, lying either way.
    short = max(6, round(side * rng.uniform(0.45, 0.7)))
    off = (side - short) // 2
    if rng.integers(2):
        draw.ellipse((x0, y0 + off, x1, y0 + off + short - 1), fill=255)
    else:
        draw.ellipse((x0 + off, y0, x0 + off + short - 1, y1), fill=255)


def _band(side: int, rng: np.random.Generator) -> int:
    """The band of a ring or frame: 15-25% of the side, at least 3 px, and a hole left."""
    return min(max(3, round(side * rng.uniform(0.15, 0.25))), max(1, (side - 2) // 2))


def _draw_ring(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, side: int,
               rng: np.random.Generator) -> None:
    # A circle with a hole; the band is at least 3 px so it stays a ring at 16 px (and at
    # most what leaves a hole: the smallest shapes of a 64 px image are 6 px wide).
    band = _band(side, rng)
    draw.ellipse((x0, y0, x1, y1), fill=255)
    draw.ellipse((x0 + band, y0 + band, x1 - band, y1 - band), fill=0)


def _draw_diamond(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, side: int,
                  rng: np.random.Generator) -> None:
    mx, my = x0 + (side - 1) // 2, y0 + (side - 1) // 2
    draw.polygon([(mx, y0), (x1, my), (mx, y1), (x0, my)], fill=255)


def _draw_hexagon(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, side: int,
                  rng: np.random.Generator) -> None:
    # Flat top or pointy top, filling the square.
    q = max(1, round(side / 4))
    mx, my = x0 + (side - 1) // 2, y0 + (side - 1) // 2
    if rng.integers(2):
        points = [(x0 + q, y0), (x1 - q, y0), (x1, my), (x1 - q, y1), (x0 + q, y1), (x0, my)]
    else:
        points = [(mx, y0), (x1, y0 + q), (x1, y1 - q), (mx, y1), (x0, y1 - q), (x0, y0 + q)]
    draw.polygon(points, fill=255)


def _draw_star(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, side: int,
               rng: np.random.Generator) -> None:
    # Five points, pointing up or down; the inner radius is a little fatter than a regular
    # star's (0.38) so small stars keep their arms.
    outer = (side - 1) / 2
    inner = outer * 0.45
    cx, cy = x0 + outer, y0 + outer
    start = -np.pi / 2 if rng.integers(2) else np.pi / 2
    points = []
    for k in range(10):
        radius = outer if k % 2 == 0 else inner
        angle = start + k * np.pi / 5
        points.append((cx + radius * np.cos(angle), cy + radius * np.sin(angle)))
    draw.polygon(points, fill=255)


def _draw_frame(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, side: int,
                rng: np.random.Generator) -> None:
    # A square with a square hole (the ring of squares), band as the ring's.
    band = _band(side, rng)
    draw.rectangle((x0, y0, x1, y1), fill=255)
    draw.rectangle((x0 + band, y0 + band, x1 - band, y1 - band), fill=0)


def _draw_x(draw: ImageDraw.ImageDraw, x0: int, y0: int, x1: int, y1: int, side: int,
            rng: np.random.Generator) -> None:
    # The cross turned by 45 degrees: two diagonal bars, cut to the square so the box is it.
    d = max(2, round(side * rng.uniform(0.2, 0.28)))
    draw.polygon([(x0, y0), (x0 + d, y0), (x1, y1 - d), (x1, y1), (x1 - d, y1), (x0, y0 + d)],
                 fill=255)
    draw.polygon([(x1, y0), (x1, y0 + d), (x0 + d, y1), (x0, y1), (x0, y1 - d), (x1 - d, y0)],
                 fill=255)


_EXTRA_DRAWINGS = {"ellipse": _draw_ellipse, "ring": _draw_ring, "diamond": _draw_diamond,
                   "hexagon": _draw_hexagon, "star": _draw_star, "frame": _draw_frame,
                   "x": _draw_x}


def _distance_to_segment(colour: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """RGB distance from ``colour`` to the closest colour of the a->b gradient."""
    ab = b - a
    denom = float(ab @ ab)
    t = 0.0 if denom == 0.0 else float(np.clip((colour - a) @ ab / denom, 0.0, 1.0))
    return float(np.linalg.norm(colour - (a + t * ab)))


def _pick_colour(rng: np.random.Generator, avoid: list[tuple[np.ndarray, np.ndarray]]
                 ) -> np.ndarray:
    """A random colour at least ``_MIN_CONTRAST`` away from every colour range in ``avoid``."""
    best, best_dist = np.zeros(3), -1.0
    for _ in range(100):
        colour = rng.uniform(0.0, 255.0, size=3)
        dist = min(_distance_to_segment(colour, a, b) for a, b in avoid)
        if dist >= _MIN_CONTRAST:
            return colour
        if dist > best_dist:
            best, best_dist = colour, dist
    # Practically unreachable (the RGB cube is large); still deterministic if it happens.
    return best


def _background(rng: np.random.Generator, size: int
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """A solid, gradient or lightly noisy background and the colour range it spans."""
    kind = rng.integers(3)
    c0 = rng.uniform(0.0, 255.0, size=3)
    if kind == 0:
        return np.broadcast_to(c0, (size, size, 3)).copy(), (c0, c0)
    if kind == 1:
        c1 = rng.uniform(0.0, 255.0, size=3)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
        return c0 + t[..., None] * (c1 - c0), (c0, c1)
    noise = rng.normal(0.0, _NOISE_STD, size=(size, size, 3))
    return c0 + noise, (c0, c0)


def _fits(candidate: np.ndarray, placed: list[_Shape]) -> bool:
    """Whether drawing ``candidate`` on top keeps every placed shape clearly visible."""
    for shape in placed:
        visible = shape.visible & ~candidate
        if visible.sum() < _MIN_VISIBLE * shape.mask.sum():
            return False
        if _extent(visible) != shape.box:  # its box must stay the visible extent
            return False
    return True


def render_image(seed: int, index: int, size: int = 160,
                 classes: Sequence[str] = SHAPE_CLASSES,
                 ) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int], int]]]:
    """Draw image ``index`` of the ``seed`` dataset whose classes are ``classes``.

    Returns the ``[size, size, 3]`` uint8 pixels and one ``(label, (x0, y0, x1, y1), area)``
    per object (label indexes ``classes``; the box is end-exclusive; ``area`` counts the
    visible pixels).
    """
    rng = np.random.default_rng([seed % 2**64, index])
    pixels, bg_range = _background(rng, size)
    lo, hi = (round(f * size) for f in _SIZE_RANGE)
    placed: list[_Shape] = []
    for _ in range(int(rng.integers(1, _MAX_OBJECTS + 1))):
        for _ in range(_PLACEMENT_TRIES):
            label = int(rng.integers(len(classes)))
            side = int(rng.integers(lo, hi + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            mask = _shape_mask(classes[label], x0, y0, side, rng, size)
            if _fits(mask, placed):
                break
        else:
            continue  # a crowded image simply gets fewer objects
        under = [bg_range] + [(s.colour, s.colour) for s in placed if (s.visible & mask).any()]
        colour = _pick_colour(rng, under)
        for shape in placed:
            shape.visible &= ~mask
        box = _extent(mask)
        assert box is not None  # shapes are several pixels wide and inside the image
        placed.append(_Shape(label, mask, mask.copy(), colour, box))
        pixels[mask] = colour
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    objects = [(s.label, s.box, int(s.visible.sum())) for s in placed]
    return image, objects


# --------------------------------------------------------------------------- writing

@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) for the block.

    Several processes (DDP ranks, two launches of the demo) may try to create the same
    dataset; the loser waits, then finds the json and does nothing. The lock file is left
    in place on purpose: removing it would let a third process lock a different inode.
    """
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _check_replaceable(image_dir: Path) -> None:
    """Refuse to replace an image folder that holds anything this generator did not write."""
    if not image_dir.exists():
        return
    if not image_dir.is_dir():
        raise DataError("cannot write the shapes images here: it is a file, not a folder",
                        file=str(image_dir))
    foreign = [p.name for p in image_dir.iterdir() if not _IMAGE_NAME.fullmatch(p.name)]
    if foreign:
        raise DataError(
            f"cannot write the shapes images here: the folder holds other files "
            f"(e.g. {sorted(foreign)[0]!r})", file=str(image_dir),
            hint="point the dataset at an empty or new folder")


def _write_split(image_dir: Path, anno_path: Path, num_images: int, seed: int,
                 image_size: int, *, create_only: bool, key: str | None = None,
                 classes: tuple[str, ...] = SHAPE_CLASSES, shots: int = 0) -> Path:
    """Write ``num_images`` shapes images and their COCO json, atomically and under a lock.

    Images go to a temporary sibling folder that is renamed into place; the json, written
    last with ``os.replace``, is the marker that the split is complete. ``create_only``
    (``ensure_dataset``): do nothing if the json appeared meanwhile, and never replace
    images already there, which may belong to another split's json. ``key`` names the
    image folder's config key in errors.
    """
    if image_dir.resolve() in anno_path.resolve().parents:
        raise DataError("the synthetic dataset needs its images in their own folder, apart "
                        "from the annotation json", file=str(image_dir),
                        hint="set image_dir to a subfolder such as 'images'")
    anno_path.parent.mkdir(parents=True, exist_ok=True)
    image_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(anno_path.parent / f".{anno_path.name}.lock"):
        if create_only and anno_path.is_file():
            return anno_path  # another process finished it while we waited
        if create_only and image_dir.is_dir() and any(image_dir.iterdir()):
            raise DataError(
                "the annotation json is missing but the image folder already holds files; "
                "it may belong to another split, so it is not overwritten",
                file=str(image_dir), key=key,
                hint="give each split its own image_dir, or delete the folder to regenerate")
        _check_replaceable(image_dir)
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging = image_dir.parent / f".{image_dir.name}.tmp-{tag}"
        staging.mkdir()
        try:
            coco = _render_split(staging, num_images, seed, image_size, classes, shots)
            if image_dir.exists():
                old = image_dir.parent / f".{image_dir.name}.old-{tag}"
                image_dir.rename(old)
                staging.rename(image_dir)
                shutil.rmtree(old)
            else:
                staging.rename(image_dir)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        tmp_json = anno_path.with_name(f".{anno_path.name}.tmp-{tag}")
        tmp_json.write_text(json.dumps(coco, separators=(",", ":")))
        os.replace(tmp_json, anno_path)
    return anno_path


def _split_images(num_images: int, seed: int, image_size: int, classes: tuple[str, ...],
                  shots: int) -> Iterator[tuple[int, np.ndarray, list]]:
    """``(index, pixels, objects)`` of every image of a split: images ``0..num_images-1``, or
    with ``shots`` the images, in index order, that keep every class at most ``shots`` boxes,
    until each class has exactly ``shots`` (an image is kept or skipped whole)."""
    if not shots:
        for index in range(num_images):
            yield index, *render_image(seed, index, image_size, classes)
        return
    counts = [0] * len(classes)
    for index in range(shots * len(classes) * _SHOT_SCAN_FACTOR):
        pixels, objects = render_image(seed, index, image_size, classes)
        per_class = Counter(label for label, _, _ in objects)
        if any(counts[label] + n > shots for label, n in per_class.items()):
            continue
        for label, n in per_class.items():
            counts[label] += n
        yield index, pixels, objects
        if min(counts) == shots:
            return
    # Practically unreachable: one-object images of every class keep coming.
    raise DataError(f"could not draw exactly {shots} boxes of each of {', '.join(classes)}")


def _render_split(folder: Path, num_images: int, seed: int, image_size: int,
                  classes: tuple[str, ...] = SHAPE_CLASSES, shots: int = 0) -> dict:
    """Draw and save every image into ``folder``; return the COCO dict describing them."""
    images, annotations = [], []
    for index, pixels, objects in _split_images(num_images, seed, image_size, classes, shots):
        name = f"{index:06d}.png"
        # compress_level=1: several times faster than the default, same pixels.
        Image.fromarray(pixels).save(folder / name, format="PNG", compress_level=1)
        image_id = index + 1
        images.append({"id": image_id, "file_name": name, "width": image_size,
                       "height": image_size})
        for label, (x0, y0, x1, y1), area in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": label + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": area, "iscrowd": 0})
    info = {"description": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": seed,
            "num_images": len(images), "image_size": image_size}
    if classes != SHAPE_CLASSES or shots:  # the default json stays byte-identical
        info.update(classes=list(classes), shots=shots)
    return {
        "info": info,
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"}
                       for i, name in enumerate(classes)],
    }


def check_classes(classes: Sequence[str] | None, key: str | None = None) -> tuple[str, ...]:
    """The classes to draw: ``SHAPE_CLASSES`` for None, else ``classes`` once checked (known
    kinds, each once, at least one). ``key`` names the config key in errors."""
    if classes is None:
        return SHAPE_CLASSES
    classes = tuple(classes)
    if not classes:
        raise DataError("name at least one shape kind; allowed: " + ", ".join(SHAPE_KINDS),
                        key=key)
    unknown = [name for name in classes if name not in SHAPE_KINDS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], SHAPE_KINDS, n=1)
        raise DataError(f"unknown shape kind {unknown[0]!r}; allowed: "
                        + ", ".join(SHAPE_KINDS), key=key,
                        hint=f"did you mean {close[0]!r}?" if close else None)
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    if repeated:
        raise DataError(f"each shape kind may appear once; repeated: {', '.join(repeated)}",
                        key=key)
    return classes


def _check_spec(num_images: int, image_size: int, key: str | None = None) -> None:
    if num_images < 1:
        raise DataError(f"num_images must be >= 1, got {num_images}",
                        key=f"{key}.num_images" if key else None)
    if image_size < _MIN_IMAGE_SIZE:
        raise DataError(f"image_size must be >= {_MIN_IMAGE_SIZE}, got {image_size}",
                        key=f"{key}.image_size" if key else None)


def generate_shapes(out_dir: str | Path, split: str, num_images: int, seed: int,
                    image_size: int = 160, classes: Sequence[str] | None = None,
                    shots: int = 0) -> Path:
    """Write ``out_dir/<split>/*.png`` and ``out_dir/annotations/<split>.json``.

    ``classes``: the shape kinds to draw, in label order (default ``SHAPE_CLASSES``);
    ``shots``: a few-shot split with exactly that many boxes per class (``num_images`` is
    then not used). Replaces an earlier shapes split in the same place (never a folder
    holding other files). Safe to call from several processes at once. Returns the json path.
    """
    _check_spec(num_images, image_size)
    kinds = check_classes(classes)
    if shots < 0:
        raise DataError(f"shots must be >= 0, got {shots}")
    out = Path(out_dir)
    return _write_split(out / split, out / "annotations" / f"{split}.json", num_images,
                        seed, image_size, create_only=False, classes=kinds, shots=shots)


def derive_seed(seed: int, split: str) -> int:
    """A seed for ``split`` derived from ``seed``, so splits never share images."""
    state = np.random.SeedSequence([seed % 2**64, zlib.crc32(split.encode())])
    return int(state.generate_state(1, np.uint64)[0] >> 1)


def write_shapes_dataset(out: str | Path, train: int, val: int, seed: int,
                         image_size: int = 160, classes: Sequence[str] | None = None
                         ) -> dict[str, Path]:
    """``dettui data shapes OUT``: a train and a val split with different derived seeds,
    drawing ``classes`` (default ``SHAPE_CLASSES``).

    Layout: ``OUT/train``, ``OUT/val``, ``OUT/annotations/{train,val}.json``. Returns the
    json path of each split.
    """
    kinds = check_classes(classes, key="--classes")
    return {split: generate_shapes(out, split, count, derive_seed(seed, split), image_size,
                                   kinds)
            for split, count in (("train", train), ("val", val))}


def ensure_dataset(ds: DatasetConfig | UnsupDatasetConfig, *, section: str | None = None
                   ) -> None:
    """Make sure ``ds``'s annotation json exists, generating the shapes dataset if allowed.

    ``section`` (``TrainDataset``/``EvalDataset``) only makes error messages name the key.
    """
    root = Path(ds.dataset_dir or ".")
    anno_path = root / (ds.anno_path or "")
    if anno_path.is_file():
        return
    prefix = f"{section}." if section else ""
    if ds.synthesize is None:
        raise DataError("annotation file not found", file=str(anno_path),
                        key=f"{prefix}anno_path",
                        hint="check dataset_dir and anno_path, or set synthesize: {} to "
                             "generate the built-in shapes dataset there")
    spec = ds.synthesize
    _check_spec(spec.num_images, spec.image_size, key=f"{prefix}synthesize")
    classes = check_classes(spec.classes, key=f"{prefix}synthesize.classes")
    if spec.shots < 0:
        raise DataError(f"must be >= 0, got {spec.shots}", key=f"{prefix}synthesize.shots")
    image_dir = root / ds.image_dir
    amount = (f"{spec.shots} boxes per class" if spec.shots else f"{spec.num_images} images")
    log.info("generating the shapes dataset: %s of %d px (seed %d; %s) in %s, "
             "annotations %s", amount, spec.image_size, spec.seed, ", ".join(classes),
             image_dir, anno_path)
    _write_split(image_dir, anno_path, spec.num_images, spec.seed, spec.image_size,
                 create_only=True, key=f"{prefix}image_dir", classes=classes, shots=spec.shots)
