"""The predictor's side of Pulsar: the micro-batching policy, the answer messages, and send tracking.

Why this exists: these are the predictor's contracts with everyone else. Inputs are taken in micro-batches,
because one model call per input would cost a millisecond each: a batch closes when it holds `maxBatchSize`
inputs, or `maxLatencyMs` after its first input was *published* (see `batch_deadline`), whichever comes first.
Counting from the publish time, not from the input's arrival here, makes the knob what a user means by it: the
batching wait is bounded in end-to-end terms, and an input that already spent its budget on the way (a
backlog, a slow hop) waits for nothing but the inputs already queued here. Each input gets exactly one answer
message: JSON with the prediction and the model version, the input's message ID, key and the model version
as properties, the input's partition key as its key (so Key_Shared consumers of the answers see the same
routing). An input is acknowledged only once the broker confirmed its answer: sends are asynchronous, one
confirmation per batch (see `Inflight`), and the callback (on the client's thread) only appends to a queue the
serving loop drains, so nothing on that thread takes a lock or touches the consumer.
The pure parts (`batch_deadline`, `batch_shapes`, `pad_rows`, `prediction_records`, `encode_answers`) are
unit-tested; the rest is thin glue over the client, tested against the real broker.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pulsar

from pulsetrain.config_model import ServingConfig
from pulsetrain.pulsar_io import Send, receiver

INPUT_ID_PROPERTY = "pulsetrain.input-message-id"
"""The input's message ID (`str(MessageId)`, e.g. `(12,34,-1,0)`): how answers and duplicates are matched."""
MODEL_VERSION_PROPERTY = "pulsetrain.model-version"
INPUT_KEY_PROPERTY = "pulsetrain.input-key"
"""The input's key, when it had one (it is also the answer's own key, for Key_Shared consumers of answers)."""
NEGATIVE_ACK_DELAY_MS = 1000  # an input whose answer was refused comes back after this long
IDLE_POLL_SECONDS = 0.1  # how long to wait for a batch's first input before looking at stop requests and new models
PROBABILITY_DECIMALS = 6
_ANSWER_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # one encoder: json.dumps builds one a call


def batch_deadline(published_ms: int, max_latency_ms: int, now: float) -> float:
    """When a batch whose first input was published at `published_ms` (Unix ms, the producer's clock) closes,
    in Unix seconds: `maxLatencyMs` after that publish time, but never later than `maxLatencyMs` from `now`
    (a producer clock ahead of ours) and never earlier than `now` (a backlog: take what is queued, wait for
    nothing)."""
    budget = max_latency_ms / 1000
    return min(max(published_ms / 1000 + budget, now), now + budget)


def collect(consumer: pulsar.Consumer, max_size: int, max_latency_ms: int,
            idle_poll: float = IDLE_POLL_SECONDS) -> list[Any]:
    """One micro-batch from `consumer` (opened by `open_inputs`): the first input waited for up to `idle_poll`
    seconds (empty when none came), then more until `max_size` or the first input's `batch_deadline`; once that
    passed, only the inputs already in the client's queue are taken (a zero timeout returns at once). The
    binding's messages (see `pulsar_io.receiver`).

    One `receive` per input costs this thread about the same as one `batch_receive` per batch (2.4 against
    2.2 µs per input measured here) and, unlike the subscription's fixed batch policy, can stop at a deadline
    that depends on the input."""
    receive = receiver(consumer)
    try:
        first = receive(max(1, math.ceil(idle_poll * 1000)))
    except pulsar.Timeout:
        return []
    batch = [first]
    deadline = batch_deadline(first.publish_timestamp(), max_latency_ms, time.time())
    while len(batch) < max_size:
        try:
            batch.append(receive(max(0, math.ceil((deadline - time.time()) * 1000))))
        except pulsar.Timeout:
            break
    return batch


def batch_shapes(max_size: int) -> list[int]:
    """The batch sizes the model is called with: powers of two below `max_size`, then `max_size`.

    A model call with a batch size it has not seen yet is slow (tens of ms to set up its kernels); padding
    every batch up to one of these few sizes, all warmed up when a version is loaded, keeps that cost out of
    the answers' latency, and out of the first batches after a hot swap."""
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    sizes, size = [], 1
    while size < max_size:
        sizes.append(size)
        size *= 2
    return [*sizes, max_size]


def padded_size(rows: int, max_size: int) -> int:
    """The smallest of `batch_shapes(max_size)` that holds `rows` rows."""
    if not 1 <= rows <= max_size:
        raise ValueError(f"rows must be in 1..{max_size}, got {rows}")
    return min(max_size, 1 << (rows - 1).bit_length())


