"""The commands people use to come back to their runs (issue 7.3, 7.5, 7.11, 7.12, 7.13):
``dettui runs`` never cuts a run id, ``attach`` reports the run's own duration, ``logs
--stderr`` says when there is nothing, and a CUDA device this machine lacks or a runs folder
the OS refuses is one clear message (exit 2, no traceback, no run folder left behind).

Real CLI processes on run folders in the real format (``tests.tui.conftest.make_run``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_cli_errors import assert_user_error
from tests.conftest import DEMO_CONFIG, REPO, engine_env
from tests.tui.conftest import make_run
from tui.process.spec import check_device

LONG_IDS = ["20261127-194059-fcos_tiny_shapes", "20261127-184059-retinanet_tiny_shapes",
            "20261127-174059-faster_rcnn_tiny_shapes-2"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def dettui(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=cwd,
                          env=env or engine_env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def long_runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    make_run(runs, LONG_IDS[0], best=0.81349, config_path="configs/demo/fcos_tiny_shapes.yml")
    make_run(runs, LONG_IDS[1], offset=60, config_path="configs/demo/retinanet_tiny_shapes.yml")
    make_run(runs, LONG_IDS[2], offset=120, status="interrupted", trainer="DenseTeacher",
             config_path="configs/demo/faster_rcnn_tiny_shapes.yml")
    return runs


# ------------------------------------------------------------------ 7.3: runs keeps ids whole
def test_runs_on_an_80_column_terminal_keeps_every_id_whole(long_runs: Path) -> None:
    env = {**engine_env(), "TTY_COMPATIBLE": "1", "COLUMNS": "80", "LINES": "24"}
    proc = dettui("runs", "--runs-dir", str(long_runs), env=env)
    assert proc.returncode == 0, proc.stderr
    lines = ANSI.sub("", proc.stdout).splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    for run_id in LONG_IDS:  # whole, on one line, so it can be copied into resume/attach
        assert any(run_id in line for line in lines), (run_id, lines)
    assert "hidden at this width" in proc.stdout  # what was left out to keep them whole
    assert "0.813" in proc.stdout and "0.8135" not in proc.stdout  # AP: 3 decimals


def test_runs_piped_prints_every_column_on_one_line_per_run(long_runs: Path) -> None:
    env = {**engine_env(), "COLUMNS": "80"}  # a pipe: what `dettui runs | grep` gets
    proc = dettui("runs", "--runs-dir", str(long_runs), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("2026")]
    assert len(rows) == 3
    for run_id, row in zip(reversed(LONG_IDS), rows):
        assert row.startswith(run_id + " ")
        assert "Trainer" in row or "DenseTeacher" in row
        assert "tiny_shapes.yml" in row and "2025-01-01" in row  # config, created
        assert "2/2" in row and "0:10:00" in row  # epoch, duration


# ---------------------------------------------------------- 7.13: attach, logs --stderr
def test_attach_on_a_finished_run_reports_its_own_duration(long_runs: Path) -> None:
    proc = dettui("attach", LONG_IDS[0], "--runs-dir", str(long_runs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^wall time:\s+0:10:00$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^best AP:\s+0\.813 \(epoch 2\)$", proc.stdout, re.M), proc.stdout


def test_logs_stderr_says_when_the_file_is_empty(long_runs: Path) -> None:
    proc = dettui("logs", LONG_IDS[0], "--stderr", "--runs-dir", str(long_runs))
    assert proc.returncode == 0
    assert proc.stdout == ""  # a pipe gets nothing...
    assert "stderr.log is empty" in proc.stderr  # ...the person is told why


# -------------------------------------------------------- 7.11: the device, before launch
def test_a_cuda_device_this_machine_lacks_is_refused_before_launch(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    env = {**engine_env(), "CUDA_VISIBLE_DEVICES": ""}  # no usable GPU, on any machine
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--device", "cuda", "--runs-dir",
                  str(runs), env=env, timeout=60)
    assert_user_error(proc, "key 'device'", "'cuda'", "no usable NVIDIA GPU", "--device cpu")
    assert not runs.exists()  # no run folder, failed or otherwise


def test_resuming_a_cuda_run_on_a_machine_without_gpu_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    run = make_run(runs, "20250101-100000-gpu", status="interrupted",
                   extra_config={"device": "cuda"})
    env = {**engine_env(), "CUDA_VISIBLE_DEVICES": ""}
    proc = dettui("resume", run.id, "--runs-dir", str(runs), env=env, timeout=60)
    assert_user_error(proc, "key 'device'", "no usable NVIDIA GPU")
    assert run.read_meta()["attempt"] == 1 and run.read_meta()["status"] == "interrupted"


def test_device_check_counts_the_gpus_it_is_told_about() -> None:
    # NVML's count is injected here: this machine's real count is tested above.
    from engine.protocol.errors import ConfigError

    check_device("cpu", count=lambda: 0)
    check_device("auto", count=lambda: 0)
    check_device("cuda:1", count=lambda: 2)
    check_device("cuda", 2, count=lambda: 2)
    check_device("cuda", count=lambda: None)  # can't tell: the engine decides
    for device, nproc, found, needle in (("cuda:2", 1, 2, "numbered 0..1"),
                                         ("cuda", 4, 2, "this machine has 2"),
                                         ("cuda:0", 2, 2, "names one GPU"),
                                         ("cuda:0", 1, 0, "no usable NVIDIA GPU")):
        with pytest.raises(ConfigError, match=re.escape(needle)):
            check_device(device, nproc, count=lambda found=found: found)


# --------------------------------------------------- 7.12: OS errors at the runs folder
def test_a_file_in_the_way_of_the_runs_folder_is_one_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "X"
    blocker.write_text("not a folder")
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(blocker),
                  timeout=60)
    assert_user_error(proc, "cannot use the runs folder", str(blocker), "--runs-dir")
    assert blocker.read_text() == "not a folder"


def test_a_runs_folder_name_too_long_is_one_clear_message(tmp_path: Path) -> None:
    runs = tmp_path / ("r" * 300)
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(runs),
                  timeout=60)
    assert_user_error(proc, "cannot use the runs folder", "File name too long", "r" * 300)


def test_resume_into_a_run_folder_the_os_refuses_is_one_clear_message(
        long_runs: Path) -> None:
    run = long_runs / LONG_IDS[2]
    (run / "stderr.log").unlink()
    (run / "stderr.log").mkdir()  # a folder where the engine's log file must go
    proc = dettui("resume", LONG_IDS[2], "--runs-dir", str(long_runs), timeout=60)
    assert_user_error(proc, "cannot write the run folder", "stderr.log")


def test_an_unreadable_run_json_is_one_clear_message(long_runs: Path) -> None:
    run = long_runs / LONG_IDS[2]
    (run / "run.json").unlink()
    (run / "run.json").mkdir()
    proc = dettui("resume", str(run), "--runs-dir", str(long_runs), timeout=60)
    assert_user_error(proc, str(run / "run.json"), "cannot be read")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_runs_folder_without_write_permission_is_one_clear_message(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o500)
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(runs), timeout=60)
    assert_user_error(proc, "Permission denied", str(runs))
