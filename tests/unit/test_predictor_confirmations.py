"""Send tracking: an input is acknowledged only once the broker confirmed its answer, whatever order the
confirmations come back in; an answer too large to send becomes a dead letter instead of a silent loss.

The `send` given to `Inflight` here records each answer's callback, and the test calls them back in the
orders a real producer can: in order for one partition, any order (and some refused) across partitions.
"""

from __future__ import annotations

from typing import Any

import pulsar
import pytest

from pulsetrain.predict_io import ANSWER_LIMIT_BYTES, Inflight, check_answer_sizes


class Input:
    def __init__(self, key: str) -> None:
        self.key = key

    def partition_key(self) -> str:
        return self.key


class Recorder:
    """A `pulsar_io.Send` that keeps every (key, callback) instead of sending."""

    def __init__(self) -> None:
        self.sent: list[tuple[str | None, Any]] = []

    def __call__(self, payload: bytes, properties: Any, key: str | None, callback: Any) -> None:
        self.sent.append((key, callback))


def send_batch(inflight: Inflight, size: int) -> tuple[Recorder, list[Input]]:
    recorder, inputs = Recorder(), [Input(f"k{i}") for i in range(size)]
    inflight.send(recorder, [(b"{}", {}, i.partition_key()) for i in inputs], inputs)
    return recorder, inputs


def test_one_partition_confirms_a_batch_with_its_last_answer() -> None:
    inflight = Inflight()
    recorder, inputs = send_batch(inflight, 4)
    callbacks = [callback for _, callback in recorder.sent]
    assert callbacks[:3] == [None, None, None] and callbacks[3] is not None
    assert [key for key, _ in recorder.sent] == ["k0", "k1", "k2", "k3"]
    assert inflight.pending == 4
    callbacks[3](pulsar.Result.Ok, None)
    (done,) = inflight.drain()
    assert done.ok and done.messages == inputs and inflight.pending == 0


def test_partitions_confirm_the_batch_only_when_every_answer_is_back() -> None:
    inflight = Inflight(callback_per_answer=True)
    recorder, inputs = send_batch(inflight, 3)
    callbacks = [callback for _, callback in recorder.sent]
    assert all(callbacks)
    callbacks[2](pulsar.Result.Ok, None)  # the last answer's partition is fastest
    callbacks[0](pulsar.Result.Ok, None)
    assert inflight.drain() == [] and inflight.pending == 3  # the middle answer is not persisted yet
    callbacks[1](pulsar.Result.Ok, None)
    (done,) = inflight.drain()
    assert done.ok and done.messages == inputs


def test_partitions_fail_the_batch_when_any_answer_failed() -> None:
    inflight = Inflight(callback_per_answer=True)
    recorder, inputs = send_batch(inflight, 3)
    callbacks = [callback for _, callback in recorder.sent]
    callbacks[1](pulsar.Result.Timeout, None)  # a middle answer, on another partition, is refused
    callbacks[0](pulsar.Result.Ok, None)
    callbacks[2](pulsar.Result.Ok, None)
    (done,) = inflight.drain()
    assert not done.ok and done.messages == inputs and "Timeout" in done.result


def test_batches_are_tracked_apart() -> None:
    inflight = Inflight(callback_per_answer=True)
    first, _ = send_batch(inflight, 2)
    second, later = send_batch(inflight, 2)
    for _, callback in second.sent:
        callback(pulsar.Result.Ok, None)
    (done,) = inflight.drain()
    assert done.messages == later and inflight.pending == 2
    first.sent[0][1](pulsar.Result.Ok, None)
    assert inflight.drain() == []


def test_a_batch_needs_one_answer_per_input() -> None:
    with pytest.raises(ValueError, match="2 answers for 1 inputs"):
        Inflight().send(Recorder(), [(b"", {}, "k"), (b"", {}, "k")], [Input("k")])


def test_answers_too_large_to_send_are_refused_with_their_size() -> None:
    check_answer_sizes([b"x" * 10, b"y" * ANSWER_LIMIT_BYTES])
    with pytest.raises(ValueError, match=r"an answer of 11 bytes is larger than the 10 bytes"):
        check_answer_sizes([b"x" * 3, b"y" * 11], limit=10)
