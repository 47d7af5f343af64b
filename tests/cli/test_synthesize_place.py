"""Issue 19.7: ``synthesize`` creates a missing dataset folder only inside the working
directory or the runs folder, unless the user says so (the folder exists, or
``DETTUI_SYNTHESIZE_ANYWHERE=1``): a mistyped ``dataset_dir`` is refused (exit 2, naming
the key, where and how to allow it) instead of silently generating 2,000 images there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.data.sources import SYNTHESIZE_ANYWHERE_ENV
from engine.protocol.errors import DataError
from tests.conftest import DEMO_CONFIG, engine_env
from tui.process.spec import LaunchSpec, generation_notes, validate_spec


def spec(runs: Path, data: str | Path) -> LaunchSpec:
    return LaunchSpec(config=DEMO_CONFIG, runs_dir=runs,
                      overrides=[f"TrainDataset.dataset_dir={data}",
                                 f"EvalDataset.dataset_dir={data}"])


def test_generating_outside_the_working_tree_is_refused_unless_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SYNTHESIZE_ANYWHERE_ENV, raising=False)
    work, runs, elsewhere = tmp_path / "work", tmp_path / "runs", tmp_path / "else" / "data"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(DataError) as info:
        validate_spec(spec(runs, elsewhere))
    text = info.value.render()
    assert info.value.key == "TrainDataset.dataset_dir"
    assert f"in {elsewhere}, a folder that does not exist, outside the working directory " \
           f"({work}) and the runs folder ({runs})" in text
    assert f"mkdir -p {elsewhere}" in text and f"{SYNTHESIZE_ANYWHERE_ENV}=1" in text
    assert not elsewhere.parent.exists()

    # inside the working directory, inside the runs folder: generated, and said where
    cfg = validate_spec(spec(runs, "dataset/shapes"))
    assert generation_notes(cfg, runs)[0] == (
        f"TrainDataset: generating the shapes dataset (2000 images) in {work}/dataset/shapes")
    validate_spec(spec(runs, runs / "data"))
    # the user says so: the folder exists, or the environment variable
    elsewhere.mkdir(parents=True)
    validate_spec(spec(runs, elsewhere))
    monkeypatch.setenv(SYNTHESIZE_ANYWHERE_ENV, "1")
    assert generation_notes(validate_spec(spec(runs, tmp_path / "other")), runs)


def test_cli_refuses_before_anything_starts(tmp_path: Path) -> None:
    env = engine_env()
    env.pop(SYNTHESIZE_ANYWHERE_ENV, None)
    (tmp_path / "work").mkdir()
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "run", str(DEMO_CONFIG),
                           "--headless", "-o", "TrainDataset.dataset_dir=/nonexistent/data"],
                          cwd=tmp_path / "work", env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "key 'TrainDataset.dataset_dir': synthesize would create the shapes dataset in " \
           "/nonexistent/data" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr
    assert not Path("/nonexistent").exists()
    assert list((tmp_path / "work").iterdir()) == []  # no run folder, no dataset
