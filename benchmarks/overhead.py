"""Training throughput of ``dettui run --headless`` vs a bare PyTorch loop.

Same model, data, batch size, optimizer and DataLoader workers; the bare loop is the
~40-line loop anyone would write (below, ``bare_loop``). Target (issue 2): ratio >= 0.95.

    python benchmarks/overhead.py [--iters 60] [--warmup 15] [--config PATH]

The dettui number comes from the engine's own ``train`` events (timestamps of steady-state
log points, every 5 iterations), with evaluation off; the bare loop times the same
iterations after the same warm-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.protocol.events import read_events  # noqa: E402


def common_overrides(data: Path, iters: int) -> list[str]:
    return [f"TrainDataset.dataset_dir={data}", f"EvalDataset.dataset_dir={data}",
            "epoch=1", f"epoch_iter={iters}", "log_iter=5"]


def dettui_images_per_second(config: str, data: Path, iters: int, warmup: int,
                             workdir: Path) -> float:
    cmd = [sys.executable, "-m", "tui.cli", "run", config, "--headless", "--no-eval",
           "--runs-dir", str(workdir / "runs")]
    for o in common_overrides(data, iters):
        cmd += ["-o", o]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dettui run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    run = next((workdir / "runs").iterdir())
    trains = [e for e in read_events(run / "events.jsonl") if e["type"] == "train"]
    a = next(e for e in trains if e["iter"] >= warmup)
    b = trains[-1]
    return (b["iter"] - a["iter"]) * _batch_size(run) / (b["t"] - a["t"])


def _batch_size(run: Path) -> int:
    import yaml

    return int(yaml.safe_load((run / "config.yaml").read_text())["TrainReader"]["batch_size"])


def bare_loop(config: str, data: Path, iters: int, warmup: int) -> float:
    """The plain loop: build model + data + optimizer, step, time the steady state."""
    import torch

    from engine.config import load_and_validate
    from engine.data.loader import build_datasets, collate
    from engine.models import build_model

    _, cfg = load_and_validate(config, common_overrides(data, iters))
    torch.manual_seed(cfg.seed)
    train_ds, _ = build_datasets(cfg)
    loader = torch.utils.data.DataLoader(
        train_ds, batch_size=cfg.TrainReader.batch_size, shuffle=True, drop_last=True,
        num_workers=cfg.worker_num, collate_fn=collate,
        persistent_workers=cfg.worker_num > 0)
    model = build_model(cfg).train()
    if cfg.OptimizerBuilder.type == "SGD":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.LearningRate.base_lr, momentum=0.9,
                              weight_decay=cfg.OptimizerBuilder.weight_decay)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.LearningRate.base_lr,
                                weight_decay=cfg.OptimizerBuilder.weight_decay)
    step, t_start = 0, None
    while step < iters:
        for images, targets in loader:
            targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
            losses = model(images, targets)
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(),
                                           cfg.OptimizerBuilder.clip_grad_norm)
            opt.step()
            loss.item()
            step += 1
            if step == warmup:
                t_start = time.perf_counter()
            if step >= iters:
                break
    return (iters - warmup) * cfg.TrainReader.batch_size / (time.perf_counter() - t_start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs/demo/fcos_tiny_shapes.yml"))
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dettui-overhead-") as tmp:
        work = Path(tmp)
        data = work / "data"
        # Generate the data once (through the engine, as the demo does), then time both.
        dettui_ips = dettui_images_per_second(args.config, data, args.iters, args.warmup, work)
        bare_ips = bare_loop(args.config, data, args.iters, args.warmup)
    ratio = dettui_ips / bare_ips
    print(f"\n{'loop':<34} {'images/s':>10}")
    print("-" * 45)
    print(f"{'bare PyTorch loop':<34} {bare_ips:>10.1f}")
    print(f"{'dettui run --headless (engine)':<34} {dettui_ips:>10.1f}")
    print(f"{'ratio (target >= 0.95)':<34} {ratio:>10.3f}  {'met' if ratio >= 0.95 else 'NOT met'}")
    print(f"\n{args.iters} iterations, first {args.warmup} excluded; {os.cpu_count()} CPU cores")
    print(f"reproduce: python benchmarks/overhead.py --iters {args.iters} --warmup {args.warmup}"
          f" --config {args.config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
