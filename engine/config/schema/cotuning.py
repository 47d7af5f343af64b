"""Co-tuning's sections (``BBoxHead`` and its ``cot_loss``) and checks. stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from engine.config.schema.base import doc
from engine.config.schema.validator import Validator
from engine.trainers.catalogue import trainer_for

if TYPE_CHECKING:
    from engine.config.schema import Config


@dataclass
class CotLossConfig:
    """The co-tuning loss (PaddleDetection's ``COTLoss``) on the foreground RoIs."""

    name: Literal["COTLoss"] = doc("loss name (PaddleDetection's; only COTLoss)", "COTLoss")
    cot_lambda: float = doc("weight of the co-tuning loss in the total loss", 1.0)
    cot_scale: float = doc("temperature: the source-head logits are multiplied by this "
                           "before the log-softmax", 1.0)


@dataclass
class BBoxHeadConfig:
    """Faster R-CNN box head options; only co-tuning (``use_cot``) reads them."""

    cot_classes: int = doc("co-tuning: classes of the pretrained detector's classifier "
                           "(background excluded), kept as the source head", 0)
    loss_cot: CotLossConfig = doc("co-tuning loss", factory=CotLossConfig)


def cotuning_enabled(cfg: Config) -> bool:
    """Whether the co-tuning trainer (and model) runs: ``use_cot`` without ``ssod_method``,
    which the seed's dispatch checks first."""
    info = trainer_for(cfg.ssod_method, cfg.use_cot)
    return info is not None and info.use_cot


def check_cotuning(cfg: Config, v: Validator) -> None:
    head = cfg.BBoxHead
    if head.loss_cot.cot_lambda < 0:
        v.fail(("BBoxHead", "loss_cot", "cot_lambda"), f"must be >= 0, got "
               f"{head.loss_cot.cot_lambda}")
    if head.loss_cot.cot_scale <= 0:
        v.fail(("BBoxHead", "loss_cot", "cot_scale"), f"must be > 0, got "
               f"{head.loss_cot.cot_scale}")
    if not cotuning_enabled(cfg):  # its architecture: _check_trainer
        return
    if head.cot_classes < 1:
        v.fail(("BBoxHead", "cot_classes"), "use_cot needs BBoxHead.cot_classes: the number of "
               "classes of the pretrained detector's classifier, background excluded (80 for "
               f"a COCO detector), got {head.cot_classes}")
    if not cfg.pretrain_weights:
        v.fail(("pretrain_weights",), "co-tuning (use_cot: true) needs pretrain_weights: the "
               "detector trained on the source classes, whose classifier it keeps",
               hint="set pretrain_weights: PATH in the config, or -o pretrain_weights=PATH "
                    "(the launch form's weights field)")
