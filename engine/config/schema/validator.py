"""Building the typed config from loaded YAML: type checks, unknown keys with a "did you
mean", number limits, and every error collected (``Validator``). stdlib only."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Literal

from engine.config.loader import KeyPath, LoadedConfig
from engine.config.schema.base import MAX_INT
from engine.protocol.errors import ConfigError, ConfigErrors

_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "a boolean (true/false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is dict or origin is dict:
        return "a mapping"
    if origin is list:
        return "a list"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "null"
                           for a in typing.get_args(tp))
    return str(tp)


class Validator:
    """Builds the typed config and collects every error on the way (``errors``): a key
    that does not convert is reported and left at its default, so the keys after it are
    checked too; then the semantic checks run with ``collecting`` on, where ``fail``
    records an error and returns (a check must not rely on ``fail`` to stop it)."""

    def __init__(self, loaded: LoadedConfig | None):
        self.loaded = loaded
        self.errors: list[ConfigError] = []
        self.collecting = False

    def fail(self, keypath: KeyPath, message: str, hint: str | None = None) -> None:
        # a list item (``sample_transforms[2]``) is where its list is
        where = tuple(re.sub(r"\[\d+\]$", "", part) for part in keypath)
        src = self.loaded.source_of(where) if self.loaded else None
        file = line = None
        if src is not None:
            file = src.file if src.override is None else f"-o {src.override}"
            line = src.line
        elif self.loaded is not None:
            file = str(self.loaded.path)
        error = ConfigError(message, file=file, line=line, key=".".join(keypath), hint=hint)
        if not self.collecting:
            raise error
        self.errors.append(error)

    def raise_errors(self) -> None:
        """Raise what was found: one error as it is, several as ``ConfigErrors`` in file
        order (the top file first, then its bases, then the ``-o`` overrides)."""
        if not self.errors:
            return
        files = [str(f) for f in self.loaded.files] if self.loaded else []

        def position(e: ConfigError) -> tuple[int, float]:
            rank = files.index(e.file) if e.file in files else len(files)
            return rank, e.line if e.line is not None else math.inf

        first: dict[str | None, ConfigError] = {}
        for error in self.errors:  # one error per key: the first found says it
            first.setdefault(error.key, error)
        errors = sorted(first.values(), key=position)  # stable: -o overrides in given order
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)

    def convert(self, tp: Any, value: Any, keypath: KeyPath) -> Any:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            non_null = [a for a in args if a is not type(None)]
            if len(non_null) == 1:
                return self.convert(non_null[0], value, keypath)
            for arg in args:
                if arg is type(None):
                    continue
                found = len(self.errors)
                try:
                    converted = self.convert(arg, value, keypath)
                except ConfigError:
                    continue
                if len(self.errors) == found:
                    return converted
                del self.errors[found:]  # this arm did not fit: try the next one
            self._type_error(tp, value, keypath)
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                self._type_error(tp, value, keypath)
            return self.build(tp, value, keypath)
        if origin is Literal:
            allowed = typing.get_args(tp)
            if value not in allowed:
                close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
                self.fail(keypath, f"{value!r} is not allowed; expected {_type_name(tp)}",
                          hint=f"did you mean {close[0]!r}?" if close else None)
            return value
        if tp is bool:
            if not isinstance(value, bool):
                self._type_error(tp, value, keypath)
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self._type_error(tp, value, keypath)
            if not -MAX_INT <= value <= MAX_INT:
                self.fail(keypath, f"must be at most {MAX_INT} in magnitude, got a "
                          f"{len(str(abs(value)))}-digit number")
            return value
        if tp is float:
            if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
                value = float(value)  # PyYAML reads `1e-3` (no dot) as a string
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self._type_error(tp, value, keypath)
            try:
                number = float(value)
            except OverflowError:  # an int of 309+ digits
                number = math.inf
            if not math.isfinite(number):  # NaN passes every `x < 0` check after this
                self.fail(keypath, f"must be a finite number, got {value!r}")
            return number
        if tp is str:
            if not isinstance(value, str):
                self._type_error(tp, value, keypath)
            return value
        if tp is dict:
            if not isinstance(value, dict):
                self._type_error(tp, value, keypath)
            return value
        if origin is list:
            if not isinstance(value, list):
                self._type_error(tp, value, keypath)
            (item_tp,) = typing.get_args(tp)
            items = []
            for i, v in enumerate(value):  # a bad item is reported; the others are checked
                try:
                    v = self.convert(item_tp, v, (*keypath[:-1], f"{keypath[-1]}[{i}]"))
                except ConfigError as exc:
                    self.errors.append(exc)  # kept as it is, so the items keep their index
                items.append(v)
            return items
        raise TypeError(f"schema type {tp!r} is not supported")  # a bug in the schema

    def _type_error(self, tp: Any, value: Any, keypath: KeyPath) -> typing.NoReturn:
        got = "null" if value is None else f"{value!r} ({type(value).__name__})"
        self.fail(keypath, f"expected {_type_name(tp)}, got {got}")
        raise AssertionError("fail raises while converting")  # collecting is off here

    def build(self, cls: type, data: dict, prefix: KeyPath) -> Any:
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in data.items():
            keypath = (*prefix, str(key))
            try:  # a bad key is reported and left at its default: the next ones count too
                if key not in hints:
                    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                    where = f"section '{'.'.join(prefix)}'" if prefix else "the top level"
                    self.fail(keypath, f"unknown key in {where}",
                              hint=(f"did you mean '{close[0]}'?" if close else
                                    "allowed keys: " + ", ".join(names)))
                kwargs[key] = self.convert(hints[key], value, keypath)
            except ConfigError as exc:
                self.errors.append(exc)
        try:
            return cls(**kwargs)
        except TypeError:  # a required key was left out because it was wrong
            self.raise_errors()
            raise
