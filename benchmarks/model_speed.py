"""Train-step throughput of configs' detectors on synthetic input (no data loading).

    python benchmarks/model_speed.py configs/demo/fcos_tiny_shapes.yml \\
        configs/rtdetr/rtdetr_tiny_shapes.yml [--batch 16] [--size 160] [--iters 10]

Times forward + backward + SGD step at ``--batch`` images of ``--size`` px with 1-4 random
boxes each, after two warm-up steps, and prints a table of train images/s (the median step).
With several configs the steps are interleaved (one step of each per round), so every model
sees the same machine load: on a shared machine compare rows of one table, not of two runs.
The CPU thread count is torch's default (one per core) unless ``--threads`` is given.

Measured on the 2-core dev machine (batch 16, 160 px, 2 threads, ``OMP_WAIT_POLICY=PASSIVE``,
median of 8 interleaved steps) while it was shared with other jobs (load average about 13 on
2 cores): the absolute numbers are low, their ratio is the useful part.

| config                                | architecture | params | train images/s |
|---------------------------------------|--------------|--------|----------------|
| configs/demo/fcos_tiny_shapes.yml     | FCOS         | 1.50M  | 9.5            |
| configs/rtdetr/rtdetr_tiny_shapes.yml | RTDETR       | 1.76M  | 5.7            |

Single-threaded CPU time per step of 16 images (fastest of 10 interleaved steps, which load
disturbs much less): FCOS 0.30 s (53 images per CPU-second), RT-DETR 0.57 s (28).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from engine.config import load_and_validate  # noqa: E402
from engine.config.schema import Config  # noqa: E402
from engine.models import build_model, count_parameters  # noqa: E402


def synthetic_batch(cfg: Config, batch: int, size: int
                    ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        n = int(torch.randint(1, 5, (1,), generator=g))
        side = size * (0.1 + 0.3 * torch.rand(n, 1, generator=g))
        xy = (size - side) * torch.rand(n, 2, generator=g)
        targets.append({"boxes": torch.cat([xy, xy + side], 1),
                        "labels": torch.randint(1, cfg.num_classes + 1, (n,), generator=g)})
    return images, targets


class Bench:
    """One config's model, optimizer and batch, timed one step at a time."""

    def __init__(self, config: str, overrides: list[str], batch: int, size: int):
        _, self.cfg = load_and_validate(config, overrides)
        self.config = config
        torch.manual_seed(0)
        self.model: nn.Module = build_model(self.cfg).train()
        self.optimizer = torch.optim.SGD(
            [p for p in self.model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        self.images, self.targets = synthetic_batch(self.cfg, batch, size)
        self.seconds: list[float] = []

    def step(self) -> float:
        start = time.perf_counter()
        loss = sum(self.model(self.images, self.targets).values())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="applied to every config")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    benches = [Bench(c, args.override, args.batch, args.size) for c in args.configs]
    for bench in benches:
        for _ in range(2):
            bench.step()
    for _ in range(args.iters):
        for bench in benches:
            bench.seconds.append(bench.step())
    print(f"batch {args.batch}, {args.size} px, {torch.get_num_threads()} threads, "
          f"median of {args.iters} steps\n")
    width = max(len(b.config) for b in benches)
    print(f"| {'config':<{width}} | architecture | params | train images/s |")
    print(f"|{'-' * (width + 2)}|--------------|--------|----------------|")
    for b in benches:
        ips = args.batch / statistics.median(b.seconds)
        params = f"{count_parameters(b.model) / 1e6:.2f}M"
        print(f"| {b.config:<{width}} | {b.cfg.architecture:<12} | {params:<6} | {ips:<14.1f} |")


if __name__ == "__main__":
    main()
