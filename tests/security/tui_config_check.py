"""The TUI's config browser on a hostile configs folder, in its own process (the tests run it
with a memory limit and a timeout, so that a bomb that is not refused cannot take the test
machine down): ``python tui_config_check.py CONFIGS OUT``.

Writes to OUT, as JSON, what each config checked as, how long the first verdicts took, and
whether the UI answered a key press (it must never freeze) while the checks ran.
"""

import asyncio
import json
import sys
import time
from pathlib import Path

from tui.app import DettuiApp
from tui.widgets.config_tree import ConfigTree


async def main(configs: Path, out: Path) -> None:
    app = DettuiApp(configs.parent / "runs", [configs])
    started = time.monotonic()
    async with app.run_test(size=(120, 40)) as pilot:
        tree = app.home.query_one(ConfigTree)
        await pilot.press("question_mark")  # the UI answers while the checks run
        answered = time.monotonic() - started
        while not tree.checks and time.monotonic() - started < 60:
            await pilot.pause(0.05)
        checked = time.monotonic() - started
        result = {"answered_s": answered, "checked_s": checked,
                  "help_open": type(app.screen).__name__ == "HelpScreen",
                  "checks": {p.name: c.error for p, c in tree.checks.items()}}
    out.write_text(json.dumps(result))


asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
