"""Train-step throughput of a config's detector on synthetic input (no data loading).

    python benchmarks/model_speed.py configs/demo/fcos_tiny_shapes.yml [--batch 16] [--size 160]

Times forward + backward + SGD step at ``--batch`` images of ``--size`` px with 1-4 random
boxes each, after two warm-up steps, and prints images/s. The CPU thread count is torch's
default (one per core) unless ``--threads`` is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from engine.config import load_and_validate  # noqa: E402
from engine.models import build_model, count_parameters  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("-o", "--override", action="append", default=[])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _, cfg = load_and_validate(args.config, args.override)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                                momentum=0.9)
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, args.size, args.size, generator=g) for _ in range(args.batch)]
    targets = []
    for _ in range(args.batch):
        n = int(torch.randint(1, 5, (1,), generator=g))
        side = args.size * (0.1 + 0.3 * torch.rand(n, 1, generator=g))
        xy = (args.size - side) * torch.rand(n, 2, generator=g)
        targets.append({"boxes": torch.cat([xy, xy + side], 1),
                        "labels": torch.randint(1, cfg.num_classes + 1, (n,), generator=g)})

    def step() -> None:
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    seconds = time.perf_counter() - start
    print(f"{cfg.architecture}/{cfg.backbone.name} width={cfg.backbone.width} "
          f"fpn={cfg.model.fpn_channels} head_convs={cfg.model.head_convs} "
          f"levels={len(cfg.model.anchor_sizes)} params={count_parameters(model) / 1e6:.2f}M "
          f"threads={torch.get_num_threads()} batch={args.batch} size={args.size}: "
          f"{args.iters * args.batch / seconds:.1f} train images/s")


if __name__ == "__main__":
    main()
