"""Issue 21 point 10: a fuzzer over every reader of outside data.

Property-based tests (Hypothesis) for each reader: COCO json (and ``data split``), VOC XML,
YOLO label files and ``data.yaml``, events.jsonl (the engine's reader, the TUI's scanner
and run model, ``export``), run.json (and the runs table), ``cot_relationship.json``,
config YAML and ``-o`` values, image headers (dataset probe and TUI previews). Any input
either loads or raises the project's typed user error, inside a time and memory bound;
never another exception, never a hang (the test's timeout).

The ``ci`` profile (the default, tests/conftest.py) runs a few hundred examples each; for
longer local runs: ``pytest tests/security/test_fuzz_readers.py --hypothesis-profile=deep``.
"""

from __future__ import annotations

import json
import math
import resource
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from engine.config import load_and_validate
from engine.config.schema import field_docs
from engine.data.cocofile import index_coco, load_coco_json
from engine.data.images import ImageInfo, decode_rgb, probe_image
from engine.data.split import split_coco
from engine.data.voc import read_voc_xml
from engine.data.yolo import _load_yaml, _parse_line, _read_label_file, yaml_class_names
from engine.memcheck import estimate_first_batch_bytes
from engine.protocol.errors import UserError
from engine.protocol.events import EVENT_TYPES, FIELD_TYPES, read_events
from engine.protocol.rundir import RunDirectory, run_duration
from engine.protocol.runmeta import FIELDS, read_run_json
from engine.trackers import history, scalars
from tests.conftest import DEMO_CONFIG
from tui.cli.main import _run_cells
from tui.runs.eventscan import parse_block
from tui.runs.runmodel import RunModel
from tui.runs.semiinfo import read_relationship
from tui.screens.previews import load_preview

pytestmark = pytest.mark.timeout(240)  # a reader that hangs fails the test

TIME_LIMIT_S = 10.0     # per example, generous: the suite shares 2 cores
MEMORY_LIMIT = 1 << 30  # more address space than the process had, per example


def _address_space() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        line = next(ln for ln in f if ln.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


def bounded(call: Callable[[], Any], allowed: tuple[type[BaseException], ...] = (UserError,)
            ) -> Any:
    """``call()`` inside the time and memory bound; an ``allowed`` error counts as a clean
    refusal (returns it), any other exception fails the example. Memory: the address space
    may grow by ``MEMORY_LIMIT`` (``RLIMIT_AS``), past it an allocation fails with
    ``MemoryError``, which fails the example (tracemalloc would slow the readers 5x)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + MEMORY_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY
                                            else min(limit, hard), hard))
    started = time.monotonic()
    try:
        result: Any = call()
    except allowed as exc:
        result = exc
    finally:
        elapsed = time.monotonic() - started
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.1f}s"
    event(f"{getattr(call, '__name__', '?')}: " + (type(result).__name__ if isinstance(
        result, BaseException) else "loaded"))  # --hypothesis-show-statistics
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ---------------------------------------------------------------------------- values

HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**400, -(10**400), 2**1100])
NUMBERS = st.one_of(st.integers(-3, 300), st.integers(), HUGE_INTS,
                    st.floats(allow_nan=True, allow_infinity=True))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def loose(keys: list[str], values: st.SearchStrategy = JSON) -> st.SearchStrategy:
    """Objects with some of ``keys`` (any values) and maybe an unknown key."""
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=6)), values,
                           max_size=len(keys) + 1)


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode("utf-8", "surrogatepass")


def file_bytes(doc: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly well-formed JSON of ``doc``'s shape; sometimes cut short, with a number of
    4400 digits (json.dumps cannot write one, a file can hold one) or 5000-deep nesting,
    or raw bytes."""
    return st.one_of(
        doc.map(dumps),
        doc.map(dumps).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),
        doc.map(dumps).map(lambda b: b.replace(b"1", b"9" * 4400, 1)),
        doc.map(dumps).map(lambda b: b.replace(b"[", b"[" * 5000, 1)),
        st.binary(max_size=200))


