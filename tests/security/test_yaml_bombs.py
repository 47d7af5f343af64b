"""Point 4: configs that would eat all memory or hang are refused, fast, with exit code 2
and a clear message: a YAML alias bomb, a recursive alias, a ``_BASE_`` that is a FIFO or
a link to /dev/zero, a config over the size limit, a ``_BASE_`` chain that multiplies.

Everything that could blow up runs in a child process with a memory limit and a timeout:
a bomb that is not refused fails the test instead of taking the machine down."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, engine_env
from tests.security.helpers import HERE

MEMORY_LIMIT = 2 << 30  # bytes of address space for each child


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run(*args: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=engine_env(),
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limited)
    return proc, time.monotonic() - started


def _dettui_run(config: Path) -> subprocess.CompletedProcess:
    proc, _ = _run("-m", "tui.cli", "run", str(config), "--headless", "--runs-dir",
                   str(config.parent / "runs"))
    return proc


def _load_seconds(config: Path) -> tuple[str, float]:
    """The loader alone (what the engine and the TUI both call): its error and its time."""
    code = ("import sys, time\n"
            "from engine.config import load_config\n"
            "from engine.protocol.errors import ConfigError\n"
            "t = time.perf_counter()\n"
            "try:\n"
            "    load_config(sys.argv[1])\n"
            "    print('loaded')\n"
            "except ConfigError as exc:\n"
            "    print(exc.render())\n"
            "print(f'{time.perf_counter() - t:.4f}')\n")
    proc, _ = _run("-c", code, str(config))
    assert proc.returncode == 0, proc.stderr
    *message, seconds = proc.stdout.strip().splitlines()
    return "\n".join(message), float(seconds)


def _assert_refused(proc: subprocess.CompletedProcess, *needles: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, text


def alias_bomb(path: Path, levels: int = 30) -> Path:
    """The 882-byte bomb of the issue: each level refers twice to the one before."""
    lines = ["a0: &a0 {x: 1, y: 2}"]
    lines += [f"a{i}: &a{i} {{k1: *a{i - 1}, k2: *a{i - 1}}}" for i in range(1, levels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_alias_bomb_is_refused_within_a_second(tmp_path: Path) -> None:
    bomb = alias_bomb(tmp_path / "bomb.yml")
    assert bomb.stat().st_size == 882
    message, seconds = _load_seconds(bomb)
    assert "expands to more than 100,000 values through its aliases" in message
    assert seconds < 1.0, f"the loader took {seconds:.2f}s to refuse the bomb"
    _assert_refused(_dettui_run(bomb), "bomb.yml", "aliases")


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "rec.yml"
    config.write_text("num_classes: 1\nloop: &a [1, *a]\n", encoding="utf-8")
    message, _ = _load_seconds(config)  # the TUI loads (for its resolved view) unvalidated
    assert "rec.yml:2" in message and "refers to a node that contains it" in message
    _assert_refused(_dettui_run(config), "rec.yml:2", "refers to a node that contains it")


def test_base_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yml")
    config = tmp_path / "c.yml"
    config.write_text("_BASE_: [pipe.yml]\nnum_classes: 1\n", encoding="utf-8")
    _assert_refused(_dettui_run(config), "pipe.yml", "named pipe (FIFO), not a regular file")


def test_base_that_links_to_dev_zero_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zero.yml").symlink_to("/dev/zero")
    config = tmp_path / "c.yml"
    config.write_text("_BASE_: [zero.yml]\nnum_classes: 1\n", encoding="utf-8")
    _assert_refused(_dettui_run(config), "zero.yml", "character device")


def test_config_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    config = tmp_path / "big.yml"
    config.write_text("num_classes: 1\n" + "# padding\n" * 250_000, encoding="utf-8")
    assert config.stat().st_size > 2 << 20
    message, seconds = _load_seconds(config)
    assert "too large" in message and seconds < 1.0, (message, seconds)
    _assert_refused(_dettui_run(config), "big.yml", "too large", "the limit is 1.0 MiB")


def test_base_chain_that_multiplies_is_refused(tmp_path: Path) -> None:
    """No cycle, but each file lists the next twice: 2**30 loads."""
    for i in range(30):
        (tmp_path / f"b{i}.yml").write_text(f"_BASE_: [b{i + 1}.yml, b{i + 1}.yml]\n")
    (tmp_path / "b30.yml").write_text("num_classes: 1\n")
    _assert_refused(_dettui_run(tmp_path / "b0.yml"), "more than 100 files through _BASE_")


@pytest.mark.timeout(120)
def test_tui_marks_hostile_configs_and_never_freezes(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    alias_bomb(configs / "bomb.yml")
    os.mkfifo(configs / "pipe.yml")
    (configs / "zero.yml").symlink_to("/dev/zero")
    data = tmp_path / "data"  # the fine config's data is there: the tree marks absent data too
    (data / "images").mkdir(parents=True)
    (data / "a.json").write_text('{"images": [], "annotations": [], "categories": '
                                 '[{"id": 1, "name": "a"}]}', encoding="utf-8")
    sets = "".join(f"{s}: {{dataset_dir: {data}, anno_path: a.json, image_dir: images}}\n"
                   for s in ("TrainDataset", "EvalDataset"))
    (configs / "fine.yml").write_text("num_classes: 1\nepoch: 1\n" + sets, encoding="utf-8")
    result = tmp_path / "result.json"
    proc, _ = _run(str(HERE / "tui_config_check.py"), str(configs), str(result), timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(result.read_text())
    assert got["help_open"], got  # a key press was answered while the checks ran
    checks = got["checks"]
    assert "aliases" in checks["bomb.yml"]
    assert "named pipe" in checks["pipe.yml"]
    assert "character device" in checks["zero.yml"]
    assert checks["fine.yml"] is None
    assert got["checked_s"] < 30, got


def test_preview_of_a_big_config_is_bounded(tmp_path: Path) -> None:
    """The preview is drawn in the UI thread: a config just under the size limit shows its
    first lines and says how many more there are, instead of tens of thousands of rows."""
    from rich.console import Console

    from tui.widgets.yaml_view import render_source

    config = tmp_path / "long.yml"
    config.write_text("".join(f"key_{i}: {i}\n" for i in range(60_000)), encoding="utf-8")
    assert config.stat().st_size < 1 << 20
    console = Console(width=100, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    with console.capture() as capture:
        console.print(render_source(config))
    shown = capture.get().splitlines()
    assert len(shown) < 2_100 and "58,000 more lines not shown" in shown[-1]
