"""``dettui``: the command line. With no command it opens the TUI.

Fast to start: nothing here imports torch (commands that need it run ``python -m engine``
as a subprocess), and Textual is imported only when the TUI opens. Every user error ends
in one funnel: a clear message on stderr, exit code 2, no traceback (``--debug`` shows it).
"""

from __future__ import annotations

import codecs
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

from engine.protocol.errors import EXIT_USER_ERROR, RunError, UserError
from engine.protocol.rundir import RUNS_DIR_ENV
from engine.protocol.safefiles import RefusedFile, open_regular
from engine.protocol.termtext import printable
from engine.trainers.catalogue import TRAINERS
from tui.cli.common import Overrides, run_engine
from tui.cli.data import data_app
from tui.cli.data import register as register_data
from tui.cli.help import FlagHelpGroup
from tui.cli.trackers import OptionalValueCommand, Tensorboard, Wandb, export
from tui.cli.weights import Offline, prefetch, set_offline
from tui.cli.weights import register as register_weights

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="dettui",
    cls=FlagHelpGroup,
    help="A terminal control room for object-detection training. Run with no command to "
         "open the TUI.",
    no_args_is_help=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_app, name="data")  # tui/cli/data.py: dettui data shapes|split|import|check

RunsDir = Annotated[Path, typer.Option("--runs-dir", envvar=RUNS_DIR_ENV,
                                       help="Folder of run directories.")]
DEFAULT_RUNS = Path("runs")
TRAINER_HELP = ("config (whatever the config selects), or one of: "
                + "; ".join(t.summary() for t in TRAINERS)
                + ". A trainer is refused on an architecture it cannot train.")
WEIGHTS_HELP = ("Weights or checkpoint: a file, an http(s) URL, torchvision:BUILDER\\[:WEIGHTS], "
                "hf:REPO_ID\\[@REV] or run:RUN_ID\\[:best|:last].")
