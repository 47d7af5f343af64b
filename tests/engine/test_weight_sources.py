"""Weights sources and downloads against a real HTTP server on 127.0.0.1 (issue 20).

Nothing here reaches beyond 127.0.0.1: the server is started by each test (standard
library), serves checkpoints made in the test, and misbehaves on demand.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import pytest
import torch

from engine.models.weights import load_state_dict_file
from engine.protocol.errors import WeightsError
from engine.weightcache import load_index
from engine.weightsource import check, plan, resolve, source_kind
from tests.weights_server import WeightsServer


def checkpoint_bytes(seed: int = 0, n: int = 3000) -> bytes:
    """A small torch.save checkpoint (~12 KB)."""
    g = torch.Generator().manual_seed(seed)
    buf = io.BytesIO()
    torch.save({"model": {"backbone.body.conv1.weight": torch.randn(n, generator=g)}}, buf)
    return buf.getvalue()


@pytest.fixture
def server():
    srv = WeightsServer().start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETTUI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DETTUI_DOWNLOAD_TIMEOUT", "1")
    monkeypatch.setenv("DETTUI_DOWNLOAD_RETRIES", "0")
    monkeypatch.setenv("DETTUI_DOWNLOAD_BACKOFF", "0")
    monkeypatch.delenv("DETTUI_OFFLINE", raising=False)
    return tmp_path / "cache"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_source_kinds() -> None:
    assert [source_kind(s) for s in ("a/b.pt", "https://h/x.pt", "HTTP://h/x.pt",
                                     "torchvision:resnet50", "hf:a/b", "run:abc:last")] == \
        ["file", "url", "url", "torchvision", "hf", "run"]


def test_url_downloads_once_then_serves_from_the_cache(server: WeightsServer,
                                                       cache: Path) -> None:
    data = checkpoint_bytes()
    server.files["/w/model.pth"] = data
    source = server.url("/w/model.pth") + f"#sha256={sha(data)}"
    got = resolve(source)
    assert got.downloaded and got.sha256 == sha(data)
    assert got.path.read_bytes() == data
    assert got.path.is_relative_to(cache / "weights")
    assert load_index()[str(got.path.resolve())]["sha256"] == sha(data)
    assert not list(got.path.parent.glob("*.part"))
    server.stop()  # second use: a cache hit, no server needed
    again = resolve(source)
    assert not again.downloaded and again.path == got.path and again.sha256 == sha(data)
    assert len(server.requests) == 1
    assert torch.equal(load_state_dict_file(again.path)["backbone.body.conv1.weight"],
                       load_state_dict_file(got.path)["backbone.body.conv1.weight"])


def test_wrong_sha256_is_refused_and_nothing_cached(server: WeightsServer) -> None:
    data = checkpoint_bytes()
    server.files["/model.pth"] = data
    source = server.url("/model.pth") + "#sha256=" + "0" * 64
    with pytest.raises(WeightsError, match="sha256 mismatch") as err:
        resolve(source)
    assert server.url("/model.pth") in err.value.render()
    dest = plan(source).path
    assert not dest.exists() and not list(dest.parent.glob("*.part"))


def test_a_cut_download_resumes_with_range(server: WeightsServer) -> None:
    data = checkpoint_bytes(n=20000)
    server.files["/big.pth"] = data
    server.cut["/big.pth"] = 30000
    source = server.url("/big.pth") + f"#sha256={sha(data)}"
    with pytest.raises(WeightsError, match="closed after 30000 of"):
        resolve(source)  # no retries in this test: the next use goes on
    part = plan(source).path.with_name("big.pth.part")
    assert part.stat().st_size == 30000 and not plan(source).path.exists()
    got = resolve(source)
    assert server.requests[-1] == ("/big.pth", "bytes=30000-")
    assert got.path.read_bytes() == data and got.sha256 == sha(data)


def test_a_retry_resumes_within_one_use(server: WeightsServer,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETTUI_DOWNLOAD_RETRIES", "2")
    data = checkpoint_bytes(n=20000)
    server.files["/big.pth"] = data
    server.cut["/big.pth"] = 12345
    seen = []
    got = resolve(server.url("/big.pth"), progress=lambda done, total: seen.append(done))
    assert [r for _, r in server.requests] == [None, "bytes=12345-"]
    assert got.path.read_bytes() == data
    assert seen[-1] == len(data) and 12345 in seen


@pytest.mark.parametrize("case", ["404", "refused", "stalled"])
def test_unreachable_weights_fail_naming_the_url(server: WeightsServer, case: str) -> None:
    if case == "404":
        url = server.url("/missing.pth")
    elif case == "refused":
        server.stop()
        url = server.url("/model.pth")  # nothing listens there any more
    else:
        server.files["/slow.pth"] = checkpoint_bytes()
        server.stall = True
        url = server.url("/slow.pth")
    start = time.monotonic()
    with pytest.raises(WeightsError) as err:
        resolve(url)
    assert time.monotonic() - start < 4  # the 1 s timeout, not a hang
    text = err.value.render()
    assert url in text
    assert {"404": "HTTP 404", "refused": "refused", "stalled": "timed out"}[case] in text
    assert not plan(url).path.exists()


def test_a_redirect_is_followed(server: WeightsServer) -> None:
    data = checkpoint_bytes()
    server.files["/real/model.pth"] = data
    server.redirects["/moved/model.pth"] = server.url("/real/model.pth")
    got = resolve(server.url("/moved/model.pth"))
    assert got.path.read_bytes() == data
    assert [p for p, _ in server.requests] == ["/moved/model.pth", "/real/model.pth"]


def test_torch_hub_hash_prefix_in_the_file_name_is_checked(server: WeightsServer) -> None:
    data = checkpoint_bytes()
    good = f"/tiny-{sha(data)[:8]}.pth"
    server.files[good] = data
    server.files["/tiny-deadbeef.pth"] = data
    assert resolve(server.url(good)).sha256 == sha(data)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        resolve(server.url("/tiny-deadbeef.pth"))


def test_size_cap(server: WeightsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETTUI_DOWNLOAD_MAX_MB", "0.001")
    server.files["/model.pth"] = checkpoint_bytes()
    with pytest.raises(WeightsError, match="cap"):
        resolve(server.url("/model.pth"))
    assert not plan(server.url("/model.pth")).path.exists()


def test_offline_names_the_url_and_the_cache_path(server: WeightsServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETTUI_OFFLINE", "1")
    url = server.url("/model.pth")
    with pytest.raises(WeightsError) as err:
        check(url, key="pretrain_weights")
    text = err.value.render()
    assert url in text and str(plan(url).path) in text and "offline" in text
    assert server.requests == []


def test_torchvision_name_resolves_from_its_enum(server: WeightsServer,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    from torchvision.models import get_model_weights

    entry = get_model_weights("fcos_resnet50_fpn")["COCO_V1"]
    file_name = entry.url.rsplit("/", 1)[-1]
    monkeypatch.setenv("DETTUI_TORCHVISION_URL", server.base + "/models")
    p = plan("torchvision:fcos_resnet50_fpn:COCO_V1")
    assert p.path == tmp_path / "torch" / "hub" / "checkpoints" / file_name
    assert p.url == server.base + "/models/" + file_name
    assert p.hash_prefix == file_name.split("-")[-1].split(".")[0]
    assert p.info["categories"] == entry.meta["categories"]
    # The server's small file is not torchvision's: the enum's hash prefix refuses it.
    server.files["/models/" + file_name] = checkpoint_bytes()
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        resolve("torchvision:fcos_resnet50_fpn:COCO_V1")
    assert server.requests == [("/models/" + file_name, None)]
    assert not p.path.exists()
    with pytest.raises(WeightsError, match="(?s)no weights 'COCO_V9'.*COCO_V1"):
        plan("torchvision:fcos_resnet50_fpn:COCO_V9")


def test_run_ids(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    ckpts = runs / "20260101-000000-demo" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts.parent / "run.json").write_text(json.dumps({"id": "20260101-000000-demo",
                                                       "status": "finished"}))
    (ckpts / "last.pt").write_bytes(checkpoint_bytes(1))
    assert resolve("run:20260101-000000-demo", runs_dir=runs).path == ckpts / "last.pt"
    (ckpts / "best.pt").write_bytes(checkpoint_bytes(2))
    assert resolve("run:20260101", runs_dir=runs).path == ckpts / "best.pt"
    got = resolve("run:20260101-000000-demo:last", runs_dir=runs)
    assert got.path == ckpts / "last.pt" and got.sha256 == sha(checkpoint_bytes(1))
    with pytest.raises(WeightsError, match="no run 'nosuch'"):
        resolve("run:nosuch", runs_dir=runs)
    with pytest.raises(WeightsError, match="run:RUN_ID"):
        plan("run:20260101:worst", runs_dir=runs)


def test_a_text_file_is_named_for_what_it_is(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# dettui\n\nA terminal control room.\n")
    with pytest.raises(WeightsError, match="README.md is a text/Markdown file, not a "
                                           "checkpoint"):
        check(str(readme), key="pretrain_weights")
    png = tmp_path / "x.pt"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(WeightsError, match="is a PNG image, not a checkpoint"):
        check(str(png))
    good = tmp_path / "w.pt"
    good.write_bytes(checkpoint_bytes())
    assert check(str(good)).path == good
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(3)}, tmp_path / "w.safetensors")
    assert check(str(tmp_path / "w.safetensors")).kind == "file"


COCO_SCALE = {
    "configs/cot/faster_rcnn_r50_fpn_cotuning_roadsign.yml":
        "torchvision:fasterrcnn_resnet50_fpn:COCO_V1",
    "configs/semi_det/denseteacher/denseteacher_fcos_r50_fpn_coco_semi010.yml":
        "torchvision:resnet50:IMAGENET1K_V1",
    "configs/semi_det/arsl/arsl_fcos_r50_fpn_coco_semi010.yml":
        "torchvision:resnet50:IMAGENET1K_V1",
    "configs/finetune/fcos_r50_coco_finetune.yml": "torchvision:fcos_resnet50_fpn:COCO_V1",
}


@pytest.mark.parametrize("rel", sorted(COCO_SCALE))
def test_coco_scale_configs_name_zoo_weights(rel: str, tmp_path: Path) -> None:
    from engine.config import load_and_validate
    from tests.conftest import REPO

    _, cfg = load_and_validate(REPO / rel, [])
    assert cfg.pretrain_weights == COCO_SCALE[rel]
    p = plan(cfg.pretrain_weights)
    assert p.url and p.url.startswith("https://download.pytorch.org/models/")
    assert p.path.parent == tmp_path / "torch" / "hub" / "checkpoints" and p.hash_prefix
    for name in ("rtdetr/rtdetr_r50vd_coco.yml", "semi_det/semi_rtdetr/"
                 "semi_rtdetr_r50vd_coco_semi010.yml"):
        text = (REPO / "configs" / name).read_text()
        assert "/path/to" not in text and ("hf:PekingU/rtdetr_r50vd" in text
                                           or "run:<sup010 run id>:best" in text)


def test_finetune_config_takes_torchvision_fcos_tensor_for_tensor() -> None:
    """Every tensor of torchvision's COCO FCOS R50-FPN layout loads into the fine-tune
    config's model except the 91-way classifier (another class count)."""
    from torchvision.models.detection import fcos_resnet50_fpn

    from engine.config import load_and_validate
    from engine.models import build_model
    from engine.models.weights import match_weights
    from tests.conftest import REPO

    reference = fcos_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    _, cfg = load_and_validate(REPO / "configs/finetune/fcos_r50_coco_finetune.yml", [])
    report, _ = match_weights(build_model(cfg).state_dict(), reference, "fcos")
    assert [name for name, _, _ in report.skipped_shape] == [
        "head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias"]
    assert report.missing == []
    assert all(name.endswith("num_batches_tracked") for name in report.unused)
