"""The first GPU machine's check: every GPU path of dettui, one step at a time, one table.

    python benchmarks/gpu_check.py [--json OUT.json] [--keep DIR]

Under 8 minutes on one GPU (each step has its own time limit, in the table); on a machine
without an NVIDIA GPU every step says it needs one, so the script itself is tested
anywhere (``CUDA_VISIBLE_DEVICES=-1`` hides the GPUs of a GPU machine the same way).

Steps, in order:

1. ``nvml``: NVML finds the GPU (name, memory, driver).
2. ``demo_cuda`` / ``demo_amp``: the demo (first 5 of its 10 epochs, the README's halfway
   AP) on ``--device cuda``, without and with ``--amp``: AP and images/s of each.
3. ``stats_move``: the stats panel's numbers (utilisation, memory, temperature, power from
   the run's ``system`` events) change during the demo's training.
4. ``nproc2_one_gpu``: ``--nproc 2`` on one GPU is refused before anything starts (exit 2,
   one clear message), or runs.
5. ``nccl_1proc``: a 1-process NCCL group starts under torchrun and all-reduces on the GPU.
6. ``r50_busy``: ResNet-50 FCOS at 640 px on generated images: GPU utilisation sampled with
   NVML during training (goal >= 90 % busy), the data loader's share of each step, images/s.
7. ``tui_gpu_panel``: the TUI's run monitor in a tmux pane during that training, its System
   pane (key 3) captured: the GPU's name and numbers are on it.
8. ``bare_loop``: the same model and data in a bare PyTorch loop on the GPU: images/s, and
   dettui's images/s as a fraction of it.
9. ``peak_memory``: peak CUDA memory of the engine's R50 run and of the bare loop.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.protocol.events import read_events  # noqa: E402
from engine.sysinfo import cuda_device_count, gpus, nvml_status  # noqa: E402

DEMO = REPO / "configs" / "demo" / "fcos_tiny_shapes.yml"
R50_ITERS, R50_BATCH, R50_WORKERS = 150, 8, 8


@dataclass
class Result:
    step: str
    what: str
    limit_s: int
    status: str = "skipped"  # ok | FAIL | TIMEOUT | skipped
    result: str = ""
    seconds: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)


class StepTimeout(Exception):
    pass


class _Skip(Exception):
    """A step that cannot run here for a reason it has put in its result (no tmux)."""


@dataclass
class Check:
    work: Path
    env: dict[str, str]
    results: dict[str, Result] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)

    def dettui(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=REPO,
                              env=self.env, capture_output=True, text=True, timeout=timeout)


def opts(items: list[str]) -> list[str]:
    return [a for item in items for a in ("-o", item)]


def only_run(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


def train_events(run: Path) -> list[dict]:
    return [e for e in read_events(run / "events.jsonl") if e.get("type") == "train"]


def steady_ips(run: Path) -> float:
    trains = train_events(run)
    steady = trains[len(trains) // 4:] or trains
    return statistics.median(e["ips"] for e in steady)


# --- the steps ---------------------------------------------------------------------------

def step_nvml(check: Check, res: Result) -> None:
    (gpu, *others) = gpus()
    res.values = {"name": gpu.name, "mem_total_mb": gpu.mem_total_mb, "gpus": 1 + len(others)}
    res.result = f"{gpu.name}, {gpu.mem_total_mb / 1024:.0f} GiB ({1 + len(others)} GPU)"


def demo(check: Check, res: Result, *extra: str) -> None:
    runs = check.work / f"runs-{res.step}"
    out = check.dettui("run", str(DEMO), "--headless", "--device", "cuda", *extra,
                       "--runs-dir", str(runs), *opts([
                           f"TrainDataset.dataset_dir={check.work / 'shapes'}",
                           f"EvalDataset.dataset_dir={check.work / 'shapes'}", "epoch=5"]),
                       timeout=res.limit_s)
    run = only_run(runs)
    meta = json.loads((run / "run.json").read_text())
    if out.returncode != 0 or meta.get("status") != "finished":
        raise AssertionError(f"exit {out.returncode}: {out.stderr.strip()[-300:]}")
    ap, ips = meta["best"]["value"], steady_ips(run)
    res.values = {"AP": ap, "images_per_s": ips, "run": str(run)}
    res.result = f"AP {ap:.3f} (5 of 10 epochs), {ips:.0f} images/s"
    check.shared.setdefault("demo_run", run)


def step_stats_move(check: Check, res: Result) -> None:
    run = check.shared.get("demo_run")
    if run is None:
        raise AssertionError("no demo run to read (demo_cuda did not finish)")
    samples = [e["gpus"][0] for e in read_events(run / "events.jsonl")
               if e.get("type") == "system" and e.get("gpus")]
    moved, missing = [], []
    for key in ("util", "mem_used_mb", "temperature", "power_w"):
        values = {s.get(key) for s in samples if s.get(key) is not None}
        (moved if len(values) > 1 else missing).append(f"{key} ({len(values)} values)")
    res.values = {"samples": len(samples), "moved": moved, "still": missing}
    res.result = f"{len(samples)} samples; moved: {', '.join(moved) or 'none'}" + (
        f"; did not move: {', '.join(missing)}" if missing else "")
    if missing:
        raise AssertionError(res.result)


def step_nproc2(check: Check, res: Result) -> None:
    out = check.dettui("run", str(DEMO), "--headless", "--device", "cuda", "--nproc", "2",
                       "--runs-dir", str(check.work / "runs-nproc2"), *opts([
                           f"TrainDataset.dataset_dir={check.work / 'shapes'}",
                           f"EvalDataset.dataset_dir={check.work / 'shapes'}", "epoch=1",
                           "epoch_iter=5"]), timeout=res.limit_s)
    message = (out.stderr.strip() or out.stdout.strip()).splitlines()
    first = message[0] if message else ""
    res.values = {"exit": out.returncode, "message": first}
    if out.returncode == 2 and "Traceback" not in out.stderr:
        res.result = f"refused (exit 2): {first[:90]}"
    elif out.returncode == 0:
        res.result = "ran: 2 processes shared the GPU and finished"
    else:
        raise AssertionError(f"exit {out.returncode}: {out.stderr.strip()[-300:]}")


NCCL_SCRIPT = """\
import os, torch, torch.distributed as dist
dist.init_process_group("nccl")
torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
x = torch.ones(1, device="cuda")
dist.all_reduce(x)
print("nccl all_reduce", x.item(), "world", dist.get_world_size(), torch.cuda.nccl.version())
dist.destroy_process_group()
"""


def step_nccl(check: Check, res: Result) -> None:
    script = check.work / "nccl_check.py"
    script.write_text(NCCL_SCRIPT)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node=1", str(script)], cwd=check.work, env=check.env,
                         capture_output=True, text=True, timeout=res.limit_s)
    line = next((x for x in out.stdout.splitlines() if x.startswith("nccl all_reduce")), "")
    if out.returncode != 0 or not line:
        raise AssertionError(f"exit {out.returncode}: {out.stderr.strip()[-300:]}")
    res.result = line


def r50_overrides(data: Path) -> list[str]:
    size = 640
    return [f"TrainDataset.dataset_dir={data}", f"EvalDataset.dataset_dir={data}",
            "TrainDataset.synthesize.num_images=256", "EvalDataset.synthesize.num_images=8",
            f"TrainDataset.synthesize.image_size={size}",
            f"EvalDataset.synthesize.image_size={size}",
            "backbone.name=resnet50", "backbone.norm=bn", "model.fpn_channels=256",
            "model.head_convs=4", f"model.min_size={size}", f"model.max_size={size}",
            f"TrainReader.sample_transforms=[{{RandomFlip: {{prob: 0.5}}}}, "
            f"{{Resize: {{target_size: {size}}}}}]",
            f"EvalReader.sample_transforms=[{{Resize: {{target_size: {size}}}}}]",
            f"TrainReader.batch_size={R50_BATCH}", f"worker_num={R50_WORKERS}",
            "epoch=1", f"epoch_iter={R50_ITERS}", "log_iter=10", "use_ema=false"]


def step_r50(check: Check, res: Result) -> None:
    runs = check.work / "runs-r50"
    argv = [sys.executable, "-m", "tui.cli", "run", str(DEMO), "--headless", "--no-eval",
            "--device", "cuda", "--name", "r50", "--runs-dir", str(runs),
            *opts(r50_overrides(check.work / "shapes640"))]
    proc = subprocess.Popen(argv, cwd=REPO, env=check.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + res.limit_s - 5
        run = None
        while proc.poll() is None and time.monotonic() < deadline:
            if run is None and runs.is_dir() and any(runs.iterdir()):
                run = only_run(runs)
            if run is not None and (run / "events.jsonl").exists() and train_events(run):
                if "tui" not in check.shared:  # the TUI's GPU panel while it trains
                    check.shared["tui"] = capture_tui(check, runs, run.name)
                util = gpus()[0].util
                if util is not None:
                    samples.append((time.monotonic(), util))
            time.sleep(0.2)
        if proc.poll() is None:
            raise StepTimeout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or run is None:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr.read()[-300:]}")
    trains = train_events(run)
    steady = trains[len(trains) // 4:]
    loader = sum(e["data_time"] for e in steady) / sum(e["batch_time"] for e in steady)
    busy = statistics.mean(u for _, u in samples[len(samples) // 4:]) if samples else None
    ips = steady_ips(run)
    peak = max((e.get("memory") or 0) for e in trains)
    res.values = {"gpu_util_percent": busy, "loader_share": loader, "images_per_s": ips,
                  "peak_memory_mb": peak, "samples": len(samples)}
    busy_text = f"{busy:.0f} %" if busy is not None else "no NVML utilisation"
    res.result = (f"GPU busy {busy_text} (goal >= 90: "
                  f"{'met' if busy is not None and busy >= 90 else 'NOT met'}), loader "
                  f"{loader:.0%} of each step, {ips:.1f} images/s")
    check.shared["r50"] = res.values


def capture_tui(check: Check, runs: Path, run_id: str) -> dict[str, Any]:
    """The TUI's monitor of the run in a detached tmux session; its System pane captured."""
    if shutil.which("tmux") is None:
        return {"status": "skipped", "result": "needs tmux (apt-get install tmux)"}
    session = f"dettui-gpu-check-{os.getpid()}"
    code = (f"from pathlib import Path; from tui.app import run_app; "
            f"run_app(Path({str(runs)!r}), [], open_run={run_id!r})")
    try:
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48",
                        sys.executable, "-c", code], cwd=REPO, env=check.env, check=True,
                       timeout=20)
        time.sleep(6)
        subprocess.run(["tmux", "send-keys", "-t", session, "3"], check=True, timeout=10)
        time.sleep(4)
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                capture_output=True, text=True, timeout=10).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        return {"status": "FAIL", "result": f"tmux: {exc}"}
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True,
                       timeout=10)
    (check.work / "tui_gpu_panel.txt").write_text(screen)
    name = gpus()[0].name
    found = [w for w in ("GPU 0", name, "%", "°C", "W") if w in screen]
    ok = "GPU 0" in screen and name in screen
    return {"status": "ok" if ok else "FAIL",
            "result": f"System pane shows: {', '.join(found) or 'nothing of the GPU'} "
                      f"(screen in {check.work / 'tui_gpu_panel.txt'})"}


