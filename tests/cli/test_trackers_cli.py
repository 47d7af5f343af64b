"""``dettui run --tensorboard [DIR] --wandb`` and ``dettui export`` (issue 11, item 4).

One real tiny training run through the real CLI, logging live to TensorBoard and to an
offline W&B run (``WANDB_MODE=offline``: no network); the files both wrote are read back
with their own formats and compared with the run's ``events.jsonl``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from engine.protocol.events import read_events
from engine.protocol.rundir import RunDirectory
from engine.trackers import history
from tests.cli.test_cli_errors import assert_user_error
from tests.conftest import DEMO_CONFIG, REPO, engine_env, tiny_overrides
from tests.faults.procs import SMALL, as_opts
from tui.cli import app
from tui.process.launcher import train_argv
from tui.process.spec import LaunchSpec

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
pytest.importorskip("wandb", reason="the wandb extra is not installed")
from tests.tracker_files import tensorboard_scalars, wandb_offline_run  # noqa: E402


def _env(home: Path) -> dict[str, str]:
    env = engine_env()
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONFIG_DIR=str(home / "cfg"),
               WANDB_CACHE_DIR=str(home / "cache"), WANDB_DATA_DIR=str(home / "data"))
    return env


def dettui(*args: str, env: dict[str, str], timeout: float = 600
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunDirectory, dict]:
    """A 2-epoch x 2-step run with eval, logged live to TensorBoard and W&B (offline)."""
    tmp = tmp_path_factory.mktemp("tracked")
    env = _env(tmp)
    opts = as_opts([*tiny_overrides(tmp / "data", epochs=2, epoch_iter=2), *SMALL])
    proc = dettui("run", str(DEMO_CONFIG), "--headless", *opts, "--runs-dir",
                  str(tmp / "runs"), "--name", "tracked", "--tensorboard", "--wandb", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = (tmp / "runs").iterdir()
    return RunDirectory(path), env


def _expected(run: RunDirectory) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for step, _, values in history(read_events(run.events)):
        for tag, value in values.items():
            out.setdefault(tag, {})[step] = value
    return out


def _assert_same(shown: dict[str, dict[int, float]], expected: dict[str, dict[int, float]]
                 ) -> None:
    assert shown.keys() == expected.keys()
    for tag, points in expected.items():
        assert shown[tag] == pytest.approx(points, rel=1e-6, abs=1e-9), tag


def test_live_tensorboard_holds_every_curve_of_the_events(tracked_run) -> None:
    run, _ = tracked_run
    meta = run.read_meta()
    assert meta["trackers"] == {"tensorboard": str((run.path / "tensorboard").resolve()),
                                "wandb": True}
    shown = tensorboard_scalars(run.path / "tensorboard")
    expected = _expected(run)
    _assert_same(shown, expected)
    train = [e for e in read_events(run.events) if e["type"] == "train"]
    evals = [e for e in read_events(run.events) if e["type"] == "eval"]
    assert len(evals) == 2
    terms = {f"loss/{term}" for term in train[-1]["losses"]}
    # the demo evaluates its EMA weights: a named model's metrics sit under eval/<model>/
    model = evals[-1]["model"]
    prefix = "eval" if model == "model" else f"eval/{model}"
    classes = {f"{prefix}/per_class/{name}" for name in evals[-1]["per_class"]}
    assert {"loss/total", "train/lr", f"{prefix}/AP", f"{prefix}/AP50", *terms,
            *classes} <= shown.keys()
    assert len(terms) >= 2 and len(classes) == 4
    assert shown[f"{prefix}/AP"][evals[-1]["iter"]] == pytest.approx(
        evals[-1]["metrics"]["AP"])


def test_wandb_offline_run_holds_the_same_history(tracked_run) -> None:
    run, _ = tracked_run
    (run_file,) = (run.path / "wandb").glob("offline-run-*/run-*.wandb")
    logged, summary = wandb_offline_run(run_file)
    expected = _expected(run)
    by_step: dict[int, dict[str, float]] = {}
    for tag, points in expected.items():
        for step, value in points.items():
            by_step.setdefault(step, {})[tag] = value
    assert logged.keys() == by_step.keys()
    for step, values in by_step.items():
        assert logged[step] == pytest.approx(values, rel=1e-6), step
    last_eval = [e for e in read_events(run.events) if e["type"] == "eval"][-1]
    model = last_eval["model"]
    prefix = "eval" if model == "model" else f"eval/{model}"
    assert summary[f"{prefix}/AP"] == pytest.approx(last_eval["metrics"]["AP"])


def test_export_writes_the_same_curves_from_events(tracked_run, tmp_path: Path) -> None:
    run, env = tracked_run
    before = set((run.path / "wandb").glob("offline-run-*"))
    proc = dettui("export", run.id, "--runs-dir", str(run.path.parent), "--tensorboard",
                  str(tmp_path / "tb"), "--wandb", env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"TensorBoard scalars in {tmp_path / 'tb'}" in proc.stdout
    expected = _expected(run)
    _assert_same(tensorboard_scalars(tmp_path / "tb"), expected)
    (exported,) = set((run.path / "wandb").glob("offline-run-*")) - before
    assert f"a W&B run in {exported}" in proc.stdout
    logged, _ = wandb_offline_run(next(exported.glob("run-*.wandb")))
    assert {tag for row in logged.values() for tag in row} == expected.keys()


BLOCKED = ("import sys; sys.modules[{name!r}] = None; sys.argv[0] = 'dettui'; "
           "from tui.cli import app; app()")


@pytest.mark.parametrize("name", ["tensorboard", "wandb"])
def test_without_the_package_the_flag_fails_before_launch(tmp_path: Path, name: str) -> None:
    """``sys.modules[name] = None`` is Python's own way to make an import fail: here, as
    if the extra were not installed."""
    env = _env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", BLOCKED.format(name=name), "run",
                           str(DEMO_CONFIG), "--headless", f"--{name}", "--runs-dir",
                           str(tmp_path / "runs")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert_user_error(proc, f"key '--{name}': needs the {name} package",
                      f"pip install 'dettui[{name}]'")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    run = RunDirectory.create(tmp_path / "past", run_id="past")
    run.write_meta({"schema": 1, "id": "past", "status": "finished"})
    proc = subprocess.run([sys.executable, "-c", BLOCKED.format(name=name), "export", "past",
                           "--runs-dir", str(tmp_path / "past"), f"--{name}",
                           *(["tb"] if name == "tensorboard" else [])], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert_user_error(proc, f"pip install 'dettui[{name}]'")
    assert run.path.is_dir()


def test_tensorboard_takes_an_optional_folder_and_resume_keeps_it(tmp_path: Path) -> None:
    command = typer.main.get_command(app).commands["run"]
    for args, expected in ((["c.yml", "--tensorboard"], ""),
                           (["c.yml", "--tensorboard", "--headless"], ""),
                           (["c.yml", "--tensorboard", "tb"], "tb"),
                           (["c.yml", "--tensorboard=tb", "--wandb"], "tb"),
                           (["c.yml"], None)):
        ctx = command.make_context("run", list(args))
        assert ctx.params["tensorboard"] == expected, args
    argv = train_argv(tmp_path / "r", LaunchSpec(config=Path("c.yml"), tensorboard="tb",
                                                 wandb=True))
    assert argv[argv.index("--tensorboard") + 1] == str(Path("tb").resolve())
    assert "--wandb" in argv
    assert "--tensorboard" in train_argv(None, LaunchSpec(config=Path("c.yml"),
                                                          tensorboard=""))