def pad_rows(features: Mapping[str, npt.NDArray[Any]], size: int) -> dict[str, npt.NDArray[Any]]:
    """Each feature array grown to `size` rows with zeros (the padding's predictions are dropped)."""
    out: dict[str, npt.NDArray[Any]] = {}
    for name, values in features.items():
        if len(values) == size:
            out[name] = values
        else:
            padded = np.zeros((size, *values.shape[1:]), dtype=values.dtype)
            padded[:len(values)] = values
            out[name] = padded
    return out


def _plain(values: npt.NDArray[Any]) -> list[Any]:
    """Rows as Python values for JSON: floats rounded; NaN and infinities (which JSON cannot carry) as null."""
    if values.dtype.kind != "f":
        return list(values.tolist())
    rounded = np.round(values.astype(np.float64), PROBABILITY_DECIMALS)
    rows: list[Any] = rounded.tolist()
    return rows if np.isfinite(rounded).all() else [_nulls(row) for row in rows]


def _nulls(value: Any) -> Any:
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def prediction_records(outputs: Mapping[str, npt.NDArray[Any]]) -> list[dict[str, Any]]:
    """One `prediction` object per row of a batch of `serving_default` outputs.

    classification → `{"class", "probabilities"}`, binary → `{"class", "probability"}`, regression →
    `{"value"}` (what `pulsetrain.model.predictions` exports); any other signature → every output by name.
    Floats are rounded to 6 decimals."""
    if "probabilities" in outputs and "class" in outputs:
        return [{"class": c, "probabilities": p}
                for c, p in zip(_plain(outputs["class"]), _plain(outputs["probabilities"]), strict=True)]
    if "probability" in outputs and "class" in outputs:
        return [{"class": c, "probability": p}
                for c, p in zip(_plain(outputs["class"]), _plain(outputs["probability"]), strict=True)]
    if set(outputs) == {"prediction"}:
        return [{"value": v} for v in _plain(outputs["prediction"])]
    columns = {name: _plain(values) for name, values in sorted(outputs.items())}
    rows = len(next(iter(columns.values()))) if columns else 0
    return [{name: column[i] for name, column in columns.items()} for i in range(rows)]


def encode_answers(outputs: Mapping[str, npt.NDArray[Any]], version: int, input_ids: Sequence[str]) -> list[bytes]:
    """The answer payloads of one batch: `{"inputMessageId", "modelVersion", "prediction"}` as compact JSON."""
    records = prediction_records(outputs)
    if len(records) != len(input_ids):
        raise ValueError(f"the model returned {len(records)} rows for {len(input_ids)} inputs")
    encode = _ANSWER_JSON.encode
    return [encode({"inputMessageId": input_id, "modelVersion": version, "prediction": record}).encode()
            for input_id, record in zip(input_ids, records, strict=True)]


def answer_properties(input_id: str, version: int, key: str = "") -> dict[str, str]:
    properties = {INPUT_ID_PROPERTY: input_id, MODEL_VERSION_PROPERTY: str(version)}
    if key:
        properties[INPUT_KEY_PROPERTY] = key
    return properties


# -- glue over the client ---------------------------------------------------------------------------


PREFETCH_BATCHES = 16


def input_prefetch(serving: ServingConfig) -> int:
    """The replica's receiver queue: PREFETCH_BATCHES micro-batches, at least 100 and at most 10,000 inputs.

    Bounded, so that replicas share the stream and a replica that dies leaves few inputs to redeliver; deep
    enough that the client's queue does not run dry while the broker dispatches the next inputs. With 4 batches
    (256 inputs at the default 64) the serving loop spent 19% of its time waiting for a batch's first input at
    peak; 16 gave 0.171-0.251 of the in-process rate against 0.112-0.167 with 4 (`make bench-predictor`,
    3 runs each taking turns, 2-core test machine)."""
    return min(max(PREFETCH_BATCHES * serving.max_batch_size, 100), 10_000)


def open_inputs(client: pulsar.Client, serving: ServingConfig) -> pulsar.Consumer:
    """The replica's consumer on the shared input subscription: ack timeout off, a bounded prefetch
    (`input_prefetch`), refused answers' inputs redelivered after a second."""
    kind = pulsar.ConsumerType.KeyShared if serving.subscription_type == "KeyShared" else pulsar.ConsumerType.Shared
    return client.subscribe(
        serving.input_topic, serving.subscription, consumer_type=kind,
        initial_position=pulsar.InitialPosition.Earliest,
        receiver_queue_size=input_prefetch(serving),
        negative_ack_redelivery_delay_ms=NEGATIVE_ACK_DELAY_MS,
        batch_index_ack_enabled=True,
    )


def max_inflight(serving: ServingConfig) -> int:
    """Answers the serving loop lets wait for confirmation before it waits itself (the producer's queue is larger,
    so a send never blocks holding the interpreter while the callbacks that would free the queue need it)."""
    return max(1024, 8 * serving.max_batch_size)


