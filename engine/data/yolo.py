"""YOLO (Ultralytics) labels to COCO: ``dettui data import yolo``.

Two ways in: an Ultralytics ``data.yaml`` (``path``, ``train``/``val``/``test`` as image
folders, list files or lists of those, ``names`` as a list or an ``{id: name}`` mapping),
or a folder with ``images/`` and ``labels/`` (``images/<split>/`` when it exists) whose
class names come from ``classes.txt``. Labels are found as Ultralytics finds them: the last
``/images/`` of an image path becomes ``/labels/`` and the extension ``.txt``.

A label line is ``class x_center y_center width height``, normalised to the upright image
(Ultralytics sizes images with their EXIF orientation applied, as dettui decodes them); a
polygon line (``class x1 y1 x2 y2 ...``, from a segmentation export) gives its bounding box.
A missing or empty label file is an image without boxes; a repeated line is dropped and
counted. Malformed lines and class ids out of range are ``DataError``s naming file and line.

torch-free: the CLI imports it.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

from engine.config.loader import read_yaml_mapping
from engine.data.cocobuild import CocoBuilder, read_name_list
from engine.data.imagefolder import IMAGE_EXTENSIONS
from engine.data.images import probe_image
from engine.data.summary import DatasetSummary
from engine.protocol.errors import ConfigError, DataError
from engine.protocol.safefiles import read_regular_text

YAML_NAMES = ("data.yaml", "dataset.yaml")
SPLITS = ("train", "val", "test")


def label_path(image: Path) -> Path:
    """Ultralytics' ``img2label_paths``: ``.../images/x/a.jpg`` -> ``.../labels/x/a.txt``."""
    text = str(image)
    sep_images, sep_labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sep_images in text:
        head, tail = text.rsplit(sep_images, 1)
        text = head + sep_labels + tail
    return Path(text).with_suffix(".txt")


def _load_yaml(path: Path) -> dict[str, Any]:
    """A data.yaml is a config from others: read with the config loader's limits (a regular
    file of at most 1 MiB, aliases counted before they are expanded: an alias bomb in
    ``names:`` took 72 s and 3.8 GB)."""
    try:
        data = read_yaml_mapping(path)
    except ConfigError as exc:
        raise DataError(exc.message, file=exc.file, line=exc.line, column=exc.column,
                        hint=exc.hint) from None
    if not isinstance(data, dict):
        raise DataError("a dataset yaml holds a mapping with 'names' and the split folders "
                        "('train', 'val')", file=str(path))
    return data


def yaml_class_names(data: dict[str, Any], path: Path) -> list[str]:
    """``names`` as a list, or as a mapping ``{0: name, 1: name, ...}``; checked against
    ``nc`` when both are given."""
    names = data.get("names")
    if isinstance(names, list) and names:
        out = [_class_name(n, f"names[{i}]", path) for i, n in enumerate(names)]
    elif isinstance(names, dict) and names:
        ids = list(names)
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in ids):
            bad = next(k for k in ids if not isinstance(k, int) or isinstance(k, bool))
            raise DataError(f"the keys of 'names' must be class ids 0, 1, 2, ..., got "
                            f"{_shown(bad)}", file=str(path), key="names")
        if sorted(ids) != list(range(len(ids))):
            raise DataError(f"the class ids of 'names' must be 0..{len(ids) - 1} without "
                            f"gaps, got {[_shown(k) for k in sorted(ids)[:12]]}",
                            file=str(path), key="names")
        out = [_class_name(names[i], f"names.{i}", path) for i in range(len(ids))]
    else:
        raise DataError("needs 'names': a list of class names, or a mapping "
                        "{0: name, 1: name, ...}", file=str(path), key="names")
    nc = data.get("nc")
    if nc is not None and nc != len(out):
        raise DataError(f"nc is {_shown(nc)} but 'names' lists {len(out)} classes",
                        file=str(path), key="nc")
    duplicates = sorted(n for n, count in Counter(out).items() if count > 1)  # linear
    if duplicates:
        shown = ", ".join(map(repr, duplicates[:12])) + (", ..." if len(duplicates) > 12
                                                          else "")
        raise DataError(f"class names repeat: {shown}", file=str(path), key="names")
    return out


