"""``dettui``: the command line. With no command it opens the TUI.

Fast to start: nothing here imports torch (commands that need it run ``python -m engine``
as a subprocess), and Textual is imported only when the TUI opens. Every user error ends
in one funnel: a clear message on stderr, exit code 2, no traceback (``--debug`` shows it).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from engine.errors import EXIT_USER_ERROR, UserError
from engine.rundir import RUNS_DIR_ENV

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="dettui",
    help="A terminal control room for object-detection training. Run with no command to "
         "open the TUI.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(help="Datasets: generate the built-in synthetic shapes dataset, split "
                            "a COCO file into labeled and unlabeled parts.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")

RunsDir = Annotated[Path, typer.Option("--runs-dir", envvar=RUNS_DIR_ENV,
                                       help="Folder of run directories.")]
Overrides = Annotated[list[str], typer.Option(
    "-o", "--opt", help="Override a config key: key.sub.leaf=value (YAML value); repeatable.")]
DEFAULT_RUNS = Path("runs")
DEBUG = {"on": os.environ.get("DETTUI_DEBUG") == "1"}


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.text import Text

    # soft_wrap: long paths stay on one line, so they can be copied and grepped
    Console(stderr=True, soft_wrap=True).print(Text("error: ", style="bold red") + Text(message))


def user_errors(fn: F) -> F:
    """Turn a ``UserError`` into a clear message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if DEBUG["on"]:
                raise
            _fail(exc.render())
            raise typer.Exit(EXIT_USER_ERROR) from None

    return wrapper  # type: ignore[return-value]


@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    runs_dir: RunsDir = DEFAULT_RUNS,
    configs_dir: Annotated[list[Path], typer.Option(
        "--configs-dir", help="Extra folder of configs to browse (repeatable).")] = [],
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Open the TUI when no command is given."""
    DEBUG["on"] = DEBUG["on"] or debug
    if ctx.invoked_subcommand is None:
        from tui.app import run_app

        raise typer.Exit(run_app(runs_dir, _configs_dirs(configs_dir)))


def _configs_dirs(extra: list[Path]) -> list[Path]:
    dirs = [Path("configs")] if Path("configs").is_dir() else []
    return dirs + [d for d in extra if d not in dirs]


@app.command()
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="YAML config (with _BASE_ inheritance).")],
    headless: Annotated[bool, typer.Option(
        "--headless", help="No TUI: a Rich console with progress, eval tables and a summary; "
                           "Ctrl-C stops cleanly after a checkpoint.")] = False,
    eval: Annotated[bool, typer.Option("--eval/--no-eval",
                                       help="COCO-evaluate every snapshot_epoch.")] = True,
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Resume from a checkpoint path, a run id, or 'auto'.")] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", help="Pretrained weights file (pretrain_weights).")] = None,
    teacher: Annotated[str | None, typer.Option(
        "--teacher", help="Teacher weights (semi-supervised).")] = None,
    student: Annotated[str | None, typer.Option(
        "--student", help="Student weights (semi-supervised).")] = None,
    ce: Annotated[bool, typer.Option(
        "--ce", help="enable_ce: seed everything with 0, deterministic algorithms.")] = False,
    device: Annotated[str | None, typer.Option(
        "--device", help="cpu, cuda or cuda:N (default: the config's, auto).")] = None,
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision (CUDA only).")] = False,
    opt: Overrides = [],
    name: Annotated[str | None, typer.Option("--name", help="Run name.")] = None,
    trainer: Annotated[str, typer.Option(
        "--trainer", help="config (as the config says), Trainer, DenseTeacher, ARSL, "
                          "Semi_RTDETR or co-tuning.")] = "config",
    nproc: Annotated[int, typer.Option(
        "--nproc", help="Processes (GPUs) on this machine; >1 runs torchrun.")] = 1,
    force: Annotated[bool, typer.Option(
        "--force", help="With --resume: resume even if the config changed.")] = False,
    max_restarts: Annotated[int, typer.Option(
        "--max-restarts", help="Relaunch a crashed engine from its last checkpoint up to N "
                               "times (not after bad input or a repeated crash).")] = 0,
    nnodes: Annotated[int, typer.Option(
        "--nnodes", help="Machines in a multi-node job (fleet: true without it: $NNODES).")
    ] = 1,
    node_rank: Annotated[int, typer.Option(
        "--node-rank", help="This machine's rank: 0 owns the run directory, the others only "
                            "join, in the foreground (fleet: true without it: $NODE_RANK).")
    ] = 0,
    master_addr: Annotated[str | None, typer.Option(
        "--master-addr", help="Rendezvous host (node 0) of a multi-node job (fleet: true "
                              "without it: $MASTER_ADDR).")] = None,
    master_port: Annotated[int | None, typer.Option(
        "--master-port", help="Rendezvous port of a multi-node job, default 29500 (fleet: "
                              "true without it: $MASTER_PORT).")] = None,
    slurm: Annotated[bool, typer.Option(
        "--slurm", help="Write an sbatch script for --nnodes x --nproc (torchrun per node, "
                        "checkpoint + requeue before the time limit); print how to submit "
                        "it. Nothing is started.")] = False,
    sbatch: Annotated[list[str], typer.Option(
        "--sbatch", help="With --slurm: an extra #SBATCH option, e.g. --time=24:00:00 "
                         "(repeatable).")] = [],
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Start a training run: the TUI's launch form, or --headless on a server."""
    from tui.launcher import LaunchSpec, launch, run_worker_node

    spec = LaunchSpec(config=config, overrides=list(opt), runs_dir=runs_dir, name=name,
                      eval=eval, resume=resume, weights=weights, teacher=teacher,
                      student=student, enable_ce=ce, device=device, amp=amp, trainer=trainer,
                      nproc=nproc, force=force, max_restarts=max_restarts, nnodes=nnodes,
                      node_rank=node_rank, master_addr=master_addr, master_port=master_port)
    if slurm:
        from tui.slurm import write_sbatch

        path, run_id = write_sbatch(spec, sbatch_options=list(sbatch))
        typer.echo(f"wrote {path}\nsubmit it with:  sbatch {path}\n"
                   f"then follow it:   dettui attach {run_id} --runs-dir {runs_dir}")
        return
    if _joins_as_worker(spec):
        typer.echo("joining the multi-node job as a worker node; node 0 records the run",
                   err=True)
        raise typer.Exit(run_worker_node(spec))
    if not headless:
        from tui.app import run_app

        raise typer.Exit(run_app(runs_dir, _configs_dirs([]), launch=spec))
    run_dir, proc = launch(spec)
    _watch(run_dir, proc)


