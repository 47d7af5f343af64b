"""Process environment: device choice, torch.distributed init, seeding.

Mirrors PaddleDetection's ``init_parallel_env``/``init_fleet_env`` and ``set_random_seed``
(notes §2): under torchrun (WORLD_SIZE > 1) we join the process group (NCCL on GPU, gloo
on CPU); by default each rank seeds with ``seed + rank`` so augmentations differ per rank;
``enable_ce`` seeds everything with 0 and turns on deterministic algorithms.
"""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from engine.config.schema import Config
from engine.protocol.errors import ConfigError


@dataclass
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's CUDA device if there is one, else the CPU."""
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but CUDA is not available on this "
                          "machine", key="device", hint="use device: cpu (or auto)")
    index = int(spec.split(":")[1]) if ":" in spec else local_rank
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)",
                          key="device")
    return torch.device("cuda", index)


def init_env(cfg: Config) -> DistEnv:
    """Join the process group when torchrun started us with several processes."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def set_random_seed(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        # cuBLAS needs this for deterministic matmuls; it must be set before the first one.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def teardown_env(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
