"""Home screen flows: browse configs, preview + resolved view, invalid configs marked."""

from __future__ import annotations

from pathlib import Path

from tests.tui.conftest import make_app, plain, run_pilot, wait_for
from tui.widgets.config_tree import ConfigTree, check_configs, discover
from tui.widgets.yaml_view import YamlView


def test_check_configs_finds_partial_invalid_and_valid(configs_dir: Path) -> None:
    checks = check_configs(sorted(discover([configs_dir])))
    by_name = {p.name: c for p, c in checks.items()}
    assert by_name["runtime.yml"].base and by_name["runtime.yml"].error is None
    assert by_name["good.yml"].error is None
    assert by_name["good.yml"].summary.startswith("FCOS · tiny · 4 classes · 3 epochs")
    assert "epochs" in by_name["typo.yml"].error
    assert "did you mean 'epoch'" in by_name["typo.yml"].error
    assert "typo.yml:4" in by_name["typo.yml"].error  # file and line of the bad key
    assert "YAML syntax error" in by_name["broken.yml"].error


def test_browse_marks_invalid_configs_and_previews(runs_dir: Path, configs_dir: Path) -> None:
    app = make_app(runs_dir, configs_dir)

    async def scenario(pilot) -> None:
        tree = app.screen.query_one(ConfigTree)
        await wait_for(pilot, lambda: len(tree.checks) == 4, what="config validation")
        labels = {n.data.name: str(n.label) for n in tree._path_nodes.values()
                  if n.data is not None and n.data.is_file()}
        assert labels["typo.yml"].startswith("✗")
        assert labels["broken.yml"].startswith("✗")
        assert not labels["good.yml"].startswith("✗")
        view = app.screen.query_one(YamlView)
        # The first runnable config is selected and previewed with its summary.
        await wait_for(pilot, lambda: view.path == configs_dir / "demo" / "good.yml",
                       what="first valid config previewed")
        await wait_for(pilot, lambda: "LearningRate" in plain(
            view.query_one("#yaml-body").content), what="YAML source shown")
        assert "FCOS · tiny" in plain(view.query_one("#yaml-banner").content)
        # Browse to the typo: the preview says what is wrong, where.
        tree.focus()
        tree.select_path(configs_dir / "demo" / "typo.yml")
        await wait_for(pilot, lambda: view.path == configs_dir / "demo" / "typo.yml")
        banner = plain(view.query_one("#yaml-banner").content)
        assert "unknown key" in banner and "did you mean 'epoch'" in banner
        assert view.query_one("#yaml-banner").has_class("-error")

    run_pilot(app, scenario)


def test_resolved_view_shows_where_each_key_was_set(runs_dir: Path, configs_dir: Path) -> None:
    app = make_app(runs_dir, configs_dir)

    async def scenario(pilot) -> None:
        view = app.screen.query_one(YamlView)
        await wait_for(pilot, lambda: view.path is not None and view.path.name == "good.yml")
        await pilot.press("v")
        assert view.resolved
        assert "resolved" in str(view.border_title)
        await wait_for(pilot, lambda: "runtime.yml:4" in plain(
            view.query_one("#yaml-body").content), what="resolved view")
        lines = plain(view.query_one("#yaml-body").content).splitlines()
        worker = next(line for line in lines if "worker_num: 2" in line)
        assert "runtime.yml:4" in worker  # set by the base file, line 4
        epoch = next(line for line in lines if "epoch: 3" in line)
        assert ":6" in epoch and "runtime" not in epoch  # set by good.yml itself, line 6
        await pilot.press("v")
        await wait_for(pilot, lambda: "_BASE_" in plain(view.query_one("#yaml-body").content),
                       what="back to the source view")

    run_pilot(app, scenario)


def test_config_tree_picks_up_new_and_edited_files(runs_dir: Path, configs_dir: Path) -> None:
    app = make_app(runs_dir, configs_dir)

    async def scenario(pilot) -> None:
        tree = app.screen.query_one(ConfigTree)
        await wait_for(pilot, lambda: len(tree.checks) == 4)
        new = configs_dir / "demo" / "new.yml"
        new.write_text("num_classes: 0\n", encoding="utf-8")
        tree.rescan()
        await wait_for(pilot, lambda: new in tree.checks, what="new config found")
        assert "num_classes" in tree.checks[new].error
        # fixed (with data it generates: a config whose dataset is absent is ✗ too)
        new.write_text("num_classes: 2\n"
                       "TrainDataset: {dataset_dir: data/s, synthesize: {num_images: 8}}\n"
                       "EvalDataset: {dataset_dir: data/s, synthesize: {num_images: 4}}\n",
                       encoding="utf-8")
        tree.rescan()
        await wait_for(pilot, lambda: tree.checks[new].error is None, what="re-validated")

    run_pilot(app, scenario)


def test_a_missing_configs_dir_does_not_crash(runs_dir: Path, tmp_path: Path) -> None:
    app = make_app(runs_dir, tmp_path / "no-such-dir")

    async def scenario(pilot) -> None:
        tree = app.screen.query_one(ConfigTree)
        await wait_for(pilot, lambda: "missing" in str(tree.root.children[0].label))

    run_pilot(app, scenario)
