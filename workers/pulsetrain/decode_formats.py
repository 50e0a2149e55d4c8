"""Parse payloads of each wire format (raw, JSON, CSV, tf.train.Example) into per-field arrays.

Why this exists: `pulsetrain.decode` checks values and assembles the batch the same way for every
format; what differs is how bytes become numbers and which structural faults a format can have
(truncated raw records, invalid JSON, wrong CSV column counts, unparsable protobuf). Each parser here
returns the indices of the payloads it could read and one array `[m, *shape]` per field (features, then
the label), and records a reason for each payload it could not read. Parsers take the fast path for the
whole batch and fall back to payload-by-payload work only to pinpoint the bad ones.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pulsetrain.layout import FieldLayout, RecordLayout
from pulsetrain.tfexample import TFExampleError, parse_example

__all__ = ["Parsed", "Reasons", "parse_csv", "parse_json", "parse_raw", "parse_tfexample"]

Reasons = dict[int, str]
"""Payload index → why it was rejected (the first problem found)."""
Parsed = tuple[npt.NDArray[np.int64], list[npt.NDArray[Any]]]
"""(indices of the parsed payloads, one array per field aligned with them)."""

EMPTY = "empty: payload is empty"
_JSON_TYPE = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
              float: "a number", type(None): "null"}
_JSON_KINDS = {"f": "iuf", "i": "iuf", "u": "iuf", "b": "biuf"}  # parsed kinds each target accepts in bulk


def parse_raw(payloads: Sequence[bytes], layout: RecordLayout, reasons: Reasons,
              scratch: bytearray | None = None) -> Parsed:
    """Little-endian fields back to back; all well-sized payloads are read with one `np.frombuffer`.

    With a big enough `scratch`, the payloads are copied into that reusable buffer instead of a fresh `b"".join`
    (a multi-megabyte allocation per batch costs more in page faults than the copy itself); the arrays
    returned are then views of `scratch`, valid until the next call: copy them before reusing it.
    """
    size = layout.record_bytes
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    wrong = np.flatnonzero(lengths != size)
    for i in wrong.tolist():
        reasons[i] = EMPTY if lengths[i] == 0 else f"raw: payload is {lengths[i]} bytes, expected {size}"
    index = np.flatnonzero(lengths == size) if len(wrong) else np.arange(len(payloads), dtype=np.int64)
    good = [payloads[i] for i in index.tolist()] if len(wrong) else payloads
    if scratch is None or len(scratch) < len(good) * size:
        records = np.frombuffer(b"".join(good), dtype=layout.raw_dtype)
    else:
        view, offset = memoryview(scratch), 0
        for payload in good:
            view[offset:offset + size] = payload
            offset += size
        records = np.frombuffer(scratch, dtype=layout.raw_dtype, count=len(good))
    return index, [records[f"f{i}"] for i in range(len(layout.fields))]


def parse_json(payloads: Sequence[bytes], layout: RecordLayout, reasons: Reasons) -> Parsed:
    """One JSON object per payload, holding every declared field by name (other keys are ignored)."""
    docs: list[dict[str, object]] = []
    index: list[int] = []
    with_bools: list[int] = []  # rows that may hold JSON booleans, which NumPy would quietly turn into 0/1
    names = [f.name for f in layout.fields]
    for i, payload in enumerate(payloads):
        if not payload:
            reasons[i] = EMPTY
            continue
        try:
            doc = json.loads(payload)
        except UnicodeDecodeError as exc:
            reasons[i] = f"json: payload is not valid UTF-8 at byte {exc.start}"
            continue
        except json.JSONDecodeError as exc:
            reasons[i] = f"json: invalid JSON at char {exc.pos} ({exc.msg})"
            continue
        except RecursionError:
            reasons[i] = "json: nested too deeply"
            continue
        if not isinstance(doc, dict):
            reasons[i] = f"json: expected an object, got {_JSON_TYPE.get(type(doc), type(doc).__name__)}"
            continue
        missing = next((n for n in names if n not in doc), None)
        if missing is not None:
            reasons[i] = f"json: missing field {missing!r}"
            continue
        docs.append(doc)
        index.append(i)
        if b"true" in payload or b"false" in payload:
            with_bools.append(len(docs) - 1)
    rows = np.array(index, dtype=np.int64)
    values = [_json_field(f, [d[f.name] for d in docs], rows, reasons, with_bools) for f in layout.fields]
    return rows, values


def _json_field(field: FieldLayout, items: list[object], rows: npt.NDArray[np.int64], reasons: Reasons,
                with_bools: list[int]) -> npt.NDArray[Any]:
    m = len(items)
    try:
        array = np.asarray(items)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is not None and array.dtype.kind in _JSON_KINDS[field.dtype.kind]:
        if len(field.shape) > 1 and array.shape[1:] == (field.size,):
            array = array.reshape(m, *field.shape)
        if array.shape[1:] == field.shape:
            for r in with_bools if field.dtype.kind != "b" else ():
                result = _json_value(field, items[r])
                if isinstance(result, str):
                    reasons.setdefault(int(rows[r]), result)
            return array
    # Slow path: find each bad row's fault; the rest keep their values, bad rows get zeros.
    out = np.zeros((m, *field.shape), dtype=np.float64)
    for r, item in enumerate(items):
        result = _json_value(field, item)
        if isinstance(result, str):
            reasons.setdefault(int(rows[r]), result)
        else:
            out[r] = result
    return out


def _nested_shape(value: object) -> tuple[int, ...] | None:
    """The shape of nested lists (() for a scalar), None when they are ragged."""
    if not isinstance(value, list):
        return ()
    if not value:
        return (0,)
    inner = [_nested_shape(v) for v in value]
    if inner[0] is None or any(s != inner[0] for s in inner[1:]):
        return None
    return (len(value), *inner[0])


def _flatten(value: object) -> list[object]:
    if not isinstance(value, list):
        return [value]
    return [leaf for v in value for leaf in _flatten(v)]


def _json_value(field: FieldLayout, value: object) -> npt.NDArray[np.float64] | str:
    """One row's value as float64 `[*shape]`, or the reason it cannot be one."""
    name, want = field.name, field.shape
    shape = _nested_shape(value)
    if shape is None:
        return f"shape: field {name!r} is ragged (nested lists of different lengths)"
    flat = _flatten(value)
    for leaf in flat:
        is_number = isinstance(leaf, int | float) and (field.dtype.kind == "b" or not isinstance(leaf, bool))
        if not is_number:
            return f"dtype: field {name!r} value {_short(leaf)} is not {field.dtype.name}"
    if shape != want and not (len(shape) == 1 and len(want) > 1 and shape[0] == field.size):
        if len(shape) == 1 and len(want) == 1:
            return f"shape: field {name!r} has {shape[0]} values, expected {field.size} (shape {field.shape_text()})"
        got = f"[{', '.join(str(d) for d in shape)}]"
        return f"shape: field {name!r} has shape {got}, expected {field.shape_text()}"
    try:
        return np.array(flat, dtype=np.float64).reshape(want)
    except OverflowError:
        return f"range: field {name!r} value is out of range for {field.dtype.name}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_csv(payloads: Sequence[bytes], layout: RecordLayout, delimiter: str, reasons: Reasons) -> Parsed:
    """One line per payload: the features flattened in order, then the label; read as float64 in bulk."""
    lines: list[str] = []
    index: list[int] = []
    for i, payload in enumerate(payloads):
        if not payload:
            reasons[i] = EMPTY
            continue
        try:
            text = bytes(payload).decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            reasons[i] = f"csv: payload is not valid UTF-8 at byte {exc.start}"
            continue
        if not text.strip():
            reasons[i] = "csv: line is blank"
            continue
        if "\n" in text or "\r" in text:
            reasons[i] = f"csv: payload has {len(text.splitlines())} lines, expected 1"
            continue
        columns = text.count(delimiter) + 1
        if columns != layout.columns:
            reasons[i] = f"csv: {columns} columns, expected {layout.columns}"
            continue
        lines.append(text)
        index.append(i)
    rows = np.array(index, dtype=np.int64)
    matrix = np.zeros((len(lines), layout.columns), dtype=np.float64)
    if lines:
        try:
            matrix = np.loadtxt(io.StringIO("\n".join(lines)), delimiter=delimiter, dtype=np.float64, ndmin=2,
                                comments=None, quotechar=None)
        except ValueError:
            for r, line in enumerate(lines):
                reason = _csv_line(line, delimiter, layout, matrix[r])
                if reason:
                    reasons[index[r]] = reason
    return rows, [matrix[:, f.column:f.column + f.size].reshape(len(lines), *f.shape) for f in layout.fields]


