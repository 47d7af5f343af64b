"""Weights sources from the command line, end to end (issue 20; issue 19 point 4).

Real CLI and engine subprocesses; the only network is a server on 127.0.0.1 started here.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import DEMO_CONFIG, REPO, engine_env, tiny_overrides
from tests.weights_server import WeightsServer


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = engine_env()
    e.update(DETTUI_CACHE=str(tmp_path / "cache"), TORCH_HOME=str(tmp_path / "torch"),
             HF_HOME=str(tmp_path / "hf"), DETTUI_DOWNLOAD_TIMEOUT="2",
             DETTUI_DOWNLOAD_RETRIES="0")
    e.pop("DETTUI_OFFLINE", None)
    e.pop("HF_HUB_OFFLINE", None)
    return e


@pytest.fixture
def server():
    srv = WeightsServer().start()
    yield srv
    srv.stop()


def dettui(*args: str, env: dict[str, str], cwd: Path,
           timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def demo_weights() -> bytes:
    """The demo model's own state dict (what a past run of it would hold)."""
    from engine.config import load_and_validate
    from engine.models import build_model

    _, cfg = load_and_validate(DEMO_CONFIG, [])
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(build_model(cfg).state_dict(), buf)
    return buf.getvalue()


def test_a_markdown_file_as_weights_is_refused_before_any_run_folder(tmp_path: Path,
                                                                    env: dict) -> None:
    (tmp_path / "README.md").write_text("# my project\n\nnotes\n")
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--weights", "README.md",
                  "--runs-dir", "runs", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "README.md is a text/Markdown file, not a checkpoint" in proc.stderr
    assert "pickle" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_offline_uncached_weights_exit_2_naming_url_and_cache_path(tmp_path: Path,
                                                                   env: dict) -> None:
    url = "http://127.0.0.1:9/models/detector.pth"
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--offline", "--weights", url,
                  "--runs-dir", "runs", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    folder = hashlib.sha256(url.encode()).hexdigest()[:12]
    text = proc.stderr.replace("\n", "")
    assert url in text
    assert str(tmp_path / "cache" / "weights" / "url" / folder / "detector.pth") in text
    assert not (tmp_path / "runs").exists()
    env["DETTUI_OFFLINE"] = "1"  # the same through the environment, for dettui eval
    proc = dettui("eval", str(DEMO_CONFIG), "--weights", url, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and url in proc.stderr.replace("\n", "")


def test_url_weights_train_download_once_record_and_resume_offline(
        tmp_path: Path, env: dict, server: WeightsServer) -> None:
    data = demo_weights()
    digest = hashlib.sha256(data).hexdigest()
    server.files["/zoo/fcos_demo.pth"] = data
    source = server.url("/zoo/fcos_demo.pth") + f"#sha256={digest}"
    runs = tmp_path / "runs"
    overrides = [a for o in tiny_overrides(tmp_path / "shapes") for a in ("-o", o)]
    # The engine itself downloads (as under the TUI): progress events, then training.
    proc = subprocess.run([sys.executable, "-m", "engine", "train", str(DEMO_CONFIG),
                           "--runs-dir", str(runs), "--name", "ft", "-o",
                           f"pretrain_weights={source}", *overrides], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = runs.iterdir()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    downloads = [e for e in events if e["type"] == "download"]
    assert downloads[-1]["state"] == "done" and downloads[-1]["done"] == len(data)
    assert downloads[0]["url"] == server.url("/zoo/fcos_demo.pth")
    first_train = next(i for i, e in enumerate(events) if e["type"] == "train")
    assert events.index(downloads[-1]) < first_train
    assert "pretrained weights" in (run / "train.log").read_text()
    listed = json.loads(dettui("runs", "--json", "--runs-dir", str(runs), env=env,
                               cwd=tmp_path).stdout)
    (record,) = listed[0]["weights"]["resolved"]
    cached = tmp_path / "cache" / "weights" / "url"
    assert record["source"] == source and record["sha256"] == digest
    assert Path(record["file"]).is_relative_to(cached) and record["downloaded"] is True
    assert len(server.requests) == 1
    # Headless: a cache hit, no request; then the cache lists the file with both runs.
    proc = dettui("run", str(DEMO_CONFIG), "--headless", "--weights", source, "--runs-dir",
                  str(runs), "--name", "again", *overrides, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(server.requests) == 1
    entries = json.loads(dettui("weights", "list", "--json", "--runs-dir", str(runs),
                                env=env, cwd=tmp_path).stdout)
    (entry,) = entries
    assert entry["sha256"] == digest and entry["source"] == source and len(entry["runs"]) == 2
    # Resume never resolves weights again: the server gone and the cache emptied.
    server.stop()
    assert dettui("weights", "rm", source, env=env, cwd=tmp_path).returncode == 0
    assert not Path(record["file"]).exists()
    proc = subprocess.run([sys.executable, "-m", "engine", "train", str(DEMO_CONFIG),
                           "--run-dir", str(run), "--resume", "auto", "--force", "-o",
                           f"pretrain_weights={source}", *overrides, "-o", "epoch=2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((run / "run.json").read_text())
    assert meta["weights"]["resolved"][0]["sha256"] == digest


def test_weights_get_verify_rm(tmp_path: Path, env: dict, server: WeightsServer) -> None:
    data = b"PK\x03\x04" + os.urandom(3000)  # starts like a torch.save zip
    server.files["/w/a.pth"] = data
    url = server.url("/w/a.pth")
    proc = dettui("weights", "get", url, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    digest = hashlib.sha256(data).hexdigest()
    assert "downloaded" in proc.stdout and digest in proc.stdout
    assert "3.0/3.0 kB" in proc.stderr and "ETA" in proc.stderr  # the progress bar
    proc = dettui("weights", "get", url, env=env, cwd=tmp_path)
    assert "cached" in proc.stdout and len(server.requests) == 1
    assert dettui("weights", "verify", env=env, cwd=tmp_path).returncode == 0
    (path,) = (tmp_path / "cache" / "weights" / "url").rglob("a.pth")
    path.write_bytes(data[:-1] + b"x")
    proc = dettui("weights", "verify", url, env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "MISMATCH" in proc.stdout
    proc = dettui("weights", "rm", url, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and not path.exists()
    listed = json.loads(dettui("weights", "list", "--json", env=env, cwd=tmp_path).stdout)
    assert listed == []
    missing = server.url("/w/missing.pth")
    proc = dettui("weights", "get", missing, env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "HTTP 404" in proc.stderr and missing in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hf_id_loads_from_a_prefilled_hub_cache_offline(tmp_path: Path, env: dict) -> None:
    from safetensors.torch import save_file

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--dettui--tiny-rtdetr"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    save_file({"model.backbone.conv.weight": torch.ones(4, 3)}, snap / "model.safetensors")
    digest = hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()
    env["HF_HUB_OFFLINE"] = "1"
    proc = dettui("weights", "get", "hf:dettui/tiny-rtdetr", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert str(snap / "model.safetensors") in proc.stdout and digest in proc.stdout
    proc = dettui("weights", "get", "hf:dettui/other-model", env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "not in the cache" in proc.stderr
    assert "huggingface.co/dettui/other-model" in proc.stderr.replace("\n", "")


def test_help_and_cli_do_not_import_torch_for_weights() -> None:
    code = ("import sys\nfrom engine.weightsource import check, plan\nimport tui.cli.weights\n"
            "print(any(m.startswith('torch') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, env=engine_env())
    assert out.stdout.strip() == "False"


def test_attach_shows_a_download_the_engine_made(tmp_path: Path, env: dict) -> None:
    """A run launched from the TUI downloads in the engine; `dettui attach` tells it."""
    from engine.protocol.rundir import RunDirectory
    from engine.recorder import RunRecorder

    run = RunDirectory.create(tmp_path / "runs", run_id="fetched")
    run.write_meta({"schema": 1, "id": "fetched", "status": "finished"})
    recorder = RunRecorder(run)
    fields = {"key": "pretrain_weights", "source": "torchvision:resnet50:IMAGENET1K_V2",
              "url": "http://127.0.0.1:1/resnet50-11ad3fa6.pth", "path": "/cache/r50.pth"}
    recorder.emit("download", done=1_000_000, total=102_540_247, state="downloading",
                  **fields)
    recorder.emit("download", done=102_540_247, total=102_540_247, state="done", **fields)
    recorder.emit("status", status="finished", message="")
    recorder.close()
    proc = dettui("attach", "fetched", "--runs-dir", str(tmp_path / "runs"), env=env,
                  cwd=tmp_path)
    assert ("downloaded torchvision:resnet50:IMAGENET1K_V2 (102.5 MB) to /cache/r50.pth"
            in proc.stdout), proc.stdout
