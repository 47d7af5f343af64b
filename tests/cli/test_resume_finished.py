"""Issue 19.5: ``dettui resume`` of a finished run says it is finished, exits 0 and starts
nothing (no engine, no extra attempt, no new events); with ``-o epoch=N`` it trains the
extra epochs. The rule lives in ``engine.resumable`` (torch-free), for the TUI's ``r`` too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.protocol.errors import ConfigError
from engine.protocol.rundir import RunDirectory
from engine.resumable import training_left
from tests.conftest import DEMO_CONFIG
from tests.faults.procs import as_opts, dettui_cmd, events, overrides, proc_env


def dettui(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(dettui_cmd(*args), env=proc_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_resume_of_a_finished_run_starts_nothing_unless_it_is_made_longer(tmp_path: Path
                                                                          ) -> None:
    runs = tmp_path / "runs"
    first = dettui("run", str(DEMO_CONFIG), "--headless", "--no-eval", "--runs-dir", str(runs),
                   "--name", "done", "--amp", *as_opts(overrides(tmp_path / "data", epochs=1,
                                                         epoch_iter=2)))
    assert first.returncode == 0, first.stdout + first.stderr
    # issue 19.7: the console says where it generates the dataset, before it does
    data = (tmp_path / "data").resolve()
    assert f"TrainDataset: generating the shapes dataset (16 images) in {data}" in first.stdout
    assert f"EvalDataset: generating the shapes dataset (8 images) in {data}" in first.stdout
    (run_path,) = runs.iterdir()
    run = RunDirectory(run_path)
    # issue 19.11: --amp on a CPU is said in the console and train.log, not skipped
    ignored = "amp (--amp) is ignored: mixed precision needs a CUDA device, and this run " \
              "trains on cpu, in full precision (float32)"
    assert ignored in first.stdout and ignored in run.train_log.read_text()
    before = (run.events.read_bytes(), run.read_meta()["attempt"])

    left = training_left(run)
    assert left.nothing_left and (left.done_iters, left.max_iters) == (2, 2)
    again = dettui("resume", run.id, "--headless", "--runs-dir", str(runs))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"run {run.id} is finished: 2 of 2 steps done (1 epoch)" in again.stdout
    assert f"dettui resume {run.id} -o epoch=N (N > 1)" in again.stdout
    assert (run.events.read_bytes(), run.read_meta()["attempt"]) == before  # nothing ran
    assert run.read_meta()["status"] == "finished"

    assert training_left(run, ["epoch=1"]).nothing_left  # not longer: still nothing
    assert not training_left(run, ["epoch=2"]).nothing_left
    with pytest.raises(ConfigError):
        training_left(run, ["epoch=[1"])
    longer = dettui("resume", run.id, "--headless", "-o", "epoch=2", "--runs-dir", str(runs))
    assert longer.returncode == 0, longer.stdout + longer.stderr
    meta = run.read_meta()
    assert meta["status"] == "finished" and meta["attempt"] == 2, meta
    assert meta["progress"]["iter"] == 4 and meta["progress"]["epochs"] == 2, meta
    trained = [e["iter"] for e in events(run.path, "train")]
    assert trained[-2:] == [3, 4]  # the extra epoch, after the first one's two steps
    assert json.loads(json.dumps(events(run.path, "start")[-1]))["start_iter"] == 2
    assert training_left(run).nothing_left  # finished again, at its new length
