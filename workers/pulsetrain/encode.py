"""Encode NumPy rows into message payloads of each format: the inverse of `pulsetrain.decode`.

Why this exists: the producer (`pulsetrain produce`), the benchmarks and the tests publish data in the
exact layout the workers decode, so that `Decoder(data).decode(encode_batch(data, x, y))` gives back
`x` and `y`. Values are checked and cast to the declared dtypes first: a producer must not silently
truncate 3.5 into an integer label or scramble a shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from pulsetrain.config_model import DataConfig
from pulsetrain.layout import RecordLayout
from pulsetrain.tfexample import encode_example

__all__ = ["encode_batch", "encode_csv", "encode_json", "encode_raw", "encode_tfexample"]


def _rows(data: DataConfig, features: Mapping[str, npt.ArrayLike],
          labels: npt.ArrayLike) -> tuple[RecordLayout, list[npt.NDArray[Any]]]:
    """Each field as `[n, *shape]` of its declared dtype; ValueError names the field that does not fit."""
    layout = RecordLayout(data)
    unknown = sorted(set(features) - {f.name for f in layout.features})
    if unknown:
        raise ValueError(f"unknown features {unknown}; declared: {[f.name for f in layout.features]}")
    arrays: list[npt.NDArray[Any]] = []
    count: int | None = None
    for field in layout.fields:
        if field is layout.label:
            given = np.asarray(labels)
        elif field.name in features:
            given = np.asarray(features[field.name])
        else:
            raise ValueError(f"feature {field.name!r} is missing")
        n = given.shape[0] if given.ndim else 1
        if given.ndim == 0 or given.size != n * field.size:
            raise ValueError(f"field {field.name!r}: got shape {list(given.shape)}, expected [n, "
                             f"{', '.join(str(d) for d in field.shape)}] (shape {field.shape_text()} per record)")
        if count is not None and n != count:
            raise ValueError(f"field {field.name!r} has {n} records, the fields before it have {count}")
        count = n
        cast = given.reshape(n, *field.shape).astype(field.dtype)
        if given.dtype.kind not in "biu" and field.dtype.kind in "biu" and not np.array_equal(cast, given.reshape(
                cast.shape)):
            raise ValueError(f"field {field.name!r}: values do not fit dtype {field.dtype.name} exactly "
                             "(not integral, out of range, or not 0/1 for bool)")
        arrays.append(cast)
    return layout, arrays


def encode_raw(data: DataConfig, features: Mapping[str, npt.ArrayLike], labels: npt.ArrayLike) -> list[bytes]:
    """Little-endian fields back to back, features in declared order, then the label."""
    layout, arrays = _rows(data, features, labels)
    records = np.empty(len(arrays[0]), dtype=layout.raw_dtype)
    for i, array in enumerate(arrays):
        records[f"f{i}"] = array
    blob, size = records.tobytes(), layout.record_bytes
    return [blob[i:i + size] for i in range(0, len(blob), size)]


def encode_json(data: DataConfig, features: Mapping[str, npt.ArrayLike], labels: npt.ArrayLike) -> list[bytes]:
    """One compact JSON object per record: `{"name": value-or-nested-lists, ...}`."""
    layout, arrays = _rows(data, features, labels)
    columns = [a.tolist() for a in arrays]
    names = [f.name for f in layout.fields]
    return [json.dumps(dict(zip(names, row, strict=True)), separators=(",", ":"), allow_nan=True).encode()
            for row in zip(*columns, strict=True)]


def encode_csv(data: DataConfig, features: Mapping[str, npt.ArrayLike], labels: npt.ArrayLike) -> list[bytes]:
    """One line per record (no newline): every field flattened in order, bools as 0/1, floats exact."""
    _, arrays = _rows(data, features, labels)
    flat = [(a.astype(np.int64) if a.dtype.kind == "b" else a).reshape(len(a), -1).tolist() for a in arrays]
    delimiter = data.csv.delimiter
    return [delimiter.join(repr(v) for part in row for v in part).encode() for row in zip(*flat, strict=True)]


def encode_tfexample(data: DataConfig, features: Mapping[str, npt.ArrayLike],
                     labels: npt.ArrayLike) -> list[bytes]:
    """One serialized `tf.train.Example` per record (float fields as float_list, others as int64_list)."""
    layout, arrays = _rows(data, features, labels)
    names = [f.name for f in layout.fields]
    return [encode_example(dict(zip(names, row, strict=True))) for row in zip(*arrays, strict=True)]


def encode_batch(data: DataConfig, features: Mapping[str, npt.ArrayLike], labels: npt.ArrayLike) -> list[bytes]:
    """Encode records in `data.format`; `features[name]` and `labels` are `[n, *shape]` arrays."""
    encoders = {"raw": encode_raw, "json": encode_json, "csv": encode_csv, "tfexample": encode_tfexample}
    return encoders[data.format](data, features, labels)
