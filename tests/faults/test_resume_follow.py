"""Coming back to an interrupted run (issue 7.1, 7.4, 7.6, 7.7), with real processes.

A headless run is interrupted with a real SIGINT (what Ctrl-C sends), then resumed with
``dettui resume RUN --headless`` while ``dettui attach RUN`` follows the resumed attempt
from another "shell". Both must follow the run to its end and report ``finished`` (exit
0): the earlier attempt's ``interrupted`` status in events.jsonl is history, not the end.
The same real run then shows what people read about it: one line per record when the
console is a file, epochs counted from 1 everywhere, AP as a 0-1 fraction, and the final
progress and the total time over both attempts in run.json and ``dettui runs``.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.protocol.rundir import run_duration
from tests.conftest import DEMO_CONFIG
from tests.faults.procs import (
    as_opts,
    dettui_cmd,
    events,
    last_iter,
    overrides,
    start,
    wait_iter,
    wait_until,
)
from tui.runs.index import RunsIndex

EPOCHS, EPOCH_ITER = 2, 12


@dataclass
class Scenario:
    run: Path
    first_out: str
    first_code: int
    first_meta: dict
    interrupted_at: int
    resume_out: str
    resume_code: int
    attach_out: str
    attach_code: int


def _meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    tmp = tmp_path_factory.mktemp("resume_follow")
    runs, data = tmp / "runs", tmp / "data"
    opts = as_opts(overrides(data, epochs=EPOCHS, epoch_iter=EPOCH_ITER))
    first_out = tmp / "first.out"
    with open(first_out, "w") as out:  # a file, as with nohup: not a terminal
        first = start(dettui_cmd("run", str(DEMO_CONFIG), "--headless", "--runs-dir",
                                 str(runs), "--name", "t1", *opts), stdout=out,
                      stderr=subprocess.STDOUT)
        run = wait_until(lambda: next(runs.glob("*-t1"), None) if runs.is_dir() else None,
                         timeout=60, what="the run folder", proc=first)
        wait_iter(run, 2, first)
        first.send_signal(signal.SIGINT)  # Ctrl-C in the terminal of `dettui run`
        first_code = first.wait(timeout=120)
    interrupted_at = last_iter(run)
    first_meta = _meta(run)

    resume_out, attach_out = tmp / "resume.out", tmp / "attach.out"
    with open(resume_out, "w") as rout, open(attach_out, "w") as aout:
        resumed = start(dettui_cmd("resume", run.name, "--headless", "--runs-dir", str(runs)),
                        stdout=rout, stderr=subprocess.STDOUT)
        # the resume is launched (run.json counts the new attempt): follow it from elsewhere
        wait_until(lambda: _meta(run).get("attempt") == 2, timeout=60,
                   what="the resumed attempt", proc=resumed)
        attach = start(dettui_cmd("attach", run.name, "--runs-dir", str(runs)), stdout=aout,
                       stderr=subprocess.STDOUT)
        resume_code = resumed.wait(timeout=300)
        attach_code = attach.wait(timeout=60)
    return Scenario(run, first_out.read_text(), first_code, first_meta, interrupted_at,
                    resume_out.read_text(), resume_code, attach_out.read_text(), attach_code)


def _summary(output: str) -> dict[str, str]:
    tail = output.rsplit("summary", 1)[-1]
    return {k.strip(): v.strip() for k, v in re.findall(r"^([A-Za-z ]+):\s+(.*)$", tail, re.M)}


def test_the_first_attempt_was_really_interrupted(scenario: Scenario) -> None:
    assert scenario.first_code == 130, scenario.first_out
    assert scenario.first_meta["status"] == "interrupted"
    assert 2 <= scenario.interrupted_at < EPOCHS * EPOCH_ITER


def test_headless_resume_follows_the_run_to_the_end(scenario: Scenario) -> None:
    assert scenario.resume_code == 0, scenario.resume_out
    summary = _summary(scenario.resume_out)
    assert summary["status"] == "finished", scenario.resume_out
    assert "resume with" not in summary
    # it followed the resumed attempt to its last step
    assert f"iter {EPOCHS * EPOCH_ITER}/{EPOCHS * EPOCH_ITER}" in scenario.resume_out
    assert _meta(scenario.run)["status"] == "finished"


def test_attach_follows_a_resumed_run_to_the_end(scenario: Scenario) -> None:
    assert scenario.attach_code == 0, scenario.attach_out
    assert _summary(scenario.attach_out)["status"] == "finished", scenario.attach_out
    assert f"iter {EPOCHS * EPOCH_ITER}/{EPOCHS * EPOCH_ITER}" in scenario.attach_out


def test_console_redirected_to_a_file_writes_one_line_per_record(scenario: Scenario) -> None:
    for output in (scenario.first_out, scenario.resume_out):
        assert "\x1b[" not in output  # no colour or cursor codes in a file
        train_lines = [ln for ln in output.splitlines() if re.match(r"epoch \d+ iter ", ln)]
        assert train_lines
        for line in train_lines:  # each train record whole on its line (grep-able)
            assert len(line) > 80 and "img/s" in line and " eta " in line, line
        # no record was wrapped: every line is a known kind of line
        for line in output.splitlines():
            assert not re.match(r"^\s*(img/s|eta|lr|bbox|\d+\.\d+ img)", line), line


def test_epochs_count_from_1_everywhere_people_look(scenario: Scenario) -> None:
    run = scenario.run
    log = (run / "train.log").read_text()
    assert "Epoch: [1/2]" in log and "Epoch: [2/2]" in log
    assert "Epoch: [0" not in log
    meta = _meta(run)
    best = meta["best"]
    evals = events(run, "eval")
    best_eval = max(evals, key=lambda e: e["metrics"]["AP"])
    assert [e["epoch"] for e in evals] == [0, 1]  # events keep the loop's 0-based index
    assert best["epoch"] == best_eval["epoch"] + 1  # run.json: 1-based
    # The log names the evaluated weights when they are not the raw model (the demo: "ema").
    label = "" if best.get("model", "model") == "model" else f"{best['model']}, "
    assert f"best AP so far: {best['value']:.3f} ({label}epoch {best['epoch']})" in log
    assert f"training finished: best AP {best['value']:.3f} at epoch {best['epoch']}" in log
    assert f"Eval epoch {EPOCHS} " in log and "Eval epoch 0 " not in log
    summary = _summary(scenario.resume_out)
    assert summary["best AP"] == f"{best['value']:.3f} ({label}epoch {best['epoch']})"
    assert f"COCO bbox eval, epoch {EPOCHS} " in scenario.resume_out
    # the console names the folder of the prediction previews after each eval
    assert f"previews (epoch {EPOCHS}, {best.get('model', 'model')}): 4 images in {run / 'previews'}" \
        in scenario.resume_out.replace("\n", "")


def test_ap_is_a_three_decimal_fraction_in_the_console(scenario: Scenario) -> None:
    table = scenario.resume_out.rsplit("per-class AP", 1)[1].split("summary", 1)[0]
    rows = [ln for ln in table.splitlines() if "│" in ln]
    values = [ln.split("│")[1].strip() for ln in rows]
    assert values and all(re.fullmatch(r"[01]\.\d{3}", v) for v in values), table


def test_a_resumed_finished_run_shows_its_final_progress_and_total_time(
        scenario: Scenario) -> None:
    meta = _meta(scenario.run)
    total = EPOCHS * EPOCH_ITER
    assert meta["progress"]["iter"] == total and meta["progress"]["epoch"] == EPOCHS
    assert meta["attempt"] == 2
    first = scenario.first_meta["duration_s"]
    assert first > 0 and meta["duration_s"] > first  # both attempts count
    # the TUI runs table
    row = next(r for r in RunsIndex(scenario.run.parent).scan().rows if r.id == meta["id"])
    assert row.shown_epoch == EPOCHS and row.fraction == 1.0
    assert row.duration(0.0) == pytest.approx(meta["duration_s"])
    # `dettui runs`, piped: every column on one line per run
    listed = subprocess.run(dettui_cmd("runs", "--runs-dir", str(scenario.run.parent)),
                            capture_output=True, text=True, timeout=60)
    line = next(ln for ln in listed.stdout.splitlines() if scenario.run.name in ln)
    secs = int(run_duration(meta))
    assert f"{EPOCHS}/{EPOCHS}" in line
    assert f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}" in line
    # the summary's wall time is the run's, over both attempts
    assert _summary(scenario.attach_out)["wall time"].endswith("(2 attempts)")
