"""``benchmarks/gpu_check.py`` on a machine without a GPU (issue 23): it runs, and every step
of its table says that it needs one; a step that fails or overruns its own limit is a row
of the table, and the next steps still run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_every_step_says_it_needs_one(tmp_path: Path) -> None:
    # CUDA_VISIBLE_DEVICES=-1 hides a GPU machine's GPUs too: this test never runs the check.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(SCRIPT), "--json", str(tmp_path / "r.json")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    steps = [name for name, *_ in load_gpu_check().STEPS]
    assert steps == ["nvml", "demo_cuda", "demo_amp", "stats_move", "nproc2_one_gpu",
                     "nccl_1proc", "r50_busy", "tui_gpu_panel", "bare_loop", "peak_memory"]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + len(steps)  # the header, then one row per step, in order
    for name, row in zip(steps, rows[1:]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == name and cells[2] == "skipped", row
        assert cells[3].startswith("needs a GPU: "), row
    report = json.loads((tmp_path / "r.json").read_text())
    assert [s["step"] for s in report["steps"]] == steps
    assert all(s["status"] == "skipped" for s in report["steps"]) and report["no_gpu"]
    # The budget: under 8 minutes on one GPU, each step within its own limit.
    assert sum(s["limit_s"] for s in report["steps"]) <= 480


def test_a_failing_or_overrunning_step_is_a_row_and_the_next_ones_run(
        tmp_path: Path) -> None:
    gpu_check = load_gpu_check()
    check = gpu_check.Check(work=tmp_path, env=dict(os.environ))

    def crash(c, r):
        raise RuntimeError("CUDA error: out of memory")

    def hang(c, r):
        time.sleep(30)

    def fine(c, r):
        r.result = "done"

    results = []
    for name, fn, limit in (("a", crash, 5), ("b", hang, 1), ("c", fine, 5)):
        res = gpu_check.Result(name, name, limit)
        gpu_check.run_step(check, res, fn, no_gpu=None)
        results.append(res)
    assert [r.status for r in results] == ["FAIL", "TIMEOUT", "ok"]
    assert results[0].result == "RuntimeError: CUDA error: out of memory"
    assert results[1].result == "over its 1 s limit" and results[1].seconds < 5
    assert "| c    | c    | ok      | done" in gpu_check.table(results)


def test_the_r50_step_config_is_valid(tmp_path: Path) -> None:
    """What the GPU machine will train (a ResNet-50 FCOS at 640 px) passes the config
    checks here, so the first GPU run does not stop at a typo."""
    from engine.config import load_and_validate

    gpu_check = load_gpu_check()
    _, cfg = load_and_validate(gpu_check.DEMO, gpu_check.r50_overrides(tmp_path))
    assert cfg.backbone.name == "resnet50" and cfg.model.min_size == 640
    assert cfg.TrainReader.batch_size == gpu_check.R50_BATCH
