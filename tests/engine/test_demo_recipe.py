"""The demo recipe (issue 11) and the settings its benchmark compares it under.

The AP numbers live in benchmarks/demo_time_to_map.py; these tests hold the properties the
recipe rests on, read from the built model rather than restated from the config: one FCOS
location size per pyramid level equal to that level's stride, EMA evaluation, and the
benchmark's --other-data / --before overrides still being valid configs that change what
they say they change.
"""

from __future__ import annotations

import pytest

from benchmarks.demo_time_to_map import BEFORE_RECIPE, OTHER_DATA
from engine.config import load_and_validate
from engine.data.shapes import SHAPE_CLASSES
from engine.models import build_model
from tests.conftest import DEMO_CONFIG


def _fcos(overrides: list[str]):
    _, cfg = load_and_validate(DEMO_CONFIG, overrides)
    return cfg, build_model(cfg)


def _level_sizes(model) -> list[float]:
    return [sizes[0] for sizes in model.anchor_generator.sizes]


def test_demo_fcos_sizes_each_level_by_its_stride_and_evaluates_an_ema() -> None:
    cfg, model = _fcos([])
    # FCOS's center-sampling radius (1.5 x size) and level ranges ([4, 8] x size) then follow
    # the FCOS paper: 12 px and [0, 64] px at stride 8.
    assert _level_sizes(model) == [float(s) for s in model.backbone.strides]
    assert cfg.use_ema and cfg.ema_decay_type == "threshold"


def test_before_recipe_restores_the_old_sizes_lr_and_no_ema() -> None:
    cfg, model = _fcos(BEFORE_RECIPE)
    _, new = _fcos([])
    assert _level_sizes(model) == [2.0 * s for s in _level_sizes(new)]
    assert not cfg.use_ema
    assert cfg.LearningRate.base_lr < load_and_validate(DEMO_CONFIG)[1].LearningRate.base_lr


@pytest.mark.parametrize("before", [False, True])
def test_other_data_is_another_shapes_set_the_model_sees_unresized(before: bool) -> None:
    cfg, model = _fcos(OTHER_DATA + (BEFORE_RECIPE if before else []))
    demo = load_and_validate(DEMO_CONFIG)[1]
    train, val = cfg.TrainDataset.synthesize, cfg.EvalDataset.synthesize
    assert train.classes == val.classes and len(train.classes) == cfg.num_classes
    assert not set(train.classes) & set(demo.TrainDataset.synthesize.classes or SHAPE_CLASSES)
    assert train.seed != val.seed and train.image_size != demo.TrainDataset.synthesize.image_size
    assert cfg.TrainDataset.dataset_dir != demo.TrainDataset.dataset_dir
    # Same number of training steps as the demo: same image count, batch size and epochs.
    assert (train.num_images, cfg.TrainReader.batch_size, cfg.epoch) == (
        demo.TrainDataset.synthesize.num_images, demo.TrainReader.batch_size, demo.epoch)
    # The data pipeline resizes to the model's own input size, so the model does not rescale.
    for reader in (cfg.TrainReader, cfg.EvalReader):
        resize = [op["Resize"] for op in reader.sample_transforms if "Resize" in op]
        assert [r["target_size"] for r in resize] == [train.image_size]
    assert model.transform.min_size == (train.image_size,)
    assert model.transform.max_size == train.image_size
