"""Does co-tuning beat plain fine-tuning when a detector moves to a few-shot label set?

The CPU-scale pair of configs/cot/: a tiny Faster R-CNN trained on four shape kinds (circle,
square, triangle, cross; configs/cot/shapes_source.yml) is the SOURCE detector. It is
transferred to three other kinds (ring, frame, diamond) with 10 boxes per class
(configs/cot/cotuning_shapes.yml) twice from the same source weights, for the same
iterations: plain fine-tuning (``-o use_cot=false``: the source classifier is dropped) and
co-tuning (the source classifier is kept as a second head and trained towards the learned
target -> source relationship). Each runs once per seed (5 by default); the AP is COCO AP on
200 val images of the target kinds. Every run (the source training too) has ``--threads``
intra-op CPU threads (default 1) whatever ``--jobs`` is: ``--jobs N`` only runs N transfers
side by side, so it changes the wall time and never an AP.

    python benchmarks/cot_gain.py [--seeds 5] [--source best.pt] [--shots 10] [--jobs N]
                                  [--threads T] [--json] [-o key=value ...]
                                  [--cot-opt key=value ...]

Without ``--source`` the source detector is trained first (12 epochs on 2000 images: about
1.5 h measured on two threads, about 2 h estimated on the default one); ``--source PATH``
reuses its ``checkpoints/best.pt``, which is then COCO-evaluated on the source val set so the
table says how good it is. ``-o`` goes to every transfer run, ``--cot-opt`` to the co-tuning
runs only (e.g. ``BBoxHead.loss_cot.cot_lambda=0.1``). ``--keep DIR`` keeps the run folders.

The AP of a run is the AP of its last evaluation. The table gives mean +- std over seeds,
the gain (the mean of the per-seed differences, with a 95% Student-t interval on them;
"better" only when the interval's lower end is above 0), images/s (measured by the engine:
compare runs of one invocation only), the AP at
every evaluation (mean over seeds: does either overfit?), the loss terms at the start and end
of training, and the relationship the co-tuning runs learned (top source class per target
class, from RUN/cot_relationship.json). With ``--json`` the last line is one JSON object of
mean AP (0-1): ``{"finetune": ..., "cotuning": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.paired import (  # noqa: E402
    DEFAULT_THREADS,
    format_ci,
    paired_over,
    run_env,
)
from engine.protocol.events import read_events  # noqa: E402

SOURCE_CONFIG = REPO / "configs" / "cot" / "shapes_source.yml"
TARGET_CONFIG = REPO / "configs" / "cot" / "cotuning_shapes.yml"
METHODS = {"finetune": ["use_cot=false"], "cotuning": ["use_cot=true"]}


@dataclass
class RunResult:
    ap: float
    seconds: float
    ips: float
    iters: int
    curve: dict[int, float]  # 1-based epoch -> AP
    first_losses: dict[str, float]
    last_losses: dict[str, float]  # mean over the last epoch's logged steps
    relationship: dict | None = field(default=None)


def engine(args: list[str], cwd: Path, what: str, log: Path,
           threads: int = DEFAULT_THREADS) -> float:
    """Run ``python -m engine ARGS`` on ``threads`` intra-op CPU threads; the wall seconds.
    A failure ends the benchmark."""
    env = run_env(threads, {**os.environ, "PYTHONPATH": str(REPO)})
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{what} failed (exit {proc.returncode}); see {log}")
    return seconds


def with_opts(opts: list[str]) -> list[str]:
    return [a for o in opts for a in ("-o", o)]


def train_source(workdir: Path, threads: int = DEFAULT_THREADS,
                 opts: list[str] | None = None) -> tuple[Path, float]:
    run = workdir / "runs" / "source"
    run.mkdir(parents=True)
    engine(["train", str(SOURCE_CONFIG), "--run-dir", str(run), *with_opts(opts or [])],
           workdir, "source training", workdir / "source.log", threads)
    meta = json.loads((run / "run.json").read_text())
    return run / "checkpoints" / "best.pt", float(meta["best"]["value"])


def source_ap(weights: Path, workdir: Path, threads: int = DEFAULT_THREADS) -> float:
    out = workdir / "source_eval.json"
    engine(["eval", str(SOURCE_CONFIG), "--weights", str(weights), "--json", str(out)],
           workdir, "source evaluation", workdir / "source_eval.log", threads)
    return float(json.loads(out.read_text())["metrics"]["AP"])


def shot_overrides(shots: int) -> list[str]:
    if shots == 10:
        return []
    return [f"TrainDataset.synthesize.shots={shots}", f"TrainDataset.image_dir=train{shots}shot",
            f"TrainDataset.anno_path=annotations/train{shots}shot.json"]


def prepare_target_data(workdir: Path, opts: list[str]) -> None:
    """Generate the target set (train shots and val) before any transfer starts, so runs
    side by side never generate it."""
    from engine.config import load_and_validate
    from engine.data.shapes import ensure_dataset
    from engine.protocol.errors import UserError

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        _, cfg = load_and_validate(TARGET_CONFIG, opts)
        ensure_dataset(cfg.TrainDataset, section="TrainDataset")
        ensure_dataset(cfg.EvalDataset, section="EvalDataset")
    except UserError as exc:  # bad input: one line, exit 2, as the engine itself
        print(f"error: {TARGET_CONFIG.relative_to(REPO)}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        os.chdir(cwd)


def transfer(method: str, seed: int, source: Path, workdir: Path, opts: list[str],
             threads: int = DEFAULT_THREADS) -> RunResult:
    run = workdir / "runs" / f"{method}-seed{seed}"
    run.mkdir(parents=True)
    args = ["train", str(TARGET_CONFIG), "--run-dir", str(run),
            *with_opts([f"pretrain_weights={source}", f"seed={seed}", *opts])]
    seconds = engine(args, workdir, f"{method} seed {seed}", run / "benchmark.log", threads)
    events = read_events(run / "events.jsonl")
    evals = [e for e in events if e["type"] == "eval"]
    trains = [e for e in events if e["type"] == "train"]
    last_epoch = trains[-1]["epoch"]
    tail = [e["losses"] for e in trains if e["epoch"] == last_epoch]
    rel_path = run / "cot_relationship.json"
    return RunResult(
        ap=evals[-1]["metrics"]["AP"], seconds=seconds,
        ips=statistics.mean(e["ips"] for e in trains), iters=trains[-1]["iter"],
        curve={e["epoch"] + 1: e["metrics"]["AP"] for e in evals},
        first_losses=dict(trains[0]["losses"]),
        last_losses={k: statistics.mean(t[k] for t in tail) for k in tail[0]},
        relationship=json.loads(rel_path.read_text()) if rel_path.exists() else None)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_transfers(methods: list[str], seeds: list[int], source: Path, workdir: Path, *,
                  opts: list[str] | None = None, cot_opts: list[str] | None = None,
                  jobs: int = 1, threads: int = DEFAULT_THREADS,
                  echo: bool = True) -> dict[str, dict[int, RunResult]]:
    """Every method on every seed from ``source``: per method and seed, its result.

    With ``jobs`` > 1 that many runs go side by side. Nothing a run computes depends on
    ``jobs``: every run gets ``threads`` intra-op threads, its seed from the seed list, its
    own run folder, and the target data is generated before any run starts."""
    opts = list(opts or [])
    results: dict[str, dict[int, RunResult]] = {m: {} for m in methods}
    lock = threading.Lock()

    def one(method: str, seed: int) -> None:
        extra = [*METHODS[method], *((cot_opts or []) if method == "cotuning" else [])]
        r = transfer(method, seed, source, workdir, [*opts, *extra], threads)
        with lock:
            results[method][seed] = r
            if echo:
                print(f"{method:<10} seed {seed}: AP {r.ap:.4f}, {r.iters} iters, "
                      f"{r.seconds:.0f} s, {r.ips:.1f} images/s", flush=True)

    workdir.mkdir(parents=True, exist_ok=True)
    prepare_target_data(workdir, opts)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in [pool.submit(one, method, seed) for method in methods for seed in seeds]:
            future.result()
    finally:
        pool.shutdown(cancel_futures=True)  # a failed run stops the benchmark
    return results


def report(results: dict[str, dict[int, RunResult]], src_ap: float,
           reproduce: str) -> dict[str, float]:
    print(f"\nsource detector ({SOURCE_CONFIG.name}): AP {src_ap:.4f} on its own val set")
    print(f"\n{'method':<10} {'AP (mean +- std)':>18} {'min':>7} {'max':>7} {'seeds':>5} "
          f"{'iters':>6} {'s/run':>6} {'img/s':>6}")
    print("-" * 72)
    means: dict[str, float] = {}
    runs_of = {m: [by_seed[s] for s in sorted(by_seed)] for m, by_seed in results.items()}
    for method, runs in runs_of.items():
        aps = [r.ap for r in runs]
        m, s = mean_std(aps)
        means[method] = m
        print(f"{method:<10} {m:>9.4f} +- {s:.4f} {min(aps):>7.4f} {max(aps):>7.4f} "
              f"{len(runs):>5} {runs[0].iters:>6} "
              f"{statistics.mean(r.seconds for r in runs):>6.0f} "
              f"{statistics.mean(r.ips for r in runs):>6.1f}")
    if len(means) == 2:
        g = paired_over({s: r.ap for s, r in results["cotuning"].items()},
                        {s: r.ap for s, r in results["finetune"].items()})
        wins = sum(d > 0 for d in g.diffs)
        print(f"gain (co-tuning - fine-tuning, same seed): {g.mean:+.1f} AP points, 95% CI "
              f"{format_ci(g)} (t-interval on the {g.n} per-seed differences: "
              f"{' '.join(f'{d:+.1f}' for d in g.diffs)}); co-tuning better on {wins} of "
              f"{g.n} seeds; better over seeds: {'yes' if g.met(0.0) else 'NO'} (yes only when "
              "the interval's lower end is above 0; PaddleDetection, road signs: "
              "56.7 -> 60.1)")
    print("\nAP at each evaluation (mean over seeds)")
    epochs = sorted(next(iter(runs_of.values()))[0].curve)
    print(f"{'epoch':<10}" + "".join(f"{e:>7}" for e in epochs))
    for method, runs in runs_of.items():
        print(f"{method:<10}" + "".join(
            f"{statistics.mean(r.curve[e] for r in runs):>7.3f}" for e in epochs))
    print("\nloss terms (mean over seeds): first step -> last epoch")
    for method, runs in runs_of.items():
        keys = [k for k in ("loss_classifier", "loss_box_reg", "loss_cot")
                if k in runs[0].last_losses]
        parts = [f"{k} {statistics.mean(r.first_losses[k] for r in runs):.3f} -> "
                 f"{statistics.mean(r.last_losses[k] for r in runs):.3f}" for k in keys]
        print(f"{method:<10} " + ", ".join(parts))
    rel = next((r.relationship for r in runs_of.get("cotuning", []) if r.relationship), None)
    if rel:
        print("\nlearned relationship (target class: top source classes)")
        for name in rel["target_classes"]:
            top = ", ".join(f"{t['source']} {t['p']:.2f}" for t in rel["top"][name])
            print(f"  {name:<10} {top}   ({rel['examples'][name]} boxes)")
    print(f"\nreproduce: {reproduce}")
    return means


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5,
                    help="runs per method (seeds 0..N-1; default 5)")
    ap.add_argument("--source", type=Path, help="the source detector's best.pt (else trained)")
    ap.add_argument("--shots", type=int, default=10, help="boxes per target class")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--jobs", type=int, default=1, metavar="N",
                    help="transfer runs side by side (default 1); it changes only the wall "
                         "time, never an AP: every run has --threads threads whatever N is")
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS, metavar="T",
                    help=f"intra-op CPU threads of every run, the source training included "
                         f"(default {DEFAULT_THREADS}); AP is reproducible only at the same T "
                         "(and CPU type)")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of mean AP")
    ap.add_argument("-o", "--opt", action="append", default=[],
                    help="override for every transfer run (e.g. epoch=10)")
    ap.add_argument("--cot-opt", action="append", default=[],
                    help="override for the co-tuning runs only")
    ap.add_argument("--keep", type=Path, help="keep the run folders here")
    args = ap.parse_args()
    for name in ("seeds", "jobs", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name}: at least 1")
    if args.source is not None and not args.source.is_file():
        print(f"--source: no such file: {args.source}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="dettui-cot-") as tmp:
        workdir = Path(tmp)
        if args.source is None:
            source, src_ap = train_source(workdir, args.threads)
            print(f"source detector trained: AP {src_ap:.4f} ({source})", flush=True)
        else:
            source = args.source.resolve()
            src_ap = source_ap(source, workdir, args.threads)
        results = run_transfers(args.methods, list(range(args.seeds)), source, workdir,
                                opts=[*shot_overrides(args.shots), *args.opt],
                                cot_opts=args.cot_opt, jobs=args.jobs, threads=args.threads)
        if args.keep:
            shutil.copytree(workdir / "runs", args.keep, dirs_exist_ok=True)

    parts = [f"--seeds {args.seeds}"]
    parts += [f"--source {args.source}"] if args.source else []
    parts += [f"--shots {args.shots}"] if args.shots != 10 else []
    parts += [f"--methods {' '.join(args.methods)}"] if args.methods != list(METHODS) else []
    parts += [f"--jobs {args.jobs}"] if args.jobs > 1 else []
    parts += [f"--threads {args.threads}"] if args.threads != DEFAULT_THREADS else []
    parts += [f"-o {o}" for o in args.opt] + [f"--cot-opt {o}" for o in args.cot_opt]
    parts += ["--json"] if args.json else []
    means = report(results, src_ap, "python benchmarks/cot_gain.py " + " ".join(parts))
    if args.json:
        print(json.dumps(means))
    return 0


if __name__ == "__main__":
    sys.exit(main())
