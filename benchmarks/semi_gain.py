"""Does semi-supervised training beat supervised training with the same labels?

The built-in shapes dataset (2000 training images) with 10% of the images labeled and the
rest unlabeled; every method trains for the same number of iterations on the same labeled
images, then is COCO-evaluated on the shapes val set. Each method runs once per seed, one
run at a time (runs in parallel would share 2 cores and slow each other unevenly).

    python benchmarks/semi_gain.py [--seeds 3] [--methods supervised DenseTeacher ARSL
                                   supervised_rtdetr Semi_RTDETR] [--json] [-o key=value ...]

Two families, each against its own supervised baseline: the tiny FCOS (``supervised``,
``DenseTeacher``, ``ARSL``) and the tiny RT-DETR (``supervised_rtdetr``, ``Semi_RTDETR``);
``--methods supervised_rtdetr Semi_RTDETR`` runs just the RT-DETR pair.

The AP of a run is the AP of its last evaluation, of the model the method evaluates first
(the teacher for the semi-supervised methods, once it exists; the model itself for the
supervised baselines). The table gives mean +- std over the seeds, the mean gain of each
semi-supervised method over its supervised baseline, and images/s (measured by the engine,
so compare runs of one invocation only). With ``--json`` the last line is one JSON object
of mean AP (0-1) per method.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.events import read_events  # noqa: E402


@dataclass(frozen=True)
class Method:
    config: str
    baseline: str | None  # the supervised method it must beat
    target_gain: float    # AP points over the baseline


METHODS: dict[str, Method] = {
    "supervised": Method("configs/semi_det/baseline/fcos_tiny_shapes_sup10.yml", None, 0.0),
    "DenseTeacher": Method("configs/semi_det/denseteacher/denseteacher_fcos_tiny_shapes.yml",
                           "supervised", 3.0),
    "ARSL": Method("configs/semi_det/arsl/arsl_fcos_tiny_shapes.yml", "supervised", 3.0),
    "supervised_rtdetr": Method("configs/semi_det/baseline/rtdetr_tiny_shapes_sup10.yml",
                                None, 0.0),
    "Semi_RTDETR": Method("configs/semi_det/semi_rtdetr/semi_rtdetr_tiny_shapes.yml",
                          "supervised_rtdetr", 2.0),
}
DEFAULT_METHODS = ("supervised", "DenseTeacher", "ARSL", "supervised_rtdetr", "Semi_RTDETR")


@dataclass
class RunResult:
    ap: float
    best_ap: float
    seconds: float
    ips: float
    iters: int
    model: str


def run_once(method: str, seed: int, workdir: Path, overrides: list[str]) -> RunResult:
    run = workdir / "runs" / f"{method}-seed{seed}"
    run.mkdir(parents=True)
    cmd = [sys.executable, "-m", "engine", "train", str(REPO / METHODS[method].config),
           "--run-dir", str(run), "-o", f"seed={seed}"]
    for o in overrides:
        cmd += ["-o", o]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{method} seed {seed} failed (exit {proc.returncode}); see {run}")
    events = read_events(run / "events.jsonl")
    evals = [e for e in events if e["type"] == "eval"]
    trains = [e for e in events if e["type"] == "train"]
    last_iter = evals[-1]["iter"]
    final = [e for e in evals if e["iter"] == last_iter][0]  # the first model reported
    meta = json.loads((run / "run.json").read_text())
    ips = statistics.mean(e["ips"] for e in trains) if trains else float("nan")
    return RunResult(ap=final["metrics"]["AP"], best_ap=meta["best"]["value"],
                     seconds=seconds, ips=ips, iters=trains[-1]["iter"], model=final["model"])


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="runs per method (seeds 0..N-1)")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                    choices=list(METHODS), metavar="NAME",
                    help="methods to run: " + ", ".join(METHODS))
    ap.add_argument("--json", action="store_true", help="end with one JSON line of mean AP")
    ap.add_argument("-o", "--opt", action="append", default=[],
                    help="override for every run (e.g. epoch=2 for a quick check)")
    args = ap.parse_args()

    results: dict[str, list[RunResult]] = {}
    with tempfile.TemporaryDirectory(prefix="dettui-semi-") as tmp:
        for method in args.methods:
            for seed in range(args.seeds):
                r = run_once(method, seed, Path(tmp), args.opt)
                results.setdefault(method, []).append(r)
                print(f"{method:<18} seed {seed}: AP {r.ap:.4f} ({r.model}), best "
                      f"{r.best_ap:.4f}, {r.iters} iters, {r.seconds:.0f} s, "
                      f"{r.ips:.1f} images/s", flush=True)

    print(f"\n{'method':<18} {'AP (mean +- std)':>18} {'best AP':>9} {'gain':>7} "
          f"{'target':>7} {'met':>4} {'s/run':>6} {'img/s':>6}")
    print("-" * 84)
    means: dict[str, float] = {}
    for method, runs in results.items():
        m, s = mean_std([r.ap for r in runs])
        means[method] = m
        best = statistics.mean(r.best_ap for r in runs)
        spec = METHODS[method]
        gain = target = met = ""
        if spec.baseline and spec.baseline in means:
            g = 100 * (m - means[spec.baseline])
            gain, target = f"{g:+.1f}", f"+{spec.target_gain:.0f}"
            met = "yes" if g >= spec.target_gain else "NO"
        print(f"{method:<18} {m:>9.4f} +- {s:.4f} {best:>9.4f} {gain:>7} {target:>7} "
              f"{met:>4} {statistics.mean(r.seconds for r in runs):>6.0f} "
              f"{statistics.mean(r.ips for r in runs):>6.1f}")
    print("gain: AP points over the method's supervised baseline (same labeled images, same "
          "iterations)")
    extra = "".join(f" -o {o}" for o in args.opt)
    print(f"reproduce: python benchmarks/semi_gain.py --seeds {args.seeds} --methods "
          f"{' '.join(args.methods)}{extra}{' --json' if args.json else ''}")
    if args.json:
        print(json.dumps(means))
    return 0


if __name__ == "__main__":
    sys.exit(main())
