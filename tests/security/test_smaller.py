"""Point 8: deleting a run that is a symbolic link removes the link (never what it points
at) and says so; ``dettui eval`` with weights of another architecture says what fits and
what does not, as ``run`` does for ``pretrain_weights``, instead of a cut-off torch
header."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_overrides
from tests.security.helpers import dettui, out, write_run
from tests.tui.conftest import make_app, run_pilot, wait_for


def test_deleting_a_symlinked_run_removes_only_the_link(tmp_path: Path) -> None:
    from tui.screens.home import ConfirmScreen
    from tui.widgets.runs_table import RunsTable

    elsewhere = write_run(tmp_path / "archive", "kept")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "kept").symlink_to(elsewhere, target_is_directory=True)
    app = make_app(runs)

    async def scenario(pilot) -> None:
        table = app.home.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the linked run")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 0, what="the row to go")
        messages = [str(n.message) for n in app._notifications]
        assert any("Deleted the link" in m and "target is kept" in m for m in messages), \
            messages

    run_pilot(app, scenario)
    assert not (runs / "kept").exists() and not (runs / "kept").is_symlink()
    assert (elsewhere / "run.json").is_file()  # the folder it pointed at is untouched


@pytest.mark.slow
def test_eval_with_weights_of_another_architecture_shows_the_load_summary(
        tmp_path: Path) -> None:
    import torch

    from engine.config import load_and_validate
    from engine.models import build_model

    _, retina = load_and_validate(REPO / "configs" / "demo" / "retinanet_tiny_shapes.yml")
    weights = tmp_path / "retinanet.pt"
    torch.save(build_model(retina).state_dict(), weights)
    opts: list[str] = []
    for item in tiny_overrides(tmp_path / "data", train_images=2, val_images=2):
        opts += ["-o", item]
    proc = dettui("eval", str(REPO / "configs" / "demo" / "fcos_tiny_shapes.yml"),
                  "--weights", str(weights), *opts, timeout=240)
    text = out(proc)
    assert proc.returncode == 2, text
    assert "the weights do not fit this config's model (FCOS/tiny" in text
    for part in ("loaded ", "skipped ", "(shape mismatch)", "missing ", "unused "):
        assert part in text, text
    assert "Error(s) in loading state_dict" not in text and "Traceback" not in text