def step_tui(check: Check, res: Result) -> None:
    tui = check.shared.get("tui")
    if tui is None:
        raise AssertionError("the R50 training did not run, so there was nothing to watch")
    res.result = tui["result"]
    if tui["status"] == "skipped":
        raise _Skip
    if tui["status"] != "ok":
        raise AssertionError(tui["result"])


def step_bare(check: Check, res: Result) -> None:
    out = subprocess.run([sys.executable, __file__, "--bare-loop", str(check.work / "shapes640")],
                         cwd=REPO, env=check.env, capture_output=True, text=True,
                         timeout=res.limit_s)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0 or not line.startswith("{"):
        raise AssertionError(f"exit {out.returncode}: {out.stderr.strip()[-300:]}")
    bare = json.loads(line)
    check.shared["bare"] = bare
    r50 = check.shared.get("r50") or {}
    ratio = r50["images_per_s"] / bare["images_per_s"] if r50 else None
    res.values = {**bare, "dettui_over_bare": ratio}
    res.result = f"{bare['images_per_s']:.1f} images/s" + (
        f"; dettui {ratio:.2f} of it" if ratio else "")


def step_peak(check: Check, res: Result) -> None:
    r50, bare = check.shared.get("r50"), check.shared.get("bare")
    if not r50 and not bare:
        raise AssertionError("neither R50 run finished")
    res.values = {"dettui_mb": r50 and r50["peak_memory_mb"],
                  "bare_mb": bare and bare["peak_memory_mb"]}
    res.result = ", ".join(f"{k} {v:.0f} MB" for k, v in (
        ("dettui R50", res.values["dettui_mb"]), ("bare loop", res.values["bare_mb"]))
        if v is not None)


