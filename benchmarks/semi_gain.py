"""Does semi-supervised training beat supervised training with the same labels?

The built-in shapes dataset (2000 training images) with 10% of the images labeled and the
rest unlabeled; every method trains for the same number of iterations on the same labeled
images, then is COCO-evaluated on a shapes val set. Each run is its own engine process on
``--threads`` intra-op CPU threads (default 1) whatever ``--jobs`` is: ``--jobs N`` only runs
N seeds side by side, so it changes the wall time and never an AP (a CPU reduction's
rounding depends on how many threads split it; over a few thousand iterations that moved a
seed's AP by 0.01-0.02). AP can still differ on another CPU type or another ``--threads``.

    python benchmarks/semi_gain.py [--seeds 5] [--first-seed 0] [--methods supervised
                                   DenseTeacher ARSL supervised_rtdetr Semi_RTDETR]
                                   [--burn-in N] [--iters N] [--val-images N] [--jobs N]
                                   [--threads T] [--workdir DIR] [--json]
                                   [-o key=value ...]

Two families, each against its own supervised baseline: the tiny FCOS (``supervised``,
``DenseTeacher``, ``ARSL``) and the tiny RT-DETR (``supervised_rtdetr``, ``Semi_RTDETR``).
The default runs the FCOS family, 5 seeds (README, "Semi-supervised evidence", has the
tables and the commands). Measured on 2 cores, 1 thread per run, ``--jobs 5`` (CPU seconds
of all runs, so the wall time of 2 quiet cores is half of it): the FCOS family with
``labeled_views`` 4,916 s (about 41 minutes); ``--methods supervised_rtdetr Semi_RTDETR``
about 7,300 s (61 minutes: per seed a 852 s burn-in, 221 s supervised, 381 s Semi-RT-DETR),
and 76 minutes with ``labeled_views_rtdetr``; ``--burn-in 1250 --val-images 1000`` for FCOS
about 65 minutes (estimated from its 4-seed timings). ``labeled_views`` is an ablation, not a
method: the DenseTeacher config with its unlabeled loss weight 0 (the labeled weak + strong
views and the EMA teacher alone), so a gain can be told apart from what the strong
augmentation of the labeled views gives by itself; ``labeled_views_rtdetr`` is the same for
Semi-RT-DETR (its config, ``DETR_SSOD.train_cfg.unsup_weight=0``). ``--workdir DIR`` keeps
the runs: a later invocation with the same DIR reuses every finished run of the same
settings (a run's folder is named by a digest of its config, overrides and threads), so
adding seeds, methods or a longer ``--iters`` reuses the burn-ins.

Schedule, per family and seed: one supervised burn-in of ``--burn-in`` iterations (the
family's supervised config), shared by every method of the family; then each method trains
``--iters`` more iterations from the burn-in's weights (``pretrain_weights``, a fresh
warm-up and cosine schedule for all alike), the semi-supervised ones with their teacher
copied from those weights and their unlabeled losses on from the first step. This is the
methods' own burn-in (supervised until ``semi_start_iters`` / ``BURN_UP_STEP``) made once
and identical for all, so every method sees the same labeled images for the same
``burn-in + iters`` iterations, and the comparison is only what the unlabeled images add.
FCOS: 600 + 400 iterations, evaluated on the configs' 100 val images (README: also measured
with ``--burn-in 1250 --val-images 1000``, the sup10 config's whole schedule as burn-in).
RT-DETR: 1600 + 400, evaluated on 1000 val images (the same generator,
``dataset/shapes/val1000``): the burn-in is a whole supervised schedule on the labeled
images, as PaddleDetection's Semi-RT-DETR starts from the supervised RT-DETR of the same
labels (notes section 6.1); a 200-iteration burn-in gave a teacher no better than its
student, whose pseudo-labels cost 6 points.

The AP of a run is the AP of its last evaluation, of the model the method evaluates first
(the teacher for the semi-supervised methods; the model itself for the supervised
baselines). The first table gives mean +- std over the seeds, seconds per run (the burn-in
apart) and images/s (measured by the engine, so compare runs of one invocation only; with
``--jobs`` they are shared-core numbers). The second gives each semi-supervised method's
gain over its supervised baseline (and over its family's labeled-views ablation when it
ran: the unlabeled images' own share): the mean of the
per-seed AP differences (same seed, same burn-in) with a 95% Student-t interval on them;
the target is "met" only when that mean reaches it AND the interval's lower end is above 0
(never from one seed). With ``--json`` the last line is one JSON object of mean AP (0-1) per
method.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.paired import (  # noqa: E402
    DEFAULT_THREADS,
    PairedGain,
    format_ci,
    paired_over,
    run_env,
)
from engine.protocol.events import read_events  # noqa: E402


@dataclass(frozen=True)
class Family:
    config: str       # the supervised config the shared burn-in runs
    burn_in: int      # its iterations
    iters: int        # iterations of each method after it
    val_images: int = 0  # evaluate on a shapes val set of this many images (0: the config's)

    def eval_overrides(self) -> list[str]:
        """A larger val set than the configs' 100 images (generated once, seed 1, under
        ``dataset/shapes/val<N>``): on 100 images one AP moves by 0.01-0.02 between runs
        that differ in nothing but thread count, the size of the gains to be measured."""
        if not self.val_images:
            return []
        n = self.val_images
        return [f"EvalDataset.image_dir=val{n}", f"EvalDataset.anno_path=annotations/val{n}.json",
                f"EvalDataset.synthesize.num_images={n}"]


@dataclass(frozen=True)
class Method:
    config: str
    family: str
    baseline: str | None    # the supervised method it must beat
    target_gain: float      # AP points over the baseline
    start_now: tuple[str, ...] = ()  # overrides: semi losses and teacher from step 0
    ablation: str | None = None  # its family's labeled-views arm (unlabeled loss off)


FAMILIES: dict[str, Family] = {
    "fcos": Family("configs/semi_det/baseline/fcos_tiny_shapes_sup10.yml", 600, 400),
    # The burn-in is a whole supervised schedule on the labeled 10% (its cosine run to the
    # end): PaddleDetection's Semi-RT-DETR starts teacher and student from the supervised
    # RT-DETR trained on the same labels (notes section 6.1, the "no_warmup" configs its
    # README recommends). From 200 iterations (AP 0.44) the teacher was no better than its
    # student and its pseudo-labels cost 6 points (README, "Semi-supervised evidence").
    "rtdetr": Family("configs/semi_det/baseline/rtdetr_tiny_shapes_sup10.yml", 1600, 400,
                     val_images=1000),
}
METHODS: dict[str, Method] = {
    "supervised": Method(FAMILIES["fcos"].config, "fcos", None, 0.0),
    "DenseTeacher": Method("configs/semi_det/denseteacher/denseteacher_fcos_tiny_shapes.yml",
                           "fcos", "supervised", 3.0,
                           ("semi_start_iters=0", "ema_start_iters=0"), "labeled_views"),
    "ARSL": Method("configs/semi_det/arsl/arsl_fcos_tiny_shapes.yml", "fcos", "supervised",
                   3.0, ("SEMISUPNET.BURN_UP_STEP=0",), "labeled_views"),
    # Not a method: DenseTeacher with its unlabeled loss off (the same labeled weak + strong
    # views, the same EMA teacher evaluated), to tell what the unlabeled images add from
    # what the strong labeled views and the teacher's averaging add.
    "labeled_views": Method("configs/semi_det/denseteacher/denseteacher_fcos_tiny_shapes.yml",
                            "fcos", None, 0.0,
                            ("semi_start_iters=0", "ema_start_iters=0",
                             "DenseTeacher.train_cfg.unsup_weight=0")),
    "supervised_rtdetr": Method(FAMILIES["rtdetr"].config, "rtdetr", None, 0.0),
    "Semi_RTDETR": Method("configs/semi_det/semi_rtdetr/semi_rtdetr_tiny_shapes.yml",
                          "rtdetr", "supervised_rtdetr", 2.0, ("ema_start_iters=0",),
                          "labeled_views_rtdetr"),
    # The same ablation for Semi-RT-DETR: its labeled weak + strong views and its EMA
    # teacher (evaluated first, as Semi_RTDETR's), the pseudo-label loss weight 0.
    "labeled_views_rtdetr": Method(
        "configs/semi_det/semi_rtdetr/semi_rtdetr_tiny_shapes.yml", "rtdetr", None, 0.0,
        ("ema_start_iters=0", "DETR_SSOD.train_cfg.unsup_weight=0")),
}
DEFAULT_METHODS = ("supervised", "DenseTeacher", "ARSL")


@dataclass
class RunResult:
    ap: float
    best_ap: float
    seconds: float
    ips: float
    iters: int
    model: str
    losses: dict[str, float]  # the last logged step's loss terms


def run_folder(workdir: Path, name: str, config: str, overrides: list[str],
               threads: int) -> Path:
    """The folder of one engine run: ``name`` plus a digest of everything its result depends
    on (config, overrides, threads), so a kept ``--workdir`` reuses a run only for the very
    same settings and a changed setting gets a folder of its own."""
    key = json.dumps([config, overrides, threads]).encode()
    return workdir / "runs" / f"{name}-{hashlib.sha256(key).hexdigest()[:8]}"


def train(config: str, run: Path, workdir: Path, overrides: list[str],
          threads: int = DEFAULT_THREADS) -> float:
    """One engine run (``python -m engine train`` on ``threads`` intra-op CPU threads); its
    wall seconds. A run finished by an earlier invocation with the same ``--workdir`` (same
    folder, so the same settings) is not run again: its recorded seconds are returned."""
    done = run / "bench.json"
    if done.is_file():
        return float(json.loads(done.read_text())["seconds"])
    if run.exists():
        raise SystemExit(f"{run}: an unfinished run of an earlier invocation (interrupted?); "
                         "delete that folder to run it again")
    run.mkdir(parents=True)
    cmd = [sys.executable, "-m", "engine", "train", str(REPO / config), "--run-dir", str(run)]
    for o in overrides:
        cmd += ["-o", o]
    env = run_env(threads, {**os.environ, "PYTHONPATH": str(REPO)})
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{run.name} failed (exit {proc.returncode}); see {run}")
    seconds = time.perf_counter() - t0
    done.write_text(json.dumps({"seconds": seconds, "config": config,
                                "overrides": overrides, "threads": threads}))
    return seconds


def prepare_data(methods: list[str], workdir: Path, user: list[str]) -> None:
    """Generate the shapes data every run will read (the train split, the families' val
    sets, the semi configs' unlabeled sets, with the user's overrides) before any run starts,
    so runs side by side never generate it (the generator locks, but one run would wait)."""
    from engine.config import load_and_validate
    from engine.data.shapes import ensure_dataset
    from engine.protocol.errors import UserError

    cwd = os.getcwd()
    os.chdir(workdir)
    configs = {(FAMILIES[METHODS[m].family].config, METHODS[m].family) for m in methods}
    configs |= {(METHODS[m].config, METHODS[m].family) for m in methods}
    try:
        for config, family in sorted(configs):
            spec = FAMILIES[family]
            _, cfg = load_and_validate(REPO / config, [*spec.eval_overrides(), *user])
            ensure_dataset(cfg.TrainDataset, section="TrainDataset")
            ensure_dataset(cfg.EvalDataset, section="EvalDataset")
            if cfg.UnsupTrainDataset is not None:
                ensure_dataset(cfg.UnsupTrainDataset, section="UnsupTrainDataset")
    except UserError as exc:  # bad input: one line, exit 2, as the engine itself
        print(f"error: {config}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        os.chdir(cwd)


def burn_in(family: str, seed: int, workdir: Path, steps: int, user: list[str],
            threads: int = DEFAULT_THREADS) -> Path:
    """The family's supervised burn-in for ``seed`` (run once); its last checkpoint."""
    spec = FAMILIES[family]
    overrides = [f"seed={seed}", "epoch=1", f"epoch_iter={steps}", "snapshot_epoch=1",
                 *spec.eval_overrides(), *user]
    run = run_folder(workdir, f"burn-in-{family}-seed{seed}", spec.config, overrides, threads)
    if not (run / "bench.json").is_file():  # run once per seed, for all the family's methods
        seconds = train(spec.config, run, workdir, overrides, threads)
        ap = [e for e in read_events(run / "events.jsonl") if e["type"] == "eval"][-1]
        print(f"{'burn-in ' + family:<20} seed {seed}: AP {ap['metrics']['AP']:.4f}, "
              f"{steps} iters, {seconds:.0f} s", flush=True)
    return run / "checkpoints" / "last.pt"


