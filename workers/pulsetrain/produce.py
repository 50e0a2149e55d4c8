"""Publish training data to a topic: the data loader behind `pulsetrain produce`.

Sources are a bundled data set (`digits`, ...), a CSV, JSON-lines or NumPy `.npz` file read against a
declared schema (the `data` section of a worker configuration); every record is encoded in the
schema's message format with the same code the workers decode with, so what is published is what is
trained on. Records that do not fit the schema stop the load with the line number, before anything is
sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pulsar

from pulsetrain.config_model import DataConfig
from pulsetrain.encode import encode_batch
from pulsetrain.layout import RecordLayout
from pulsetrain.progress import Progress

Arrays = tuple[dict[str, npt.NDArray[Any]], npt.NDArray[Any]]


def read_csv(path: Path, data: DataConfig) -> Arrays:
    """Columns are the features flattened in declared order, then the label (as in CSV messages)."""
    layout = RecordLayout(data)
    skip = 1 if data.csv.header else 0
    try:
        table = np.loadtxt(path, delimiter=data.csv.delimiter, skiprows=skip, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if table.shape[1] != layout.columns:
        raise ValueError(f"{path}: {table.shape[1]} columns, the schema declares {layout.columns} "
                         f"({', '.join(f'{f.name}{f.shape_text()}' for f in layout.fields)})")
    columns = {f.name: table[:, f.column:f.column + f.size].reshape(len(table), *f.shape) for f in layout.fields}
    labels = columns.pop(layout.label.name)
    return columns, labels


def read_jsonl(path: Path, data: DataConfig) -> Arrays:
    """One JSON object per line with every declared field."""
    rows: dict[str, list[Any]] = {f.name: [] for f in data.fields}
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
            missing = [name for name in rows if not isinstance(record, dict) or name not in record]
            if missing:
                raise ValueError(f"{path}:{number}: missing field(s) {missing}")
            for name, values in rows.items():
                values.append(record[name])
    features = {f.name: np.asarray(rows[f.name]) for f in data.features}
    return features, np.asarray(rows[data.label.name])


def read_npz(path: Path, data: DataConfig) -> Arrays:
    """Arrays named after the declared fields."""
    with np.load(path) as archive:
        missing = [f.name for f in data.fields if f.name not in archive]
        if missing:
            raise ValueError(f"{path}: no array named {missing}; it has {sorted(archive.files)}")
        return {f.name: archive[f.name] for f in data.features}, archive[data.label.name]


READERS = {".csv": read_csv, ".jsonl": read_jsonl, ".json": read_jsonl, ".npz": read_npz}


def read_file(path: Path, data: DataConfig) -> Arrays:
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(sorted(READERS))}")
    return reader(path, data)


def publish(
    producer: pulsar.Producer,
    payloads: Sequence[bytes],
    *,
    progress: bool = True,
    chunk: int = 1000,
    keys: Sequence[str] | None = None,
) -> int:
    """Send every payload (asynchronously, in chunks, flushed); raises if the broker rejects any.

    `keys`, one per payload, become the messages' partition keys (what Key_Shared routes by)."""
    if keys is not None and len(keys) != len(payloads):
        raise ValueError(f"keys: {len(keys)} given for {len(payloads)} payloads; give one per payload")
    failures: list[str] = []

    def sent(result: pulsar.Result, _message_id: Any) -> None:
        if result != pulsar.Result.Ok:
            failures.append(str(result))

    bar = Progress(len(payloads), "messages") if progress else None
    for start in range(0, len(payloads), chunk):
        for index in range(start, min(start + chunk, len(payloads))):
            producer.send_async(payloads[index], sent, partition_key=keys[index] if keys else None)
        producer.flush()
        if failures:
            raise RuntimeError(f"the broker rejected {len(failures)} message(s): {failures[0]}")
        if bar:
            bar.advance(len(payloads[start:start + chunk]))
    if bar:
        bar.finish()
    return len(payloads)


def produce(
    client: pulsar.Client,
    topic: str,
    data: DataConfig,
    features: dict[str, npt.NDArray[Any]],
    labels: npt.NDArray[Any],
    *,
    repeat: int = 1,
    extra: Iterable[bytes] = (),
    progress: bool = True,
) -> int:
    """Encode the records in `data.format` and publish them (`repeat` times, then `extra` payloads)."""
    payloads = encode_batch(data, features, labels) * repeat + list(extra)
    producer = client.create_producer(topic, batching_enabled=True, block_if_queue_full=True,
                                      max_pending_messages=10_000)
    try:
        return publish(producer, payloads, progress=progress)
    finally:
        producer.close()
