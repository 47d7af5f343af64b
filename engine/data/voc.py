"""Pascal VOC annotations to COCO: ``dettui data import voc`` and ``VOCDataSet`` configs.

Three ways to say which images: the standard layout (``JPEGImages/``, ``Annotations/``,
``ImageSets/Main/NAME.txt``), any folder of images beside a folder of XML files (matched
by file stem), and PaddleDetection's ``VOCDataSet`` list file of ``image_path xml_path``
lines. All three end in the same reader and ``CocoBuilder``.

Conventions, and why:

* ``<bndbox>`` holds the devkit's 1-based inclusive pixel indices, so ``xmin``/``ymin``
  move down by one and ``xmax``/``ymax`` stay (detectron2's VOC loader does the same):
  ``xmin=1, xmax=W`` is the whole row.
* ``<difficult>1</difficult>`` objects become ``iscrowd: 1``: training skips them and the
  COCO evaluator ignores detections on them, as VOC's own metric ignores difficult boxes.
* EXIF-rotated JPEGs: the pipeline trains on the upright image (``engine.data.images``).
  When ``<size>`` shows the annotation was drawn on the stored bitmap (its width/height
  are the stored ones, not the upright ones), the boxes are turned with the image; when
  ``<size>`` cannot tell (square images, mirror/180-degree orientations) they are taken as
  drawn on the upright image, as current annotation tools show it, and the report says so.
* XML is parsed with ``defusedxml``: a dataset may come from anywhere, and an entity
  declaration (the "billion laughs" expansion) or an external entity is refused.

torch-free: the CLI imports it (PIL reads the image headers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from engine.data.cocobuild import CocoBuilder, parse_number, read_name_list
from engine.data.imagefolder import IMAGE_EXTENSIONS, list_image_files
from engine.data.images import SWAPS_AXES, ImageInfo, orient_box, probe_image
from engine.data.summary import DatasetSummary
from engine.protocol.errors import DataError
from engine.protocol.safefiles import MAX_TEXT_BYTES, read_regular, read_regular_text

PASCAL_VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")
"""PaddleDetection's ``VOCDataSet`` uses these, in this order, when there is no label_list."""


@dataclass
class VocObject:
    name: str
    difficult: bool
    box: tuple[float, float, float, float]   # xmin, ymin, xmax, ymax as written


@dataclass
class VocFile:
    path: Path
    filename: str | None
    size: tuple[int, int] | None              # (width, height) from <size>, if given
    objects: list[VocObject] = field(default_factory=list)


def read_voc_xml(path: Path) -> VocFile:
    """Parse one VOC annotation file; any problem is a ``DataError`` naming the file (and
    the line, for malformed XML)."""
    try:
        data = read_regular(path, MAX_TEXT_BYTES)
    except FileNotFoundError:
        raise DataError("annotation file not found", file=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read the annotation file: {exc.strerror or exc}",
                        file=str(path)) from None
    try:
        root = SafeET.fromstring(data)
    except SafeET.ParseError as exc:
        line, column = getattr(exc, "position", (None, None))
        reason = str(exc).split(":")[0]
        raise DataError(f"malformed XML: {reason}", file=str(path), line=line,
                        column=column) from None
    except DefusedXmlException as exc:
        raise DataError(f"refusing the XML: {exc} (entity and DTD declarations are not "
                        "allowed in annotation files: they can expand to gigabytes or read "
                        "other files)", file=str(path)) from None
    if root.tag != "annotation":
        raise DataError(f"not a Pascal VOC annotation: the root element is <{root.tag}>, "
                        "expected <annotation>", file=str(path))
    filename = (root.findtext("filename") or "").strip() or None
    size = None
    w, h = parse_number(root.findtext("size/width")), parse_number(root.findtext("size/height"))
    if w and h and w > 0 and h > 0:
        size = (int(w), int(h))
    objects = [_read_object(obj, i, path) for i, obj in enumerate(root.findall("object"))]
    return VocFile(path=path, filename=filename, size=size, objects=objects)


def _read_object(obj, i: int, path: Path) -> VocObject:
    where = f"object[{i}]"
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise DataError("an <object> needs a non-empty <name>", file=str(path),
                        key=f"{where}.name")
    difficult_text = (obj.findtext("difficult") or "0").strip() or "0"
    difficult = parse_number(difficult_text)
    if difficult is None:
        raise DataError(f"<difficult> must be 0 or 1, got {difficult_text!r}", file=str(path),
                        key=f"{where}.difficult")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise DataError(f"object {name!r} has no <bndbox>", file=str(path), key=where)
    coords = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        text = bndbox.findtext(tag)
        value = parse_number(text)
        if value is None:
            raise DataError(f"<{tag}> of object {name!r} must be a number, got "
                            f"{(text or '').strip()!r}", file=str(path),
                            key=f"{where}.bndbox.{tag}")
        coords.append(value)
    return VocObject(name=name, difficult=difficult != 0, box=tuple(coords))


