"""The command line's TensorBoard / W&B parts: ``--tensorboard [DIR]`` and ``--wandb`` of
``dettui run``, and ``dettui export RUN --tensorboard DIR [--wandb]``.

Kept apart from ``tui.cli`` (which registers them) so that the command module stays a
list of commands. Nothing here imports torch: the scalars come from ``engine.trackers``,
which needs only the standard library and the tracker's own package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperCommand

from engine.protocol.rundir import RUNS_DIR_ENV
from engine.protocol.termtext import printable

# Typer renders help as Rich markup: a backslash keeps the brackets of the extras.
TENSORBOARD_HELP = ("Log every loss term, lr, AP and per-class AP as TensorBoard scalars, live, "
                    "in DIR (default: RUN/tensorboard). Give DIR after the config, or as "
                    "--tensorboard=DIR. Needs: pip install 'dettui\\[tensorboard]'.")
WANDB_HELP = ("Log the same to Weights & Biases (project $WANDB_PROJECT, default dettui; "
              "WANDB_MODE=offline works without network). Needs: "
              "pip install 'dettui\\[wandb]'.")

Tensorboard = Annotated[str | None, typer.Option("--tensorboard", metavar="[DIR]",
                                                 help=TENSORBOARD_HELP)]
Wandb = Annotated[bool, typer.Option("--wandb", help=WANDB_HELP)]


class OptionalValueCommand(TyperCommand):
    """A command whose ``--tensorboard`` may come without its value (then it is ``""``,
    the default folder): click has such options, but Typer cannot declare one, so a bare
    ``--tensorboard`` (last, or followed by another option) is read as ``--tensorboard=``."""

    optional_value_options = ("--tensorboard",)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        for i, arg in enumerate(args):
            if arg == "--":
                out += args[i:]
                break
            bare = i + 1 == len(args) or args[i + 1].startswith("-")
            out.append(f"{arg}=" if arg in self.optional_value_options and bare else arg)
        return super().parse_args(ctx, out)


def export(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or unique prefix).")],
    tensorboard: Annotated[Path | None, typer.Option(
        "--tensorboard", metavar="DIR",
        help="Write the run's curves as TensorBoard scalars in DIR.")] = None,
    wandb: Annotated[bool, typer.Option(
        "--wandb", help="Log the run's curves to a new Weights & Biases run (offline with "
                        "WANDB_MODE=offline; the files go under RUN/wandb).")] = False,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", envvar=RUNS_DIR_ENV,
                                           help="Folder of run directories.")] = Path("runs"),
) -> None:
    """Write a past run's losses, lr, AP and per-class AP (from its events.jsonl) to
    TensorBoard and/or Weights & Biases, as `dettui run --tensorboard/--wandb` does live."""
    from engine.protocol.errors import ConfigError
    from engine.protocol.rundir import resolve_run
    from engine.trackers import export_run, require

    if tensorboard is None and not wandb:
        raise ConfigError("nothing to export to: give --tensorboard DIR and/or --wandb")
    for tracker, wanted in (("tensorboard", tensorboard is not None), ("wandb", wandb)):
        if wanted:
            require(tracker)
    run = resolve_run(runs_dir, run_ref)
    result: dict[str, Any] = export_run(run.path, tensorboard=tensorboard, wandb=wandb)
    where = []
    if "tensorboard" in result:
        where.append(f"TensorBoard scalars in {result['tensorboard']} "
                     f"(tensorboard --logdir {result['tensorboard']})")
    if "wandb" in result:
        where.append(f"a W&B run in {result['wandb']}")
    typer.echo(printable(f"exported {result['steps']} steps x {result['tags']} curves of "
                         f"{run.id} to " + " and ".join(where)))
