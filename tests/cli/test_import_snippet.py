"""Issue 19.1 and 19.15: the config snippet ``dettui data import`` prints runs as printed
(no ``image_dir``: the json names every image by absolute path), through the launcher's
check, ``dettui data check`` and a real headless run; an import without ``--split`` says
it took the train split only, and a ``val`` split's snippet is an ``EvalDataset``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO, engine_env
from tests.dataset_files import make_yolo, tiny_config


def dettui(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *map(str, args)], cwd=REPO,
                          env=engine_env(), capture_output=True, text=True, timeout=timeout)


def printed_snippet(stdout: str) -> dict:
    """The YAML the import printed after 'use it in a config:'."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("use it in a config:"))
    return yaml.safe_load("\n".join(line[2:] for line in lines[start + 1:]))


def test_import_without_split_says_train_only_and_val_snippet_is_eval(tmp_path: Path) -> None:
    root = make_yolo(tmp_path / "yolo", n=4)
    train = dettui("data", "import", "yolo", root / "data.yaml", tmp_path / "out" / "t.json")
    assert train.returncode == 0, train.stderr
    assert "imported the train split only; this dataset also has val: import --split val" \
        in train.stdout
    assert "TrainDataset" in printed_snippet(train.stdout)
    val = dettui("data", "import", "yolo", root, tmp_path / "out" / "v.json", "--split", "val")
    assert val.returncode == 0, val.stderr
    assert "split only" not in val.stdout  # it was asked for
    snippet = printed_snippet(val.stdout)
    assert set(snippet) == {"num_classes", "EvalDataset"}, snippet
    assert snippet["EvalDataset"]["anno_path"] == "v.json"


def test_printed_snippet_runs_as_printed(tmp_path: Path, monkeypatch) -> None:
    root = make_yolo(tmp_path / "yolo", n=4)
    out = tmp_path / "out"
    sections = {}
    for split, section in (("train", "TrainDataset"), ("val", "EvalDataset")):
        proc = dettui("data", "import", "yolo", root / "data.yaml", out / f"{split}.json",
                      "--split", split)
        assert proc.returncode == 0, proc.stderr
        sections[section] = printed_snippet(proc.stdout)[section]
    assert "image_dir" not in sections["TrainDataset"]
    assert not (out / "images").exists()  # the folder a default image_dir would name
    config = tiny_config(tmp_path / "cfg.yml", sections["TrainDataset"],
                         sections["EvalDataset"])

    # the launcher's front-end check (CLI and launch form) ...
    from tui.process.spec import LaunchSpec, validate_spec

    monkeypatch.chdir(tmp_path)
    validate_spec(LaunchSpec(config=config, runs_dir=tmp_path / "runs"))
    # ... `dettui data check` ...
    check = dettui("data", "check", config)
    assert check.returncode == 0, check.stdout + check.stderr
    # ... and the engine, through the command the README gives
    run = dettui("run", config, "--headless", "--no-eval", "--runs-dir", tmp_path / "runs",
                 timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "finished" in run.stdout
