"""Issue 21 point 8: validation refuses NaN, infinities and absurd sizes before anything
starts. Checks written as ``x < 0`` let NaN through (the run failed after starting),
negative weights were accepted, sizes of 1e5-1e9 failed at allocation; and a first batch
that cannot fit in the device's memory is refused with the estimate. Point 6's
``-o ema_start_iters=.inf`` (a traceback inside the validator) is here too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.config import load_and_validate
from engine.memcheck import check_first_batch_fits, estimate_first_batch_bytes
from engine.protocol.errors import ConfigError
from tests.conftest import DEMO_CONFIG, REPO, engine_env
from tests.security.helpers import dettui, out

NON_FINITE_KEYS = [
    "BBoxHead.loss_cot.cot_lambda", "BBoxHead.loss_cot.cot_scale", "semi_start_iters",
    "ema_start_iters", "LearningRate.base_lr", "DenseTeacher.train_cfg.sup_weight",
    "DenseTeacher.train_cfg.unsup_weight", "DETR_SSOD.train_cfg.sup_weight",
    "DETR_SSOD.train_cfg.unsup_weight", "OptimizerBuilder.clip_grad_norm",
    "SEMISUPNET.UNSUP_LOSS_WEIGHT", "ema_decay", "model.score_thresh",
]


def _refused(override: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_and_validate(DEMO_CONFIG, [override])
    return info.value


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("key", NON_FINITE_KEYS)
def test_every_float_key_refuses_nan_and_infinities(key: str, value: str) -> None:
    error = _refused(f"{key}={value}")
    assert error.key == key and "finite" in error.message, error.render()


@pytest.mark.parametrize("key", ["DenseTeacher.train_cfg.unsup_weight", "LearningRate.gamma",
                                 "OptimizerBuilder.weight_decay",
                                 "OptimizerBuilder.momentum", "rtdetr.box_noise_scale"])
def test_negative_weights_and_rates_are_refused(key: str) -> None:
    error = _refused(f"{key}=-0.5")
    assert error.key == key and ">= 0" in error.message, error.render()


@pytest.mark.parametrize("override", [
    "rtdetr.num_queries=1000000000", "rtdetr.image_size=1000000",
    "rtdetr.num_denoising=1000000000", "model.min_size=100000", "model.max_size=100000",
    "TrainDataset.synthesize.image_size=1000000", "TrainReader.batch_size=100000",
])
def test_absurd_sizes_are_refused_naming_the_key(override: str) -> None:
    key = override.split("=")[0]
    error = _refused(override)
    assert error.key == key and "at most" in error.message, error.render()


def test_integers_of_hundreds_of_digits_are_refused() -> None:
    error = _refused("epoch=" + "9" * 400)
    assert error.key == "epoch" and "400-digit" in error.message
    error = _refused("LearningRate.base_lr=" + "9" * 400)  # over float's range: inf
    assert error.key == "LearningRate.base_lr" and "finite" in error.message


def test_the_cli_says_so_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "-o", "ema_start_iters=.inf",
                  "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, out(proc)
    assert "ema_start_iters" in out(proc) and "finite" in out(proc)
    assert "Traceback" not in out(proc)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_demo_fits_and_an_impossible_first_batch_is_refused_with_the_estimate() -> None:
    _, demo = load_and_validate(DEMO_CONFIG, [])
    need, _ = estimate_first_batch_bytes(demo)
    assert need < 1 << 30
    check_first_batch_fits(demo, torch.device("cpu"))  # this machine's memory: fits
    _, big = load_and_validate(DEMO_CONFIG, ["model.min_size=4096", "model.max_size=4096",
                                             "TrainReader.batch_size=64"])
    with pytest.raises(ConfigError) as info:
        check_first_batch_fits(big, torch.device("cpu"), total=64 << 30)
    text = info.value.render()
    assert "GiB" in text and "4096x4096" in text and "64 images" in text
    assert info.value.key == "TrainReader.batch_size"
    _, detr = load_and_validate(REPO / "configs" / "rtdetr" / "rtdetr_tiny_shapes.yml",
                                ["rtdetr.num_queries=10000", "rtdetr.num_denoising=10000"])
    with pytest.raises(ConfigError, match="decoder queries"):
        check_first_batch_fits(detr, torch.device("cpu"), total=64 << 30)


def test_the_engine_refuses_it_before_training(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "train", str(DEMO_CONFIG), "--runs-dir",
         str(tmp_path / "runs"), "--no-eval", "-o", "model.min_size=8192", "-o",
         "model.max_size=8192", "-o", "TrainReader.batch_size=4096", "-o",
         f"TrainDataset.dataset_dir={tmp_path / 'data'}", "-o",
         f"EvalDataset.dataset_dir={tmp_path / 'data'}"],
        cwd=REPO, env=engine_env(), capture_output=True, timeout=120)
    text = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 2, text
    assert "would need about" in text and "TrainReader.batch_size" in text
    assert not (tmp_path / "data").exists()  # refused before the dataset was made