STEPS: list[tuple[str, str, int, Callable[[Check, Result], None]]] = [
    ("nvml", "NVML finds the GPU", 20, step_nvml),
    ("demo_cuda", "demo (5 epochs) on --device cuda: AP, images/s", 95,
     lambda c, r: demo(c, r)),
    ("demo_amp", "the same with --amp", 85, lambda c, r: demo(c, r, "--amp")),
    ("stats_move", "GPU stats (util, memory, temp, power) move in training", 5,
     step_stats_move),
    ("nproc2_one_gpu", "--nproc 2 on one GPU: refused clearly, or runs", 40, step_nproc2),
    ("nccl_1proc", "a 1-process NCCL group starts (torchrun)", 40, step_nccl),
    ("r50_busy", "R50 FCOS 640 px: GPU busy %, loader share, images/s", 120, step_r50),
    ("tui_gpu_panel", "TUI System pane (tmux) shows the GPU", 5, step_tui),
    ("bare_loop", "same R50 in a bare PyTorch loop: images/s", 60, step_bare),
    ("peak_memory", "peak CUDA memory (dettui R50, bare loop)", 5, step_peak),
]


def _alarm(signum: int, frame: object) -> None:
    raise StepTimeout


def run_step(check: Check, res: Result, fn: Callable[[Check, Result], None],
             no_gpu: str | None) -> None:
    if no_gpu:
        res.status, res.result = "skipped", f"needs a GPU: {no_gpu}"
        return
    start = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(res.limit_s)
    try:
        fn(check, res)
        res.status = "ok"
    except (StepTimeout, subprocess.TimeoutExpired):
        res.status, res.result = "TIMEOUT", f"over its {res.limit_s} s limit"
    except _Skip:
        res.status = "skipped"
    except Exception as exc:  # one step's failure is a row of the table, not the end
        res.status, res.result = "FAIL", f"{type(exc).__name__}: {exc}"[:300]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        res.seconds = time.monotonic() - start


