"""Reading weights files safely, and weights-only initialisation (``pretrain_weights``).

``load_state_dict_file`` reads ``.safetensors`` with safetensors and everything else with
``torch.load(weights_only=True)``, which refuses any pickle that would import or call Python
code: a weights file is data, never a program. A file that needs more than tensors, numbers,
strings and containers is rejected with a ``WeightsError``, not executed.

``load_pretrained`` mirrors PaddleDetection's ``load_pretrain_weight``/``match_state_dict``
(see the PaddleDetection notes, section 3.9): a model tensor takes the file tensor of the same
name, or else the longest file name that is a dotted suffix of it (so an ImageNet ResNet's
``layer1.0.conv1.weight`` lands on ``backbone.body.layer1.0.conv1.weight``); tensors whose
shapes differ are skipped and reported (the normal case when the class count changes); the
rest of the model keeps its initialisation.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

from engine.protocol.errors import WeightsError

# Checkpoint dicts keep the weights under one of these keys: dettui and torchvision's
# reference scripts use "model", Lightning and MMDetection use "state_dict".
_WEIGHTS_KEYS = ("model", "state_dict")
_DDP_PREFIX = "module."
_ALLOWED = "tensors, numbers, strings and containers"


def load_state_dict_file(path: str | Path, prefer_ema: bool = False) -> dict[str, Tensor]:
    """The ``name -> tensor`` mapping stored in a weights or checkpoint file, on the CPU.

    Accepts a plain state dict, or a checkpoint dict holding one under ``"model"`` (or
    ``"state_dict"``). With ``prefer_ema`` a dettui checkpoint's evaluated weights are
    returned when it has them: the entry its ``"eval_model"`` names (``"teacher"`` for the
    semi-supervised trainers), else its EMA weights (``"ema"``). A ``module.`` prefix left
    by DistributedDataParallel is removed.

    Raises ``WeightsError`` (naming the file) when the file is missing, a directory, empty,
    truncated or corrupt, needs Python code to unpickle, or does not hold a mapping of tensors.
    """
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise WeightsError("weights file not found", file=file)
    if path.is_dir():
        raise WeightsError("is a directory; expected a weights file (.pt, .pth or .safetensors)",
                           file=file)
    if path.stat().st_size == 0:
        raise WeightsError("the weights file is empty", file=file)
    if path.suffix == ".safetensors":
        try:
            content: Any = load_safetensors(path, device="cpu")
        except SafetensorError as exc:
            raise WeightsError(f"not a readable safetensors file (truncated or corrupt): "
                               f"{_first_line(exc)}", file=file) from None
    else:
        content = _torch_load(path)
    return _extract_state_dict(content, file, prefer_ema)


def _torch_load(path: Path) -> Any:
    file = str(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused the pickle. Say why when torch names the global it refused
        # (a class or function: code), else it is a pickle stream it cannot read safely.
        text = str(exc)
        refused = next((line.strip() for line in text.splitlines()
                        if "GLOBAL" in line and ("Unsupported" in line or "blocked" in line)),
                       None)
        detail = (f"it references Python code or objects ({refused[:160]})" if refused else
                  "it is a pickle stream that cannot be read safely (corrupt, or not written "
                  "by torch.save)")
        raise WeightsError(f"not a plain weights file: {detail}; only {_ALLOWED} are allowed, "
                           f"and nothing in it was executed", file=file,
                           hint="re-save the weights with torch.save(model.state_dict(), ...) "
                                "or as .safetensors") from None
    except Exception as exc:
        # Arbitrary bytes make torch.load fail in many ways (RuntimeError from the zip reader,
        # EOFError, KeyError/IndexError from the unpickler...); all mean the same to the user.
        raise WeightsError(f"not a readable weights file (truncated or corrupt): "
                           f"{_first_line(exc)}", file=file) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _extract_state_dict(content: Any, file: str, prefer_ema: bool) -> dict[str, Tensor]:
    if not isinstance(content, Mapping):
        raise WeightsError(f"holds a {type(content).__name__}, not a mapping of tensor names to "
                           f"tensors", file=file)
    state = content
    # A dettui checkpoint names the entry holding its evaluated weights ("ema", "teacher");
    # older ones had only "ema".
    preferred = content.get("eval_model", "ema")
    if prefer_ema and isinstance(preferred, str) and isinstance(content.get(preferred), Mapping):
        state = content[preferred]
    # Unwrap checkpoint layers: {"model": {...}} (dettui; its EMA entry is {"model", "step"}).
    while not _all_tensors(state):
        key = next((k for k in _WEIGHTS_KEYS if isinstance(state.get(k), Mapping)), None)
        if key is None:
            break
        state = state[key]
    if not state:
        raise WeightsError("holds no tensors", file=file)
    bad = next(((k, v) for k, v in state.items()
                if not isinstance(k, str) or not isinstance(v, Tensor)), None)
    if bad is not None:
        name, value = bad
        raise WeightsError(f"not a mapping of tensor names to tensors: entry {str(name)[:80]!r} "
                           f"holds a {type(value).__name__}", file=file,
                           hint="expected a state dict, or a checkpoint dict with its weights "
                                "under 'model'")
    return {(k[len(_DDP_PREFIX):] if k.startswith(_DDP_PREFIX) else k): v
            for k, v in state.items()}


def _all_tensors(state: Mapping) -> bool:
    return bool(state) and all(isinstance(v, Tensor) for v in state.values())


@dataclass
class LoadReport:
    """What ``load_pretrained`` did with each tensor (names are the model's unless noted)."""

    file: str
    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list)  # (name, shape in the file, shape in the model)
    unused: list[str] = field(default_factory=list)   # file names that fit no model tensor
    missing: list[str] = field(default_factory=list)  # model names the file has nothing for
    renamed: dict[str, str] = field(default_factory=dict)  # model name -> file name (suffix)

    def summary(self, max_names: int = 3) -> str:
        """One line: the counts, and the first few names of each non-empty group."""
        def names(items: list[str]) -> str:
            head = ", ".join(items[:max_names])
            more = f", +{len(items) - max_names} more" if len(items) > max_names else ""
            return f" ({head}{more})" if items else ""

        skipped = [f"{name} {list(ckpt)}->{list(model)}"
                   for name, ckpt, model in self.skipped_shape]
        text = (f"loaded {len(self.loaded)} tensors; skipped {len(self.skipped_shape)} "
                f"(shape mismatch){names(skipped)}; missing {len(self.missing)} "
                f"(kept their init){names(self.missing)}; unused {len(self.unused)} "
                f"(not in the model){names(self.unused)}")
        if self.renamed:
            text += f"; {len(self.renamed)} matched by name suffix"
        return text