def write(work: Path, name: str, data: bytes) -> Path:
    path = work / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------- COCO json

IMAGE = loose(["id", "file_name", "width", "height"], SCALARS)
ANNOTATION = loose(["id", "image_id", "category_id", "bbox", "iscrowd", "area"],
                   st.one_of(SCALARS, st.lists(NUMBERS, max_size=5)))
CATEGORY = loose(["id", "name", "supercategory"], SCALARS)
COCO = st.fixed_dictionaries({}, optional={
    "images": st.one_of(st.lists(IMAGE, max_size=5), JSON),
    "annotations": st.one_of(st.lists(ANNOTATION, max_size=6), JSON),
    "categories": st.one_of(st.lists(CATEGORY, max_size=4), JSON), "info": JSON})


@given(data=file_bytes(COCO))
def test_coco_json(work: Path, data: bytes) -> None:
    path = write(work, "instances.json", data)

    def read() -> None:
        doc = load_coco_json(path)
        index_coco(doc, path, keep_empty=True)

    def split() -> None:
        split_coco(load_coco_json(path, required=("images",)), 50.0, 1, file=str(path),
                   key="--percent")

    bounded(read)
    bounded(split)


# ---------------------------------------------------------------------------- VOC XML

XML_TEXT = st.one_of(st.text(max_size=10), NUMBERS.map(str),
                     st.sampled_from(["", "0", "-1", "1e309", "nan", "&amp;", "<x/>", "]]>"]))


@st.composite
def voc_xml(draw: st.DrawFn) -> bytes:
    parts = ["<annotation>"]
    if draw(st.booleans()):
        parts.append(f"<filename>{draw(XML_TEXT)}</filename>")
    if draw(st.booleans()):
        parts.append(f"<size><width>{draw(XML_TEXT)}</width><height>{draw(XML_TEXT)}"
                     "</height><depth>3</depth></size>")
    for _ in range(draw(st.integers(0, 3))):
        box = "".join(f"<{k}>{draw(XML_TEXT)}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax")
                      if draw(st.booleans()) or k == "xmin")
        parts.append(f"<object><name>{draw(XML_TEXT)}</name><difficult>{draw(XML_TEXT)}"
                     f"</difficult><bndbox>{box}</bndbox></object>")
    parts.append("</annotation>")
    text = "".join(parts)
    if draw(st.booleans()):
        text = '<!DOCTYPE a [<!ENTITY e "x">]>' + text
    return text.encode("utf-8", "surrogatepass")


@given(data=st.one_of(voc_xml(), st.binary(max_size=200)))
def test_voc_xml(work: Path, data: bytes) -> None:
    path = write(work, "a.xml", data)
    bounded(lambda: read_voc_xml(path))


# ---------------------------------------------------------------------------- YOLO

TOKENS = st.one_of(st.sampled_from(["0", "1", "2", "-1", "0.5", "1.5", "nan", "inf", "-inf",
                                    "1e309", "9" * 400, "0x1", "1_0", "", "a"]),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.text(max_size=6))
LABEL_LINE = st.lists(TOKENS, max_size=9).map(" ".join)