def open_answers(client: pulsar.Client, serving: ServingConfig) -> pulsar.Producer:
    """The answers' producer: a full micro-batch leaves as one Pulsar batch at once, a partial one within 1 ms
    (the client wants at least 2 messages per Pulsar batch)."""
    return client.create_producer(
        serving.output_topic, batching_enabled=True, batching_max_messages=max(2, serving.max_batch_size),
        batching_max_publish_delay_ms=1, block_if_queue_full=True,
        max_pending_messages=max_inflight(serving) + serving.max_batch_size,
    )


ANSWER_LIMIT_BYTES = 5 * 1024 * 1024 - 64 * 1024
"""The largest answer payload sent: the broker's default `maxMessageSize` (5 MiB) less room for the message's
metadata and properties. The client refuses a larger message at once, before any confirmation could fail."""


def check_answer_sizes(payloads: Sequence[bytes], limit: int = ANSWER_LIMIT_BYTES) -> None:
    """Raise `ValueError` naming the size when an answer is too large to send (its input is dead-lettered)."""
    largest = max((len(p) for p in payloads), default=0)
    if largest > limit:
        raise ValueError(f"an answer of {largest:,} bytes is larger than the {limit:,} bytes a message may carry")


@dataclass(frozen=True)
class Confirmation:
    """The broker's answer about one batch of answers."""

    messages: list[Any]
    """The inputs they answer (the binding's messages: see `collect`)."""
    ok: bool
    result: str
    at: float
    """Wall time the confirmation arrived (Unix seconds)."""


class Inflight:
    """Batches of answers sent and not yet confirmed.

    One callback per batch, on its last answer: a Python callback per message costs the client's I/O thread
    the interpreter lock once per answer, which measured here as a third of the predictor's throughput.
    That one callback is enough because a producer persists its messages in order: when the broker confirms
    the last answer of a batch, every earlier one is persisted (the guarantee `producer.flush()` gives too).
    Two cases would break that. An output topic with partitions: each partition's producer confirms on its
    own, so such a topic gets a callback on every answer (`callback_per_answer`). And an answer the client
    refuses at once, larger than the broker's message limit: `check_answer_sizes` turns it into a dead letter
    before it is sent. A failed confirmation fails the whole batch: all its inputs are negatively acknowledged
    and answered again, so some answers may be duplicated, never lost. The callbacks run on the client's
    threads and only append to a deque or a list and step a counter (each atomic, lock-free); the serving
    loop drains the deque and acknowledges on its own thread."""

    def __init__(self, callback_per_answer: bool = False) -> None:
        self._done: deque[Confirmation] = deque()
        self.callback_per_answer = callback_per_answer
        self.pending = 0
        """Answers sent and not yet drained as confirmed or failed."""

    def send(self, send: Send, answers: Sequence[tuple[bytes, dict[str, str], str | None]],
             messages: list[Any]) -> None:
        """Send one answer (payload, properties, key: its input's key, or None) per input of `messages` through
        `send` (`pulsar_io.sender`)."""
        if len(answers) != len(messages) or not messages:
            raise ValueError(f"{len(answers)} answers for {len(messages)} inputs")
        sent = self._confirmed_when_all(messages) if self.callback_per_answer else self._confirmed_by_one(messages)
        self.pending += len(messages)
        last = len(messages) - 1
        every = self.callback_per_answer
        for index, (payload, properties, key) in enumerate(answers):
            send(payload, properties, key, sent if every or index == last else None)

    def _confirmed_by_one(self, messages: list[Any]) -> Callable[[pulsar.Result, Any], None]:
        def sent(result: pulsar.Result, _message_id: Any) -> None:
            self._done.append(Confirmation(messages, result == pulsar.Result.Ok, str(result), time.time()))
        return sent

    def _confirmed_when_all(self, messages: list[Any]) -> Callable[[pulsar.Result, Any], None]:
        """One callback for every answer of a batch: the batch is done at the last of them to come back, and
        failed when any of them failed (appended before that answer counts itself, so the last one sees it)."""
        arrived, total = itertools.count(1), len(messages)
        failures: list[str] = []

        def sent(result: pulsar.Result, _message_id: Any) -> None:
            if result != pulsar.Result.Ok:
                failures.append(str(result))
            if next(arrived) == total:
                self._done.append(Confirmation(messages, not failures, failures[0] if failures else str(result),
                                               time.time()))
        return sent

    def drain(self) -> list[Confirmation]:
        done: list[Confirmation] = []
        while self._done:
            done.append(self._done.popleft())
        self.pending -= sum(len(c.messages) for c in done)
        return done
