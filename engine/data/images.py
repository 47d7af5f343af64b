"""Reading image files the way the whole pipeline sees them: RGB, EXIF orientation applied.

Phones store a portrait photo as a landscape bitmap plus an EXIF "orientation" tag; every
viewer, annotation tool (Label Studio, labelme, CVAT) and most detection loaders
(detectron2's ``read_image``, ``cv2.imread`` under Ultralytics, mmdetection and
PaddleDetection) show and train on the turned image. dettui does the same, so the width,
height and boxes of an annotation are those of the upright image. ``probe_image`` reads
only the header (fast: no pixels are decoded) and gives the size the decoder will produce;
``decode_rgb`` decodes it. Grayscale, CMYK, palette and alpha images become 3-channel RGB
(alpha is dropped, as ``cv2.imread`` does).

numpy + PIL only (no torch): the importers, ``dettui data check`` and the TUI use it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from engine.protocol.errors import DataError
from engine.protocol.safefiles import MAX_IMAGE_BYTES, open_regular

IMAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError,
    TypeError, ZeroDivisionError, Image.DecompressionBombError)
"""What Pillow raises on a corrupt or hostile file: beyond ``OSError`` and ``ValueError``
its format plugins let through the errors of their parsers (``SyntaxError`` of a bad
header, ``struct.error`` of a short chunk, ``DecompressionBombError`` of a 100000 x 100000
PNG of 140 bytes, ...). Every reader of images turns these into its own message."""

EXIF_ORIENTATION = 0x0112
SWAPS_AXES = frozenset({5, 6, 7, 8})
"""Orientations that turn the image by 90 degrees (width and height trade places)."""


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image file says."""

    width: int            # as decoded: after the EXIF orientation
    height: int
    orientation: int      # EXIF orientation, 1 (none) to 8
    raw_width: int        # as stored in the file, before the orientation
    raw_height: int
    format: str


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation, read without decoding pixels. A PNG's ``getexif`` decodes the
    whole image to look for an eXIf chunk after the pixel data; only the chunks before it
    (already read by ``open``) are used, by the header probe and the decoder alike."""
    try:
        if img.format == "PNG":
            raw = img.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = img.getexif()
        value = exif.get(EXIF_ORIENTATION, 1)
    except IMAGE_ERRORS:  # a corrupt EXIF block: show it as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _open_error(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, FileNotFoundError):
        return DataError("image file not found", file=str(path))
    if isinstance(exc, IsADirectoryError):
        return DataError("expected an image file, found a folder", file=str(path))
    if isinstance(exc, Image.DecompressionBombError):
        return DataError(f"the image is too large to decode safely: {exc}", file=str(path))
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return DataError(f"cannot read the image: {reason}", file=str(path),
                     hint="is it an image file (JPEG, PNG, BMP, WebP, TIFF)?")


def probe_image(path: Path) -> ImageInfo:
    """The decoded size and EXIF orientation of ``path``, from its header alone.

    A missing or unreadable file is a ``DataError`` naming it.
    """
    try:  # a regular file only: a FIFO named as an image would hang the reader
        with open_regular(path, MAX_IMAGE_BYTES) as f, Image.open(f) as img:
            raw_w, raw_h = img.size
            orientation = _orientation(img)
            fmt = img.format or "?"
    except IMAGE_ERRORS as exc:
        raise _open_error(path, exc) from None
    w, h = (raw_h, raw_w) if orientation in SWAPS_AXES else (raw_w, raw_h)
    return ImageInfo(width=w, height=h, orientation=orientation, raw_width=raw_w,
                     raw_height=raw_h, format=fmt)


def decode_rgb(path: Path) -> np.ndarray:
    """Decode ``path`` to a uint8 ``H x W x 3`` RGB array, upright (EXIF orientation
    applied). Every problem is a ``DataError`` naming the file."""
    try:
        with open_regular(path, MAX_IMAGE_BYTES) as f, Image.open(f) as img:
            if _orientation(img) != 1:
                img = ImageOps.exif_transpose(img)
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # what PIL asks for before dropping the alpha
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except IMAGE_ERRORS as exc:
        raise _open_error(path, exc) from None


def orient_box(box: tuple[float, float, float, float], orientation: int, raw_width: int,
               raw_height: int) -> tuple[float, float, float, float]:
    """A box ``(x0, y0, x1, y1)`` on the stored bitmap, moved to the upright image that
    ``decode_rgb`` gives (the same turn or flip PIL's ``exif_transpose`` applies)."""
    w, h = raw_width, raw_height

    def move(x: float, y: float) -> tuple[float, float]:
        return {
            1: (x, y),
            2: (w - x, y),          # mirrored left-right
            3: (w - x, h - y),      # turned 180 degrees
            4: (x, h - y),          # mirrored top-bottom
            5: (y, x),              # transposed
            6: (h - y, x),          # turned 90 degrees clockwise
            7: (h - y, w - x),      # transversed
            8: (y, w - x),          # turned 90 degrees counter-clockwise
        }[orientation]

    (ax, ay), (bx, by) = move(box[0], box[1]), move(box[2], box[3])
    return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)