DEBUG = {"on": os.environ.get("DETTUI_DEBUG") == "1"}


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.text import Text

    from tui.safetext import safe_text

    # soft_wrap: long paths stay on one line, so they can be copied and grepped. The
    # message may quote a file (a class name, a key): text, never markup or raw controls.
    Console(stderr=True, soft_wrap=True).print(Text("error: ", style="bold red")
                                               + safe_text(message, newlines=True))


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
        "--configs", "--configs-dir", metavar="DIR",
        help="Folder of YAML configs to browse (repeatable); ./configs is browsed too "
             "when there is one.")] = [],
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Open the TUI when no command is given."""
    DEBUG["on"] = DEBUG["on"] or debug
    _global_runs_dir(ctx, runs_dir)
    if ctx.invoked_subcommand is None:
        from tui.app import run_app

        raise typer.Exit(run_app(runs_dir, _configs_dirs(configs_dir)))


def _global_runs_dir(ctx: typer.Context, runs_dir: Path) -> None:
    """``dettui --runs-dir X COMMAND`` holds for the command: through ``DETTUI_RUNS_DIR``,
    which every command's own ``--runs-dir`` reads (and the engines it starts inherit). A
    different ``--runs-dir`` after the command as well is refused: which one was meant?"""
    source = ctx.get_parameter_source("runs_dir")
    if getattr(source, "name", None) != "COMMANDLINE":
        return
    # the command's own options are not parsed yet: every --runs-dir of the command line
    argv = sys.argv[1:]
    given = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--runs-dir"]
    given += [a.split("=", 1)[1] for a in argv if a.startswith("--runs-dir=")]
    other = next((g for g in given if Path(g) != runs_dir), None)
    if other is not None:
        _fail(f"--runs-dir given twice, before the command ({runs_dir}) and after it "
              f"({other}); give it once")
        raise typer.Exit(EXIT_USER_ERROR)
    os.environ[RUNS_DIR_ENV] = str(runs_dir)


def _configs_dirs(extra: list[Path]) -> list[Path]:
    # With no folder given, ./configs is looked at even when absent: the tree then says
    # where it looked and how to point it elsewhere.
    dirs = [Path("configs")] if Path("configs").is_dir() or not extra else []
    return dirs + [d for d in extra if d not in dirs]


@app.command(cls=OptionalValueCommand)
@user_errors
def run(
    config: Annotated[Path, typer.Argument(help="YAML config (with _BASE_ inheritance).")],
    headless: Annotated[bool, typer.Option(
        "--headless", help="No TUI: a Rich console with progress, eval tables and a summary; "
                           "Ctrl-C, SIGTERM and SIGHUP stop the run cleanly after a "
                           "checkpoint.")] = False,
    detach: Annotated[bool, typer.Option(
        "--detach", help="No TUI, no console: start the run, print its id and how to "
                         "attach to it, and return; it trains on.")] = False,
    eval: Annotated[bool, typer.Option("--eval/--no-eval",
                                       help="COCO-evaluate every snapshot_epoch.")] = True,
    resume: Annotated[str | None, typer.Option(
        "--resume", help="Resume from a checkpoint path, a run id, or 'auto'.")] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", help="Pretrained weights (pretrain_weights): a file, an http(s) URL, "
                          "torchvision:BUILDER\\[:WEIGHTS], hf:REPO_ID\\[@REV] or "
                          "run:RUN_ID\\[:best|:last].")] = None,
    teacher: Annotated[str | None, typer.Option(
        "--teacher", help="Teacher weights (semi-supervised; the same forms).")] = None,
    student: Annotated[str | None, typer.Option(
        "--student", help="Student weights (semi-supervised; the same forms).")] = None,
    offline: Offline = False,
    ce: Annotated[bool, typer.Option(
        "--ce", help="enable_ce: seed everything with 0, deterministic algorithms.")] = False,
    device: Annotated[str | None, typer.Option(
        "--device", help="cpu, cuda or cuda:N (default: the config's, auto).")] = None,
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision (CUDA only).")] = False,
    opt: Overrides = [],
    name: Annotated[str | None, typer.Option("--name", help="Run name.")] = None,
    trainer: Annotated[str, typer.Option(
        "--trainer", help=TRAINER_HELP)] = "config",
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
    submit: Annotated[bool, typer.Option(
        "--submit", help="With --slurm: also submit the script (sbatch) and print the job "
                         "id.")] = False,
    tensorboard: Tensorboard = None,
    wandb: Wandb = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Start a training run: the TUI's launch form, or --headless on a server."""
    from tui.process.launcher import launch, run_worker_node
    from tui.process.spec import WEIGHT_KEYS, LaunchSpec, validate_spec

    set_offline(offline)
    spec = LaunchSpec(config=config, overrides=list(opt), runs_dir=runs_dir, name=name,
                      eval=eval, resume=resume, weights=weights, teacher=teacher,
                      student=student, enable_ce=ce, device=device, amp=amp, trainer=trainer,
                      nproc=nproc, force=force, max_restarts=max_restarts, nnodes=nnodes,
                      node_rank=node_rank, master_addr=master_addr, master_port=master_port,
                      tensorboard=tensorboard, wandb=wandb)
    if submit and not slurm:
        raise UserError("--submit goes with --slurm (it submits the sbatch script)",
                        key="--submit")
    if slurm:
        from tui.process.slurm import submit as sbatch_submit
        from tui.process.slurm import write_sbatch

        path, run_id = write_sbatch(spec, sbatch_options=list(sbatch))
        if submit:
            job = sbatch_submit(path)
            typer.echo(f"wrote {path}\nsubmitted SLURM job {job}: run {run_id}, listed by "
                       "`dettui runs` once the job starts\n"
                       f"follow it:  dettui attach {run_id} --runs-dir {runs_dir}")
            return
        typer.echo(f"wrote {path}\nsubmit it with:  sbatch {path}\n"
                   f"then follow it:   dettui attach {run_id} --runs-dir {runs_dir}")
        return
    if _joins_as_worker(spec):
        typer.echo("joining the multi-node job as a worker node; node 0 records the run",
                   err=True)
        raise typer.Exit(run_worker_node(spec))
    if detach and headless:
        raise UserError("--detach starts the run and returns, --headless follows it to the "
                        "end: choose one", key="--detach",
                        hint=f"follow a detached run later with `dettui attach RUN "
                             f"--runs-dir {runs_dir}`")
    if detach or headless:
        _say_generation(spec)
        # Remote weights download here, with a progress bar, before any run folder exists
        # (a 404 or a bad hash is refused like any bad input); the engine finds them cached.
        cfg = validate_spec(spec)
        prefetch({key: getattr(cfg, key) for key in WEIGHT_KEYS}, runs_dir)
    if detach:
        run_dir, proc = launch(spec)
        run_id = printable(run_dir.id)
        typer.echo(f"started {run_id} (pid {proc.pid}); it trains on without this shell\n"
                   f"follow it: dettui attach {run_id} --runs-dir {printable(str(runs_dir))}\n"
                   f"stop it:   dettui stop {run_id} --runs-dir {printable(str(runs_dir))}")
        return
    if not headless:
        from tui.app import run_app

        raise typer.Exit(run_app(runs_dir, _configs_dirs([]), launch=spec))
    _launch_and_watch(lambda: launch(spec))


