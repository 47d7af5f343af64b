"""Weights in the TUI (issue 20): the picker, the fit report before launch, the download
progress line in the monitor, and the compare screen's "weights" row."""

from __future__ import annotations

import hashlib
import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
from textual.widgets import Input

from engine.config import load_and_validate
from engine.models import build_model
from engine.protocol.rundir import RunDirectory
from engine.weightcache import remember
from engine.weightsource import started_from
from tests.tui.conftest import make_app, make_run, plain, run_pilot, wait_for
from tests.tui.test_monitor import MonitorHost, header_text
from tests.weights_server import WeightsServer
from tui.process.spec import LaunchSpec
from tui.screens import launch as launch_module
from tui.screens.launch import LaunchScreen
from tui.screens.weights_picker import WeightsPickerScreen


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETTUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DETTUI_OFFLINE", raising=False)
    monkeypatch.setattr(launch_module, "gpus", lambda: [])


def model_checkpoint(config: Path, path: Path) -> None:
    """A real state dict of the config's model, as a past run's best.pt would hold."""
    _, cfg = load_and_validate(config, [])
    buf = io.BytesIO()
    torch.save({"model": build_model(cfg).state_dict()}, buf)
    path.write_bytes(buf.getvalue())


def cached_file(tmp_path: Path) -> str:
    source = "http://127.0.0.1:1/zoo/shapes_fcos.pth"
    path = tmp_path / "cache" / "weights" / "url" / "abc" / "shapes_fcos.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04" + b"\0" * 2048)
    remember(path, source=source, url=source, sha256=hashlib.sha256(b"x").hexdigest())
    return source


def test_picker_lists_zoo_runs_cache_and_fills_the_field(runs_dir: Path, configs_dir: Path,
                                                         tmp_path: Path) -> None:
    run = make_run(runs_dir, "20250101-100000-alpha", best=0.412)
    (run.checkpoints / "best.pt").write_bytes(b"PK\x03\x04")
    make_run(runs_dir, "20250101-110000-rtdetr", best=0.2,
             extra_config={"architecture": "RTDETR"})
    other = RunDirectory(runs_dir / "20250101-110000-rtdetr")
    other.update_meta(architecture="RTDETR")
    source = cached_file(tmp_path)
    spec = LaunchSpec(config=configs_dir / "demo" / "good.yml", runs_dir=runs_dir,
                      overrides=["backbone.name=resnet50"])
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), what="form")
        form = app.screen
        await pilot.press("ctrl+g")  # no weights field focused: opens for "pretrained"
        await wait_for(pilot, lambda: isinstance(app.screen, WeightsPickerScreen),
                       what="picker")
        picker = app.screen
        await wait_for(pilot, lambda: any("fcos_resnet50_fpn" in t for t in picker.labels()),
                       what="torchvision's zoo", timeout=60)
        labels = picker.labels()
        text = "\n".join(labels)
        assert "model zoo (torchvision) for FCOS · resnet50" in text
        zoo = next(t for t in labels if "torchvision:fcos_resnet50_fpn:COCO_V1" in t)
        assert "COCO detector, 91 classes, box AP 39.2 · to download, 129.6 MB" in zoo
        assert any("torchvision:resnet50:IMAGENET1K_V2" in t and "ImageNet backbone" in t
                   for t in labels)
        assert not any("retinanet" in t or "fasterrcnn" in t for t in labels)
        best = next(t for t in labels if "run:20250101-100000-alpha:best" in t)
        assert "AP 0.412" in best and "4 classes" in best
        assert any("run:20250101-100000-alpha:last" in t for t in labels)
        assert not any("rtdetr" in t for t in labels)  # another architecture
        assert any(source in t and "2.1 kB" in t for t in labels)
        assert picker.query_one("#weights-path", Input)
        # choose the past run's best checkpoint
        option_list = picker.query_one("OptionList")
        index = labels.index(best)
        option_list.highlighted = index
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is form, what="picker closed")
        assert form.query_one("#weights", Input).value == "run:20250101-100000-alpha:best"
        assert form.build_spec().weights == "run:20250101-100000-alpha:best"
        # the path field takes anything typed
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, WeightsPickerScreen))
        box = app.screen.query_one("#weights-path", Input)
        box.value = "hf:PekingU/rtdetr_r50vd"
        box.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is form)
        assert form.query_one("#weights", Input).value == "hf:PekingU/rtdetr_r50vd"

    run_pilot(app, scenario, size=(140, 45))