def _match_names(model_names: list[str], file_names: list[str], file: str) -> dict[str, str]:
    """model name -> file name: the same name, else the longest file name that is a dotted
    suffix of the model name (PaddleDetection's ``match_state_dict``)."""
    available = set(file_names)
    matches: dict[str, str] = {}
    chosen_by: dict[str, str] = {}
    for name in model_names:
        if name in available:
            matches[name] = name
            continue
        parts = name.split(".")
        # Longest suffix first, so "layer1.0.conv1.weight" wins over "conv1.weight".
        candidate = next((s for s in (".".join(parts[i:]) for i in range(1, len(parts)))
                          if s in available), None)
        if candidate is None:
            continue
        if candidate in chosen_by:
            raise WeightsError(
                f"ambiguous weights: {candidate!r} in the file matches both "
                f"{chosen_by[candidate]!r} and {name!r} in the model", file=file,
                hint="save the weights with the model's full tensor names")
        chosen_by[candidate] = name
        matches[name] = candidate
    return matches


def match_weights(model_state: Mapping[str, Tensor], state: Mapping[str, Tensor], file: str
                  ) -> tuple[LoadReport, dict[str, Tensor]]:
    """What of ``state`` (a weights file's tensors) fits ``model_state``, by name (or dotted
    suffix) and shape: the report, and the tensors to load under the model's names."""
    matches = _match_names(list(model_state), list(state), file)
    report = LoadReport(file=file)
    to_load: dict[str, Tensor] = {}
    for name, target in model_state.items():
        source = matches.get(name)
        if source is None:
            report.missing.append(name)
        elif state[source].shape != target.shape:
            report.skipped_shape.append((name, tuple(state[source].shape), tuple(target.shape)))
        else:
            to_load[name] = state[source]
            report.loaded.append(name)
            if source != name:
                report.renamed[name] = source
    used = set(matches.values())
    report.unused = [name for name in state if name not in used]
    return report, to_load


def load_pretrained(model: nn.Module, path: str | Path, logger: logging.Logger | None = None,
                    prefer_ema: bool = True) -> LoadReport:
    """Weights-only initialisation of ``model`` from a file: load what fits, report the rest.

    Tensors load when their names match (exactly, or by dotted suffix) and their shapes are
    equal; shape mismatches are skipped. From a dettui checkpoint the EMA weights are taken
    when it has them (``prefer_ema``): they are the ones that were evaluated and kept as best.
    Raises ``WeightsError`` when no tensor at all fits (the file is for another
    architecture/backbone), or for any problem ``load_state_dict_file`` reports.
    """
    file = str(path)
    state = load_state_dict_file(path, prefer_ema=prefer_ema)
    model_state = model.state_dict()
    report, to_load = match_weights(model_state, state, file)
    # BatchNorm's step counters fit any BN of the same name; they carry nothing learned.
    if all(name.endswith("num_batches_tracked") for name in to_load):
        example_file = ", ".join(list(state)[:2])
        example_model = ", ".join(list(model_state)[:2])
        raise WeightsError(
            f"does not fit this model: none of its {len(state)} tensors matches a model "
            f"tensor by name and shape ({len(report.skipped_shape)} names match with other "
            f"shapes); it was saved for a different architecture or backbone", file=file,
            hint=f"the file has e.g. {example_file}; the model has e.g. {example_model}")
    # strict=False: the missing and skipped tensors keep their initialisation; copy_ inside
    # load_state_dict casts to each tensor's dtype and keeps requires_grad flags.
    model.load_state_dict(to_load, strict=False)
    if logger is not None:
        logger.info(f"pretrained weights {file}: {report.summary()}")
        for name, ckpt_shape, model_shape in report.skipped_shape:
            logger.warning(f"pretrained weights {file}: {name} not loaded: shape "
                           f"{list(ckpt_shape)} in the file, {list(model_shape)} in the model")
    return report
