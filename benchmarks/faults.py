"""Fault benchmark (issue 4.7): K random SIGKILLs at random times over one training run,
resumed each time with ``--resume auto``; then the final weights are compared with an
uninterrupted run of the same config.

    python benchmarks/faults.py [--kills 5] [--seed 0] [--epochs 2] [--epoch-iter 12]
                                [--interval 3] [--workers 0] [-o key=value ...]

Both runs use ``enable_ce`` (deterministic) and the tiny demo config at 64 px. A kill
lands at a random moment: a random training iteration plus a random fraction of a step,
so it can hit a forward pass, an optimizer step or a checkpoint write alike. After each
kill every checkpoint file is loaded (``checkpoints corrupted`` counts the unreadable
ones; it must be 0) and the iterations trained since the checkpoint the resume will start
from are counted as lost. Prints one table and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from engine.protocol.errors import WeightsError  # noqa: E402
from engine.protocol.events import read_events  # noqa: E402
from engine.protocol.rundir import RunDirectory  # noqa: E402
from engine.trainers.checkpoint import checkpoint_candidates, load_checkpoint  # noqa: E402

CONFIG = REPO / "configs" / "demo" / "fcos_tiny_shapes.yml"


def overrides(data: Path, args: argparse.Namespace) -> list[str]:
    return [
        f"TrainDataset.dataset_dir={data}", f"EvalDataset.dataset_dir={data}",
        "TrainDataset.synthesize.num_images=24", "EvalDataset.synthesize.num_images=8",
        "TrainDataset.synthesize.image_size=64", "EvalDataset.synthesize.image_size=64",
        "model.min_size=64", "model.max_size=64",
        "TrainReader.sample_transforms=[{RandomFlip: {prob: 0.5}}, "
        "{ColorJitter: {brightness: 0.3, prob: 0.5}}, {Resize: {target_size: 64}}]",
        "EvalReader.sample_transforms=[{Resize: {target_size: 64}}]",
        f"epoch={args.epochs}", f"epoch_iter={args.epoch_iter}", "snapshot_epoch=1",
        "log_iter=1", f"worker_num={args.workers}", "TrainReader.batch_size=4",
        "LearningRate.warmup_iters=2", "enable_ce=true",
        f"checkpoint_interval={args.interval}", *args.opt,
    ]


def engine_cmd(run: Path, data: Path, args: argparse.Namespace, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "engine", "train", str(CONFIG), "--run-dir", str(run),
           "--no-eval", *extra]
    for o in overrides(data, args):
        cmd += ["-o", o]
    return cmd


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["PYTHONUNBUFFERED"] = "1"
    # One thread per process: on a shared, busy machine OpenMP's spinning threads make
    # step times erratic; this benchmark is about faults, not speed.
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def train_events(run: Path, since: float = 0.0) -> list[dict]:
    """The run's ``train`` events (one per step: log_iter=1) written after ``since``."""
    return [e for e in read_events(run / "events.jsonl")
            if e.get("type") == "train" and e["t"] >= since]


def trained(run: Path, since: float = 0.0) -> int:
    return max((e["iter"] for e in train_events(run, since)), default=0)


