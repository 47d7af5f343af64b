"""Read back what the trackers wrote: TensorBoard event files (TensorBoard's own reader)
and an offline W&B run's ``.wandb`` file (W&B's protobuf records in LevelDB log blocks;
W&B ships no reader for them)."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` as TensorBoard shows it (purged steps dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, out, pending = 7, [], b""  # ":W&B", a 2-byte magic, a version byte
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # a block's tail too short for a header: padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
    return out


def wandb_offline_run(run_file: Path) -> tuple[dict[int, dict[str, float]], dict[str, object]]:
    """``({step: {key: value}}, summary)`` of an offline W&B run file (``run-ID.wandb``);
    W&B's own ``_step``/``_runtime``/``_timestamp`` keys left out."""
    from wandb.proto import wandb_internal_pb2

    history: dict[int, dict[str, float]] = {}
    summary: dict[str, object] = {}
    for raw in _records(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {_key(item): json.loads(item.value_json) for item in record.history.item}
            history[record.history.step.num] = {k: v for k, v in row.items()
                                                if not k.startswith("_")}
        elif kind == "summary":
            for item in record.summary.update:
                summary[_key(item)] = json.loads(item.value_json)
    return history, summary


def _key(item: object) -> str:
    return item.key or "/".join(item.nested_key)  # type: ignore[attr-defined]
