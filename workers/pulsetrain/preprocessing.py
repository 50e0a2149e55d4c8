"""The trainer's side of `model.preprocess`: one record the user's step cannot handle costs that record, not the run.

Why this exists: the hook is the pipeline's own code, called on every decoded batch. A hook that raises on
one odd record, or turns it into NaN, must neither kill the worker (its peers would wait for it in a
collective until they time out) nor put garbage into the model. So its output is checked (a mapping with
every declared feature, one row per record, the declared number of values per record, finite values), and a
batch that fails is tried again one record at a time: the records that fail on their own are dead-lettered
with the reason, like malformed messages, and the rest train. A hook that fails on every record of a batch
of several is broken, not fed bad data: that stops the worker with `ConfigError` naming `model.preprocess`,
instead of draining the whole stream into the dead-letter topic.

The contract, for users: `preprocess(features) -> features`, where `features` maps each declared feature's
name to a NumPy array with one row per record (`[rows, *shape]`), and the result has the same names and
rows, with the same number of values per record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pulsetrain.config import ConfigError, DataConfig
from pulsetrain.telemetry import exception_reason

REASON_LIMIT = 300
Features = dict[str, npt.NDArray[Any]]


@dataclass(frozen=True)
class Preprocessed:
    """What became of one decoded batch."""

    features: Features
    """The hook's output for the kept records, in their order."""
    kept: list[int]
    """Which input rows the output rows are."""
    rejects: list[tuple[int, str]]
    """(input row, reason) of the records the hook failed on by themselves."""


def preprocess_reason(exc: BaseException) -> str:
    """The dead-letter reason: `preprocess: ValueError: ...`, on one line."""
    return exception_reason("preprocess", exc, REASON_LIMIT)


def checked(output: object, data: DataConfig, rows: int) -> Features:
    """The hook's `output` for `rows` records as named arrays; `ValueError` says what is wrong with it."""
    if not isinstance(output, Mapping):
        raise ValueError(f"returned {type(output).__name__}, expected a dict of arrays by feature name")
    features: Features = {}
    for spec in data.features:
        if spec.name not in output:
            raise ValueError(f"returned no {spec.name!r} (it returned {sorted(map(str, output))})")
        values = np.asarray(output[spec.name])
        if values.ndim == 0 or values.shape[0] != rows or values.size != rows * spec.size:
            raise ValueError(f"returned {spec.name!r} with shape {list(values.shape)}, expected {rows} rows of "
                             f"{spec.size} values")
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise ValueError(f"returned non-finite values in {spec.name!r}")
        features[spec.name] = values
    return features


def preprocess_batch(hook: Callable[[Features], object], features: Features, data: DataConfig) -> Preprocessed:
    """Apply `hook` to a decoded batch: all of it at once, or record by record when that fails."""
    rows = len(next(iter(features.values()))) if features else 0
    try:
        return Preprocessed(checked(hook(features), data, rows), list(range(rows)), [])
    except Exception as exc:  # the pipeline's own code: anything goes
        failure = preprocess_reason(exc)
    if rows <= 1:
        return Preprocessed({}, [], [(0, failure)] if rows else [])
    outputs: list[Features] = []
    kept: list[int] = []
    rejects: list[tuple[int, str]] = []
    for row in range(rows):
        try:
            outputs.append(checked(hook({name: values[row:row + 1] for name, values in features.items()}), data, 1))
        except Exception as exc:
            rejects.append((row, preprocess_reason(exc)))
        else:
            kept.append(row)
    if not kept:
        raise ConfigError([f"model.preprocess: fails on every one of the {rows} records of a batch, so the step "
                           f"itself is broken; the first batch's error: {failure.removeprefix('preprocess: ')}"])
    merged = {spec.name: np.concatenate([o[spec.name] for o in outputs]) for spec in data.features}
    return Preprocessed(merged, kept, rejects)