def run_once(method: str, seed: int, workdir: Path, weights: Path, steps: int,
             user: list[str], threads: int = DEFAULT_THREADS) -> RunResult:
    spec = METHODS[method]
    overrides = [f"seed={seed}", "epoch=1", f"epoch_iter={steps}", "snapshot_epoch=1",
                 f"pretrain_weights={weights}", *spec.start_now,
                 *FAMILIES[spec.family].eval_overrides(), *user]
    run = run_folder(workdir, f"{method}-seed{seed}", spec.config, overrides, threads)
    seconds = train(spec.config, run, workdir, overrides, threads)
    events = read_events(run / "events.jsonl")
    evals = [e for e in events if e["type"] == "eval"]
    trains = [e for e in events if e["type"] == "train"]
    last_iter = evals[-1]["iter"]
    final = [e for e in evals if e["iter"] == last_iter][0]  # the first model reported
    meta = json.loads((run / "run.json").read_text())
    ips = statistics.mean(e["ips"] for e in trains) if trains else float("nan")
    return RunResult(ap=final["metrics"]["AP"], best_ap=meta["best"]["value"],
                     seconds=seconds, ips=ips, iters=trains[-1]["iter"], model=final["model"],
                     losses=dict(trains[-1]["losses"]))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_seeds(methods: list[str], seeds: list[int], workdir: Path, *, jobs: int = 1,
              threads: int = DEFAULT_THREADS, burn_in_steps: int | None = None,
              iters: int | None = None, user: list[str] | None = None,
              echo: bool = True) -> dict[str, dict[int, RunResult]]:
    """Every method on every seed under ``workdir``: per method and seed, its AP and timing.

    Each seed's runs (its burn-ins, then the methods in order) go one after the other; with
    ``jobs`` > 1 that many seeds run side by side. Nothing a run computes depends on
    ``jobs``: every run gets ``threads`` intra-op threads, its seed from the seed list (not
    from a worker slot), its own run folder, and data generated before any run starts."""
    user = list(user or [])
    results: dict[str, dict[int, RunResult]] = {m: {} for m in methods}
    lock = threading.Lock()

    def one_seed(seed: int) -> None:
        for method in methods:
            family = FAMILIES[METHODS[method].family]
            weights = burn_in(METHODS[method].family, seed, workdir,
                              burn_in_steps or family.burn_in, user, threads)
            r = run_once(method, seed, workdir, weights, iters or family.iters, user, threads)
            with lock:
                results[method][seed] = r
                if echo:
                    print(f"{method:<20} seed {seed}: AP {r.ap:.4f} ({r.model}), best "
                          f"{r.best_ap:.4f}, {r.iters} iters, {r.seconds:.0f} s, "
                          f"{r.ips:.1f} images/s", flush=True)

    # The shapes data is generated by the first run that needs it: make it before seeds
    # run at once, so no two processes write it together.
    workdir.mkdir(parents=True, exist_ok=True)
    prepare_data(methods, workdir, user)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        for future in [pool.submit(one_seed, seed) for seed in seeds]:
            future.result()
    finally:
        # A failed run stops the benchmark: seeds not started yet are dropped (the ones
        # running finish, as their engine processes cannot be joined half-way).
        pool.shutdown(cancel_futures=True)
    return results


