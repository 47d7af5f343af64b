"""Listing the images of a folder (``UnsupTrainDataset`` with ``name: ImageFolder``).

stdlib only: the launcher checks the folder before starting the engine.
"""

from __future__ import annotations

from pathlib import Path

from engine.protocol.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def list_image_files(folder: Path, *, key: str | None = None) -> list[str]:
    """The image files directly in ``folder`` (by extension, any case), sorted by name.

    A missing folder or one without image files is a ``DataError`` naming ``key`` (the
    config key that points at the folder) and the path.
    """
    if not folder.is_dir():
        raise DataError("image folder not found" if not folder.exists() else
                        "expected a folder of images, found a file", file=str(folder), key=key,
                        hint="relative paths are relative to the working directory")
    try:
        names = sorted(entry.name for entry in folder.iterdir()
                       if entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file())
    except OSError as exc:
        raise DataError(f"cannot list the folder: {exc.strerror}", file=str(folder),
                        key=key) from None
    if not names:
        raise DataError("the folder holds no image files (" + ", ".join(IMAGE_EXTENSIONS)
                        + "), so there are no unlabeled images to train on",
                        file=str(folder), key=key)
    return names