def _shown(value: Any, limit: int = 40) -> str:
    """A value quoted in a message, never huge (a 5000-digit int cannot even be str()ed)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**limit:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _class_name(value: Any, key: str, path: Path) -> str:
    """A class name: a non-empty string (YAML's ``1`` or ``null`` is not a name)."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"a class name must be a non-empty string, got {_shown(value)}",
                        file=str(path), key=key, hint="quote names that look like numbers: "
                        "'1'")
    return value


def _list_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursively, as Ultralytics does), sorted."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _images_of(entry: Path, key: str, yaml_path: Path) -> list[Path]:
    """A split entry: a folder of images, or a text file listing image paths (relative
    paths are relative to the list file's folder)."""
    if entry.is_dir():
        return _list_images(entry)
    if entry.is_file() and entry.suffix == ".txt":
        out = []
        try:
            text = read_regular_text(entry)
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the image list: {exc}", file=str(entry)) from None
        for line in text.splitlines():
            line = line.strip()
            if line:
                p = Path(line)
                out.append(p if p.is_absolute() else (entry.parent / p))
        return out
    raise DataError(f"{key}: {entry} is neither a folder of images nor a .txt list of "
                    "image paths", file=str(yaml_path), key=key)


def _outside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (links resolved) lies outside ``folder``."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return True
    return False


def _yaml_split(yaml_path: Path, split: str) -> tuple[list[Path], list[str], str, list[str]]:
    """The images and class names of ``split``, the source, and notes for the summary: a
    ``path:`` or split entry that leads outside the data.yaml's folder is said (someone
    else's data.yaml with ``train: /usr`` walks all of /usr)."""
    data = _load_yaml(yaml_path)
    names = yaml_class_names(data, yaml_path)
    if split not in data or data[split] in (None, ""):
        have = [s for s in SPLITS if data.get(s)]
        raise DataError(f"no {split!r} split in the dataset yaml", file=str(yaml_path),
                        key="--split", hint="splits here: " + (", ".join(have) or "none"))
    root = yaml_path.parent
    if data.get("path"):
        if not isinstance(data["path"], str):
            raise DataError(f"'path' is the dataset's root folder (a string), got "
                            f"{_shown(data['path'])}", file=str(yaml_path), key="path")
        given = Path(data["path"]).expanduser()
        # relative to the yaml's folder where that exists, else to the working directory
        root = given if given.is_absolute() else (
            yaml_path.parent / given if (yaml_path.parent / given).is_dir() else given)
        if not root.is_dir():
            raise DataError(f"dataset root not found: {root}", file=str(yaml_path),
                            key="path")
    notes = []
    if data.get("path") and _outside(root, yaml_path.parent):
        notes.append(f"path: {root} is outside the data.yaml's folder {yaml_path.parent}")
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    images: list[Path] = []
    for item in entries:
        if not isinstance(item, str):
            raise DataError(f"a split entry is a folder or a .txt list (a string), got "
                            f"{_shown(item)}", file=str(yaml_path), key=split)
        p = Path(item).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.exists():
            raise DataError(f"{split} images not found: {p}", file=str(yaml_path), key=split)
        if _outside(p, yaml_path.parent):
            notes.append(f"{split}: {p} is outside the data.yaml's folder "
                         f"{yaml_path.parent}")
        images += _images_of(p, split, yaml_path)
    return images, names, str(yaml_path), notes


def _folder_split(src: Path, split: str) -> tuple[list[Path], list[str], str]:
    images_dir = src / "images"
    if not images_dir.is_dir():
        raise DataError("not a YOLO dataset: no data.yaml and no images/ folder",
                        file=str(src), hint="point at a data.yaml, or at a folder with "
                                            "images/ and labels/ (and classes.txt)")
    splits = sorted(p.name for p in images_dir.iterdir() if p.is_dir())
    if (images_dir / split).is_dir():
        images_dir = images_dir / split
    elif splits:  # never mix the splits because one name was mistyped
        raise DataError(f"no {split!r} split: {images_dir / split} does not exist",
                        key="--split", hint="splits here: " + ", ".join(splits))
    candidates = [src / "classes.txt", src / "labels" / split / "classes.txt",
                  src / "labels" / "classes.txt"]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise DataError("no class names: no data.yaml and no classes.txt", file=str(src),
                        hint="add classes.txt (one class name per line, in class-id order) "
                             "or a data.yaml with names: [...]")
    names = read_name_list(found, key="classes.txt")
    return _list_images(images_dir), names, str(images_dir)