@dataclass
class _Entry:
    image: Path
    xml: Path | None          # None: the image has no annotation file
    where: str                # what names this entry in an error (list file and line)


class _FrameCounts:
    """How the boxes of EXIF-rotated images were placed, for the report's notes."""

    def __init__(self) -> None:
        self.turned = self.assumed = self.size_differs = 0

    def notes(self) -> list[str]:
        out = []
        if self.turned:
            out.append(f"{self.turned} EXIF-rotated images were annotated on the stored "
                       "bitmap (their <size> says so): their boxes were turned with the image")
        if self.assumed:
            out.append(f"{self.assumed} EXIF-rotated images have a <size> that cannot tell "
                       "which way they were annotated: boxes taken as drawn on the upright "
                       "image")
        if self.size_differs:
            out.append(f"{self.size_differs} annotation files declare a <size> other than "
                       "their image's: boxes kept as written, clipped to the real image")
        return out


def _drawn_on_stored_bitmap(vf: VocFile, info: ImageInfo, frames: _FrameCounts) -> bool:
    """Whether ``vf``'s boxes were drawn on the stored bitmap of an EXIF-rotated image (so
    they must turn with it); counts the cases for the report."""
    upright, stored = (info.width, info.height), (info.raw_width, info.raw_height)
    if info.orientation == 1:
        if vf.size is not None and vf.size != upright:
            frames.size_differs += 1
        return False
    if info.orientation in SWAPS_AXES and upright != stored and vf.size == stored:
        frames.turned += 1
        return True
    if vf.size != upright or upright == stored:
        frames.assumed += 1
    return False


def build_voc(entries: list[_Entry], class_names: list[str] | None, summary: DatasetSummary,
              *, class_source: str | None = None) -> tuple[dict, DatasetSummary]:
    """Read every entry's XML, then its image header, and build the COCO dict. Without
    ``class_names`` the classes are every name found, sorted."""
    parsed = [(e, read_voc_xml(e.xml) if e.xml is not None else None) for e in entries]
    if class_names is None:
        class_names = sorted({o.name for _, vf in parsed if vf for o in vf.objects})
        if not class_names:
            raise DataError("no objects in any annotation file, so there are no classes to "
                            "train", file=summary.source)
    index = {name: i for i, name in enumerate(class_names)}
    builder = CocoBuilder(class_names, summary)
    frames = _FrameCounts()
    for entry, vf in parsed:
        info = _probe(entry)
        if vf is None:
            builder.add_image(entry.image, info, no_labels="no annotation file")
            continue
        image_id = builder.add_image(entry.image, info,
                                     no_labels=None if vf.objects else "no <object> in the XML")
        turn = bool(vf.objects) and _drawn_on_stored_bitmap(vf, info, frames)
        for i, obj in enumerate(vf.objects):
            if obj.name not in index:
                raise DataError(
                    f"class {obj.name!r} is not in the class list {class_source}: "
                    + ", ".join(class_names[:20]) + (", ..." if len(class_names) > 20 else ""),
                    file=str(vf.path), key=f"object[{i}].name",
                    hint="add it to the class list, or fix the name")
            xmin, ymin, xmax, ymax = obj.box
            box = (xmin - 1.0, ymin - 1.0, xmax, ymax)  # 1-based inclusive -> pixel edges
            if turn:
                box = orient_box(box, info.orientation, info.raw_width, info.raw_height)
            builder.add_box(image_id, index[obj.name], box, where=f"{vf.path} object[{i}]",
                            ignored=obj.difficult)
    summary.notes += frames.notes()
    return builder.finish({"description": f"imported by dettui from {summary.source}"})


def _probe(entry: _Entry) -> ImageInfo:
    try:
        return probe_image(entry.image)
    except DataError as exc:
        if not entry.where:
            raise
        raise DataError(exc.message, file=exc.file, hint=f"listed at {entry.where}") from None


def _image_stems(folder: Path, key: str) -> dict[str, Path]:
    """Stem -> image path for every image file in ``folder``; two images with one stem
    would share one annotation file, which is an error."""
    stems: dict[str, Path] = {}
    for name in list_image_files(folder, key=key):
        path = folder / name
        if path.stem in stems:
            raise DataError(f"two images share the name {path.stem!r} ({stems[path.stem].name}"
                            f" and {name}), so one annotation file would serve both",
                            file=str(folder), hint="rename one of them")
        stems[path.stem] = path
    return stems


def voc_folder_entries(images: Path, annotations: Path) -> tuple[list[_Entry], list[str]]:
    """Every image of ``images`` with ``annotations/<stem>.xml`` (if any); also notes on
    annotation files that have no image."""
    if not annotations.is_dir():
        raise DataError("annotation folder not found", file=str(annotations),
                        key="--annotations")
    stems = _image_stems(images, "--images")
    entries = []
    for stem, path in sorted(stems.items()):
        xml = annotations / f"{stem}.xml"
        entries.append(_Entry(path, xml if xml.is_file() else None, ""))
    orphans = sorted(p.name for p in annotations.glob("*.xml") if p.stem not in stems)
    notes = []
    if orphans:
        notes.append(f"{len(orphans)} annotation files have no image of the same name in "
                     f"{images} and were skipped (first: {orphans[0]})")
    return entries, notes