def _joins_as_worker(spec: Any) -> bool:
    """Whether this machine is a node other than 0 (``--node-rank``, or ``NODE_RANK`` under
    ``fleet: true``)."""
    from tui.launcher import resolve_rendezvous, validate_spec

    try:
        return resolve_rendezvous(spec, validate_spec(spec)).node_rank > 0
    except UserError:
        return False  # reported by the launch itself, the same way as ever


def _watch(run_dir: Any, proc: subprocess.Popen | None) -> None:
    from tui.headless import HeadlessWatcher

    code = HeadlessWatcher(run_dir, proc).watch()
    raise typer.Exit(code)


@app.command()
@user_errors
def resume(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or unique prefix).")],
    headless: Annotated[bool, typer.Option("--headless", help="Follow it in the console.")
                        ] = False,
    force: Annotated[bool, typer.Option("--force", help="Resume even if the config changed.")
                     ] = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Resume a past run in place: same id, same config, newest good checkpoint."""
    from engine.rundir import resolve_run
    from tui import launcher

    run_dir = resolve_run(runs_dir, run_ref)
    proc = launcher.resume(run_dir, force=force)
    if headless:
        _watch(run_dir, proc)
    typer.echo(f"resumed {run_dir.id} (pid {proc.pid}); follow it with "
               f"`dettui attach {run_dir.id}` or open `dettui`")


@app.command()
@user_errors
def attach(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or unique prefix).")],
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Follow a run in the console (its whole history, then live). Ctrl-C detaches."""
    from engine.rundir import resolve_run
    from tui.headless import HeadlessWatcher

    run_dir = resolve_run(runs_dir, run_ref)
    try:
        code = HeadlessWatcher(run_dir, None, stop_on_ctrl_c=False).watch()
    except KeyboardInterrupt:
        typer.echo(f"\ndetached; {run_dir.id} keeps running")
        raise typer.Exit(0) from None
    raise typer.Exit(code)


@app.command()
@user_errors
def stop(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or unique prefix).")],
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Stop a run gracefully: finish the step, write a checkpoint, exit (interrupted)."""
    from engine.rundir import resolve_run
    from tui import launcher

    run_dir = resolve_run(runs_dir, run_ref)
    if not launcher.stop(run_dir):
        typer.echo(f"{run_dir.id} is not running ({run_dir.effective_status()})")
        raise typer.Exit(1)
    typer.echo(f"asked {run_dir.id} to stop; it checkpoints and exits")


@app.command()
@user_errors
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print the run.json objects.")
                       ] = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """List runs, newest first."""
    from engine.rundir import list_runs

    metas = list_runs(runs_dir)
    if as_json:
        typer.echo(json.dumps(metas, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(header_style="bold", show_edge=False)
    for col in ("id", "status", "trainer", "config", "progress", "best AP", "created",
                "duration"):
        table.add_column(col, justify="right" if col in ("best AP", "progress") else "left")
    for m in metas:
        prog = m.get("progress") or {}
        progress = (f"{prog.get('epoch', 0) + 1}/{prog.get('epochs')} ep"
                    if prog.get("epochs") else "-")
        best = m.get("best") or {}
        table.add_row(m.get("id", "?"), _status_markup(m.get("status", "?")),
                      m.get("trainer", "-"), str(m.get("config_path", "-")), progress,
                      f"{best['value']:.4f}" if best.get("value") is not None else "-",
                      str(m.get("created", "-"))[:19].replace("T", " "), _duration(m))
    Console().print(table if metas else f"no runs in {runs_dir}")


def _status_markup(status: str) -> str:
    color = {"running": "cyan", "starting": "cyan", "finished": "green",
             "interrupted": "yellow", "failed": "red"}.get(status, "white")
    return f"[{color}]{status}[/]"


def _duration(meta: dict) -> str:
    from datetime import datetime

    try:
        start = datetime.fromisoformat(meta["started"])
    except (KeyError, TypeError, ValueError):
        return "-"
    end = meta.get("ended")
    stop_t = datetime.fromisoformat(end) if end else datetime.now(start.tzinfo)
    secs = int((stop_t - start).total_seconds())
    return f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


@app.command()
@user_errors
def logs(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or unique prefix).")],
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
                      ] = False,
    stderr: Annotated[bool, typer.Option("--stderr", help="Show stderr.log (tracebacks).")
                      ] = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Print a run's train.log (or stderr.log)."""
    from engine.rundir import resolve_run

    run_dir = resolve_run(runs_dir, run_ref)
    path = run_dir.stderr_log if stderr else run_dir.train_log
    pos = 0
    try:
        while True:
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
                pos += len(chunk)
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            if not follow or (run_dir.effective_status() not in ("starting", "running")
                              and not chunk_pending(path, pos)):
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


