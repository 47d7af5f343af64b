"""``dettui eval`` and ``dettui infer`` on weights from a real (tiny) training run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from engine.main import main as engine_main
from tests.conftest import DEMO_CONFIG, REPO, engine_env, tiny_overrides


def test_eval_and_infer_with_trained_weights(tmp_path: Path) -> None:
    data = tmp_path / "data"
    overrides = tiny_overrides(data, epochs=1, epoch_iter=2)
    argv = ["train", str(DEMO_CONFIG), "--runs-dir", str(tmp_path / "runs"), "--no-eval"]
    for o in overrides:
        argv += ["-o", o]
    assert engine_main(argv) == 0
    (run,) = (tmp_path / "runs").iterdir()
    weights = run / "checkpoints" / "last.pt"
    opts = [x for o in overrides for x in ("-o", o)]

    metrics = tmp_path / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "eval", str(DEMO_CONFIG),
                           "--weights", str(weights), "--json", str(metrics), *opts],
                          cwd=REPO, env=engine_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in proc.stdout
    result = json.loads(metrics.read_text())
    assert set(result["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert len(result["stats"]) == 12

    image = next((data / "val").glob("*.png"))
    out = tmp_path / "drawn"
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "infer", str(DEMO_CONFIG), str(image),
                           "--weights", str(weights), "--out", str(out), "--score-thresh", "0",
                           *opts], cwd=REPO, env=engine_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    drawn = out / image.name
    before = np.asarray(Image.open(image).convert("RGB"))
    after = np.asarray(Image.open(drawn).convert("RGB"))
    assert before.shape == after.shape and (before != after).any()  # boxes were drawn


def test_infer_rejects_missing_and_non_image_files(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"PK\x03\x04")
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "infer", str(DEMO_CONFIG),
                           str(tmp_path / "nope.png"), "--weights", str(weights), "--out",
                           str(tmp_path / "o")], cwd=REPO, env=engine_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "image not found" in proc.stderr
    assert "Traceback" not in proc.stderr
