"""YAML config loading: ``_BASE_`` inheritance, ``-o`` overrides and a source map.

Semantics (PaddleDetection's, with its 3-level override bug fixed):

* ``_BASE_`` is a list of paths, each relative to the directory of the file that lists it
  (``~`` expanded). Bases are applied depth-first in list order, later entries win, and the
  including file's own body wins over all of its bases.
* Merging: a mapping merged into a mapping merges key by key, recursively; anything else
  (scalars, lists) replaces the old value wholesale.
* ``-o a.b.c=value``: the value is parsed with ``yaml.safe_load``; dotted keys of any depth
  build nested mappings that are deep-merged in order, so ``-o A.B.x=1 A.B.y=2`` keeps both.

Besides the merged dict, loading returns a *source map*: for every key path, the file and
line that set it last (or the override that did). The TUI shows it as the "resolved" view
and validation errors use it to point at the right line.

stdlib + PyYAML only: the TUI imports this module.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.protocol.errors import ConfigError
from engine.protocol.safefiles import RefusedFile, read_regular

KeyPath = tuple[str, ...]
BASE_KEY = "_BASE_"
MAX_CONFIG_BYTES = 1 << 20
"""A config file larger than this is refused unread (real ones are a few KiB)."""
MAX_YAML_NODES = 100_000
"""Values (scalars, lists, mappings) one YAML document may expand to through its aliases."""
MAX_CONFIG_FILES = 100
"""Files one config may load through ``_BASE_`` (a base listed twice counts twice)."""


@dataclass(frozen=True)
class Source:
    """Where a config value came from: a file and line, or a ``-o`` override."""

    file: str
    line: int | None = None
    override: str | None = None

    def __str__(self) -> str:
        if self.override is not None:
            return f"-o {self.override}"
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass
class LoadedConfig:
    """The merged config dict plus, for every key path, where its value came from."""

    path: Path
    data: dict[str, Any]
    sources: dict[KeyPath, Source] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def source_of(self, keypath: KeyPath) -> Source | None:
        """The source of ``keypath`` or of its nearest ancestor that has one."""
        for n in range(len(keypath), 0, -1):
            src = self.sources.get(tuple(keypath[:n]))
            if src is not None:
                return src
        return None


def _read_text(path: Path) -> str:
    """The text of a config file: a regular file of at most ``MAX_CONFIG_BYTES``, UTF-8."""
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError("config file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, expected a .yml/.yaml file", file=str(path)) from None
    except RefusedFile as exc:
        raise ConfigError(f"not read as a config: {exc}", file=str(path),
                          hint="a config is a regular YAML file of at most "
                               f"{MAX_CONFIG_BYTES // 2**20} MiB") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=str(path)) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file ({exc.reason})", file=str(path)) from None


def _check_size(node: yaml.Node, file: str) -> None:
    """Refuse a document whose aliases expand it beyond ``MAX_YAML_NODES`` values, or refer
    to themselves. PyYAML shares an aliased node instead of copying it, so 30 lines of
    ``a1: &a1 {k1: *a0, k2: *a0}`` are a billion values to anything that walks the data
    (the source map, a deep copy, a dump, the TUI's resolved view); counting with a memo per
    node takes time linear in the file instead."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError("an alias refers to a node that contains it (a recursive "
                              "structure); a config must be a tree", file=file,
                              line=n.start_mark.line + 1)
        open_nodes.add(key)
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in n.value)
        else:
            total = 1
        open_nodes.discard(key)
        if total > MAX_YAML_NODES:
            raise ConfigError(f"the YAML expands to more than {MAX_YAML_NODES:,} values "
                              "through its aliases (&anchor / *alias): refused before "
                              "expanding it", file=file, line=n.start_mark.line + 1,
                              hint="a config this big is an alias bomb or a mistake; write "
                                   "the values out or use fewer nested aliases")
        sizes[key] = total
        return total

    size(node)


