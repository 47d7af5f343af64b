"""Weights files: safe reading (no code runs), clear errors, and partial pretrained loading."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18

from engine.config.schema import validate
from engine.models import build_model
from engine.models.weights import LoadReport, load_pretrained, load_state_dict_file
from engine.protocol.errors import WeightsError


def tiny_fcos(num_classes: int = 3, **backbone) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(validate({
        "architecture": "FCOS", "num_classes": num_classes,
        "backbone": {"name": "tiny", "width": 8, **backbone},
        "model": {"min_size": 64, "max_size": 64, "fpn_channels": 16, "head_convs": 1}}))


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- round trips

def test_pt_round_trip(tmp_path: Path) -> None:
    state = tiny_fcos().state_dict()
    torch.save(state, tmp_path / "w.pt")
    assert_same(load_state_dict_file(tmp_path / "w.pt"), state)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    state = {k: v.contiguous() for k, v in tiny_fcos().state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    assert_same(load_state_dict_file(tmp_path / "w.safetensors"), state)


def test_checkpoint_dict_model_or_ema_and_ddp_prefix(tmp_path: Path) -> None:
    model = tiny_fcos().state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.items()}
    ddp = {f"module.{k}": v for k, v in model.items()}
    # the dettui checkpoint layout: EMA as {"model": ..., "step": n}, plus training state
    torch.save({"model": ddp, "ema": {"model": ema, "step": 7}, "iter": 10, "epoch": 1,
                "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "last.pt")
    assert_same(load_state_dict_file(tmp_path / "last.pt"), model)
    assert_same(load_state_dict_file(tmp_path / "last.pt", prefer_ema=True), ema)
    # no EMA in the checkpoint: prefer_ema falls back to the model
    torch.save({"model": model, "ema": None, "iter": 3}, tmp_path / "no_ema.pt")
    assert_same(load_state_dict_file(tmp_path / "no_ema.pt", prefer_ema=True), model)
    # Lightning / MMDetection layout
    torch.save({"state_dict": model, "meta": {"epoch": 3}}, tmp_path / "mm.pth")
    assert_same(load_state_dict_file(tmp_path / "mm.pth"), model)


# --------------------------------------------------------------------------- unsafe and bad files

class _Payload:
    """Unpickling this would run ``os.system`` and create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on plain pickles