def _say_generation(spec: Any) -> None:
    """Say where the shapes dataset is about to be generated (``synthesize``), before the
    engine starts writing it (a bad config is reported by the launch itself)."""
    from engine.config import load_and_validate
    from tui.process.spec import generation_notes

    try:
        notes = generation_notes(load_and_validate(spec.config, spec.all_overrides())[1],
                                 spec.runs_dir)
    except UserError:
        return
    for note in notes:
        typer.echo(printable(note))


def _joins_as_worker(spec: Any) -> bool:
    """Whether this machine is a node other than 0 (``--node-rank``, or ``NODE_RANK`` under
    ``fleet: true``)."""
    from tui.process.spec import resolve_rendezvous, validate_spec

    try:
        return resolve_rendezvous(spec, validate_spec(spec)).node_rank > 0
    except UserError:
        return False  # reported by the launch itself, the same way as ever


def _launch_and_watch(start: Callable[[], tuple[Any, subprocess.Popen]]) -> None:
    """Start a run and follow it in the console to its end; exit with its code. SIGTERM
    and SIGHUP (a job runner, a closed terminal) stop it cleanly, like Ctrl-C, even when
    they come while it starts: the engine lives in its own session and would otherwise
    train on unwatched."""
    from tui.cli.headless import HeadlessWatcher, StopSignals

    with StopSignals() as signals:
        run_dir, proc = start()
        code = HeadlessWatcher(run_dir, proc, signals=signals).watch()
    raise typer.Exit(code)


@app.command()
@user_errors
def resume(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or unique prefix).")],
    headless: Annotated[bool, typer.Option("--headless", help="Follow it in the console.")
                        ] = False,
    force: Annotated[bool, typer.Option("--force", help="Resume even if the config changed.")
                     ] = False,
    opt: Annotated[list[str], typer.Option(
        "-o", "--opt", help="Change the run's config from here on, e.g. -o epoch=N to train "
                            "a finished run longer (repeatable).")] = [],
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Resume a past run in place: same id, same config, newest good checkpoint. A
    finished run has nothing left: it is said so and nothing starts (-o epoch=N trains
    it longer)."""
    from engine.protocol.rundir import resolve_run
    from engine.resumable import training_left
    from tui.process import launcher

    run_dir = resolve_run(runs_dir, run_ref)
    left = training_left(run_dir, opt)
    if left.nothing_left:
        typer.echo(printable(left.describe(run_dir.id)))
        return
    if headless:
        _launch_and_watch(lambda: (run_dir, launcher.resume(run_dir, force=force,
                                                            overrides=list(opt))))
    proc = launcher.resume(run_dir, force=force, overrides=list(opt))
    run_id = printable(run_dir.id)
    typer.echo(f"resumed {run_id} (pid {proc.pid}); follow it with "
               f"`dettui attach {run_id}` or open `dettui`")


@app.command()
@user_errors
def attach(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or unique prefix).")],
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Follow a run in the console (its whole history, then live). Ctrl-C detaches."""
    from engine.protocol.rundir import resolve_run
    from tui.cli.headless import HeadlessWatcher

    run_dir = resolve_run(runs_dir, run_ref)
    try:
        code = HeadlessWatcher(run_dir, None, stop_on_ctrl_c=False).watch()
    except KeyboardInterrupt:
        typer.echo(f"\ndetached; {printable(run_dir.id)} keeps running")
        raise typer.Exit(0) from None
    raise typer.Exit(code)


