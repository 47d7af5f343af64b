"""Train-step throughput of configs' detectors on synthetic input (no data loading).

    python benchmarks/model_speed.py configs/demo/fcos_tiny_shapes.yml \\
        configs/rtdetr/rtdetr_tiny_shapes.yml [--batch 16] [--size 160] [--iters 10]

Times forward + backward + SGD step at ``--batch`` images of ``--size`` px with 1-4 random
boxes each, after two warm-up steps, and prints a table of train images/s (the median step).
With several configs the steps are interleaved (one step of each per round), so every model
sees the same machine load: on a shared machine compare rows of one table, not of two runs.
The CPU thread count is torch's default (one per core) unless ``--threads`` is given.

Measured on the 2-core dev machine (batch 16, 160 px, 2 threads, ``OMP_WAIT_POLICY=PASSIVE``,
median of 10 interleaved steps) while it was shared with other jobs (load average about 5 on
2 cores): the absolute numbers are low, their ratio is the useful part.

| config                                | architecture | params | train images/s |
|---------------------------------------|--------------|--------|----------------|
| configs/demo/fcos_tiny_shapes.yml     | FCOS         | 1.50M  | 26.2           |
| configs/rtdetr/rtdetr_tiny_shapes.yml | RTDETR       | 1.76M  | 12.3           |

Single-threaded CPU time per step of 16 images (fastest of 10 interleaved steps, which load
disturbs much less): FCOS 0.28 s (58 images per CPU-second), RT-DETR 0.55 s (29).

Where the tiny RT-DETR's step goes (single thread, 16 images at 160 px): forward CPU time
ResNet-vd backbone 0.12 s, hybrid encoder 0.06 s, decoder 0.05 s, matching + losses 0.03 s;
backward + AdamW about 1.4x the forward. Convolutions with their BatchNorms are ~55% of the
step (the backbone is 71% of the forward FLOPs, mostly its 3-conv stem at 80x80 and first
stage at 40x40), the deformable-attention fallback (``grid_sample``) ~5%, scipy's Hungarian
matcher under 1%. Measured changes (CPU time per step, paired in one process):

* channels-last input: x0.88 (kept; ``RTDETR.prepare``);
* ``num_denoising`` 100 -> 16: x0.74. 100 adds about 200 denoising queries to the 30
  matching ones. 16 (4+ groups) also converged faster than 8: AP 0.64 vs 0.49 after 2 of 6
  epochs, 0.848 vs 0.830 after all 6 (one seed each);
* transformers' loss builds the N x N IoU/GIoU matrices of the N matched pairs and keeps the
  diagonal; with 100 denoising queries that made the whole step 1.72x slower. The pair-wise
  IoUs of ``ScoredRTDetrLoss`` remove it (same values, a test compares them);
* a 16-channel stem and first stage: x0.79, but AP 0.557 instead of 0.685 after 3 epochs
  (not kept); a 128-px input: x0.72 (not kept: objects would shrink to 13 px).

The issue's first try (a 1.4M-parameter bottleneck-ResNet RT-DETR, 160 px, batch 8) takes
0.23 s forward + 0.31 s backward here on a quiet machine. Its reported 5 s + 7 s matches the
same model fed 640-px images (3.3 s + 4.5 s quiet, more on busy cores): transformers'
``RTDetrImageProcessor`` resizes to 640 x 640 by default. OpenMP threads spinning on busy
cores double it again (0.8 s + 0.9 s vs 0.43 s + 0.65 s with ``OMP_WAIT_POLICY=PASSIVE``,
beside two busy processes).
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
