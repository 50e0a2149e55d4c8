"""Answering a decoded batch row by row when the batch as a whole fails: the predictor's guard against one bad
input taking its batch down with it.

Why this exists: `model.preprocess`, the model call and the encoding of the answers are the pipeline's code
and data, so anything can raise. An input that makes a batch fail would otherwise stay unacknowledged, come
back, and crash every replica again, forever; tried alone, only the inputs that fail on their own are
rejected (for the dead-letter topic, with `predict: <exception type>: <message>` as the reason), and the
others are answered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pulsetrain.telemetry import exception_reason

REASON_LIMIT = 500
"""Characters of an exception's text kept in a dead letter's reason (a TensorFlow error can run to pages)."""


def predict_reason(exc: BaseException) -> str:
    """The dead-letter reason of an input that could not be predicted: `predict: ValueError: ...`, on one line."""
    return exception_reason("predict", exc, REASON_LIMIT)


@dataclass(frozen=True)
class RowsOutcome:
    """What became of the rows of one decoded batch."""

    answered: list[tuple[int, bytes]]
    """(row, answer payload), in row order."""
    rejected: list[tuple[int, str]]
    """(row, reason): rows that failed on their own too, for the dead-letter topic."""
    failure: str | None
    """Why the batch as a whole failed (its rows were then tried one by one); None when it did not."""


def _answers(answer: Callable[[list[int]], Sequence[bytes]], rows: list[int]) -> Sequence[bytes]:
    payloads = answer(rows)
    if len(payloads) != len(rows):
        raise ValueError(f"{len(payloads)} answers for {len(rows)} inputs")
    return payloads


def answer_rows(count: int, answer: Callable[[list[int]], Sequence[bytes]]) -> RowsOutcome:
    """Answer rows `0..count-1` of a batch with one call `answer(rows)` (one payload per row given); when that
    raises, call it once per row, so that only the rows that fail on their own are rejected."""
    rows = list(range(count))
    try:
        return RowsOutcome(list(zip(rows, _answers(answer, rows), strict=True)), [], None)
    except Exception as exc:  # preprocess, model and encoding are the pipeline's code and data: anything goes
        failure = predict_reason(exc)
    if count == 1:
        return RowsOutcome([], [(0, failure)], failure)
    answered: list[tuple[int, bytes]] = []
    rejected: list[tuple[int, str]] = []
    for row in rows:
        try:
            (payload,) = _answers(answer, [row])
        except Exception as exc:
            rejected.append((row, predict_reason(exc)))
        else:
            answered.append((row, payload))
    return RowsOutcome(answered, rejected, failure)