@app.command()
@user_errors
def stop(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or unique prefix).")],
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """Stop a run gracefully: finish the step, write a checkpoint, exit (interrupted).
    A SLURM job (run --slurm) is cancelled with scancel, which signals every rank."""
    from engine.protocol.rundir import resolve_run
    from tui.process import launcher

    run_dir = resolve_run(runs_dir, run_ref)
    stopped = launcher.stop(run_dir)  # a pid not provably this run's: RunError, exit 2
    job = run_dir.read_meta().get("slurm_job_id")
    if not stopped:
        status = printable(run_dir.effective_status())
        gone = (f": its SLURM job {printable(job)} is no longer queued"
                if job is not None and status in ("starting", "running") else "")
        typer.echo(f"{printable(run_dir.id)} is not running ({status}){gone}")
        raise typer.Exit(1)
    if job is not None:  # launcher.stop ran scancel: SLURM signals every rank
        typer.echo(f"cancelled SLURM job {printable(job)} of {printable(run_dir.id)} "
                   f"(scancel {printable(job)}): each rank gets SIGTERM, checkpoints and "
                   "exits; the run ends interrupted")
        return
    typer.echo(f"asked {printable(run_dir.id)} to stop; it checkpoints and exits")


@app.command()
@user_errors
def runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print the run.json objects.")
                       ] = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
) -> None:
    """List runs, newest first."""
    from engine.protocol.rundir import scan_runs

    metas, unreadable = scan_runs(runs_dir)
    for name, reason in unreadable:  # one bad run.json hides nothing: say which, and why
        typer.echo(f"unreadable run {printable(name)}: {printable(reason)}", err=True)
    if as_json:
        typer.echo(json.dumps(metas, indent=2))
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped: every column, one line per run, no colour codes
        console = Console(width=100_000, color_system=None)
    if not metas:
        console.print(f"no runs in {runs_dir}", markup=False, highlight=False)
        return
    table, hidden = runs_table(metas, console.width)
    console.print(table)
    if hidden:
        console.print(f"[dim]({', '.join(hidden)} hidden at this width; "
                      "--json shows everything)[/]", highlight=False)


# The columns of `dettui runs`, most useful first. The id is never cut (logs, resume and
# attach need it): on a narrow terminal the last columns are left out instead.
RUN_COLUMNS = ("id", "status", "epoch", "best AP", "duration", "trainer", "config",
               "created")


def runs_table(metas: list[dict], width: int) -> tuple[Any, list[str]]:
    """The runs as a Rich table that fits ``width`` columns, and the columns left out."""
    from rich.cells import cell_len
    from rich.table import Table

    rows = [_run_cells(m) for m in metas]
    # Each column's width: its widest cell or header, plus its padding and a separator
    # (the outer padding and edges are left out: 3 columns fewer in all).
    widths = [max(cell_len(name), *(cell_len(r[i].plain) for r in rows)) + 3
              for i, name in enumerate(RUN_COLUMNS)]
    keep = len(RUN_COLUMNS)
    while keep > 2 and sum(widths[:keep]) - 3 > width:
        keep -= 1
    table = Table(header_style="bold", show_edge=False, pad_edge=False)
    for name in RUN_COLUMNS[:keep]:
        table.add_column(name, no_wrap=True, overflow="fold" if name == "id" else "ellipsis",
                         justify="right" if name in ("epoch", "best AP", "duration")
                         else "left")
    for cells in rows:
        table.add_row(*cells[:keep])
    return table, list(RUN_COLUMNS[keep:])


