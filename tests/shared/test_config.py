"""Config loading: _BASE_ inheritance, overrides at any depth, schema errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import field_docs, load_and_validate, load_config
from engine.config.loader import parse_override
from engine.protocol.errors import ConfigError
from tests.conftest import REPO


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_base_depth_first_later_wins_lists_replace(tmp_path: Path) -> None:
    write(tmp_path / "base/a.yml", "num_classes: 3\nepoch: 5\nTrainReader:\n  batch_size: 2\n"
          "  sample_transforms: [{RandomFlip: {prob: 0.5}}, {Resize: {target_size: 64}}]\n")
    write(tmp_path / "base/b.yml", "_BASE_: [a.yml]\nepoch: 7\nTrainReader: {shuffle: false}\n")
    child = write(tmp_path / "cfg/child.yml",
                  "_BASE_: [../base/a.yml, ../base/b.yml]\nlog_iter: 3\n"
                  "TrainReader:\n  sample_transforms: [{Resize: {target_size: 32}}]\n")
    loaded, cfg = load_and_validate(child)
    assert cfg.epoch == 7                        # b (later) beats a
    assert cfg.TrainReader.batch_size == 2       # dicts deep-merge
    assert cfg.TrainReader.shuffle is False
    assert cfg.TrainReader.sample_transforms == [{"Resize": {"target_size": 32}}]  # replaced
    assert loaded.sources[("epoch",)].file.endswith("base/b.yml")
    assert loaded.sources[("epoch",)].line == 2
    assert loaded.sources[("log_iter",)].file.endswith("child.yml")


def test_overrides_any_depth_keep_siblings(tmp_path: Path) -> None:
    cfg_path = write(tmp_path / "c.yml", "num_classes: 2\n")
    loaded = load_config(cfg_path, ["a.b.x=1", "a.b.y=2", "a.c=[1, 2]", "lr=1e-3"])
    assert loaded.data["a"] == {"b": {"x": 1, "y": 2}, "c": [1, 2]}  # 3-level bug fixed
    _, cfg = load_and_validate(cfg_path, ["LearningRate.base_lr=1e-3"])
    assert cfg.LearningRate.base_lr == pytest.approx(1e-3)  # PyYAML's `1e-3` is a string
    assert str(loaded.sources[("a", "b", "y")]) == "-o a.b.y=2"


def test_override_values_parsed_as_yaml() -> None:
    assert parse_override("x=true") == {"x": True}
    assert parse_override("x.y=null") == {"x": {"y": None}}
    assert parse_override("x={a: 1}") == {"x": {"a": 1}}
    with pytest.raises(ConfigError, match="key.sub.leaf=value"):
        parse_override("novalue")


def test_demo_configs_validate() -> None:
    for path in sorted((REPO / "configs").rglob("*.yml")):
        if "_base_" in path.parts or "datasets" in path.parts:
            continue
        _, cfg = load_and_validate(path)
        assert cfg.num_classes >= 1, path


@pytest.mark.parametrize("text,overrides,expect", [
    ("num_classes: 2\nepohc: 3\n", [], r"c\.yml:2: key 'epohc': unknown key.*did you mean 'epoch'"),
    ("num_classes: 2\nepoch: three\n", [], r"c\.yml:2: key 'epoch': expected an integer, got 'three'"),
    ("num_classes: 2\nTrainReader: {batch_sise: 2}\n", [], r"TrainReader.batch_sise.*did you mean 'batch_size'"),
    ("num_classes: 2\n", ["use_ema=maybe"], r"-o use_ema=maybe.*expected a boolean"),
    ("num_classes: 2\nssod_method: MeanTeacher\n", [], r"ssod_method.*supported: DenseTeacher, ARSL, Semi_RTDETR"),
    ("num_classes: 2\narchitecture: YOLO\n", [], r"architecture.*supported: FCOS, RetinaNet, FasterRCNN"),
    ("num_classes: 2\nbackbone: {name: resnet101}\n", [], r"backbone.name.*supported: tiny"),
    ("num_classes: 2\nOptimizerBuilder: {type: Adam}\n", [], r"one of 'SGD', 'AdamW'"),
    ("num_classes: 2\nTrainReader: {sample_transforms: [{Mosaic: {}}]}\n", [], r"unknown transform 'Mosaic'"),
    ("epoch: 2\n", [], r"num_classes must be set"),
    # co-tuning: checked here, without torch, so the TUI refuses such a launch up front
    ("num_classes: 2\nuse_cot: true\npretrain_weights: a.pt\nBBoxHead: {cot_classes: 80}\n",
     [], r"c\.yml:2: key 'use_cot': co-tuning keeps the source classifier.*needs "
     r"architecture FasterRCNN; this config has architecture FCOS"),
    ("num_classes: 2\narchitecture: FasterRCNN\nuse_cot: true\npretrain_weights: a.pt\n", [],
     r"c\.yml.*key 'BBoxHead.cot_classes': use_cot needs BBoxHead.cot_classes.*got 0"),
    ("num_classes: 2\narchitecture: FasterRCNN\nBBoxHead: {cot_classes: 80}\n",
     ["use_cot=true"], r"c\.yml: key 'pretrain_weights': co-tuning \(use_cot: true\) needs "
     r"pretrain_weights.*hint: set pretrain_weights"),
    ("num_classes: 2\nBBoxHead: {loss_cot: {cot_scale: 0}}\n", [],
     r"c\.yml:2: key 'BBoxHead.loss_cot.cot_scale': must be > 0"),
    ("num_classes: 2\nBBoxHead: {loss_cot: {name: CELoss}}\n", [], r"one of 'COTLoss'"),
    ("num_classes: 2\nTrainDataset: {synthesize: {classes: [circle, rnig]}}\n", [],
     r"c\.yml:2: key 'TrainDataset.synthesize.classes': unknown shape kind 'rnig'.*"
     r"did you mean 'ring'"),
    ("num_classes: 2\nEvalDataset: {synthesize: {classes: [star, star]}}\n", [],
     r"EvalDataset.synthesize.classes.*repeated: star"),
])
def test_schema_errors_name_file_line_key(tmp_path: Path, text: str, overrides: list[str],
                                          expect: str) -> None:
    path = write(tmp_path / "c.yml", text)
    with pytest.raises(ConfigError, match="(?s)" + expect):
        load_and_validate(path, overrides)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yml", "num_classes: 2\nTrainReader:\n  batch_size: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path) and info.value.line is not None
    assert info.value.column is not None
    assert "YAML syntax error" in info.value.render()


def test_missing_file_and_base_cycle(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml")
    write(tmp_path / "a.yml", "_BASE_: [b.yml]\n")
    write(tmp_path / "b.yml", "_BASE_: [a.yml]\n")
    with pytest.raises(ConfigError, match="_BASE_ cycle: .*a.yml -> .*b.yml -> .*a.yml"):
        load_config(tmp_path / "a.yml")
    write(tmp_path / "c.yml", "_BASE_: [missing.yml]\n")
    with pytest.raises(ConfigError, match="_BASE_ file not found"):
        load_config(tmp_path / "c.yml")


def test_cotuning_config_keys_use_paddledetection_names(tmp_path: Path) -> None:
    path = write(tmp_path / "cot.yml", "num_classes: 4\narchitecture: FasterRCNN\nuse_cot: true\n"
                 "pretrain_weights: coco.pth\nBBoxHead:\n  cot_classes: 80\n"
                 "  loss_cot: {name: COTLoss, cot_lambda: 1, cot_scale: 2}\n")
    _, cfg = load_and_validate(path)
    assert cfg.BBoxHead.cot_classes == 80
    assert (cfg.BBoxHead.loss_cot.cot_lambda, cfg.BBoxHead.loss_cot.cot_scale) == (1.0, 2.0)
    _, plain = load_and_validate(write(tmp_path / "plain.yml", "num_classes: 4\n"))
    assert (plain.BBoxHead.cot_classes, plain.BBoxHead.loss_cot.cot_lambda,
            plain.BBoxHead.loss_cot.cot_scale) == (0, 1.0, 1.0)  # PaddleDetection's defaults


def test_every_schema_field_is_documented() -> None:
    docs = field_docs()
    assert "TrainReader.batch_size" in docs and "LearningRate.base_lr" in docs
    assert all(text for text in docs.values()), [k for k, v in docs.items() if not v]
