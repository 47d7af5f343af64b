"""``python -m engine``: the engine's own command line (torchrun-able) and its error funnel.

    python -m engine train CONFIG [-o key=value ...] [--run-dir DIR | --runs-dir DIR --name N]
                                  [--eval/--no-eval] [--resume PATH|RUN_ID|auto] [--force]
                                  [--tensorboard [DIR]] [--wandb]
    python -m engine eval CONFIG --weights PATH [-o ...] [--json OUT]
    python -m engine infer CONFIG --weights PATH IMAGE... --out DIR [-o ...]
    python -m engine fit CONFIG --weights SOURCE [-o ...]     (JSON: what of it fits the model)

Weights may be a file, a URL, torchvision:..., hf:... or run:... (engine.weightsource).

Exit codes: 0 finished, 1 crashed (traceback in stderr), 2 bad input (one clear message),
130 interrupted (a checkpoint was written first).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import traceback
from pathlib import Path

from engine.config import dump_yaml, load_and_validate
from engine.protocol.errors import EXIT_USER_ERROR, DiskFull, NonFiniteLoss, StopTraining, UserError
from engine.protocol.ownership import process_start_time
from engine.protocol.rundir import (
    RUN_SCHEMA_VERSION,
    RunDirectory,
    atomic_write_text,
    default_runs_dir,
    now_iso,
)
from engine.protocol.runlock import EngineLock
from engine.protocol.termtext import printable
from engine.recorder import RunRecorder

EXIT_OK, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a detector (one process, or one rank of torchrun)")
    t.add_argument("config", type=Path)
    t.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (dotted, any depth; value parsed as YAML)")
    t.add_argument("--run-dir", type=Path, help="an existing run folder (made by dettui)")
    t.add_argument("--runs-dir", type=Path, help="where to make a new run folder")
    t.add_argument("--name", help="name of the new run")
    t.add_argument("--eval", dest="eval", action="store_true", default=True)
    t.add_argument("--no-eval", dest="eval", action="store_false")
    t.add_argument("--resume", help="checkpoint path, run id, or 'auto' (this run's newest)")
    t.add_argument("--force", action="store_true", help="resume even if the config changed")
    t.add_argument("--tensorboard", nargs="?", const="", metavar="DIR",
                   help="log losses, lr and AP as TensorBoard scalars in DIR (default: "
                        "RUN/tensorboard); needs pip install 'dettui[tensorboard]'")
    t.add_argument("--wandb", action="store_true",
                   help="log the same to Weights & Biases (project $WANDB_PROJECT or dettui; "
                        "WANDB_MODE=offline works without network); needs "
                        "pip install 'dettui[wandb]'")

    e = sub.add_parser("eval", help="COCO-evaluate weights on the config's EvalDataset")
    e.add_argument("config", type=Path)
    e.add_argument("--weights", required=True)
    e.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")
    e.add_argument("--json", type=Path, help="also write the metrics here")

    i = sub.add_parser("infer", help="draw detections on copies of images")
    i.add_argument("config", type=Path)
    i.add_argument("--weights", required=True)
    i.add_argument("images", nargs="+", type=Path)
    i.add_argument("--out", type=Path, required=True)
    i.add_argument("--score-thresh", type=float, default=0.3)
    i.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")

    f = sub.add_parser("fit", help="the partial-load report of weights on the config's "
                                   "model, as JSON (nothing is trained or downloaded)")
    f.add_argument("config", type=Path)
    f.add_argument("--weights", required=True)
    f.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")
    f.add_argument("--runs-dir", type=Path, help="where run: ids are looked up")

    s = sub.add_parser("shapes", help="write the synthetic shapes dataset (COCO json + PNGs)")
    s.add_argument("out", type=Path)
    s.add_argument("--train", type=int, default=600)
    s.add_argument("--val", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=160)
    s.add_argument("--classes", help="comma-separated shape kinds to draw, in label order "
                   "(default: circle,square,triangle,cross)")
    return p


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _open_run(args: argparse.Namespace, rank: int,
              locks: list[EngineLock]) -> RunDirectory | None:
    """The run folder this process writes (rank 0 only), locked for this process's life
    (the lock is appended to ``locks``): one engine per run folder. A second engine on it
    raises ``RunError`` before writing anything there."""
    if rank != 0:
        return None
    if args.run_dir is not None:
        run = RunDirectory(args.run_dir)
        if not run.path.is_dir():
            raise UserError(f"run folder not found: {run.path}", key="--run-dir")
        run.check_writable()  # no symlink may lead our writes out of the run folder
        locks.append(EngineLock(run.path).acquire())
        run.checkpoints.mkdir(exist_ok=True)
        return run
    # Under torchrun without --run-dir, rank 0 makes the folder; the others write nothing.
    run = RunDirectory.create(args.runs_dir or default_runs_dir(),
                              args.name or args.config.stem)
    locks.append(EngineLock(run.path).acquire())
    return run


def cmd_train(args: argparse.Namespace) -> int:
    rank = int(os.environ.get("RANK", "0"))
    recorder: RunRecorder | None = None
    locks: list[EngineLock] = []  # held until this function returns
    run_dir = args.run_dir
    try:
        if run_dir is not None:  # made by the front-end: report even config errors there
            recorder = RunRecorder(_open_run(args, rank, locks), rank)
        loaded, cfg = load_and_validate(args.config, args.opt)
        if recorder is None:
            recorder = RunRecorder(_open_run(args, rank, locks), rank)
            run_dir = recorder.run.path if recorder.run else None
        config_dict = cfg.to_dict()
        if recorder.active:
            atomic_write_text(recorder.run.config_yaml, dump_yaml(config_dict))
            meta = recorder.run.read_meta() if recorder.run.exists() else {}
            defaults = {"schema": RUN_SCHEMA_VERSION, "id": recorder.run.id,
                        "name": args.name or args.config.stem, "config_path": str(args.config),
                        "overrides": list(args.opt), "command": sys.argv,
                        "host": socket.gethostname(), "created": now_iso(), "attempt": 1,
                        "eval": args.eval, "best": None}
            if "pid" not in meta:  # started without a launcher: the pid is ours
                defaults.update(pid=os.getpid(), pid_started=process_start_time(os.getpid()))
            # A launcher or the supervisor marks each start it makes "starting" and counts
            # it; a restart nobody announced (a requeued SLURM job) is counted here.
            attempt = ({"attempt": (meta.get("attempt") or 1) + 1}
                       if meta and meta.get("status") != "starting" else {})
            # A job of `dettui run --slurm` (its script exports the id): `dettui stop`
            # cancels the job; any other start clears it (a local resume of that run).
            slurm_job = os.environ.get("DETTUI_SLURM_JOB_ID") or None
            slurm = ({"slurm_job_id": slurm_job}
                     if slurm_job or meta.get("slurm_job_id") is not None else {})
            recorder.update_meta(**{k: v for k, v in defaults.items() if k not in meta},
                                 **attempt, **slurm, architecture=cfg.architecture,
                                 engine_pid=os.getpid(), exit_code=None)
        _start_trackers(args, recorder, config_dict)
        from engine.run import Flags, run  # torch-heavy: imported after the cheap checks

        recorder.set_status("running")
        flags = Flags(eval=args.eval, resume=args.resume, force=args.force, run_dir=run_dir,
                      runs_dir=args.runs_dir)
        trainer = run(flags, cfg, recorder, config_dict)
        best = trainer.best
        summary = f"best AP {best['value']:.3f} at epoch {best['epoch']}" if best else "no eval"
        recorder.logger.info(f"training finished: {summary}")
        recorder.set_status("finished", summary, exit_code=EXIT_OK, best=best)
        return EXIT_OK
    except UserError as exc:
        _say(f"error: {printable(exc.render(), newlines=True)}")
        if not sys.stderr.isatty():  # stderr.log under dettui: keep the trace for --debug
            _say(traceback.format_exc())
        if recorder is not None:
            _record_failure(recorder, exc, exc.render(), log_message=exc.render(),
                            user_error=True, exit_code=EXIT_USER_ERROR)
        return EXIT_USER_ERROR
    except StopTraining as exc:
        return _interrupted(recorder, str(exc))
    except KeyboardInterrupt:
        return _interrupted(recorder, "interrupted before a clean stop point; the last "
                            "checkpoint stands")
    except Exception as exc:  # the one place that turns a crash into an error event
        tb = traceback.format_exc()
        full = DiskFull.find(exc)
        if full is not None:  # not a bug: say what to do, and keep the trace in stderr.log
            message = f"{full}; " + _resume_hint(recorder)
            _say(f"error: {printable(message, newlines=True)}\n{tb}")
            if recorder is not None:
                _record_failure(recorder, full, message, log_message=message,
                                user_error=False, exit_code=EXIT_CRASH, traceback_text=tb,
                                path=full.path)
            return EXIT_CRASH
        _say(printable(tb, newlines=True))
        if recorder is not None:
            details = {"losses": exc.losses} if isinstance(exc, NonFiniteLoss) else {}
            _record_failure(recorder, exc, str(exc),
                            log_message=f"crashed: {type(exc).__name__}: {exc}",
                            user_error=False, exit_code=EXIT_CRASH, traceback_text=tb,
                            **details)
        return EXIT_CRASH
    finally:
        if recorder is not None:
            recorder.close()
        for lock in locks:
            lock.release()


def _start_trackers(args: argparse.Namespace, recorder: RunRecorder,
                    config_dict: dict) -> None:
    """TensorBoard / W&B for this run (rank 0), recorded in run.json so that a resume
    logs to the same place."""
    from engine.trackers import TensorBoardSink, TrackerFeed, WandbSink, require

    if args.tensorboard is not None:
        require("tensorboard")
    if args.wandb:
        require("wandb")
    if not recorder.active or (args.tensorboard is None and not args.wandb):
        return
    run = recorder.run
    sinks: list = []
    logdir = None
    if args.tensorboard is not None:
        logdir = Path(args.tensorboard or run.path / "tensorboard").resolve()
        sinks.append(TensorBoardSink(logdir))
    if args.wandb:
        name = args.name or (run.read_meta().get("name") if run.exists() else None)
        sinks.append(WandbSink(run.id, run.path, config_dict, name=name))

    recorder.attach_trackers(TrackerFeed(
        sinks, on_error=lambda message: recorder.note("warning", message)))
    recorder.update_meta(trackers={"tensorboard": str(logdir) if logdir else None,
                                   "wandb": bool(args.wandb)})
    where = [f"TensorBoard scalars in {logdir}"] if logdir else []
    where += ["Weights & Biases"] if args.wandb else []
    recorder.logger.info("logging to " + " and ".join(where))


def _say(text: str) -> None:
    """A line on stderr (``stderr.log`` under dettui), if it can be written: on a full disk
    it may not, and the failure is recorded in run.json all the same."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