@given(data=st.one_of(st.lists(LABEL_LINE, max_size=6).map(
    lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    st.binary(max_size=120).map(lambda b: b"\xef\xbb\xbf" + b)))
def test_yolo_label_file(work: Path, data: bytes) -> None:
    path = write(work, "a.txt", data)

    def read() -> None:
        text = _read_label_file(path) or ""
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                cls, box = _parse_line(line.split(), 3, path, lineno)
                assert 0 <= cls < 3 and all(math.isfinite(v) for v in box)

    bounded(read)


YAML_VALUES = st.one_of(
    st.sampled_from(["[a, b]", "{0: a, 1: b}", "{0: a, .inf: b}", "{0: a, 2: b}", "[a, a]",
                     "{0: a, b: c}", "{0: a, null: b}", "{true: a}",
                     "[1, 2]", "[null]", "'x'", ".nan", "-1", "9" * 400, "{a: 1}", "[[a]]",
                     "&x [a, *x]", "!!binary aGk=", "!!python/object:os.system x", "{? a}",
                     "[" * 50, "'\\x00'"]),
    st.text(max_size=20))


GOOD_NAMES = st.lists(st.text("abcé ", min_size=1, max_size=3), min_size=1, max_size=4
                      ).map(json.dumps)


@given(names=st.one_of(GOOD_NAMES, YAML_VALUES), nc=st.one_of(st.just(""), st.sampled_from(["2", "1"]), YAML_VALUES),
       extra=st.one_of(st.just(""), st.text(max_size=30)))
def test_yolo_data_yaml(work: Path, names: str, nc: str, extra: str) -> None:
    text = f"names: {names}\n" + (f"nc: {nc}\n" if nc else "") + f"{extra}\n"
    path = write(work, "data.yaml", text.encode("utf-8", "surrogatepass"))

    def read() -> None:
        out = yaml_class_names(_load_yaml(path), path)
        assert all(isinstance(n, str) for n in out)

    bounded(read)


# ---------------------------------------------------------------------------- events

def _event_fields(kind: str) -> st.SearchStrategy:
    keys = [*FIELD_TYPES.get(kind, {}), "t", "v"]
    return loose(keys, st.one_of(JSON, st.dictionaries(st.text(max_size=5), NUMBERS,
                                                       max_size=3)))


EVENT = st.sampled_from([*EVENT_TYPES, "odd"]).flatmap(
    lambda kind: _event_fields(kind).map(lambda fields: {"type": kind, **fields}))
EVENT_LINE = st.one_of(EVENT.map(dumps), st.binary(max_size=60),
                       st.sampled_from([b'{"type":"train","iter":' + b"9" * 5000 + b"}",
                                        b"[" * 5000, b'{"type":"train","loss":' + b"9" * 400
                                        + b',"iter":1}']))
EVENTS_FILE = st.lists(EVENT_LINE, max_size=8).map(lambda lines: b"\n".join(lines) + b"\n")


@given(data=EVENTS_FILE)
def test_events_jsonl(work: Path, data: bytes) -> None:
    run = work / "run-events"
    run.mkdir(exist_ok=True)
    (run / "run.json").write_text('{"schema": 1, "id": "r", "status": "finished"}')
    (run / "events.jsonl").write_bytes(data)
    (run / "events.idx").unlink(missing_ok=True)

    def engine_side() -> None:
        events = read_events(run / "events.jsonl")
        for step, _, values in history(events):  # what export writes to TensorBoard
            assert 0 <= step < 2**63
            assert all(math.isfinite(v) for v in values.values())
        for ev in events:
            scalars(ev)

    def tui_side() -> None:
        parse_block(data, None)
        model = RunModel(run)
        model.load_history(workers=1)
        model.catch_up()
        model.snapshot()

    bounded(engine_side, allowed=())
    bounded(tui_side, allowed=())


# ---------------------------------------------------------------------------- run.json

RUN_JSON = loose(list(FIELDS), st.one_of(SCALARS, loose(
    ["metric", "value", "epoch", "checkpoint", "model", "iter", "epochs", "max_iters", "eta",
     "type", "message"], SCALARS)))


@given(data=file_bytes(RUN_JSON))
def test_run_json(work: Path, data: bytes) -> None:
    run = work / "run-meta"
    run.mkdir(exist_ok=True)
    write(run, "run.json", data)

    def read() -> None:
        meta = read_run_json(run / "run.json")
        run_duration(meta)
        RunDirectory(run).effective_status(meta)
        _run_cells(meta)

    bounded(read)


# ---------------------------------------------------------------------------- co-tuning

RELATIONSHIP = loose(["target_classes", "source_classes", "matrix", "top", "examples",
                      "source_names_from"], st.one_of(
    JSON, st.lists(st.lists(NUMBERS, max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=4), st.lists(loose(["source", "p"], SCALARS),
                                                  max_size=3), max_size=3)))


@given(data=file_bytes(RELATIONSHIP))
def test_cot_relationship(work: Path, data: bytes) -> None:
    path = write(work, "cot_relationship.json", data)
    relationship, why = bounded(lambda: read_relationship(path), allowed=())
    assert (relationship is None) != (why is None)


# ---------------------------------------------------------------------------- configs

CONFIG_KEYS = sorted(field_docs())
YAML_SCALARS = st.one_of(st.sampled_from([
    ".nan", ".inf", "-.inf", "-1", "0", "1", "1e9", "1e-3", "9" * 400, "9" * 5000, "null",
    "true", "[]", "{}", "[1, 2]", "{a: 1}", "'x'", "cpu", "FCOS", "0x10", "1_000", "~",
    "!!python/name:os.system", "*a", "&a 1", "[" * 40]),
    NUMBERS.map(str), st.text(max_size=12))


@given(key=st.sampled_from(CONFIG_KEYS), value=YAML_SCALARS)
def test_config_override(key: str, value: str) -> None:
    def load() -> None:
        _, cfg = load_and_validate(DEMO_CONFIG, [f"{key}={value}"])
        estimate_first_batch_bytes(cfg)

    bounded(load)


@given(body=st.dictionaries(st.sampled_from(CONFIG_KEYS[:80] + ["_BASE_", "x"]),
                            YAML_SCALARS, max_size=5))
def test_config_file(work: Path, body: dict[str, str]) -> None:
    text = "\n".join(f"{key}: {value}" for key, value in body.items()) + "\n"
    path = write(work, "cfg.yml", text.encode("utf-8", "surrogatepass"))

    def load() -> None:
        _, cfg = load_and_validate(path, [])
        estimate_first_batch_bytes(cfg)

    bounded(load)


# ---------------------------------------------------------------------------- images

def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


@st.composite
def png(draw: st.DrawFn) -> bytes:
    side = st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1))
    header = struct.pack(">IIBBBBB", draw(side), draw(side),
                         draw(st.sampled_from([1, 2, 4, 8, 16, 3])),
                         draw(st.sampled_from([0, 2, 3, 4, 6, 7])), 0, 0, draw(st.integers(0, 1)))
    body = draw(st.one_of(st.binary(max_size=64), st.binary(max_size=64).map(zlib.compress)))
    chunks = _chunk(b"IHDR", header) + _chunk(b"IDAT", body)
    if draw(st.booleans()):
        chunks += _chunk(b"eXIf", draw(st.binary(max_size=40)))
    return b"\x89PNG\r\n\x1a\n" + chunks + _chunk(b"IEND", b"")


MAGICS = [b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP",
          b"\x00\x00\x01\x00", b"P6\n", b"\x89PNG\r\n\x1a\n"]
IMAGE_BYTES = st.one_of(png(), st.tuples(st.sampled_from(MAGICS), st.binary(max_size=120)).map(
    lambda t: t[0] + t[1]))


@given(data=IMAGE_BYTES)
def test_image_headers(work: Path, data: bytes) -> None:
    path = write(work, "image.png", data)
    info = bounded(lambda: probe_image(path))
    if isinstance(info, ImageInfo) and info.width * info.height <= 1 << 20:
        pixels = bounded(lambda: decode_rgb(path))  # what training and previews decode
        assert isinstance(pixels, UserError) or pixels.shape == (info.height, info.width, 3)
    bounded(lambda: load_preview(path), allowed=(OSError, ValueError))