def table(results: list[Result]) -> str:
    """A Markdown table: step, what it checks, status, result, seconds (and its limit)."""
    rows = [("step", "what", "status", "result", "s (limit)")]
    rows += [(r.step, r.what, r.status, r.result, f"{r.seconds:.0f} ({r.limit_s})")
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def bare_loop(data: str) -> None:
    """The R50 model, data and optimizer in the ~20-line loop anyone would write, on the
    GPU; prints one JSON line: steady images/s and peak CUDA memory."""
    import torch

    from engine.config import load_and_validate
    from engine.data.loader import build_datasets, collate
    from engine.models import build_model

    _, cfg = load_and_validate(DEMO, r50_overrides(Path(data)))
    torch.manual_seed(0)
    train_ds, _ = build_datasets(cfg)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=R50_BATCH, shuffle=True,
                                         drop_last=True, num_workers=R50_WORKERS,
                                         collate_fn=collate, pin_memory=True,
                                         persistent_workers=True)
    model = build_model(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.LearningRate.base_lr)
    iters, warmup, step, t0 = 60, 15, 0, 0.0
    while step < iters:
        for images, targets in loader:
            images = [i.cuda(non_blocking=True) for i in images]
            targets = [{"boxes": t["boxes"].cuda(), "labels": t["labels"].cuda()}
                       for t in targets]
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == warmup:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
            if step >= iters:
                break
    torch.cuda.synchronize()
    ips = (iters - warmup) * R50_BATCH / (time.perf_counter() - t0)
    print(json.dumps({"images_per_s": ips,
                      "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (runs, the "
                    "TUI capture); default: a temporary folder, removed")
    ap.add_argument("--bare-loop", metavar="DATA", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_loop:
        bare_loop(args.bare_loop)
        return 0
    count = cuda_device_count()
    no_gpu = None
    if count == 0:
        no_gpu = nvml_status() or "no CUDA device visible (CUDA_VISIBLE_DEVICES)"
    work = args.keep or Path(tempfile.mkdtemp(prefix="dettui-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH",
                                                                             "")}
    check = Check(work=work, env=env)
    results = []
    started = time.monotonic()
    try:
        for name, what, limit, fn in STEPS:
            res = Result(name, what, limit)
            print(f"[{time.monotonic() - started:5.0f} s] {name}: {what} ...", flush=True)
            run_step(check, res, fn, no_gpu)
            print(f"        {res.status}: {res.result}", flush=True)
            results.append(res)
            if name == "nvml" and res.status != "ok":
                no_gpu = no_gpu or f"NVML: {res.result}"
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - started
    print()
    print(table(results))
    print(f"\n{total:.0f} s in all; limits add up to {sum(s[2] for s in STEPS)} s. "
          f"Reproduce: python benchmarks/gpu_check.py")
    if args.json:
        args.json.write_text(json.dumps({"total_s": total, "no_gpu": no_gpu,
                                         "steps": [asdict(r) for r in results]}, indent=2))
    return 1 if any(r.status in ("FAIL", "TIMEOUT") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