def gains(results: dict[str, dict[int, RunResult]]) -> list[tuple[str, str, PairedGain]]:
    """(method, what it is compared with, paired gain in AP points) for every method whose
    baseline ran, and also over its family's labeled-views ablation when that ran."""
    ap = {m: {seed: r.ap for seed, r in by_seed.items()} for m, by_seed in results.items()}
    rows = []
    for method in results:
        spec = METHODS[method]
        if spec.baseline and ap.get(spec.baseline):
            rows.append((method, spec.baseline, paired_over(ap[method], ap[spec.baseline])))
        if spec.ablation and ap.get(spec.ablation):
            rows.append((method, spec.ablation, paired_over(ap[method], ap[spec.ablation])))
    return rows


def print_report(results: dict[str, dict[int, RunResult]]) -> dict[str, float]:
    """The per-method table and the paired gains with their intervals; mean AP per method."""
    print(f"\n{'method':<20} {'AP (mean +- std)':>18} {'best AP':>9} {'seeds':>5} "
          f"{'s/run':>6} {'img/s':>6}")
    print("-" * 67)
    means: dict[str, float] = {}
    for method, by_seed in results.items():
        runs = [by_seed[seed] for seed in sorted(by_seed)]
        m, s = mean_std([r.ap for r in runs])
        means[method] = m
        best = statistics.mean(r.best_ap for r in runs)
        print(f"{method:<20} {m:>9.4f} +- {s:.4f} {best:>9.4f} {len(runs):>5} "
              f"{statistics.mean(r.seconds for r in runs):>6.0f} "
              f"{statistics.mean(r.ips for r in runs):>6.1f}")
    rows = gains(results)
    if rows:
        print(f"\n{'method':<20} {'over':<20} {'gain':>6} {'95% CI':>14} {'target':>7} "
              f"{'met':>4}  per seed")
        print("-" * 93)
        for method, over, g in rows:
            target = METHODS[method].target_gain if over == METHODS[method].baseline else None
            met = "" if target is None else ("yes" if g.met(target) else "NO")
            goal = "" if target is None else f"+{target:.0f}"
            per_seed = " ".join(f"{d:+.1f}" for d in g.diffs)
            print(f"{method:<20} {over:<20} {g.mean:>+6.1f} {format_ci(g):>14} {goal:>7} "
                  f"{met:>4}  {per_seed}")
        print("gain: mean over seeds of the per-seed AP difference in points (same seed, same "
              "burn-in, same labeled images, same iterations); 95% CI: Student-t interval on "
              "those differences (n-1 degrees of freedom); met: the mean reaches the target "
              "AND the interval's lower end is above 0 (never with 1 seed); over "
              "labeled_views(_rtdetr): what the unlabeled images add")
    return means


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5,
                    help="runs per method (seeds FIRST..FIRST+N-1; default 5)")
    ap.add_argument("--first-seed", type=int, default=0, metavar="FIRST",
                    help="the first seed (default 0): more seeds later, each run once")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                    choices=list(METHODS), metavar="NAME",
                    help="methods to run: " + ", ".join(METHODS))
    ap.add_argument("--burn-in", type=int, metavar="N",
                    help="supervised burn-in iterations shared by a family's methods "
                         "(default: FCOS 600, RT-DETR 1600)")
    ap.add_argument("--iters", type=int, metavar="N",
                    help="iterations of each method after the burn-in "
                         "(default: FCOS 400, RT-DETR 400)")
    ap.add_argument("--val-images", type=int, metavar="N",
                    help="evaluate every family on a generated shapes val set of N images "
                         "(default: FCOS the configs' 100, RT-DETR 1000)")
    ap.add_argument("--jobs", type=int, default=1, metavar="N",
                    help="seeds run side by side (default 1); it changes only the wall time, "
                         "never an AP: every run has --threads threads whatever N is")
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS, metavar="T",
                    help=f"intra-op CPU threads of every run (default {DEFAULT_THREADS}); "
                         "AP is reproducible only at the same T (and CPU type)")
    ap.add_argument("--workdir", type=Path, metavar="DIR",
                    help="keep the runs (and the generated data) under DIR instead of a "
                         "temporary folder; a later invocation with the same DIR reuses "
                         "every finished run of the same settings (burn-ins included), so "
                         "more seeds, methods or --iters cost only the new runs")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of mean AP")
    ap.add_argument("-o", "--opt", action="append", default=[],
                    help="override for every run, burn-ins included (after the bench's own)")
    args = ap.parse_args()
    for name in ("seeds", "jobs", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name}: at least 1")
    if args.val_images is not None:
        if args.val_images < 1:
            ap.error("--val-images: at least 1")
        for name, family in FAMILIES.items():
            FAMILIES[name] = dataclasses.replace(family, val_images=args.val_images)

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    with contextlib.ExitStack() as stack:
        workdir = (args.workdir.resolve() if args.workdir else
                   Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dettui-semi-"))))
        results = run_seeds(args.methods, seeds, workdir, jobs=args.jobs,
                            threads=args.threads, burn_in_steps=args.burn_in,
                            iters=args.iters, user=args.opt)
    means = print_report(results)
    extra = "".join(f" -o {o}" for o in args.opt)
    steps = "".join(f" --{k.replace('_', '-')} {v}" for k, v in
                    (("burn_in", args.burn_in), ("iters", args.iters),
                     ("val_images", args.val_images)) if v)
    print("every method: the same supervised burn-in, then the same number of iterations of "
          "its own (see the module docstring)")
    cores = os.cpu_count() or 1
    print(f"threads: {args.threads} per run, {args.jobs} run(s) at once on {cores} cores"
          + (" (images/s are shared-core numbers)" if args.jobs > 1 else "")
          + (" - oversubscribed: slower, same APs" if args.jobs * args.threads > cores else ""))
    jobs = f" --jobs {args.jobs}" if args.jobs > 1 else ""
    threads = f" --threads {args.threads}" if args.threads != DEFAULT_THREADS else ""
    first = f" --first-seed {args.first_seed}" if args.first_seed else ""
    print(f"reproduce: python benchmarks/semi_gain.py --seeds {args.seeds}{first} --methods "
          f"{' '.join(args.methods)}{steps}{jobs}{threads}{extra}"
          f"{' --json' if args.json else ''}")
    if args.json:
        print(json.dumps(means))
    return 0


if __name__ == "__main__":
    sys.exit(main())