def test_the_form_shows_how_the_chosen_weights_fit_before_launch(runs_dir: Path,
                                                                  configs_dir: Path) -> None:
    good = configs_dir / "demo" / "good.yml"
    run = make_run(runs_dir, "20250101-100000-alpha", best=0.412)
    model_checkpoint(good, run.checkpoints / "best.pt")
    spec = LaunchSpec(config=good, runs_dir=runs_dir, weights="run:20250101-100000-alpha",
                      overrides=["num_classes=7"])
    app = make_app(runs_dir, configs_dir, launch=spec)

    async def scenario(pilot: Any) -> None:
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), what="form")
        form = app.screen
        fit = form.query_one("#weights-fit")
        await wait_for(pilot, lambda: "tensors load" in plain(fit.content),
                       what="the fit report", timeout=90)
        text = plain(fit.content)
        # 4 -> 7 classes: the classifier's weight and bias do not fit; the rest does.
        total = len([k for k in torch.load(run.checkpoints / "best.pt",
                                           weights_only=True)["model"]
                     if not k.endswith("num_batches_tracked")])
        assert f"weights: {total - 2} of the model's {total} tensors load" in text
        assert "2 skipped for shape" in text
        # computed without training: no run was started
        assert [p.name for p in runs_dir.iterdir()] == ["20250101-100000-alpha"]

    run_pilot(app, scenario, size=(140, 45))


def test_download_progress_reaches_the_monitor(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from engine.recorder import RunRecorder
    from engine.run import Flags, resolve_weights

    monkeypatch.setenv("DETTUI_DOWNLOAD_RETRIES", "0")
    server = WeightsServer().start()
    data = os.urandom(200_000)
    server.files["/zoo/detector.pth"] = b"PK\x03\x04" + data
    server.cut["/zoo/detector.pth"] = 80_000
    url = server.url("/zoo/detector.pth")
    run = RunDirectory.create(tmp_path / "runs", run_id="fetching")
    run.write_meta({"schema": 1, "id": "fetching", "status": "running", "pid": os.getpid(),
                    "host": socket.gethostname()})
    recorder = RunRecorder(run)
    cfg = SimpleNamespace(pretrain_weights=url)
    env = SimpleNamespace(distributed=False, is_main=True)

    def engine_resolves() -> dict[str, str]:  # what engine.run.run does before training
        return resolve_weights(cfg, ("pretrain_weights",), recorder, env, Flags())

    with pytest.raises(Exception, match="closed after 80000"):
        engine_resolves()  # cut: the monitor shows where it stopped

    async def scenario(pilot: Any) -> None:
        screen = pilot.app.screen
        await wait_for(pilot, lambda: screen.snapshot is not None
                       and "downloading" in header_text(screen), what="download line")
        assert f"downloading {url}  0.1/0.2 MB 39%" in header_text(screen)
        files = engine_resolves()  # resumes, then the final event
        assert Path(files["pretrain_weights"]).stat().st_size == 200_004
        assert run.read_meta()["weights"]["resolved"][0]["source"] == url
        await wait_for(pilot, lambda: "downloaded" in header_text(screen), what="done")
        assert "0.2/0.2 MB 100%" in header_text(screen)

    try:
        run_pilot(MonitorHost(run.path), scenario, size=(140, 40))
    finally:
        recorder.close()
        server.stop()


def test_compare_and_runs_show_what_each_run_started_from() -> None:
    meta = {"weights": {"mode": "pretrained", "pretrained": "torchvision:x:COCO_V1",
                        "resolved": [{"key": "pretrain_weights",
                                      "source": "torchvision:x:COCO_V1",
                                      "sha256": "99b0c9b7" + "0" * 56}]}}
    assert started_from(meta) == "torchvision:x:COCO_V1 (sha256 99b0c9b70000)"
    semi = {"weights": {"resolved": [
        {"key": "pretrain_teacher_weights", "source": "run:a:best", "sha256": "ab" * 32},
        {"key": "pretrain_student_weights", "source": "s.pt", "sha256": "cd" * 32}]}}
    assert started_from(semi) == ("teacher run:a:best (sha256 abababababab); "
                                  "student s.pt (sha256 cdcdcdcdcdcd)")
    assert started_from({"weights": {"mode": "none"}}) == "none"
    assert started_from({}) == "none"