def chunk_pending(path: Path, pos: int) -> bool:
    return path.exists() and path.stat().st_size > pos


def _engine(args: list[str]) -> None:
    """Run ``python -m engine ARGS`` in the foreground and exit with its code."""
    code = subprocess.call([sys.executable, "-m", "engine", *args])
    raise typer.Exit(code)


@app.command("eval")
@user_errors
def eval_cmd(
    config: Annotated[Path, typer.Argument(help="YAML config; its EvalDataset is used.")],
    weights: Annotated[str, typer.Option("--weights", help="Weights or checkpoint file.")],
    opt: Overrides = [],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics here.")
                        ] = None,
) -> None:
    """COCO-evaluate weights on the config's EvalDataset (AP table + per-class AP)."""
    from engine.config import load_and_validate

    load_and_validate(config, opt)  # bad input fails here, fast, without torch
    args = ["eval", str(config), "--weights", weights]
    for o in opt:
        args += ["-o", o]
    if json_out:
        args += ["--json", str(json_out)]
    _engine(args)


@app.command()
@user_errors
def infer(
    config: Annotated[Path, typer.Argument(help="YAML config of the model.")],
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG/JPEG).")],
    weights: Annotated[str, typer.Option("--weights", help="Weights or checkpoint file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the annotated copies.")],
    score_thresh: Annotated[float, typer.Option("--score-thresh", help="Draw boxes above.")
                            ] = 0.3,
    opt: Overrides = [],
) -> None:
    """Detect objects and draw boxes and labels on copies of the images."""
    from engine.config import load_and_validate

    load_and_validate(config, opt)
    args = ["infer", str(config), "--weights", weights, "--out", str(out),
            "--score-thresh", str(score_thresh), *[str(i) for i in images]]
    for o in opt:
        args += ["-o", o]
    _engine(args)


@data_app.command("shapes")
@user_errors
def data_shapes(
    out: Annotated[Path, typer.Argument(help="Output folder.")],
    train: Annotated[int, typer.Option("--train", help="Training images.")] = 600,
    val: Annotated[int, typer.Option("--val", help="Validation images.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (deterministic).")] = 0,
    image_size: Annotated[int, typer.Option("--image-size", help="Image side, pixels.")
                          ] = 160,
) -> None:
    """Write the synthetic shapes dataset (COCO json + PNGs) to OUT."""
    if train < 1 or val < 0 or image_size < 32:
        raise UserError(f"--train must be >= 1, --val >= 0 and --image-size >= 32 "
                        f"(got {train}, {val}, {image_size})")
    _engine(["shapes", str(out), "--train", str(train), "--val", str(val), "--seed", str(seed),
             "--image-size", str(image_size)])


@data_app.command("split")
@user_errors
def data_split(
    annotations: Annotated[Path, typer.Argument(help="COCO annotation json to split.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for labeled.json and "
                                                    "unlabeled.json (created if needed).")],
    percent: Annotated[float, typer.Option(
        "--percent", help="Percentage of the images that keep their annotations, between 0 "
                          "and 100.")] = 10.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the draw: the same file, "
                                                     "percent and seed give the same split.")
                    ] = 1,
) -> None:
    """Split a COCO file for semi-supervised training (PaddleDetection's semi split):
    labeled.json keeps PERCENT % of the images and their annotations, unlabeled.json lists
    the rest without annotations."""
    from engine.data.split import write_split  # stdlib only

    labeled, unlabeled, counts = write_split(annotations, percent, seed, out)
    typer.echo(f"{annotations}: {counts.images} images, split {percent:g}% labeled "
               f"(seed {seed})")
    typer.echo(f"  labeled:   {counts.labeled_images} images, {counts.labeled_boxes} "
               f"annotations -> {labeled}")
    typer.echo(f"  unlabeled: {counts.unlabeled_images} images, no annotations "
               f"({counts.unlabeled_boxes_dropped} dropped) -> {unlabeled}")


if __name__ == "__main__":
    app()
