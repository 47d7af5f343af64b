"""Refuse, before anything is allocated, a run whose first batch cannot fit in memory.

A config may ask for images of 8192 px in batches of 4096: each value passes its own range
check, and the run would allocate tens of GB at its first step (on a shared server that
takes the machine down before an out-of-memory error names anything). The estimate is an
order of magnitude (activations kept for the backward pass per input pixel, for the
backbone family, plus RT-DETR's attention over its queries), compared with the device's
total memory: only a batch that cannot fit even on an empty device is refused.
"""

from __future__ import annotations

from typing import Any

from engine.config.schema import Config
from engine.protocol.errors import ConfigError

FLOATS_PER_PIXEL = {"tiny": 48, "mobilenet_v3": 96, "resnet18": 192, "resnet34": 256,
                    "resnet50": 512}
"""Activations kept for backward per input pixel (4-byte floats), a low estimate for each
backbone family with its FPN and head: a run refused by it would not fit anyway."""
RTDETR_FLOATS_PER_PIXEL = 192


def batch_images(cfg: Config) -> tuple[int, str]:
    """Images of the first training step of one process, and the key(s) that set it."""
    reader = cfg.SemiTrainReader
    if cfg.ssod_method is not None and reader is not None:
        # the student sees labeled + unlabeled (strong) views, the teacher the weak ones
        return (reader.sup_batch_size + 2 * reader.unsup_batch_size,
                "SemiTrainReader.sup_batch_size + 2 x unsup_batch_size")
    return cfg.TrainReader.batch_size, "TrainReader.batch_size"


def estimate_first_batch_bytes(cfg: Config) -> tuple[int, str]:
    """``(bytes, how)``: an estimate of the memory of the first training step."""
    images, batch_key = batch_images(cfg)
    if cfg.architecture == "RTDETR":
        r = cfg.rtdetr
        side = max([r.image_size, *r.train_sizes])
        per_image = side * side * RTDETR_FLOATS_PER_PIXEL * 4
        queries = r.num_queries + 2 * r.num_denoising  # positive and negative groups
        per_image += r.decoder_layers * r.decoder_heads * queries * queries * 4 * 2
        what = (f"{images} images ({batch_key}) of {side}x{side} px (rtdetr.image_size/"
                f"train_sizes), {queries} decoder queries (rtdetr.num_queries + 2 x "
                "num_denoising)")
    else:
        side = max(cfg.model.min_size, cfg.model.max_size)
        per_image = side * side * FLOATS_PER_PIXEL.get(cfg.backbone.name, 512) * 4
        what = (f"{images} images ({batch_key}) of up to {side}x{side} px (model.min_size/"
                f"max_size) through a {cfg.backbone.name} backbone")
    return images * per_image + images * 3 * side * side * 4, what


def device_memory(device: Any) -> int | None:
    """Total memory of ``device`` (a torch device) in bytes, None when unknown."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        index = device.index if device.index is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().total)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_first_batch_fits(cfg: Config, device: Any, total: int | None = None) -> None:
    """Raise ``ConfigError`` with the estimate when the first batch needs more memory than
    ``device`` has (``total`` overrides what the device reports)."""
    need, what = estimate_first_batch_bytes(cfg)
    have = total if total is not None else device_memory(device)
    if have is None or need <= have:
        return
    _, batch_key = batch_images(cfg)
    raise ConfigError(f"the first training step would need about {_gib(need)} (an estimate "
                      f"from {what}), more than the {_gib(have)} of {device}",
                      key=batch_key.split(" ")[0],
                      hint="lower the batch size or the image size")