def _parse_line(fields: list[str], nc: int, file: Path, lineno: int
                ) -> tuple[int, tuple[float, float, float, float]]:
    """(class index, normalised x0, y0, x1, y1) of one label line."""
    n = len(fields)
    if n != 5 and not (n >= 7 and n % 2 == 1):
        raise DataError(f"expected 5 fields 'class x_center y_center width height' (or a "
                        f"polygon 'class x1 y1 x2 y2 x3 y3 ...'), got {n}", file=str(file),
                        line=lineno)
    try:
        values = [float(v) for v in fields]
    except ValueError:
        bad = next(v for v in fields if not _is_float(v))
        raise DataError(f"{bad[:40]!r} is not a number", file=str(file),
                        line=lineno) from None
    if not all(math.isfinite(v) for v in values):
        raise DataError("not a finite number (nan or inf)", file=str(file), line=lineno)
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < nc:
        raise DataError(f"class id {fields[0]} is out of range: this dataset has {nc} "
                        f"classes (ids 0..{nc - 1})", file=str(file), line=lineno)
    if n == 5:
        cx, cy, w, h = values[1:]
        return int(cls), (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    xs, ys = values[1::2], values[2::2]
    return int(cls), (min(xs), min(ys), max(xs), max(ys))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_label_file(path: Path) -> str | None:
    try:
        return read_regular_text(path, encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the label file: {exc}", file=str(path)) from None


def yolo_splits(src: Path) -> list[str]:
    """The splits a YOLO dataset has (its data.yaml's split keys, or the folders under
    ``images/``); empty when ``src`` is no YOLO dataset (``import_yolo`` says why)."""
    yaml_path = src if src.is_file() else next(
        (src / n for n in YAML_NAMES if (src / n).is_file()), None)
    if yaml_path is not None:
        data = _load_yaml(yaml_path)
        return [s for s in SPLITS if data.get(s)]
    images = src / "images"
    return sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []


def import_yolo(src: Path, split: str = "train") -> tuple[dict, DatasetSummary]:
    """``dettui data import yolo``: the images of one split and their boxes."""
    if not src.exists():
        raise DataError("not found", file=str(src))
    yaml_path = src if not src.is_dir() else next(  # a FIFO too: refused when read
        (src / n for n in YAML_NAMES if (src / n).exists() and not (src / n).is_dir()), None)
    notes: list[str] = []
    if yaml_path is not None:
        images, names, source, notes = _yaml_split(yaml_path, split)
    else:
        images, names, source = _folder_split(src, split)
    if not images:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in the {split!r} "
                        "split", file=source)
    builder = CocoBuilder(names, DatasetSummary(title="import", kind="YOLO", source=source))
    builder.summary.notes += notes
    for image in images:
        info = probe_image(image)
        labels = label_path(image)
        text = _read_label_file(labels)
        lines = [(i, ln.split()) for i, ln in enumerate((text or "").splitlines(), 1)
                 if ln.strip()]
        if text is None:
            builder.add_image(image, info, no_labels="no label file")
            continue
        image_id = builder.add_image(image, info,
                                     no_labels=None if lines else "empty label file")
        seen: set[tuple[str, ...]] = set()
        for lineno, fields in lines:
            cls, (x0, y0, x1, y1) = _parse_line(fields, len(names), labels, lineno)
            if tuple(fields) in seen:
                builder.summary.drop("repeated label line", f"{labels}:{lineno}")
                continue
            seen.add(tuple(fields))
            builder.add_box(image_id, cls, (x0 * info.width, y0 * info.height,
                                            x1 * info.width, y1 * info.height),
                            where=f"{labels}:{lineno}")
    return builder.finish({"description": f"imported by dettui from {source} ({split})"})
