"""The ceiling under the predictor benchmark: a relay through the same broker in Python, with no model.

Why: the predictor's throughput goal is a ratio to the model called in-process, but every answer also
costs one message received, one message published and persisted, and one acknowledgement, on a broker
that shares this machine's cores. This relay does only that, with the client's cheapest calls (those the
predictor uses: `receive_batch`, `sender`, `acknowledger`, and one confirmation callback per batch, on its
last answer, as `predict_io.Inflight` does): one output message per input, carrying the input's message
ID, each input acknowledged once its output is persisted, but with no decoding, no batching wait and no
model. A predictor in Python on this broker and machine cannot answer faster, so
relay / in-process bounds the ratio the predictor can reach here.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pulsar

from bench.run import cpu_seconds
from pulsetrain.predict_io import INPUT_ID_PROPERTY
from pulsetrain.pulsar_io import acknowledger, receive_batch, sender
from tests.integration.predictor_support import send_inputs


@dataclass(frozen=True)
class Relay:
    per_second: float  # messages relayed, from the first receive to the last input acknowledged
    cpu_per_message: float  # this process's CPU-seconds (every thread: the client's too), in that window
    broker_cpu_per_message: float  # the broker's, in that window (0 when its pid is unknown)


def relay(client: pulsar.Client, payloads: Sequence[bytes], broker_pid: int | None, timeout: float = 300.0) -> Relay:
    """Relay a topic holding `payloads` to another, one output per input, acknowledged once it is persisted."""
    name = uuid.uuid4().hex[:8]
    input_topic, output_topic = f"bench-relay-in-{name}", f"bench-relay-out-{name}"
    consumer = client.subscribe(input_topic, "relay", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=1000,
                                batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(256, -1, 10))
    send_inputs(client, input_topic, payloads)
    producer = client.create_producer(output_topic, batching_enabled=True, batching_max_publish_delay_ms=1,
                                      block_if_queue_full=True, max_pending_messages=50_000)
    send, acknowledge = sender(producer), acknowledger(consumer)
    persisted: deque[list[Any]] = deque()  # batches of input IDs: appended on the client's thread, acknowledged here

    def confirm(message_ids: list[Any]) -> Callable[[pulsar.Result, Any], None]:
        def done(result: pulsar.Result, _: Any) -> None:  # the last of the batch: every earlier one is persisted
            if result == pulsar.Result.Ok:
                persisted.append(message_ids)
        return done

    relayed = acknowledged = 0
    started: float | None = None
    cpu = broker_cpu = 0.0
    deadline = time.monotonic() + timeout
    try:
        while acknowledged < len(payloads) and time.monotonic() < deadline:
            messages = receive_batch(consumer) if relayed < len(payloads) else []
            if messages:
                if started is None:
                    started, cpu, broker_cpu = time.monotonic(), time.process_time(), cpu_seconds(broker_pid)
                message_ids = [m.message_id() for m in messages]
                last = len(messages) - 1
                for index, (message, message_id) in enumerate(zip(messages, message_ids, strict=True)):
                    send(message.data(), {INPUT_ID_PROPERTY: str(message_id)}, None,
                         confirm(message_ids) if index == last else None)
                relayed += len(messages)
            elif relayed >= len(payloads):
                time.sleep(0.001)
            while persisted:
                for message_id in persisted.popleft():
                    acknowledge(message_id)
                    acknowledged += 1
        finished = time.monotonic()
        cpu, broker_cpu = time.process_time() - cpu, cpu_seconds(broker_pid) - broker_cpu
    finally:
        producer.close()
        consumer.close()
    if acknowledged < len(payloads) or started is None:
        raise RuntimeError(f"the relay moved {acknowledged} of {len(payloads)} messages in {timeout:.0f}s")
    return Relay(acknowledged / max(finished - started, 1e-9), cpu / acknowledged, broker_cpu / acknowledged)