def _resume_hint(recorder: RunRecorder | None) -> str:
    run = f" {recorder.run.id}" if recorder is not None and recorder.active else ""
    return (f"the last good checkpoint is kept: free some space, then `dettui resume{run}` "
            "goes on from it")


def _record_failure(recorder: RunRecorder, exc: BaseException, message: str, *,
                    log_message: str, user_error: bool, exit_code: int,
                    traceback_text: str | None = None, **details: object) -> None:
    """The failure in the run folder, each part best-effort (see ``record_failure``); what
    did not fit is said on stderr."""
    not_written = recorder.record_failure(
        type(exc).__name__, message, log_message=log_message,
        traceback=traceback_text if traceback_text is not None else traceback.format_exc(),
        user_error=user_error, exit_code=exit_code, **details)
    for line in not_written:
        _say(f"could not record the failure in {line}")


def _interrupted(recorder: RunRecorder | None, message: str) -> int:
    if recorder is not None:
        try:
            recorder.logger.info(f"interrupted: {message}")
            recorder.set_status("interrupted", message, exit_code=EXIT_INTERRUPTED)
        except (DiskFull, OSError) as exc:
            _say(f"could not record the stop: {exc}")
    return EXIT_INTERRUPTED


def _weights_file(source: str) -> str:
    """A weights source as a local file (downloaded once, when it is not cached yet)."""
    from engine.weightsource import resolve

    return str(resolve(source, key="--weights").path)


