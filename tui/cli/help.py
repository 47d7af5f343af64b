"""``--help`` without a type on plain flags.

Typer (0.2x) shows every option's type in ``--help``, plain on/off flags included:
``--headless <bool>``, ``--help <bool>``, which reads as if the flag took a value. A flag
takes none, and its metavar is never used to parse or in the usage line, so an empty
metavar hides the type in Typer's table and changes nothing else.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup


def hide_flag_types(command: Any, ctx: Any) -> None:
    """Give the plain flags of ``command`` (``--help`` included) an empty metavar.
    (Duck-typed: Typer carries its own copy of click's classes.)"""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""


class FlagHelpGroup(TyperGroup):
    """A command group whose help, and its commands' help, show no type on flags."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        hide_flag_types(self, ctx)
        super().format_help(ctx, formatter)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not hasattr(command, "commands"):  # groups do it
            hide_flag_types(command, ctx)
        return command
