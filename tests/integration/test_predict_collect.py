"""The predictor's micro-batching against the real broker: `collect` over a consumer opened by `open_inputs`
takes full batches from a backlog, a short last batch at once when its inputs' `maxLatencyMs` has passed since
they were published, waits out the rest of it for fresh ones, and returns nothing when idle."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pulsar
import pytest

from pulsetrain.config_model import ServingConfig
from pulsetrain.predict_io import collect, open_inputs
from tests.conftest import PulsarURLs

pytestmark = pytest.mark.integration


@pytest.fixture
def client(pulsar_broker: PulsarURLs) -> Iterator[pulsar.Client]:
    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    yield client
    client.close()


def serving(max_batch_size: int, max_latency_ms: int = 20) -> ServingConfig:
    name = uuid.uuid4().hex[:8]
    return ServingConfig(input_topic=f"collect-in-{name}", output_topic=f"collect-out-{name}",
                         subscription="predictor", max_batch_size=max_batch_size, max_latency_ms=max_latency_ms)


@pytest.mark.parametrize("max_batch_size", [1, 64])
def test_collect_takes_full_batches_then_the_rest_then_nothing(client: pulsar.Client, max_batch_size: int) -> None:
    config = serving(max_batch_size)
    consumer = open_inputs(client, config)
    producer = client.create_producer(config.input_topic, batching_enabled=False)
    total = 2 * max_batch_size + 5
    for index in range(total):
        producer.send(str(index).encode())
    batches: list[list[int]] = []
    while batch := collect(consumer, max_batch_size, config.max_latency_ms, idle_poll=2.0):
        batches.append([int(m.data()) for m in batch])
        for message in batch:
            consumer.acknowledge(message)
    consumer.close()
    assert [len(b) for b in batches[:2]] == [max_batch_size, max_batch_size]
    assert all(len(b) <= max_batch_size for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(total))


def test_the_wait_counts_from_the_first_inputs_publish_time(client: pulsar.Client) -> None:
    """A short batch of inputs published long ago closes at once; one of a fresh input waits for more until
    `maxLatencyMs` after its publish time (and takes what arrived meanwhile)."""
    config = serving(64, max_latency_ms=1500)
    consumer = open_inputs(client, config)
    producer = client.create_producer(config.input_topic, batching_enabled=False)
    for index in range(3):
        producer.send(str(index).encode())
    time.sleep(2.0)  # their budget is spent by the time they are collected
    started = time.monotonic()
    stale = collect(consumer, 64, config.max_latency_ms, idle_poll=2.0)
    stale_took = time.monotonic() - started
    producer.send(b"3")
    late = threading.Timer(0.5, lambda: producer.send(b"4"))
    late.start()
    started = time.monotonic()
    fresh = collect(consumer, 64, config.max_latency_ms, idle_poll=2.0)
    fresh_took = time.monotonic() - started
    late.join()
    consumer.close()
    assert [int(m.data()) for m in stale] == [0, 1, 2] and stale_took < 0.5, stale_took
    assert [int(m.data()) for m in fresh] == [3, 4] and 1.2 < fresh_took < 2.5, fresh_took
