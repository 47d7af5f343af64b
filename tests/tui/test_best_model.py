"""Where the best AP is shown, a semi-supervised run's says which model scored it (the
teacher, the student), as run.json's ``best.model`` records; a supervised run's does not
(its ``model`` is the trained model itself)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from engine.protocol.rundir import RunDirectory
from tests.conftest import PYTHON, REPO, engine_env
from tests.tui.conftest import make_run, plain
from tui.runs.index import RunRow
from tui.screens.compare import _best_ap
from tui.widgets.runs_table import fmt_ap


def _with_best(run: RunDirectory, model: str) -> dict:
    meta = run.read_meta()
    meta["best"] = {"metric": "AP", "value": 0.312, "epoch": 2, "checkpoint": "best.pt",
                    "model": model}
    run.write_meta(meta)
    return meta


def test_runs_table_compare_and_dettui_runs_name_the_best_model(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    semi = make_run(runs, "20250101-100000-semi", trainer="DenseTeacher")
    plain_run = make_run(runs, "20250101-110000-plain", offset=3600)
    semi_meta, plain_meta = _with_best(semi, "teacher"), _with_best(plain_run, "model")
    rows = {m["id"]: RunRow.from_meta(Path(m["id"]), m, "finished")
            for m in (semi_meta, plain_meta)}
    assert plain(fmt_ap(rows[semi.id])).strip() == "0.312 teacher"
    assert plain(fmt_ap(rows[plain_run.id])).strip() == "0.312"
    assert (_best_ap(semi_meta), _best_ap(plain_meta)) == ("0.312 (teacher)", "0.312")
    out = subprocess.run([PYTHON, "-m", "tui.cli", "runs", "--runs-dir", str(runs)],
                         cwd=REPO, env=engine_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "0.312 teacher" in lines[semi.id]
    assert "0.312" in lines[plain_run.id] and "model" not in lines[plain_run.id]
