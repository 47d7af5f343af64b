"""Shared fixtures: paths of the repo, the shared coco128 data, and small run folders."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The suite runs engines, TUIs and pytest itself side by side on 2 cores: OpenMP threads that
# busy-wait for work starve the other processes (measured: a tiny FCOS step fell from ~50 to
# 1-2 images/s). Set before anything imports torch; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The tests generate their tiny shapes datasets in pytest's temporary folders, outside the
# working tree, where `synthesize` otherwise refuses to create one (issue 19.7; its own
# test unsets this).
os.environ.setdefault("DETTUI_SYNTHESIZE_ANYWHERE", "1")

# A suite started in the background by a shell without job control (`bash .ci/run &` in a
# script) inherits SIGINT ignored, and so would every engine, console and stand-in process
# the tests start: the tests that stop a run with SIGINT (what Ctrl-C and `dettui stop`
# send) would then fail for how the suite was started, not for the code. A Python handler
# is not inherited across exec: the processes the tests start get the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Hypothesis (tests/security/test_fuzz_readers.py): "ci" by default, a few hundred examples
# per reader; `pytest --hypothesis-profile=deep` for a longer local run.
_FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow,
                                                    HealthCheck.data_too_large],
         "print_blob": True}
settings.register_profile("ci", max_examples=200, **_FUZZ)
settings.register_profile("deep", max_examples=5000, **_FUZZ)


def pytest_configure(config: pytest.Config) -> None:
    """The profile named by --hypothesis-profile, else "ci" (Hypothesis' own "default" runs
    100 examples with a deadline that a loaded machine misses)."""
    settings.load_profile(config.getoption("--hypothesis-profile", None) or "ci")


REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
COCO128 = SHARED_DATA / "coco128"
DEMO_CONFIG = REPO / "configs" / "demo" / "fcos_tiny_shapes.yml"


@pytest.fixture
def coco128() -> Path:
    if not (COCO128 / "annotations" / "instances_train2017.json").exists():
        pytest.skip(f"real-data fixture absent: {COCO128} (it lives in ../shared beside "
                    "the repo; CI always has it)")
    return COCO128


def engine_env() -> dict[str, str]:
    """Environment for engine subprocesses: the repo importable, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    # One OpenMP thread per engine: tests run engines beside pytest (and each other) on 2
    # cores, where two spinning threads per process made each step many times slower.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("DETTUI_RUNS_DIR", None)
    return env


def tiny_overrides(data_dir: Path, *, epochs: int = 1, epoch_iter: int = 2,
                   train_images: int = 16, val_images: int = 8) -> list[str]:
    """``-o`` overrides that make the demo config train in seconds on shapes in data_dir."""
    return [
        f"TrainDataset.dataset_dir={data_dir}",
        f"EvalDataset.dataset_dir={data_dir}",
        f"TrainDataset.synthesize.num_images={train_images}",
        f"EvalDataset.synthesize.num_images={val_images}",
        f"epoch={epochs}",
        f"epoch_iter={epoch_iter}",
        "snapshot_epoch=1",
        "log_iter=1",
        "worker_num=0",
        "TrainReader.batch_size=4",
        "EvalReader.batch_size=8",
        "LearningRate.warmup_iters=1",
    ]


PYTHON = sys.executable


SEMI_DIR = REPO / "configs" / "semi_det"


def semi_overrides(data_dir: Path, *, epochs: int = 2, epoch_iter: int = 3,
                   images: int = 40, size: int = 64, semi_start: int = 2,
                   ema_start: int = 1) -> list[str]:
    """``-o`` overrides that make a shapes-scale semi config train in seconds: ``images``
    shapes of ``size`` px split 25% labeled / 75% unlabeled, 2 + 2 images per step, the
    teacher started at ``ema_start`` and the semi phase at ``semi_start``."""
    out = []
    for section in ("TrainDataset", "UnsupTrainDataset", "EvalDataset"):
        n = 8 if section == "EvalDataset" else images
        out += [f"{section}.dataset_dir={data_dir}", f"{section}.synthesize.num_images={n}",
                f"{section}.synthesize.image_size={size}"]
    return out + [
        "TrainDataset.semi_split.percent=25", "UnsupTrainDataset.semi_split.percent=25",
        f"model.min_size={size}", f"model.max_size={size}",
        f"SemiTrainReader.sample_transforms=[{{RandomFlip: {{prob: 0.5}}}}, "
        f"{{Resize: {{target_size: {size}}}}}]",
        f"EvalReader.sample_transforms=[{{Resize: {{target_size: {size}}}}}]",
        "SemiTrainReader.sup_batch_size=2", "SemiTrainReader.unsup_batch_size=2",
        f"epoch={epochs}", f"epoch_iter={epoch_iter}", "snapshot_epoch=1", "log_iter=1",
        "worker_num=0", "EvalReader.batch_size=8", "LearningRate.warmup_iters=1",
        f"semi_start_iters={semi_start}", f"ema_start_iters={ema_start}",
    ]


def train_in_process(runs: Path, config: Path, overrides: list[str], *,
                     no_eval: bool = False) -> tuple[int, Path]:
    """``python -m engine train CONFIG --runs-dir RUNS -o ...`` in this process; returns the
    exit code and the one run folder it made."""
    from engine.main import main as engine_main  # torch: only the tests that train need it

    argv = ["train", str(config), "--runs-dir", str(runs)]
    if no_eval:
        argv.append("--no-eval")
    for o in overrides:
        argv += ["-o", o]
    before = set(runs.iterdir()) if runs.exists() else set()
    code = engine_main(argv)
    (run,) = set(runs.iterdir()) - before
    return code, run