def voc_split_entries(src: Path, split: str) -> list[_Entry]:
    """The images listed in ``src/ImageSets/Main/<split>.txt`` (one id per line)."""
    sets = src / "ImageSets" / "Main"
    list_file = sets / f"{split}.txt"
    if not list_file.is_file():
        names = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
        shown = ", ".join(n for n in names if "_" not in n) or ", ".join(names[:12])
        raise DataError(f"no split {split!r}: {list_file} does not exist",
                        key="--split", hint=f"splits here: {shown}" if names
                        else f"{sets} has no split lists; leave out --split to import "
                             "every image")
    images, annotations = src / "JPEGImages", src / "Annotations"
    stems = _image_stems(images, "JPEGImages")
    entries = []
    for lineno, line in _lines(list_file):
        image_id = line.split()[0]
        xml = annotations / f"{image_id}.xml"
        path = stems.get(image_id)
        if path is None:
            raise DataError(f"no image named {image_id!r} (any of "
                            f"{', '.join(IMAGE_EXTENSIONS)}) in {images}", file=str(list_file),
                            line=lineno)
        entries.append(_Entry(path, xml if xml.is_file() else None, f"{list_file}:{lineno}"))
    if not entries:
        raise DataError("the split list names no images", file=str(list_file))
    return entries


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """Non-blank lines of a text file with their 1-based numbers."""
    try:
        text = read_regular_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the list file: {exc}", file=str(path)) from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield lineno, line.strip()


def import_voc(src: Path | None, *, split: str | None = None, images: Path | None = None,
               annotations: Path | None = None, classes: Path | None = None
               ) -> tuple[dict, DatasetSummary]:
    """``dettui data import voc``: the standard layout under ``src`` (every image, or the
    ``ImageSets/Main/<split>.txt`` list), or ``images`` + ``annotations`` folders."""
    notes: list[str] = []
    if images is not None or annotations is not None:
        if images is None or annotations is None or split is not None:
            raise DataError("--images and --annotations go together, without --split",
                            key="--images")
        entries, notes = voc_folder_entries(images, annotations)
        source = str(annotations)
    else:
        assert src is not None
        for sub in ("JPEGImages", "Annotations"):
            if not (src / sub).is_dir():
                raise DataError(f"not a Pascal VOC folder: {sub}/ is missing", file=str(src),
                                hint="point at the folder that holds JPEGImages/ and "
                                     "Annotations/ (e.g. VOCdevkit/VOC2007), or give "
                                     "--images DIR --annotations DIR")
        if split is None:
            entries, notes = voc_folder_entries(src / "JPEGImages", src / "Annotations")
            source = str(src)
        else:
            entries = voc_split_entries(src, split)
            source = str(src / "ImageSets" / "Main" / f"{split}.txt")
    names = read_name_list(classes, key="--classes") if classes is not None else None
    summary = DatasetSummary(title="import", kind="VOC", source=source)
    coco, summary = build_voc(entries, names, summary, class_source=str(classes))
    summary.notes += notes
    return coco, summary


def voc_list_dataset(dataset_dir: Path, anno_path: str, label_list: str | None, *,
                     section: str) -> tuple[dict, DatasetSummary]:
    """PaddleDetection's ``VOCDataSet``: ``anno_path`` lists ``image_path xml_path`` per
    line, both relative to ``dataset_dir``; ``label_list`` names the classes one per line
    (the 20 Pascal VOC classes without it)."""
    list_file = dataset_dir / anno_path
    if not list_file.is_file():
        raise DataError("annotation list not found", file=str(list_file),
                        key=f"{section}.anno_path",
                        hint="a VOCDataSet's anno_path is a text file of 'image_path "
                             "xml_path' lines, relative to dataset_dir")
    if label_list is not None:
        names = read_name_list(dataset_dir / label_list, key=f"{section}.label_list")
        class_source = str(dataset_dir / label_list)
    else:
        names, class_source = list(PASCAL_VOC_CLASSES), "(the 20 Pascal VOC classes)"
    entries = []
    for lineno, line in _lines(list_file):
        parts = line.split()
        if len(parts) < 2:
            raise DataError(f"expected 'image_path xml_path', got {line[:200]!r}",
                            file=str(list_file), line=lineno)
        image, xml = dataset_dir / parts[0], dataset_dir / parts[1]
        if not xml.is_file():
            raise DataError(f"annotation file not found: {xml}", file=str(list_file),
                            line=lineno)
        entries.append(_Entry(image, xml, f"{list_file}:{lineno}"))
    if not entries:
        raise DataError("the annotation list names no images", file=str(list_file),
                        key=f"{section}.anno_path")
    summary = DatasetSummary(title=section, kind="VOCDataSet", source=str(list_file))
    return build_voc(entries, names, summary, class_source=class_source)