def check_checkpoints(run: Path) -> tuple[int, int]:
    """(unreadable checkpoint files, iteration of the one ``--resume auto`` will use)."""
    corrupt, resume_iter = 0, None
    for path in checkpoint_candidates(run / "checkpoints"):
        try:
            state = load_checkpoint(path)
        except WeightsError as exc:
            corrupt += 1
            print(f"  CORRUPT: {exc.render()}")
            continue
        if resume_iter is None:
            resume_iter = int(state["iter"])
    return corrupt, resume_iter or 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="picks the kill moments")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--epoch-iter", type=int, default=12)
    ap.add_argument("--interval", type=int, default=3, help="checkpoint_interval")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    ap.add_argument("-o", "--opt", action="append", default=[])
    args = ap.parse_args()
    total = args.epochs * args.epoch_iter
    if not 1 <= args.kills <= total - 2:
        ap.error(f"--kills must be in 1..{total - 2} for {total} iterations")
    rng = random.Random(args.seed)
    # Distinct kill iterations, spread over the run; each kill also waits a random part
    # of a step once that iteration is logged.
    targets = sorted(rng.sample(range(2, total), args.kills))

    with tempfile.TemporaryDirectory(prefix="dettui-faults-") as tmp:
        root, data = Path(tmp), Path(tmp) / "data"
        subprocess.run([sys.executable, "-m", "engine", "shapes", str(data), "--train", "24",
                        "--val", "8", "--image-size", "64"], cwd=REPO, env=env(), check=True,
                       capture_output=True)

        t0 = time.perf_counter()
        straight = RunDirectory.create(root / "runs", run_id="straight").path
        subprocess.run(engine_cmd(straight, data, args), cwd=REPO, env=env(), check=True,
                       capture_output=True)
        straight_s = time.perf_counter() - t0

        killed = RunDirectory.create(root / "runs", run_id="killed").path
        lost: list[int] = []
        corrupted = survived = 0  # survived: resumed from, trained on
        t0 = time.perf_counter()
        resume: tuple[str, ...] = ()
        resume_iter = 0
        for k, target in enumerate(targets, 1):
            # At least one new step per attempt: a kill during start-up proves little.
            target = min(max(target, resume_iter + 1), total - 1)
            started = time.time()
            proc = subprocess.Popen(engine_cmd(killed, data, args, *resume), cwd=REPO,
                                    env=env(), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            while trained(killed, started) < target and proc.poll() is None:
                time.sleep(0.01)
            if proc.poll() is not None:
                print(f"kill {k}: the engine ended (code {proc.returncode}) before "
                      f"iteration {target}")
                return 1
            survived += k > 1  # the previous kill was resumed from and trained on
            step_s = train_events(killed, started)[-1]["batch_time"]
            time.sleep(rng.uniform(0, step_s))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            at = trained(killed, started)
            bad, resume_iter = check_checkpoints(killed)
            corrupted += bad
            lost.append(at - resume_iter)
            print(f"kill {k}/{args.kills}: at iteration {at} (target {target}), resumes from "
                  f"{resume_iter}, {at - resume_iter} lost, {bad} corrupt checkpoint(s)")
            resume = ("--resume", "auto")
        done = subprocess.run(engine_cmd(killed, data, args, *resume), cwd=REPO, env=env(),
                              capture_output=True, text=True)
        killed_s = time.perf_counter() - t0
        survived += done.returncode == 0
        if done.returncode != 0:
            print(done.stderr[-3000:])

        a = load_checkpoint(straight / "checkpoints" / "last.pt")
        b = load_checkpoint(killed / "checkpoints" / "last.pt")
        same = (a["iter"] == b["iter"] == total and a["model"].keys() == b["model"].keys()
                and all(torch.equal(a["model"][n], b["model"][n]) for n in a["model"]))

    cmd = " ".join(shlex.quote(x) for x in [
        "python", "benchmarks/faults.py", "--kills", str(args.kills), "--seed", str(args.seed),
        "--epochs", str(args.epochs), "--epoch-iter", str(args.epoch_iter),
        "--interval", str(args.interval), "--workers", str(args.workers),
        *[x for o in args.opt for x in ("-o", o)]])
    rows = [
        ("iterations", f"{total} ({args.epochs} epochs x {args.epoch_iter}), checkpoint "
                       f"every {args.interval} + every epoch, {args.workers} workers"),
        ("kills survived", f"{survived}/{args.kills}"),
        ("checkpoints corrupted", str(corrupted)),
        ("iterations lost per kill", f"mean {statistics.mean(lost):.1f}, max {max(lost)} "
                                     f"({', '.join(map(str, lost))})"),
        ("final weights == uninterrupted", "yes (torch.equal, every tensor)" if same else "NO"),
        ("wall time", f"uninterrupted {straight_s:.1f}s, killed + resumed {killed_s:.1f}s"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(f"\nreproduce: {cmd}")
    return 0 if survived == args.kills and corrupted == 0 and same else 1


if __name__ == "__main__":
    sys.exit(main())
