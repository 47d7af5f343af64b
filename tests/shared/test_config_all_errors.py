"""Issue 19.8: every error of a config is reported at once, in file order (a file with
three mistakes needed three runs, and the later line came first), through the CLI too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import load_and_validate
from engine.protocol.errors import ConfigError, ConfigErrors
from tests.conftest import DEMO_CONFIG, REPO, engine_env

# Line numbers matter: a type error, a semantic error and an unknown key in a section,
# where the schema checks the semantic one (architecture) before the others.
BAD = f"""_BASE_: [{DEMO_CONFIG}]
architecture: FCSO
epoch: ten
TrainReader:
  batch_szie: 4
LearningRate:
  base_lr: -1
"""


def test_every_error_at_once_in_file_order(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text(BAD)
    with pytest.raises(ConfigErrors) as info:
        load_and_validate(cfg, ["snapshot_epoch=0"])
    errors = info.value.errors
    assert [(e.line, e.key) for e in errors] == [
        (2, "architecture"), (3, "epoch"), (5, "TrainReader.batch_szie"),
        (7, "LearningRate.base_lr"), (None, "snapshot_epoch")]
    assert errors[-1].file == "-o snapshot_epoch=0"
    text = info.value.render()
    assert text.startswith("5 errors in the config:\n")
    assert text.index("FCSO") < text.index("'ten'") < text.index("batch_szie") \
        < text.index("base_lr") < text.index("snapshot_epoch")
    assert "did you mean 'batch_size'?" in text  # each error keeps its hint


def test_one_error_is_reported_as_before(tmp_path: Path) -> None:
    cfg = tmp_path / "one.yml"
    cfg.write_text(f"_BASE_: [{DEMO_CONFIG}]\nepoch: 0\n")
    with pytest.raises(ConfigError) as info:
        load_and_validate(cfg)
    assert not isinstance(info.value, ConfigErrors)
    assert info.value.render() == f"{cfg}:2: key 'epoch': must be >= 1, got 0"


def test_bad_list_items_do_not_stop_the_other_checks(tmp_path: Path) -> None:
    cfg = tmp_path / "items.yml"
    cfg.write_text(f"_BASE_: [{DEMO_CONFIG}]\nTrainReader:\n  sample_transforms:\n"
                   "    - 5\n    - Rezise: {}\n    - RandomFlip: 3\nrtdetr:\n"
                   "  feature_stages: []\n  encoder_heads: 0\n")
    with pytest.raises(ConfigErrors) as info:
        load_and_validate(cfg)
    keys = [e.key for e in info.value.errors]
    assert keys == ["TrainReader.sample_transforms[0]", "TrainReader.sample_transforms[1]",
                    "TrainReader.sample_transforms[2]", "rtdetr.feature_stages",
                    "rtdetr.encoder_heads"], keys


def test_cli_prints_every_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yml"
    cfg.write_text(BAD)
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "data", "check", str(cfg)],
                          cwd=REPO, env=engine_env(), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "4 errors in the config:" in proc.stderr
    for line in (2, 3, 5, 7):
        assert f"{cfg}:{line}: key" in proc.stderr, proc.stderr