def _csv_line(line: str, delimiter: str, layout: RecordLayout, out: npt.NDArray[np.float64]) -> str | None:
    """Fill `out` with the line's values, or return the reason (the first cell that is not a number)."""
    for column, cell in enumerate(line.split(delimiter)):
        try:
            out[column] = float(cell)
        except ValueError:
            field = layout.field_of_column(column)
            return (f"csv: column {column + 1} (field {field.name!r}) value {_short(cell.strip())} "
                    "is not a number")
    return None


def parse_tfexample(payloads: Sequence[bytes], layout: RecordLayout, reasons: Reasons) -> Parsed:
    """Serialized `tf.train.Example`s: floats from float_list, integers and bools from int64_list."""
    index: list[int] = []
    columns: list[list[npt.NDArray[Any]]] = [[] for _ in layout.fields]
    for i, payload in enumerate(payloads):
        if not payload:
            reasons[i] = EMPTY
            continue
        try:
            features = parse_example(payload)
        except TFExampleError as exc:
            reasons[i] = f"tfexample: cannot parse ({exc})"
            continue
        row: list[npt.NDArray[Any]] = []
        for field in layout.fields:
            value = _tf_value(field, features.get(field.name))
            if isinstance(value, str):
                reasons[i] = value
                break
            row.append(value)
        else:
            index.append(i)
            for column, value in zip(columns, row, strict=True):
                column.append(value)
    m = len(index)
    arrays = [np.stack(c).reshape(m, *f.shape) if c else np.zeros((0, *f.shape), dtype=f.dtype)
              for f, c in zip(layout.fields, columns, strict=True)]
    return np.array(index, dtype=np.int64), arrays


def _tf_value(field: FieldLayout, value: object) -> npt.NDArray[Any] | str:
    """The feature's values, or the reason they do not fit the field."""
    if value is None:
        return f"tfexample: missing feature {field.name!r}"
    count = len(value) if isinstance(value, list | np.ndarray) else 0
    if isinstance(value, np.ndarray) or count == 0:  # an empty Feature has no list type of its own
        wanted = "float_list" if field.dtype.kind == "f" else "int64_list"
        got = "float_list" if isinstance(value, np.ndarray) and value.dtype.kind == "f" else "int64_list"
        if isinstance(value, np.ndarray) and got != wanted:
            return f"dtype: field {field.name!r} is {got}, expected {wanted} (dtype {field.dtype.name})"
        if count != field.size:
            return (f"shape: field {field.name!r} has {count} values, expected {field.size} "
                    f"(shape {field.shape_text()})")
        if isinstance(value, np.ndarray):
            return value
    return f"dtype: field {field.name!r} is bytes_list, expected numbers (dtype {field.dtype.name})"