def _run_cells(meta: dict) -> list[Any]:
    from rich.text import Text

    from engine.protocol.rundir import run_duration
    from tui.runs.progress import RunProgress
    from tui.safetext import safe_text

    # the rule the TUI's runs table and monitor use too
    progress = RunProgress.from_meta(str(meta.get("status")), meta.get("progress")).epoch_text()
    best = meta.get("best") or {}
    value = best.get("value")
    status = str(meta.get("status", "?"))
    color = {"running": "cyan", "starting": "cyan", "finished": "green",
             "interrupted": "yellow", "failed": "red"}.get(status, "white")
    config = Path(str(meta.get("config_path") or "-")).name
    # Every cell from run.json is text (never markup, no raw control characters).
    job = meta.get("slurm_job_id")  # an active SLURM job: which one (scancel, squeue)
    if status in ("starting", "running") and isinstance(job, str):
        status += f" (job {job})"
    return [safe_text(str(meta.get("id", "?"))), safe_text(status, color), Text(progress),
            Text(f"{value:.3f}" if isinstance(value, (int, float)) else "-")
            + (safe_text(f" {best['model']}") if isinstance(best.get("model"), str)
               and best["model"] != "model" else Text()),
            Text(_fmt_duration(run_duration(meta, time.time()))),
            safe_text(str(meta.get("trainer", "-"))), safe_text(config),
            safe_text(str(meta.get("created", "-"))[:16].replace("T", " "))]


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    secs = int(seconds)
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
    from engine.protocol.rundir import resolve_run
    from tui.safetext import log_line

    run_dir = resolve_run(runs_dir, run_ref)
    path = run_dir.stderr_log if stderr else run_dir.train_log
    if not follow and (not path.exists() or path.stat().st_size == 0):
        # say so (on stderr: a pipe gets nothing), rather than print nothing at all
        state = "is empty" if path.exists() else "does not exist yet"
        typer.echo(printable(f"{path} {state}") + (" (no traceback: the engine wrote "
                                                   "nothing there)" if stderr else ""),
                   err=True)
        return
    pos, partial = 0, ""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while True:
            if path.exists():
                try:
                    with open_regular(path) as f:  # a planted FIFO must not hang us
                        f.seek(pos)
                        chunk = f.read()
                except RefusedFile as exc:
                    raise RunError(f"refusing to read {path}: {exc}") from None
                pos += len(chunk)
                # Whole lines, control characters dropped (as in the TUI's log pane): a log
                # may quote anything, and raw escapes would drive the terminal.
                *lines, partial = (partial + decoder.decode(chunk)).split("\n")
                sys.stdout.writelines(log_line(line) + "\n" for line in lines)
                sys.stdout.flush()
            if not follow or (run_dir.effective_status() not in ("starting", "running")
                              and not chunk_pending(path, pos)):
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    if partial:
        sys.stdout.write(log_line(partial) + "\n")


def chunk_pending(path: Path, pos: int) -> bool:
    return path.exists() and path.stat().st_size > pos


@app.command("eval")
@user_errors
def eval_cmd(
    config: Annotated[Path, typer.Argument(help="YAML config; its EvalDataset is used.")],
    weights: Annotated[str, typer.Option("--weights", help=WEIGHTS_HELP)],
    opt: Overrides = [],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics here.")
                        ] = None,
    offline: Offline = False,
) -> None:
    """COCO-evaluate weights on the config's EvalDataset (AP table + per-class AP)."""
    from engine.config import load_and_validate

    set_offline(offline)
    load_and_validate(config, opt)  # bad input fails here, fast, without torch
    prefetch({"--weights": weights})
    args = ["eval", str(config), "--weights", weights]
    for o in opt:
        args += ["-o", o]
    if json_out:
        args += ["--json", str(json_out)]
    run_engine(args)


@app.command()
@user_errors
def infer(
    config: Annotated[Path, typer.Argument(help="YAML config of the model.")],
    images: Annotated[list[Path], typer.Argument(help="Image files (PNG/JPEG).")],
    weights: Annotated[str, typer.Option("--weights", help=WEIGHTS_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Folder for the annotated copies.")],
    score_thresh: Annotated[float, typer.Option("--score-thresh", help="Draw boxes above.")
                            ] = 0.3,
    opt: Overrides = [],
    offline: Offline = False,
) -> None:
    """Detect objects and draw boxes and labels on copies of the images."""
    from engine.config import load_and_validate

    set_offline(offline)
    load_and_validate(config, opt)
    prefetch({"--weights": weights})
    args = ["infer", str(config), "--weights", weights, "--out", str(out),
            "--score-thresh", str(score_thresh), *[str(i) for i in images]]
    for o in opt:
        args += ["-o", o]
    run_engine(args)


app.command("export")(user_errors(export))  # tui/cli/trackers.py
register_weights(app, user_errors)  # tui/cli/weights.py: dettui weights list|get|verify|rm
register_data(user_errors)