def _parse_yaml(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """``yaml.safe_load`` of ``text`` with its size checked before it is built; returns the
    data and the node tree (for line numbers)."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # checked at once, for the whole text
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"YAML does not allow the character {exc.character:#06x} (a control "
                          "character) in a file", file=file, line=line) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_size(node, file)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", file=file,
                          line=mark.line + 1 if mark else None,
                          column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply", file=file) from None
    except ValueError as exc:  # int() of a number of more than 4300 digits
        raise ConfigError(f"a value cannot be read: {str(exc).split(':')[0]}",
                          file=file) from None
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> tuple[Any, dict[KeyPath, Source]]:
    """Parse one YAML file; return its data and the line of every mapping key in it."""
    data, node = _parse_yaml(_read_text(path), str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping of keys, got a {type(data).__name__}",
                          file=str(path), line=1)
    sources: dict[KeyPath, Source] = {}
    if node is not None:
        _collect_lines(node, (), str(path), sources)
    return data, sources


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """One YAML file (no ``_BASE_``, no overrides) read with the same checks as a config:
    e.g. a run's resolved ``config.yaml``."""
    return _read_yaml(Path(path))[0]


def _collect_lines(node: yaml.Node, prefix: KeyPath, file: str,
                   out: dict[KeyPath, Source]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = (*prefix, str(key_node.value))
        out[key] = Source(file, key_node.start_mark.line + 1)
        _collect_lines(value_node, key, file, out)


def _drop_subtree(sources: dict[KeyPath, Source], prefix: KeyPath) -> None:
    n = len(prefix)
    for key in [k for k in sources if len(k) > n and k[:n] == prefix]:
        del sources[key]


def merge_into(dst: dict, dst_sources: dict[KeyPath, Source], src: dict,
               src_sources: dict[KeyPath, Source], prefix: KeyPath = ()) -> None:
    """Deep-merge ``src`` into ``dst`` in place (mappings merge, everything else replaces)."""
    for key, value in src.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            if path in src_sources:
                dst_sources[path] = src_sources[path]
            merge_into(dst[key], dst_sources, value, src_sources, path)
            continue
        dst[key] = copy.deepcopy(value)
        _drop_subtree(dst_sources, path)
        for sk, sv in src_sources.items():
            if sk[:len(path)] == path:
                dst_sources[sk] = sv


def _load_with_base(path: Path, stack: list[Path], loaded: list[int] | None = None
                    ) -> tuple[dict, dict[KeyPath, Source], list[Path]]:
    loaded = [0] if loaded is None else loaded  # files read so far, shared down the chain
    loaded[0] += 1
    if loaded[0] > MAX_CONFIG_FILES:
        raise ConfigError(f"more than {MAX_CONFIG_FILES} files through _BASE_ (a base "
                          "included again and again?)", file=str(path), key=BASE_KEY)
    path = path.expanduser()
    resolved = path.resolve()
    if resolved in stack:
        chain = " -> ".join(str(p) for p in [*stack, resolved])
        raise ConfigError(f"_BASE_ cycle: {chain}", file=str(path), key=BASE_KEY,
                          hint="a config may not include itself, directly or through its bases")
    if path.suffix not in (".yml", ".yaml"):
        raise ConfigError("only .yml/.yaml config files are supported", file=str(path))
    data, sources = _read_yaml(path)
    files = [path]
    bases = data.pop(BASE_KEY, [])
    base_line = sources.pop((BASE_KEY,), None)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError("_BASE_ must be a list of file paths", file=str(path),
                          line=base_line.line if base_line else None, key=BASE_KEY)
    merged: dict = {}
    merged_sources: dict[KeyPath, Source] = {}
    for base in bases:
        base_path = Path(base).expanduser()
        if not base_path.is_absolute():
            base_path = Path(os.path.normpath(path.parent / base_path))
        if not base_path.exists():
            raise ConfigError(f"_BASE_ file not found: {base_path}", file=str(path),
                              line=base_line.line if base_line else None, key=BASE_KEY)
        b_data, b_sources, b_files = _load_with_base(base_path, [*stack, resolved], loaded)
        merge_into(merged, merged_sources, b_data, b_sources)
        files.extend(b_files)
    merge_into(merged, merged_sources, data, sources)
    return merged, merged_sources, files


def parse_override(text: str) -> dict:
    """``'a.b.c=1e-3'`` -> ``{'a': {'b': {'c': 0.001}}}`` (value parsed by ``yaml.safe_load``)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub.leaf=value", file="-o")
    key, _, raw = text.partition("=")
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"override '{text}' has an empty key component", file="-o")
    try:
        value = _parse_yaml(raw, "-o")[0] if raw.strip() else None
    except ConfigError as exc:
        raise ConfigError(f"override '{text}': the value is not valid YAML ({exc.message})",
                          file="-o") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Load ``path`` with its ``_BASE_`` chain and apply ``-o`` overrides in order."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("config file not found", file=str(path),
                          hint="pass the path of a .yml file, "
                          "e.g. configs/demo/fcos_tiny_shapes.yml")
    data, sources, files = _load_with_base(path, [])
    for text in overrides:
        ov = parse_override(text)
        ov_sources: dict[KeyPath, Source] = {}
        node, keypath = ov, ()
        while isinstance(node, dict) and len(node) == 1:
            (k, node), = node.items()
            keypath = (*keypath, k)
            ov_sources[keypath] = Source("-o", override=text.strip())
        merge_into(data, sources, ov, ov_sources)
    return LoadedConfig(path=path, data=data, sources=sources, files=files)


def dump_yaml(data: dict) -> str:
    """The resolved config as YAML, keys in their config order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
