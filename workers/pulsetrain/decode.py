"""Decode a batch of message payloads into NumPy arrays, turning every malformed payload into a reason.

Why this exists: the trainer consumes messages in batches and needs dense arrays of the declared dtypes
and shapes; a bad message must never stop training, so instead of raising, the decoder returns the
indices of the payloads that decoded and, for each of the others, one precise reason (which becomes
the dead-letter message's property). Reasons start with their kind: `empty`, `json`, `csv`, `raw`,
`tfexample`, `shape`, `dtype`, `range`, `non-finite`, `label` (the text before the first colon).

Format parsing lives in `pulsetrain.decode_formats`; the value checks shared by every format (finite,
integral, in range for the dtype, label in range for the task) and the assembly of the batch live here,
vectorised over the whole batch. Raw tensors take one `np.frombuffer` call for the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pulsetrain.config_model import DataConfig, WorkerConfig
from pulsetrain.decode_formats import Parsed, Reasons, parse_csv, parse_json, parse_raw, parse_tfexample
from pulsetrain.layout import FieldLayout, RecordLayout

__all__ = ["DecodedBatch", "Decoder"]


@dataclass
class DecodedBatch:
    """The decoded messages of one batch, in the order they came, and the rejected ones."""

    features: dict[str, npt.NDArray[Any]]
    """Each feature as an array `[n, *shape]` of its declared dtype, C-contiguous."""
    labels: npt.NDArray[Any]
    """The labels, `[n, *label_shape]` of the label's declared dtype; empty (`[0]`) from a features-only decoder."""
    valid_index: npt.NDArray[np.int64]
    """For each decoded row, its index in the payload list given to `decode` (ascending)."""
    rejects: list[tuple[int, str]]
    """(payload index, reason) for every payload that did not decode, by index."""

    def __len__(self) -> int:
        return len(self.valid_index)


class Decoder:
    """Decodes payload batches of one declared schema (`DataConfig`) and format.

    Not thread-safe: it reuses a scratch buffer between calls (use one Decoder per thread).
    """

    def __init__(self, data: DataConfig, *, num_classes: int | None = None, binary: bool = False,
                 features_only: bool = False) -> None:
        """`num_classes`: labels must lie in 0..num_classes-1; `binary`: labels must be 0 or 1.

        `features_only` (the predictor's inputs): a payload may carry the label or leave it out; a label that
        is there is dropped unchecked (raw bytes and CSV columns after the features; JSON keys and Example
        features of that name are ignored).
        """
        self.data = data
        self.layout = RecordLayout(data, with_label=not features_only)
        self.full = RecordLayout(data)
        self.features_only = features_only
        self.num_classes = num_classes
        self.binary = binary
        self._scratch = bytearray()  # reused by raw decoding; so one Decoder serves one thread at a time

    @classmethod
    def from_config(cls, config: WorkerConfig) -> Decoder:
        """A decoder that also checks labels against the model's task (class range, 0/1 for binary)."""
        task = config.model.task
        return cls(config.data, num_classes=config.model.num_classes if task == "classification" else None,
                   binary=task == "binary")

    def decode(self, payloads: Sequence[bytes]) -> DecodedBatch:
        """Decode `payloads`; never raises for bad input: each bad payload becomes a reject with a reason."""
        reasons: Reasons = {}
        fmt = self.data.format
        if self.features_only and fmt in ("raw", "csv"):
            payloads = self._without_labels(payloads)
        if fmt == "raw":
            if len(self._scratch) < len(payloads) * self.layout.record_bytes:
                self._scratch = bytearray(len(payloads) * self.layout.record_bytes)
            parsed = parse_raw(payloads, self.layout, reasons, self._scratch)
        elif fmt == "json":
            parsed = parse_json(payloads, self.layout, reasons)
        elif fmt == "csv":
            parsed = parse_csv(payloads, self.layout, self.data.csv.delimiter, reasons)
        else:
            parsed = parse_tfexample(payloads, self.layout, reasons)
        if self.features_only and fmt == "raw":
            for index, reason in reasons.items():
                if reason.startswith("raw:"):
                    reasons[index] = (f"raw: payload is {len(payloads[index])} bytes, expected "
                                      f"{self.layout.record_bytes} (features) or {self.full.record_bytes} "
                                      "(features and label)")
        return self._assemble(parsed, reasons)

    def _without_labels(self, payloads: Sequence[bytes]) -> Sequence[bytes]:
        """Raw records and CSV lines that carry the label, cut down to their features."""
        if self.data.format == "raw":
            full, size = self.full.record_bytes, self.layout.record_bytes
            if all(len(p) != full for p in payloads):
                return payloads
            return [p[:size] if len(p) == full else p for p in payloads]
        delimiter = self.data.csv.delimiter.encode("utf-8")
        label_columns, out = self.layout.label.size, []
        for payload in payloads:
            line = bytes(payload).rstrip(b"\r\n")
            if line.count(delimiter) + 1 == self.full.columns:
                payload = line.rsplit(delimiter, label_columns)[0]
            out.append(payload)
        return out

    def _assemble(self, parsed: Parsed, reasons: Reasons) -> DecodedBatch:
        index, values = parsed
        for field, array in zip(self.layout.fields, values, strict=True):
            for row, reason in value_problems(field, array):
                reasons.setdefault(int(index[row]), reason)
        for row, reason in [] if self.features_only else self._label_problems(values[-1]):
            reasons.setdefault(int(index[row]), reason)
        keep: npt.NDArray[np.bool_] | None = None
        if reasons:
            keep = ~np.isin(index, np.fromiter(reasons, dtype=np.int64, count=len(reasons)))
            index = index[keep]
        # Always a fresh copy: parsed arrays may be views of the reused scratch buffer.
        arrays = [np.array(v, dtype=f.dtype, order="C") if keep is None
                  else np.ascontiguousarray(v[keep], dtype=f.dtype)
                  for f, v in zip(self.layout.fields, values, strict=True)]
        return DecodedBatch(
            features={f.name: a for f, a in zip(self.layout.features, arrays, strict=False)},
            labels=np.zeros((0,), self.layout.label.dtype) if self.features_only else arrays[-1],
            valid_index=index.astype(np.int64, copy=False),
            rejects=sorted(reasons.items()),
        )

    def _label_problems(self, labels: npt.NDArray[Any]) -> list[tuple[int, str]]:
        name = self.layout.label.name
        flat = labels.reshape(len(labels), self.layout.label.size)
        if self.num_classes is not None:
            bad = (flat < 0) | (flat >= self.num_classes)
            return [(row, f"label: field {name!r} value {value!r} is out of range 0..{self.num_classes - 1} "
                          f"(numClasses {self.num_classes})") for row, value in _first_bad(flat, bad)]
        if self.binary:
            bad = (flat != 0) & (flat != 1)
            return [(row, f"label: field {name!r} value {value!r} is not 0 or 1 (task binary)")
                    for row, value in _first_bad(flat, bad)]
        return []


