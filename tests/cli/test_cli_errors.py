"""Bad input: one clear message naming the file/key/line, exit code 2, no traceback.

Each case runs the real CLI (``dettui run ... --headless``) in a subprocess; cases the
front-end cannot see without torch (corrupt weights, malformed annotations) fail inside
the real engine subprocess and must still reach the console the same way.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_CONFIG, REPO, engine_env


def dettui(*args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=cwd, env=engine_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    subprocess.run([sys.executable, "-m", "engine", "shapes", str(out), "--train", "8",
                    "--val", "4", "--seed", "3"], cwd=REPO, env=engine_env(), check=True,
                   capture_output=True)
    return out


def data_overrides(root: Path) -> list[str]:
    out = []
    for section, split in (("TrainDataset", "train"), ("EvalDataset", "val")):
        out += ["-o", f"{section}.dataset_dir={root}", "-o", f"{section}.image_dir={split}",
                "-o", f"{section}.anno_path=annotations/{split}.json",
                "-o", f"{section}.synthesize=null"]
    return out + ["-o", "epoch=1", "-o", "epoch_iter=1", "-o", "worker_num=0",
                  "-o", "TrainReader.batch_size=2"]


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------ caught by the front-end
def test_missing_config(tmp_path: Path) -> None:
    assert_user_error(dettui("run", "nope.yml", "--headless", cwd=tmp_path),
                      "nope.yml", "config file not found")


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.yml", "num_classes: 2\nepoch: [1, 2\nlog_iter: 3\n")
    proc = dettui("run", str(cfg), "--headless", cwd=tmp_path)
    assert_user_error(proc, "bad.yml:3:", "YAML syntax error")


@pytest.mark.parametrize("body,needles", [
    ("epohc: 3\n", ["c.yml:5", "epohc", "did you mean 'epoch'"]),
    ("epoch: many\n", ["c.yml:5", "key 'epoch'", "expected an integer"]),
    ("ssod_method: MeanTeacher\n", ["ssod_method", "DenseTeacher, ARSL, Semi_RTDETR"]),
    ("architecture: YOLOv8\n", ["architecture", "FCOS, RetinaNet, FasterRCNN"]),
    ("backbone: {name: vit}\n", ["backbone.name", "tiny, resnet18"]),
])
def test_config_errors(tmp_path: Path, body: str, needles: list[str]) -> None:
    cfg = write(tmp_path / "c.yml", f"_BASE_: [{DEMO_CONFIG}]\n# a comment\n\n\n{body}")
    assert_user_error(dettui("run", str(cfg), "--headless", cwd=tmp_path), *needles)


def test_base_cycle(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "_BASE_: [b.yml]\nnum_classes: 2\n")
    write(tmp_path / "b.yml", "_BASE_: [a.yml]\n")
    assert_user_error(dettui("run", str(tmp_path / "a.yml"), "--headless", cwd=tmp_path),
                      "_BASE_ cycle")


def test_missing_weights_file(tmp_path: Path) -> None:
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--weights", "missing.pt", cwd=tmp_path)
    assert_user_error(proc, "missing.pt", "not found")


def test_missing_dataset_folder_and_annotations(tmp_path: Path, shapes: Path) -> None:
    args = ["run", str(DEMO_CONFIG), "--headless", *data_overrides(tmp_path / "nowhere")]
    assert_user_error(dettui(*args, cwd=tmp_path), "TrainDataset.dataset_dir",
                      "dataset folder not found")
    args = ["run", str(DEMO_CONFIG), "--headless", *data_overrides(shapes),
            "-o", "EvalDataset.anno_path=annotations/missing.json"]
    assert_user_error(dettui(*args, cwd=tmp_path), "EvalDataset.anno_path", "missing.json")


# ------------------------------------------------------------- caught by the engine
def test_corrupt_weights(tmp_path: Path, shapes: Path) -> None:
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(tmp_path / "runs"),
                  "--weights", str(bad), *data_overrides(shapes), cwd=tmp_path)
    assert_user_error(proc, "corrupt.pt")
    run = next((tmp_path / "runs").iterdir())
    assert "Traceback" in (run / "stderr.log").read_text()  # the trace is kept there


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_not_executed(tmp_path: Path, shapes: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": _Exploit(marker)}))
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(tmp_path / "runs"),
                  "--weights", str(evil), *data_overrides(shapes), cwd=tmp_path)
    assert_user_error(proc, "evil.pt")
    assert not marker.exists(), "the pickle's code ran"


def test_malformed_annotation_json(tmp_path: Path, shapes: Path) -> None:
    bad = tmp_path / "bad_anno"
    (bad / "annotations").mkdir(parents=True)
    (bad / "train").mkdir()
    (bad / "val").mkdir()
    (bad / "annotations" / "train.json").write_text('{"images": [}')
    (bad / "annotations" / "val.json").write_text('{"images": []}')
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(tmp_path / "runs"),
                  *data_overrides(bad), cwd=tmp_path)
    assert_user_error(proc, "train.json:1:", "not valid JSON")


def test_num_classes_smaller_than_dataset(tmp_path: Path, shapes: Path) -> None:
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(tmp_path / "runs"),
                  *data_overrides(shapes), "-o", "num_classes=2", cwd=tmp_path)
    assert_user_error(proc, "num_classes", "4")


def test_semi_method_on_an_architecture_it_cannot_train_is_refused(tmp_path: Path,
                                                                   shapes: Path) -> None:
    # a complete semi config (the schema refuses one without unlabeled data up front), on
    # the demo's FCOS: Semi_RTDETR labels data with RT-DETR's one-to-one queries. Refused by
    # the front end's check (the trainer catalogue's architectures), before any run folder.
    semi = ["-o", f"UnsupTrainDataset={{name: ImageFolder, dataset_dir: {shapes}, "
                  "image_dir: train}", "-o", "SemiTrainReader={sup_batch_size: 2}"]
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--runs-dir", str(tmp_path / "runs"),
                  "--trainer", "Semi_RTDETR", *data_overrides(shapes), *semi, cwd=tmp_path)
    assert_user_error(proc, "-o ssod_method=\"Semi_RTDETR\": key 'ssod_method'",
                      "Semi_RTDETR trains RT-DETR", "needs architecture RTDETR",
                      "this config has architecture FCOS",
                      "a trainer for FCOS: Trainer, DenseTeacher, ARSL")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # the engine, started by hand, refuses it the same way (exit 2, no run folder made)
    engine = subprocess.run([sys.executable, "-m", "engine", "train", str(DEMO_CONFIG),
                             "--runs-dir", str(tmp_path / "runs"), "-o",
                             "ssod_method=Semi_RTDETR", *semi, *data_overrides(shapes)],
                            cwd=tmp_path, env=engine_env(), capture_output=True, text=True,
                            timeout=180)
    assert engine.returncode == 2, engine.stderr  # (its stderr keeps the trace for --debug)
    assert "key 'ssod_method'" in engine.stderr and "needs architecture RTDETR" in engine.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
