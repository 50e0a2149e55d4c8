"""Where each declared field lives in an encoded record: NumPy dtypes, raw byte layout, CSV columns.

Why this exists: the decoder and the encoders must agree on one layout (features in declared order,
then the label; little-endian; C order inside a field), or a round trip would silently scramble data.
Both build it here from the `DataConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pulsetrain.config_model import DataConfig, FieldSpec

__all__ = ["FieldLayout", "RecordLayout"]


@dataclass(frozen=True)
class FieldLayout:
    """One field of a record."""

    spec: FieldSpec
    dtype: np.dtype[Any]
    """The declared dtype, native byte order: the dtype of the decoded arrays."""
    raw_dtype: np.dtype[Any]
    """The dtype in raw payloads: little-endian; bool travels as one byte (uint8, 0 or 1)."""
    column: int
    """Index of the field's first value among a record's flattened values (CSV column, 0-based)."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.spec.shape

    @property
    def size(self) -> int:
        return self.spec.size

    def shape_text(self) -> str:
        return f"[{', '.join(str(d) for d in self.shape)}]"


class RecordLayout:
    """The fields of one record (features in order, then the label) and the raw structured dtype.

    With `with_label=False` a record is the features alone (what a predictor may be sent): `fields`,
    `columns`, `raw_dtype` and `record_bytes` then leave the label out; `label` still describes it.
    """

    def __init__(self, data: DataConfig, *, with_label: bool = True) -> None:
        fields: list[FieldLayout] = []
        column = 0
        for spec in data.fields:
            dtype = np.dtype(spec.dtype)
            raw = np.dtype("u1") if dtype.kind == "b" else dtype.newbyteorder("<")
            fields.append(FieldLayout(spec=spec, dtype=dtype, raw_dtype=raw, column=column))
            column += spec.size
        self.features: tuple[FieldLayout, ...] = tuple(fields[:-1])
        self.label: FieldLayout = fields[-1]
        self.fields: tuple[FieldLayout, ...] = tuple(fields) if with_label else self.features
        self.columns: int = column if with_label else self.label.column
        """Values in one record, all fields flattened: the CSV column count."""
        self.raw_dtype: np.dtype[np.void] = np.dtype(
            [(f"f{i}", f.raw_dtype, f.shape) for i, f in enumerate(self.fields)])
        """Structured dtype of one raw record; field `f{i}` is `fields[i]`."""
        self.record_bytes: int = self.raw_dtype.itemsize

    def field_of_column(self, column: int) -> FieldLayout:
        """The field that CSV column `column` (0-based) belongs to."""
        for f in self.fields:
            if f.column <= column < f.column + f.size:
                return f
        raise IndexError(f"column {column} is outside the record's {self.columns} columns")