def _first_bad(flat: npt.NDArray[Any], bad: npt.NDArray[np.bool_]) -> list[tuple[int, object]]:
    """For each row with a bad element, (row, the first bad element as a Python number)."""
    rows = np.flatnonzero(bad.any(axis=1))
    return [(int(r), _plain(flat[r, int(np.argmax(bad[r]))].item())) for r in rows]


def _plain(value: object) -> object:
    """Whole floats read as the integers they are (1000000, not 1000000.0) in messages."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return int(value)
    return value


def value_problems(field: FieldLayout, values: npt.NDArray[Any]) -> list[tuple[int, str]]:
    """Rows whose values cannot be stored in the field's dtype, or are not finite: (row, reason).

    `values` is `[m, *shape]` as parsed (float64 from text, the declared dtype from raw bytes, ...).
    """
    m = values.shape[0]
    if m == 0:
        return []
    flat = values.reshape(m, field.size)
    src, dst, name = flat.dtype, field.dtype, field.name
    out: list[tuple[int, str]] = []
    if dst.kind == "f" and src.kind == "f":
        # A row sum is finite unless the row holds NaN/Inf (or overflows): one pass, no [m, size] temporary.
        with np.errstate(over="ignore", invalid="ignore"):
            suspects = np.flatnonzero(~np.isfinite(flat.sum(axis=1)))
        for row in suspects.tolist():
            kinds = " and ".join(k for k, test in (("NaN", np.isnan), ("Inf", np.isinf)) if test(flat[row]).any())
            if kinds:
                out.append((row, f"non-finite: field {name!r} contains {kinds}"))
    elif dst.kind in "iu" and src.kind == "f":
        bad = ~np.isfinite(flat)
        bad |= ~bad & (flat != np.floor(np.where(bad, 0, flat)))
        out += [(row, f"dtype: field {name!r} value {v!r} is not {dst.name}") for row, v in _first_bad(flat, bad)]
    elif dst.kind == "b" and src.kind != "b":
        bad = (flat != 0) & (flat != 1)
        out += [(row, f"dtype: field {name!r} value {v!r} is not bool (true/false or 0/1)")
                for row, v in _first_bad(flat, bad)]
    if dst.kind in "iuf" and src.kind in "iuf" and not np.can_cast(src, dst, "safe"):
        if dst.kind == "f":
            info_f = np.finfo(dst)
            low, high, text = float(info_f.min), float(info_f.max), f"±{float(info_f.max):g}"
        else:
            info_i = np.iinfo(dst)
            low, high, text = info_i.min, info_i.max, f"{info_i.min}..{info_i.max}"
        with np.errstate(invalid="ignore"):
            bad = (flat < low) | (flat > high)
        if src.kind == "f" and dst.kind == "f":
            bad &= np.isfinite(flat)
        out += [(row, f"range: field {name!r} value {v!r} is out of range for {dst.name} ({text})")
                for row, v in _first_bad(flat, bad)]
    return out
