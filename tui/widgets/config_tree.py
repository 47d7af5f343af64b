"""The config browser: a tree of the YAML configs under one or more folders.

Every config is loaded and validated in a thread worker (never in the UI thread, never
able to crash the browser); invalid ones are marked with a red ✗ and their error is kept
for the preview. A config that other configs include through ``_BASE_`` (or that lives in
a ``_base_`` folder) is a partial config: it is only checked for YAML and ``_BASE_``
errors, not against the full schema, and is shown dimmed. The folders are re-scanned every
couple of seconds, so configs edited in another pane are re-checked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from engine.config import load_config, validate
from engine.config.loader import LoadedConfig
from engine.config.schema import trainer_name
from engine.protocol.errors import UserError
from tui.process.spec import check_data
from tui.safetext import safe_text

CONFIG_SUFFIXES = (".yml", ".yaml")
BASE_DIR_NAME = "_base_"
FIRST_CONFIG = Path("demo") / "fcos_tiny_shapes.yml"
"""Where the cursor starts, under a configs folder (the README's demo), when it can run;
else on the first config that can."""


def no_configs_text(roots: list[Path]) -> Text:
    """What the preview says when no config was found: where it looked, how to look elsewhere."""
    where = Text()
    for i, root in enumerate(roots):
        where.append(", " if i else "")
        where.append_text(safe_text(os.path.abspath(root), "bold"))
        if not root.is_dir():
            where.append(" (not there)", style="dim")
    return Text.assemble(
        "No configs found. Looked in ", where if roots else Text("no folder", style="bold"),
        ".\n\nPoint dettui at a folder of YAML configs:\n  ",
        ("dettui --configs DIR", "bold"), "   (repeatable)\nor open one config's launch form:\n  ",
        ("dettui run CONFIG.yml", "bold"),
        "\n\nStarted from the repository root, dettui finds its configs/ folder.")


@dataclass(frozen=True)
class ConfigCheck:
    """The outcome of loading and validating one config file."""

    path: Path
    error: str | None = None
    """``UserError.render()`` of the first problem, or None when the config is fine."""
    base: bool = False
    """A partial config (included by others): checked for syntax only."""
    summary: str = ""
    """One line about a valid config: architecture, backbone, classes, epochs, trainer."""


def discover(roots: Iterable[Path]) -> dict[Path, int]:
    """Every config file under ``roots`` with its mtime (ns); hidden folders are skipped."""
    found: dict[Path, int] = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in files:
                if name.endswith(CONFIG_SUFFIXES) and not name.startswith("."):
                    path = Path(folder) / name
                    try:
                        found[path] = path.stat().st_mtime_ns
                    except OSError:
                        continue
    return found


def _summary(loaded: LoadedConfig) -> str:
    """One line about a runnable config; a UserError when it cannot run (its data too)."""
    cfg = validate(loaded)
    check_data(cfg)  # a config whose dataset is absent cannot run: ✗, and the preview says why
    return (f"{cfg.architecture} · {cfg.backbone.name} · {cfg.num_classes} classes · "
            f"{cfg.epoch} epochs · {trainer_name(cfg)}")


def _unexpected(exc: Exception) -> str:
    # A file the loader or validator chokes on (a bug there, or an odd file) is shown as
    # that file's error: one bad file must not take the whole browser down.
    return f"unexpected error while checking this file: {type(exc).__name__}: {exc}"


def check_configs(paths: Iterable[Path]) -> dict[Path, ConfigCheck]:
    """Load every config, find the partial ones, validate the others. Pure; no UI."""
    paths = list(paths)
    loaded: dict[Path, LoadedConfig] = {}
    results: dict[Path, ConfigCheck] = {}
    included: set[Path] = set()
    for path in paths:
        in_base_dir = BASE_DIR_NAME in path.parts
        try:
            cfg = load_config(path)
        except UserError as exc:
            results[path] = ConfigCheck(path, exc.render(), base=in_base_dir)
            continue
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            results[path] = ConfigCheck(path, _unexpected(exc), base=in_base_dir)
            continue
        loaded[path] = cfg
        included.update(p.resolve() for p in cfg.files[1:])
    for path, cfg in loaded.items():
        if BASE_DIR_NAME in path.parts or path.resolve() in included:
            results[path] = ConfigCheck(path, base=True)
            continue
        try:
            results[path] = ConfigCheck(path, summary=_summary(cfg))
        except UserError as exc:
            results[path] = ConfigCheck(path, exc.render())
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            results[path] = ConfigCheck(path, _unexpected(exc))
    return results


class ConfigTree(Tree[Path]):
    """Config folders and files; the data of every node is its path."""

    DEFAULT_CSS = """
    ConfigTree {
        height: 1fr;
        overflow-x: hidden;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Launch", show=False),
    ]

    RESCAN_SECONDS = 2.0

    class ConfigHighlighted(Message):
        """The cursor moved to a config file (``path`` None: to a folder)."""

        def __init__(self, path: Path | None, check: ConfigCheck | None) -> None:
            super().__init__()
            self.path = path
            self.check = check

    class LaunchRequested(Message):
        """Enter was pressed on a config file."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    class NoConfigs(Message):
        """The folders hold no config at all (see :func:`no_configs_text`)."""

    class Checked(Message):
        """Posted by the validation worker: the files found and how each one checked."""

        def __init__(self, stamps: dict[Path, int], checks: dict[Path, ConfigCheck]) -> None:
            super().__init__()
            self.stamps = stamps
            self.checks = checks

    def __init__(self, roots: list[Path], *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__("configs", name=name, id=id, classes=classes)
        self.roots = [Path(r) for r in roots]
        self.show_root = False
        self.guide_depth = 2
        self.checks: dict[Path, ConfigCheck] = {}
        self._stamps: dict[Path, int] = {}
        self._path_nodes: dict[Path, TreeNode[Path]] = {}
        self._wanted: Path | None = None
        """A config asked for before the tree had it (see ``select_path``)."""

    def on_mount(self) -> None:
        files = sorted(discover(self.roots))
        self._populate(files)
        if not files:  # (the checks only report a change, and nothing changed)
            self.post_message(self.NoConfigs())
        self.rescan()
        self.set_interval(self.RESCAN_SECONDS, self.rescan)

    # ----------------------------------------------------------------- queries

    @property
    def current_path(self) -> Path | None:
        """The config file under the cursor (None on a folder)."""
        node = self.cursor_node
        if node is None or node.data is None or node.allow_expand:
            return None
        return node.data

    def check_of(self, path: Path) -> ConfigCheck | None:
        return self.checks.get(path)

    def select_path(self, path: Path) -> bool:
        """Move the cursor to ``path`` (expanding its folders). A path the tree does not
        show (yet) is remembered and selected once it appears; False then.

        The cursor moves after the next refresh (the expanded folders must be laid out
        first), and not before the home screen shows again when a launch form covers it:
        until then ``path`` stays the wanted one, so the first verdicts of the configs
        cannot move the cursor to the first runnable config instead."""
        path = Path(path)
        self._wanted = path
        node = self._node_of(path)
        if node is None:
            return False
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        self.call_after_refresh(self._move_to, node, path)
        return True

    def _move_to(self, node: TreeNode[Path], path: Path) -> None:
        if self._wanted != path:
            return  # another config was asked for since
        self._wanted = None
        if any(n is node for n in self._path_nodes.values()):
            self.move_cursor(node)
        else:  # the tree was rebuilt meanwhile: its node for the same file
            self.select_path(path)

    def _node_of(self, path: Path) -> TreeNode[Path] | None:
        node = self._path_nodes.get(path)
        if node is None:  # the same file named another way (relative, absolute)
            try:
                wanted = path.resolve()
                node = next((n for p, n in self._path_nodes.items()
                             if p.resolve() == wanted), None)
            except OSError:
                return None
        return node

    # ----------------------------------------------------------------- building

    def _populate(self, files: list[Path]) -> None:
        keep = self.current_path
        self.clear()
        self._path_nodes.clear()
        for root in self.roots:
            label = safe_text(self._root_label(root), "bold")
            if not root.is_dir():
                label.append("  (missing)", style="dim italic")
            node = self.root.add(label, data=root, expand=True)
            self._path_nodes[root] = node
            mine = [path for path in files if root in path.parents]
            for path in mine:
                self._add_file(root, node, path)
            if not mine:  # say so in the tree; the preview says how to look elsewhere
                node.add_leaf(Text("no .yml configs here", style="dim italic"))
        if not self.roots:
            self.root.add_leaf(Text("no configs folder (dettui --configs DIR)",
                                    style="dim italic"))
        for path, check in self.checks.items():
            self._relabel(path, check)
        if self._wanted is not None and self._node_of(self._wanted) is not None:
            keep = self._wanted
        if keep is not None:
            self.select_path(keep)

    def _add_file(self, root: Path, root_node: TreeNode[Path], path: Path) -> None:
        parent, folder = root_node, root
        for part in path.relative_to(root).parts[:-1]:
            folder = folder / part
            node = self._path_nodes.get(folder)
            if node is None:
                node = parent.add(safe_text(part + "/", "bold"), data=folder,
                                  expand=part != BASE_DIR_NAME)
                self._path_nodes[folder] = node
            parent = node
        self._path_nodes[path] = parent.add_leaf(safe_text(path.name), data=path)

    @staticmethod
    def _root_label(root: Path) -> str:
        try:
            rel = os.path.relpath(root)
        except ValueError:  # another drive (Windows)
            return str(root)
        return rel if not rel.startswith("../../") else str(root)

    def _relabel(self, path: Path, check: ConfigCheck) -> None:
        node = self._path_nodes.get(path)
        if node is None:
            return
        if check.error is not None:
            label = Text.assemble(("✗ ", "bold red"), safe_text(path.name, "red"))
        elif check.base:
            label = safe_text(path.name, "dim")
        else:
            label = safe_text(path.name)
        node.set_label(label)

    # ----------------------------------------------------------------- checking

    def rescan(self) -> None:
        """Look for new, removed or edited configs and re-check them (in a thread)."""
        self._check_worker(dict(self._stamps))

    @work(thread=True, exclusive=True, group="config-check", exit_on_error=False)
    def _check_worker(self, previous: dict[Path, int]) -> None:
        stamps = discover(self.roots)
        if stamps == previous:
            return
        # A base file changes its dependents, so re-check everything (tens of files, ms).
        self.post_message(self.Checked(stamps, check_configs(sorted(stamps))))

    def on_config_tree_checked(self, message: Checked) -> None:
        message.stop()
        changed_files = set(message.stamps) != set(self._stamps)
        self._stamps = message.stamps
        before = self.checks
        self.checks = message.checks
        # What the user (or a launch from the command line) selected: read it before a
        # rebuild, which only moves the cursor back to it after the next refresh.
        current, wanted = self.current_path, self._wanted
        if changed_files:
            self._populate(sorted(message.stamps))
        else:
            for path, check in message.checks.items():
                if before.get(path) != check:
                    self._relabel(path, check)
        wanted_node = self._node_of(wanted) if wanted is not None else None
        if wanted_node is not None:
            current = wanted_node.data
        if current is not None:
            self.post_message(self.ConfigHighlighted(current, self.checks.get(current)))
        elif before == {}:
            # First verdicts: start on the demo config, else on the first runnable one,
            # rather than on a folder.
            runnable = [c.path for c in sorted(self.checks.values(), key=lambda c: c.path)
                        if not c.base and c.error is None]
            first = next((p for p in runnable for root in self.roots
                          if p == root / FIRST_CONFIG), runnable[0] if runnable else None)
            if first is not None:
                self.select_path(first)
        if not message.stamps:
            self.post_message(self.NoConfigs())

    # ----------------------------------------------------------------- events

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Path]) -> None:
        event.stop()
        node = event.node
        path = None if node.allow_expand or node.data is None else node.data
        self.post_message(self.ConfigHighlighted(path, self.checks.get(path) if path else None))

    def on_tree_node_selected(self, event: Tree.NodeSelected[Path]) -> None:
        event.stop()
        node = event.node
        if not node.allow_expand and node.data is not None:
            self.post_message(self.LaunchRequested(node.data))
