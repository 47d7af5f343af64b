"""``dettui``, the command line (the console script ``dettui = "tui.cli:app"``).

- :mod:`tui.cli.main`: the Typer app, its commands and the one error funnel;
- :mod:`tui.cli.help`, :mod:`tui.cli.trackers`, :mod:`tui.cli.weights`: help layout, the
  tracker options and ``export``, ``dettui weights``;
- :mod:`tui.cli.headless`: the console view of a run (``run --headless``, ``attach``).
"""

from tui.cli.main import app

__all__ = ["app"]