def cmd_eval(args: argparse.Namespace) -> int:
    from engine.tools import evaluate_weights

    return evaluate_weights(args.config, _weights_file(args.weights), args.opt, args.json)


def cmd_infer(args: argparse.Namespace) -> int:
    from engine.tools import infer_images

    return infer_images(args.config, _weights_file(args.weights), args.images, args.out,
                        args.score_thresh, args.opt)


def cmd_fit(args: argparse.Namespace) -> int:
    from engine.tools import fit_report

    return fit_report(args.config, args.weights, args.opt, args.runs_dir)


def cmd_shapes(args: argparse.Namespace) -> int:
    from engine.data.shapes import write_shapes_dataset

    classes = None if args.classes is None else [c.strip() for c in args.classes.split(",")]
    write_shapes_dataset(args.out, train=args.train, val=args.val, seed=args.seed,
                         image_size=args.image_size, classes=classes)
    print(f"wrote {args.train} train + {args.val} val {'image' if args.val == 1 else 'images'} "
          f"to {args.out} "
          f"(annotations in {args.out / 'annotations'})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM stops like Ctrl-C. SIGUSR1 means "checkpoint now" once training runs
    # (SignalHook); before that there is nothing to save, and its default action
    # (terminate) must not end a starting run. Both are put back on the way out: called
    # in-process (tests), an ignored SIGUSR1 would be inherited by every later child.
    # SIGXFSZ (a write past ``ulimit -f``) would kill the process by default; ignored, the
    # write fails with EFBIG instead and the run ends as on a full disk, recorded
    # (CPython ignores it at startup already; an embedding program may not).
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _sigterm_as_interrupt),
                signal.SIGUSR1: signal.signal(signal.SIGUSR1, signal.SIG_IGN),
                signal.SIGXFSZ: signal.signal(signal.SIGXFSZ, signal.SIG_IGN)}
    try:
        if args.command == "train":
            return cmd_train(args)
        return {"eval": cmd_eval, "infer": cmd_infer, "fit": cmd_fit,
                "shapes": cmd_shapes}[args.command](args)
    except UserError as exc:  # the message may quote a file: no raw control characters
        print(f"error: {printable(exc.render(), newlines=True)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
