"""The ceiling under the predictor benchmark: a relay through the same broker in Python, with no model.

Why: the predictor's throughput goal is a ratio to the model called in-process, but every answer also
costs one message received, one message published and persisted, and one acknowledgement, on a broker
that shares this machine's cores. This relay does only that, with the client's cheapest calls (those the
predictor uses: `receive_batch`, `sender`, `acknowledger`): one output message per input, carrying the
input's message ID, each input acknowledged once its output is persisted, but with no decoding, no
batching wait and no model. A predictor in Python on this broker and machine cannot answer faster, so
relay / in-process bounds the ratio the predictor can reach here.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import pulsar

from pulsetrain.pulsar_io import acknowledger, receive_batch, sender
from tests.integration.predictor_support import send_inputs

ID_PROPERTY = "pulsetrain.inputMessageId"


def relay_rate(client: pulsar.Client, payloads: Sequence[bytes], timeout: float = 300.0) -> float:
    """Messages/s relayed from a topic holding `payloads` to another: from the first receive to the last
    output persisted (and its input acknowledged)."""
    name = uuid.uuid4().hex[:8]
    input_topic, output_topic = f"bench-relay-in-{name}", f"bench-relay-out-{name}"
    consumer = client.subscribe(input_topic, "relay", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=1000,
                                batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(256, -1, 10))
    send_inputs(client, input_topic, payloads)
    producer = client.create_producer(output_topic, batching_enabled=True, batching_max_publish_delay_ms=1,
                                      block_if_queue_full=True, max_pending_messages=50_000)
    send, acknowledge = sender(producer), acknowledger(consumer)
    persisted: deque[Any] = deque()  # appended on the client's thread, acknowledged on this one

    def confirm(message_id: Any) -> Callable[[pulsar.Result, Any], None]:
        def done(result: pulsar.Result, _: Any) -> None:
            if result == pulsar.Result.Ok:
                persisted.append(message_id)
        return done

    relayed = acknowledged = 0
    started: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while acknowledged < len(payloads) and time.monotonic() < deadline:
            if relayed < len(payloads):
                for message in receive_batch(consumer):
                    started = started or time.monotonic()
                    message_id = message.message_id()
                    send(message.data(), {ID_PROPERTY: str(message_id)}, None, confirm(message_id))
                    relayed += 1
            else:
                time.sleep(0.001)
            while persisted:
                acknowledge(persisted.popleft())
                acknowledged += 1
        finished = time.monotonic()
    finally:
        producer.close()
        consumer.close()
    if acknowledged < len(payloads) or started is None:
        raise RuntimeError(f"the relay moved {acknowledged} of {len(payloads)} messages in {timeout:.0f}s")
    return acknowledged / max(finished - started, 1e-9)
