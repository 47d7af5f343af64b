"""``python -m tui.cli``: the ``dettui`` command without the console script."""

from tui.cli.main import app

app()
