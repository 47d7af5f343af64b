"""``python -m engine eval`` and ``python -m engine infer``: a trained model, used; and
``python -m engine fit``: how a weights file fits a config's model, without training.

Eval and infer build the model from the config and load weights from a local file (the
caller resolves a URL, ``torchvision:``, ``hf:`` or ``run:`` source to one first): a dettui
checkpoint (its EMA weights when it has them) or a plain state dict / safetensors file.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from engine.config import load_and_validate
from engine.config.schema import Config
from engine.data.coco import CocoDetection, read_rgb
from engine.data.cocobuild import read_name_list
from engine.data.cocofile import load_coco_json
from engine.data.loader import build_eval_loader
from engine.data.shapes import ensure_dataset
from engine.data.sources import dataset_root
from engine.data.transforms import build_transforms
from engine.data.voc import PASCAL_VOC_CLASSES
from engine.drawing import draw_detections
from engine.env import pick_device
from engine.evaluation import evaluate_model
from engine.models import build_model
from engine.models.weights import load_state_dict_file, match_weights
from engine.protocol.errors import DataError, WeightsError
from engine.protocol.events import encode
from engine.protocol.safefiles import RefusedFile, check_output_path
from engine.protocol.termtext import printable

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def load_model(cfg: Config, weights: str, device: torch.device) -> nn.Module:
    """The config's model with ``weights`` loaded strictly (it must be this model)."""
    model = build_model(cfg)
    state = load_state_dict_file(weights, prefer_ema=True)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        # torch's message is a header and pages of names; say what fits and what does not,
        # in the summary `run` shows for pretrain_weights.
        report, _ = match_weights(model.state_dict(), state, weights)
        raise WeightsError(f"the weights do not fit this config's model "
                           f"({cfg.architecture}/{cfg.backbone.name}, {cfg.num_classes} "
                           f"classes): {report.summary()}", file=weights,
                           hint="evaluate with the config the weights were trained with") \
            from None
    return model.to(device).eval()


def evaluate_weights(config: Path, weights: str, overrides: list[str],
                     json_out: Path | None) -> int:
    _, cfg = load_and_validate(config, overrides)
    device = pick_device(cfg.device)
    ensure_dataset(cfg.EvalDataset, section="EvalDataset")
    dataset = CocoDetection(cfg.EvalDataset, cfg.num_classes,
                            build_transforms(cfg.EvalReader.sample_transforms), train=False)
    model = load_model(cfg, weights, device)
    result = evaluate_model(model, build_eval_loader(cfg, dataset), dataset, device)
    print(printable(f"COCO bbox evaluation of {weights} on {dataset.anno_path} "
                    f"({len(dataset)} images):"))
    print("\n".join(result.summary_lines()))
    print("\nper-class AP:")
    for name, ap in result.per_class.items():  # names come from the dataset: no raw controls
        print(f"  {printable(name):<24} {ap:.3f}")
    if json_out is not None:
        payload = {"metrics": result.metrics, "per_class": result.per_class,
                   "stats": result.stats}
        json_out.write_text(encode(payload))  # NaN (nothing to measure) becomes null
    return 0


def _class_names(cfg: Config, weights: str) -> list[str]:
    """Names from the checkpoint, else from the eval annotations, else ``class N``."""
    if not weights.endswith(".safetensors"):
        try:  # load_model already read this file successfully; this reads its metadata
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError):
            state = None
        if isinstance(state, dict) and isinstance(state.get("class_names"), list):
            return list(state["class_names"])
    if cfg.EvalDataset.name == "VOCDataSet":
        try:
            return (read_name_list(dataset_root(cfg.EvalDataset) / cfg.EvalDataset.label_list,
                                   key="EvalDataset.label_list")
                    if cfg.EvalDataset.label_list else list(PASCAL_VOC_CLASSES))
        except DataError:
            return [f"class {i}" for i in range(1, cfg.num_classes + 1)]
    anno = Path(cfg.EvalDataset.dataset_dir) / cfg.EvalDataset.anno_path
    try:
        cats = load_coco_json(anno)["categories"]
        return [str(c["name"]) for c in sorted(cats, key=lambda c: c["id"])]
    except (DataError, KeyError, TypeError):
        return [f"class {i}" for i in range(1, cfg.num_classes + 1)]


def _check_infer_out(out: Path, images: list[Path]) -> None:
    """``--out`` is a folder (or nothing yet) and each drawing lands on nothing or on a
    regular file: a FIFO there would hang the save, a device would be written over."""
    for target, folder in [(out, True), *((out / p.name, False) for p in images)]:
        try:
            check_output_path(target, folder=folder)
        except RefusedFile as exc:
            raise DataError(f"refusing to write there: {exc}", file=str(target),
                            key="--out") from None


def infer_images(config: Path, weights: str, images: list[Path], out: Path,
                 score_thresh: float, overrides: list[str]) -> int:
    _, cfg = load_and_validate(config, overrides)
    device = pick_device(cfg.device)
    for path in images:
        if not path.is_file():
            raise DataError("image not found", file=str(path))
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataError("not an image file; allowed: " + ", ".join(sorted(IMAGE_SUFFIXES)),
                            file=str(path))
    _check_infer_out(out, images)
    model = load_model(cfg, weights, device)
    names = _class_names(cfg, weights)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder: {exc.strerror or exc}",
                        file=str(out), key="--out") from None
    for path in images:
        # uint8 CHW -> float in [0, 1]; the model resizes and maps boxes back to this image
        pixels = read_rgb(path)
        tensor = pixels.float().div_(255.0)
        with torch.no_grad():
            det = model([tensor.to(device)])[0]
        # the image the model saw (upright, RGB), so the boxes land where they were found
        canvas = Image.fromarray(pixels.permute(1, 2, 0).numpy())
        kept = draw_detections(canvas, [
            (box, score, label) for box, score, label in zip(
                det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist())
            if score >= score_thresh], names)
        target = out / path.name
        canvas.save(target)
        print(printable(f"{path} -> {target}: {kept} detections >= {score_thresh}"))
    return 0


def fit_report(config: Path, source: str, overrides: list[str],
               runs_dir: Path | None = None) -> int:
    """``python -m engine fit``: how many of a weights file's tensors fit the config's model
    (the partial-load report ``pretrain_weights`` gives), as one JSON line; nothing is
    trained, and a source not downloaded yet is reported as such, not fetched."""
    from engine.weightsource import check, plan

    _, cfg = load_and_validate(config, overrides)
    where = plan(source, runs_dir=runs_dir, key="pretrain_weights")
    if where.remote and not where.cached:
        print(json.dumps({"source": source, "cached": False, "url": where.url,
                          "size": where.size}))
        return 0
    check(source, runs_dir=runs_dir, key="pretrain_weights", offline=True)
    state = load_state_dict_file(where.path, prefer_ema=True)
    model = build_model(cfg)
    report, _ = match_weights(model.state_dict(), state, str(where.path))
    loaded = [n for n in report.loaded if not n.endswith("num_batches_tracked")]
    total = [n for n in model.state_dict() if not n.endswith("num_batches_tracked")]
    print(json.dumps({"source": source, "cached": True, "file": str(where.path),
                      "loaded": len(loaded), "model_tensors": len(total),
                      "file_tensors": len(state), "skipped": len(report.skipped_shape),
                      "missing": len(report.missing), "unused": len(report.unused),
                      "summary": report.summary()}))
    return 0
