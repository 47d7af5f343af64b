"""Wall time and COCO AP of the demo: ``dettui run configs/demo/fcos_tiny_shapes.yml --headless``.

Targets: AP >= 0.85 on the shapes val set (issue 11; issue 2 asked for 0.80) within 240 s on
2 CPU cores, in the same 1250 training steps as before.

    python benchmarks/demo_time_to_map.py [--config PATH] [--other-data] [--before]
                                          [-o key=value ...]

It runs the real CLI in a fresh temporary folder (so the shapes dataset is generated as on
a fresh machine; generation time is reported separately), then reads the run directory, and
prints the AP of every evaluation with the seconds since training started.

``--other-data`` trains and evaluates on a second shapes set made with other settings (six
other shape kinds, 128 px images, other seeds, 200 val images), to check that the recipe is
not fitted to the default set. ``--before`` runs the recipe the demo had before issue 11
(FCOS anchor sizes 16..128, base_lr 0.002, no EMA) for a before/after comparison.

Issue 11, before -> after, in the same 1250 steps of 16 images. Measured with
`-o snapshot_epoch=2 -o seed=N` (plus `-o device=cuda` for the cuda rows) on a 16-core
machine running 16 one-thread trainings at once, so images/s are under that load: about 47
per training on the default set and 67 on the other, the same for both recipes. Rows marked
"stopped" ran out of that machine's time; compare them with the same epochs of the row above.

| data         | seed | recipe | device | AP at epochs 2, 4, 6, 8, 10            |
|--------------|------|--------|--------|----------------------------------------|
| shapes       | 42   | before | cpu    | 0.301 0.669 0.754 0.800 0.820          |
| shapes       | 42   | after  | cpu    | 0.497 0.808 0.863 (stopped)            |
| shapes       | 43   | before | cpu    | 0.389 0.635 0.758 0.801 0.808          |
| shapes       | 43   | after  | cpu    | 0.553 0.786 0.848 (stopped)            |
| shapes       | 42   | before | cuda   | 0.312 0.680 0.765 0.801 0.823          |
| shapes       | 42   | after  | cuda   | 0.530 0.825 0.875 0.891 0.895          |
| --other-data | 42   | before | cpu    | 0.136 0.374 0.577 0.685 0.704          |
| --other-data | 42   | after  | cpu    | 0.270 0.662 0.757 0.783 (stopped)      |
| --other-data | 43   | before | cpu    | 0.000 at every eval (see below)        |
| --other-data | 43   | after  | cpu    | 0.259 0.616 0.718 0.760 (stopped)      |
| --other-data | 42   | before | cuda   | 0.144 0.399 0.595 0.685 0.707          |
| --other-data | 42   | after  | cuda   | 0.202 0.636 0.757 0.788 0.798          |

The demo itself (`python benchmarks/demo_time_to_map.py`, seed 42, evaluations at epochs 5
and 10) on this project's 2-core machine while other agents loaded it (9.3 images/s, 2429 s,
so not a timing): AP 0.843 at epoch 5, 0.890 at epoch 10 (before: 0.814 in 276 s on another
2-core machine, issue 11). The new recipe trains at the same images/s as the old (table above).

With the old recipe and seed 43 the other set's box-regression loss sat at exactly 1.0 from
the first steps on: the ReLU on torchvision's FCOS regression output went to zero everywhere
and never recovered. One lever at a time (seed 42, cuda, final AP on shapes / other data):
before 0.823 / 0.707; + EMA 0.828 / 0.695; anchor sizes = strides 0.861 / 0.767; both 0.857 /
0.767; EMA + base_lr 0.004 0.845 / 0.747; all three (the new recipe) 0.895 / 0.798. Anchor
sizes equal to the strides is the largest lever, the higher lr the second; EMA adds little at
the end of a cosine schedule but lifts the early evaluations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.protocol.events import read_events  # noqa: E402

TARGET_AP = 0.85
TARGET_SECONDS = 240.0

# A second shapes set made with other settings: six other kinds, 128 px, other seeds.
OTHER_KINDS = "[ellipse, ring, diamond, hexagon, star, x]"
OTHER_DATA = [
    "TrainDataset.dataset_dir=dataset/shapes_other",
    "EvalDataset.dataset_dir=dataset/shapes_other",
    f"TrainDataset.synthesize={{num_images: 2000, seed: 11, image_size: 128, "
    f"classes: {OTHER_KINDS}}}",
    f"EvalDataset.synthesize={{num_images: 200, seed: 12, image_size: 128, "
    f"classes: {OTHER_KINDS}}}",
    "num_classes=6", "model.min_size=128", "model.max_size=128",
    "TrainReader.sample_transforms=[{RandomFlip: {prob: 0.5}}, {ColorJitter: {brightness: 0.2, "
    "contrast: 0.2, saturation: 0.2, prob: 0.5}}, {Resize: {target_size: 128, keep_ratio: true}}]",
    "EvalReader.sample_transforms=[{Resize: {target_size: 128, keep_ratio: true}}]",
]
# The demo's recipe before issue 11 (the schema's default anchor sizes, the base lr, no EMA).
BEFORE_RECIPE = ["model.anchor_sizes=[16, 32, 64, 128]", "LearningRate.base_lr=0.002",
                 "use_ema=false"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "configs/demo/fcos_tiny_shapes.yml"))
    ap.add_argument("--other-data", action="store_true",
                    help="train and evaluate on a shapes set made with other settings")
    ap.add_argument("--before", action="store_true",
                    help="the recipe the demo had before issue 11")
    ap.add_argument("-o", "--opt", action="append", default=[])
    args = ap.parse_args()
    # The flags' overrides go first so that -o can still change any of them.
    opts = (OTHER_DATA if args.other_data else []) + (BEFORE_RECIPE if args.before else [])
    opts += args.opt
    args.config = str(Path(args.config).resolve())  # the command runs in a temporary folder

    with tempfile.TemporaryDirectory(prefix="dettui-bench-") as tmp:
        cmd = [sys.executable, "-m", "tui.cli", "run", args.config, "--headless",
               "--runs-dir", f"{tmp}/runs"]
        for o in opts:
            cmd += ["-o", o]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        runs = list(Path(tmp, "runs").iterdir())
        if proc.returncode != 0 or not runs:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            print(f"the demo failed with exit code {proc.returncode}")
            return 1
        run = runs[0]
        meta = json.loads((run / "run.json").read_text())
        events = read_events(run / "events.jsonl")
        start = next(e for e in events if e["type"] == "start")
        evals = [e for e in events if e["type"] == "eval"]
        trains = [e for e in events if e["type"] == "train"]
        first_status = next(e for e in events if e["type"] == "status")
        train_seconds = events[-1]["t"] - start["t"]
        setup_seconds = start["t"] - first_status["t"]  # data generation + model build

    best = meta["best"]["value"] if meta.get("best") else float("nan")
    # The AP target is for the demo's own data; the other set and --before are comparisons.
    ap_target = ("", "") if args.other_data or args.before else (
        f">= {TARGET_AP:.2f}", "yes" if best >= TARGET_AP else "NO")
    data_name = "other shapes val" if args.other_data else "shapes val"
    rows = [
        (f"best AP ({data_name})", f"{best:.3f}", *ap_target),
        ("wall time of the command (s)", f"{wall:.1f}", f"<= {TARGET_SECONDS:.0f}",
         "yes" if wall <= TARGET_SECONDS else "NO"),
        ("  setup: dataset generation + model build (s)", f"{setup_seconds:.1f}", "", ""),
        ("  training + evaluation (s)", f"{train_seconds:.1f}", "", ""),
        ("AP50", f"{evals[-1]['metrics']['AP50']:.3f}" if evals else "-", "", ""),
        ("evaluations", str(len(evals)), "", ""),
        ("iterations", str(trains[-1]["iter"]) if trains else "-", "", ""),
        ("mean images/s (train events)",
         f"{sum(e['ips'] for e in trains) / max(1, len(trains)):.1f}", "", ""),
        ("CPU cores", str(os.cpu_count()), "", ""),
    ]
    print(f"\n{'metric':<46} {'value':>10} {'target':>8} {'met':>4}")
    print("-" * 71)
    for name, value, target, met in rows:
        print(f"{name:<46} {value:>10} {target:>8} {met:>4}")
    if evals:
        print(f"\n{'evaluation':<12} {'epoch':>5} {'iter':>6} {'seconds':>8} {'AP':>6} {'AP50':>6}")
        for k, e in enumerate(evals, 1):
            print(f"{k:<12} {e['epoch'] + 1:>5} {e['iter']:>6} {e['t'] - start['t']:>8.1f} "
                  f"{e['metrics']['AP']:>6.3f} {e['metrics']['AP50']:>6.3f}")
    flags = (" --other-data" if args.other_data else "") + (" --before" if args.before else "")
    extra = "".join(f" -o '{o}'" for o in args.opt)
    print(f"\nreproduce: python benchmarks/demo_time_to_map.py --config {args.config}"
          f"{flags}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
