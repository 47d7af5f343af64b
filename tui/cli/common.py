"""What the command modules of ``dettui`` share: option types and running the engine."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

Overrides = Annotated[list[str], typer.Option(
    "-o", "--opt", help="Override a config key: key.sub.leaf=value (YAML value); repeatable.")]


def run_engine(args: list[str]) -> None:
    """Run ``python -m engine ARGS`` in the foreground and exit with its code."""
    code = subprocess.call([sys.executable, "-m", "engine", *args])
    raise typer.Exit(code)
