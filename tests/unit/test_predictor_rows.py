"""A batch the model cannot predict: its rows are tried one by one, and only those that fail alone are rejected
(with a `predict: ...` reason for the dead-letter topic) instead of crashing the predictor forever."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from pulsetrain.predict_io import encode_answers
from pulsetrain.predict_rows import REASON_LIMIT, answer_rows, predict_reason
from pulsetrain.telemetry import reason_kind


class Model:
    """Answers rows as `b"<row>"`, raising ValueError for any call that includes a poisoned row."""

    def __init__(self, poisoned: Sequence[int] = ()) -> None:
        self.poisoned = set(poisoned)
        self.calls: list[list[int]] = []

    def __call__(self, rows: list[int]) -> list[bytes]:
        self.calls.append(rows)
        bad = sorted(self.poisoned.intersection(rows))
        if bad:
            raise ValueError(f"cannot reshape row {bad[0]}")
        return [str(row).encode() for row in rows]


def test_a_healthy_batch_is_answered_in_one_call() -> None:
    model = Model()
    outcome = answer_rows(4, model)
    assert outcome.answered == [(0, b"0"), (1, b"1"), (2, b"2"), (3, b"3")]
    assert outcome.rejected == [] and outcome.failure is None
    assert model.calls == [[0, 1, 2, 3]]


def test_only_the_rows_that_fail_alone_are_rejected() -> None:
    model = Model(poisoned=[1, 3])
    outcome = answer_rows(5, model)
    assert outcome.failure == "predict: ValueError: cannot reshape row 1"
    assert outcome.answered == [(0, b"0"), (2, b"2"), (4, b"4")]
    assert outcome.rejected == [(1, "predict: ValueError: cannot reshape row 1"),
                                (3, "predict: ValueError: cannot reshape row 3")]
    assert model.calls == [[0, 1, 2, 3, 4], [0], [1], [2], [3], [4]]
    assert {reason_kind(reason) for _, reason in outcome.rejected} == {"predict"}  # counted as one kind


def test_a_failure_of_every_row_rejects_them_all() -> None:
    def broken(rows: list[int]) -> list[bytes]:
        raise RuntimeError("model version 7 is broken")

    outcome = answer_rows(3, broken)
    assert outcome.answered == []
    assert outcome.rejected == [(row, "predict: RuntimeError: model version 7 is broken") for row in range(3)]


def test_a_single_row_is_not_tried_twice() -> None:
    model = Model(poisoned=[0])
    outcome = answer_rows(1, model)
    assert outcome.rejected == [(0, "predict: ValueError: cannot reshape row 0")] and outcome.answered == []
    assert model.calls == [[0]]


def test_a_wrong_number_of_answers_is_a_failure_too() -> None:
    """The real encoder refuses a model that returns fewer rows than it was given; so does `answer_rows`."""
    def short(rows: list[int]) -> list[bytes]:
        outputs = {"prediction": np.zeros(len(rows) - 1 if len(rows) > 2 else len(rows), np.float32)}
        return encode_answers(outputs, 1, [f"id-{row}" for row in rows])

    outcome = answer_rows(3, short)
    assert outcome.failure == "predict: ValueError: the model returned 2 rows for 3 inputs"
    assert [row for row, _ in outcome.answered] == [0, 1, 2]  # one by one they come out right
    assert outcome.rejected == []

    outcome = answer_rows(2, lambda rows: [b"only one"])
    assert outcome.failure == "predict: ValueError: 1 answers for 2 inputs"
    assert outcome.answered == [(0, b"only one"), (1, b"only one")]


def test_reasons_are_one_line_and_bounded() -> None:
    reason = predict_reason(RuntimeError("Graph execution error:\n\n  Detected at node 'dense'\n" + "x" * 2000))
    assert reason.startswith("predict: RuntimeError: Graph execution error: Detected at node 'dense' xxx")
    assert "\n" not in reason and reason.endswith("...")
    assert len(reason) == len("predict: ") + REASON_LIMIT


def test_interrupts_are_not_taken_for_bad_inputs() -> None:
    def interrupted(rows: list[int]) -> list[bytes]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        answer_rows(2, interrupted)