@pytest.mark.parametrize("fmt", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    payload = {"conv.weight": torch.zeros(1), "x": _Payload(marker)}
    if fmt == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    # sanity: the file really is dangerous (plain pickle would run it)
    assert b"system" in path.read_bytes()

    with pytest.raises(WeightsError) as info:
        load_state_dict_file(path)
    assert not marker.exists(), "unpickling ran code from the weights file"
    err = info.value
    assert err.file == str(path)
    assert "not a plain weights file" in err.message
    assert "nothing in it was executed" in err.message
    if fmt == "torch.save":  # torch names the refused global: say so
        assert "system" in err.message


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as info:
        load_state_dict_file(tmp_path / "nope.pt")
    assert info.value.file == str(tmp_path / "nope.pt") and "not found" in info.value.message
    with pytest.raises(WeightsError) as info:
        load_state_dict_file(tmp_path)
    assert "is a directory" in info.value.message


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_empty_truncated_and_garbage_files(tmp_path: Path, suffix: str) -> None:
    state = {k: v.contiguous() for k, v in tiny_fcos().state_dict().items()}
    good = tmp_path / f"good{suffix}"
    if suffix == ".pt":
        torch.save(state, good)
    else:
        save_file(state, str(good))
    data = good.read_bytes()
    cases = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "garbage": bytes(range(256)) * 4,
        "text": b"this is not a weights file\n",
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(content)
        with pytest.raises(WeightsError) as info:
            load_state_dict_file(path)
        assert info.value.file == str(path), name
        text = info.value.message
        assert ("empty" in text if name == "empty" else
                any(w in text for w in ("truncated", "corrupt", "not a plain"))), (name, text)


@pytest.mark.parametrize(("content", "expected"), [
    ([torch.zeros(1)], "holds a list"),
    ({}, "holds no tensors"),
    ({"lr": 0.1, "epoch": 3}, "entry 'lr' holds a float"),
    ({"a": torch.zeros(1), "b": "text"}, "entry 'b' holds a str"),
    ({"model": {"a": torch.zeros(1), "meta": 1}}, "entry 'meta' holds a int"),
])
def test_content_that_is_not_a_mapping_of_tensors(tmp_path: Path, content: object,
                                                  expected: str) -> None:
    path = tmp_path / "w.pt"
    torch.save(content, path)
    with pytest.raises(WeightsError) as info:
        load_state_dict_file(path)
    assert expected in info.value.message
    assert info.value.file == str(path)


# --------------------------------------------------------------------------- load_pretrained

def test_changed_num_classes_loads_all_but_the_class_logits(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    source = tiny_fcos(num_classes=3)
    torch.save({"model": source.state_dict(), "iter": 5}, tmp_path / "best.pt")
    target = tiny_fcos(num_classes=7)
    untouched = target.head.classification_head.cls_logits.weight.detach().clone()

    logger = logging.getLogger("test.weights")
    with caplog.at_level(logging.INFO, logger="test.weights"):
        report = load_pretrained(target, tmp_path / "best.pt", logger=logger)

    assert isinstance(report, LoadReport)
    skipped = {name: (ckpt, model) for name, ckpt, model in report.skipped_shape}
    assert skipped == {
        "head.classification_head.cls_logits.weight": ((4, 16, 3, 3), (8, 16, 3, 3)),
        "head.classification_head.cls_logits.bias": ((4,), (8,)),
    }
    assert report.missing == [] and report.unused == []
    assert len(report.loaded) == len(target.state_dict()) - 2
    # the backbone and the rest of the head now hold the source weights ...
    src, dst = source.state_dict(), target.state_dict()
    for name in report.loaded:
        assert torch.equal(src[name], dst[name]), name
    assert "backbone.body.stem.0.0.weight" in report.loaded
    # ... and the skipped tensors kept their initialisation
    assert torch.equal(target.head.classification_head.cls_logits.weight, untouched)

    summary = report.summary()
    assert f"loaded {len(report.loaded)} tensors" in summary
    assert "skipped 2 (shape mismatch)" in summary and "cls_logits" in summary
    assert any("pretrained weights" in r.message and "skipped 2" in r.message
               for r in caplog.records)
    assert any("cls_logits.weight not loaded" in r.message for r in caplog.records)


def test_missing_and_unused_are_reported(tmp_path: Path) -> None:
    state = tiny_fcos().state_dict()
    dropped = "backbone.fpn.layer_blocks.0.0.weight"
    del state[dropped]
    state["extra.weight"] = torch.zeros(3)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    report = load_pretrained(tiny_fcos(), tmp_path / "w.safetensors")
    assert report.missing == [dropped]
    assert report.unused == ["extra.weight"]
    assert report.skipped_shape == []
    assert "missing 1" in report.summary() and "unused 1" in report.summary()


def test_imagenet_backbone_weights_load_by_name_suffix(tmp_path: Path) -> None:
    """An ImageNet classifier state dict (conv1.weight, layer1.0...) fills backbone.body.*."""
    classifier = resnet18(weights=None)
    torch.save(classifier.state_dict(), tmp_path / "resnet18.pth")
    model = build_model(validate({"architecture": "FCOS", "num_classes": 2,
                                  "backbone": {"name": "resnet18", "norm": "bn"},
                                  "model": {"fpn_channels": 16, "head_convs": 1}}))
    report = load_pretrained(model, tmp_path / "resnet18.pth")
    assert report.renamed["backbone.body.layer1.0.conv1.weight"] == "layer1.0.conv1.weight"
    assert report.renamed["backbone.body.conv1.weight"] == "conv1.weight"
    assert torch.equal(model.backbone.body.layer4[1].conv2.weight,
                       classifier.layer4[1].conv2.weight)
    assert set(report.unused) == {"fc.weight", "fc.bias"}
    assert all(name.startswith(("backbone.fpn", "head.")) for name in report.missing)
    assert "matched by name suffix" in report.summary()


def test_nothing_fits_is_an_error_naming_the_file(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(3, 3), "decoder.bias": torch.zeros(2)},
               tmp_path / "other.pt")
    model = tiny_fcos()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as info:
        load_pretrained(model, tmp_path / "other.pt")
    assert info.value.file == str(tmp_path / "other.pt")
    assert "does not fit this model" in info.value.message
    assert_same(model.state_dict(), before)  # nothing was touched


def test_same_names_all_other_shapes_is_an_error(tmp_path: Path) -> None:
    """Only BatchNorm step counters fit (same names, any width): that is not a fit."""
    wider = build_model(validate({"architecture": "FCOS", "num_classes": 3,
                                  "backbone": {"name": "tiny", "width": 16},
                                  "model": {"fpn_channels": 32, "head_convs": 1}}))
    torch.save(wider.state_dict(), tmp_path / "wide.pt")
    retinanet = build_model(validate({"architecture": "RetinaNet", "num_classes": 3,
                                      "backbone": {"name": "tiny", "width": 8},
                                      "model": {"fpn_channels": 16, "head_convs": 1}}))
    with pytest.raises(WeightsError) as info:
        load_pretrained(retinanet, tmp_path / "wide.pt")
    assert "names match with other shapes" in info.value.message


def test_prefers_ema_weights_of_a_checkpoint(tmp_path: Path) -> None:
    model = tiny_fcos()
    ema = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v
           for k, v in model.state_dict().items()}
    torch.save({"model": model.state_dict(), "ema": {"model": ema, "step": 3}, "iter": 3},
               tmp_path / "last.pt")
    target = tiny_fcos()
    load_pretrained(target, tmp_path / "last.pt")
    assert torch.all(target.backbone.body.stem[0][0].weight == 0.5)
    load_pretrained(target, tmp_path / "last.pt", prefer_ema=False)
    assert torch.equal(target.backbone.body.stem[0][0].weight,
                       model.backbone.body.stem[0][0].weight)
