"""``dettui data``: the shapes dataset, the semi split, VOC / YOLO import and ``check``.

Torch-free: ``shapes`` runs the engine (``python -m engine shapes``), the others read and
write files with :mod:`engine.data`'s torch-free modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.protocol.errors import UserError
from tui.cli.common import Overrides, run_engine
from tui.cli.help import FlagHelpGroup

data_app = typer.Typer(help="Datasets: generate the built-in synthetic shapes dataset, split "
                            "a COCO file into labeled and unlabeled parts, import Pascal VOC "
                            "or YOLO labels, check a config's datasets.",
                       no_args_is_help=True, cls=FlagHelpGroup)
import_app = typer.Typer(help="Write one COCO json for a Pascal VOC or YOLO dataset (images "
                              "stay where they are, named by absolute path) and report what "
                              "it holds.", no_args_is_help=True, cls=FlagHelpGroup)
data_app.add_typer(import_app, name="import")


def data_shapes(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    train: Annotated[int, typer.Option("--train", help="Training images.")] = 600,
    val: Annotated[int, typer.Option("--val", help="Validation images.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (deterministic).")] = 0,
    image_size: Annotated[int, typer.Option("--image-size", help="Image side, pixels.")
                          ] = 160,
    classes: Annotated[str | None, typer.Option(
        "--classes", help="Shape kinds to draw, comma-separated, in label order (default "
                          "circle,square,triangle,cross; also ellipse, ring, diamond, "
                          "hexagon, star, frame, x).")] = None,
) -> None:
    """Write the synthetic shapes dataset (COCO json + PNGs) to OUT."""
    if train < 1 or val < 0 or image_size < 32:
        raise UserError(f"--train must be >= 1, --val >= 0 and --image-size >= 32 "
                        f"(got {train}, {val}, {image_size})")
    kinds = ["--classes", classes] if classes is not None else []
    run_engine(["shapes", str(out), "--train", str(train), "--val", str(val), "--seed", str(seed),
             "--image-size", str(image_size), *kinds])


def data_split(
    annotations: Annotated[Path, typer.Argument(help="COCO annotation json to split.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for labeled.json and "
                                                    "unlabeled.json (created if needed).")],
    percent: Annotated[float, typer.Option(
        "--percent", help="Percentage of the images that keep their annotations, between 0 "
                          "and 100.")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draw: the same file, "
                                                     "percent and seed give the same split.")
                    ] = 1,
) -> None:
    """Split a COCO file for semi-supervised training (PaddleDetection's semi split):
    labeled.json keeps PERCENT % of the images and their annotations, unlabeled.json lists
    the rest without annotations."""
    from engine.data.split import write_split  # torch-free (numpy)
    from engine.data.summary import plural

    labeled, unlabeled, counts = write_split(annotations, percent, seed, out)
    typer.echo(f"{annotations}: {plural(counts.images, 'image')}, split {percent:g}% labeled "
               f"(seed {seed})")
    typer.echo(f"  labeled:   {plural(counts.labeled_images, 'image')}, "
               f"{plural(counts.labeled_boxes, 'annotation')} -> {labeled}")
    typer.echo(f"  unlabeled: {plural(counts.unlabeled_images, 'image')}, no annotations "
               f"({counts.unlabeled_boxes_dropped} dropped) -> {unlabeled}")


# The splits whose json is evaluated on: the import's snippet puts them under EvalDataset.
EVAL_SPLITS = ("val", "valid", "validation", "minival", "test")


def _report_import(coco: dict, summary: Any, out: Path, split: str | None) -> None:
    from engine.data.cocobuild import write_coco_json
    from engine.data.summary import plural

    for line in summary.lines():
        typer.echo(line)
    write_coco_json(out, coco)
    folder = out.resolve().parent
    section = "EvalDataset" if split in EVAL_SPLITS else "TrainDataset"
    typer.echo(f"wrote {out} ({plural(len(coco['images']), 'image')}, "
               f"{plural(len(coco['annotations']), 'annotation')}); use it in a config:")
    # Runs as printed: the launcher, `data check` and the engine need image_dir only for
    # relative file names (engine.data.sources.check_image_folder).
    typer.echo(f"  num_classes: {len(coco['categories'])}\n  {section}:\n"
               f"    name: COCODataSet\n    dataset_dir: {json.dumps(str(folder))}\n"
               f"    anno_path: {json.dumps(out.name)}\n"
               "    # image_dir is not used: the json names every image by absolute path")


def import_voc_cmd(
    paths: Annotated[list[Path], typer.Argument(
        metavar="[SRC] OUT.json", help="SRC: a Pascal VOC folder (JPEGImages/, Annotations/, "
                                       "ImageSets/Main/); leave it out with --images and "
                                       "--annotations. OUT.json: the COCO file to write.")],
    split: Annotated[str | None, typer.Option(
        "--split", help="Import the images of ImageSets/Main/NAME.txt (e.g. train, val, "
                        "trainval); default: every image in JPEGImages/.")] = None,
    images: Annotated[Path | None, typer.Option(
        "--images", help="Any folder of images (instead of SRC) ...")] = None,
    annotations: Annotated[Path | None, typer.Option(
        "--annotations", help="... with a folder of VOC XML files, matched by file name.")
    ] = None,
    classes: Annotated[Path | None, typer.Option(
        "--classes", help="Class names, one per line, in this order (PaddleDetection's "
                          "label_list); default: every name found, sorted.")] = None,
) -> None:
    """Pascal VOC XML -> one COCO json. difficult objects become iscrowd: 1 (training and
    COCO eval ignore them); boxes outside the image are clipped or dropped and counted."""
    from engine.data.voc import import_voc

    folders = images is not None or annotations is not None
    if len(paths) != (1 if folders else 2):
        raise UserError("give SRC and OUT.json, or OUT.json with --images DIR --annotations "
                        f"DIR (got {len(paths)} paths: {' '.join(map(str, paths))})")
    out = paths[-1]
    coco, summary = import_voc(None if folders else paths[0], split=split, images=images,
                               annotations=annotations, classes=classes)
    _report_import(coco, summary, out, split)


def import_yolo_cmd(
    src: Annotated[Path, typer.Argument(
        help="An Ultralytics data.yaml (or its folder), or a folder with images/ + labels/ "
             "(and classes.txt).")],
    out: Annotated[Path, typer.Argument(metavar="OUT.json", help="The COCO file to write.")],
    split: Annotated[str | None, typer.Option(
        "--split", help="Which split: train, val or test (the data.yaml key, or "
                        "images/SPLIT/); default train, one split per json.")] = None,
) -> None:
    """YOLO txt labels -> one COCO json of one split (train unless --split says otherwise).
    A missing or empty label file is an image without boxes; boxes outside the image are
    clipped or dropped and counted."""
    from engine.data.yolo import import_yolo, yolo_splits

    coco, summary = import_yolo(src, split or "train")
    if split is None:  # one split per json: say which, and how to get the others
        others = [s for s in yolo_splits(src) if s != "train"]
        typer.echo("imported the train split only" + (
            f"; this dataset also has {', '.join(others)}: import "
            + " / ".join(f"--split {s}" for s in others) + " into another json"
            if others else ""))
    _report_import(coco, summary, out, split)


def data_check(
    config: Annotated[Path, typer.Argument(help="YAML config (with _BASE_ inheritance).")],
    opt: Overrides = [],
    decode: Annotated[bool, typer.Option(
        "--decode", help="Also decode every image fully (slow; finds files cut short after "
                         "their header).")] = False,
) -> None:
    """Statistics of the config's TrainDataset, EvalDataset (and UnsupTrainDataset): images,
    boxes per class, boxes dropped and why, images without boxes. Opens every image file;
    exits 2 naming the first broken one."""
    from engine.config import load_and_validate
    from engine.data.check import iter_check_config

    _, cfg = load_and_validate(config, opt)
    images = 0
    for summary in iter_check_config(cfg, decode=decode):
        for line in summary.lines():
            typer.echo(line)
        images += summary.images
    from engine.data.summary import plural

    typer.echo(f"ok: {plural(images, 'image')} checked" + (" and decoded" if decode else ""))


def register(user_errors: Any) -> None:
    """Add the ``dettui data`` commands to :data:`data_app`, each behind the CLI's error
    funnel (``app`` adds ``data_app`` itself, where ``--help`` lists it)."""
    for group, name, fn in ((data_app, "shapes", data_shapes),
                            (data_app, "split", data_split),
                            (import_app, "voc", import_voc_cmd),
                            (import_app, "yolo", import_yolo_cmd),
                            (data_app, "check", data_check)):
        group.command(name)(user_errors(fn))
