"""The predictor's micro-batching against the real broker: `collect` over a consumer opened by `open_inputs`
takes full batches from a backlog, a short last batch once `maxLatencyMs` passed, and nothing when idle."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pulsar
import pytest

from pulsetrain.config_model import ServingConfig
from pulsetrain.predict_io import batch_receive_policy, collect, open_inputs
from tests.conftest import PulsarURLs

pytestmark = pytest.mark.integration


@pytest.fixture
def client(pulsar_broker: PulsarURLs) -> Iterator[pulsar.Client]:
    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    yield client
    client.close()


def serving(max_batch_size: int) -> ServingConfig:
    name = uuid.uuid4().hex[:8]
    return ServingConfig(input_topic=f"collect-in-{name}", output_topic=f"collect-out-{name}",
                         subscription="predictor", max_batch_size=max_batch_size, max_latency_ms=20)


def test_the_batch_receive_policy_takes_the_rest_of_a_batch() -> None:
    policy = batch_receive_policy(serving(64)).policy()
    assert (policy.getMaxNumMessages(), policy.getTimeoutMs()) == (63, 20)
    assert batch_receive_policy(serving(1)).policy().getMaxNumMessages() == 1


@pytest.mark.parametrize("max_batch_size", [1, 64])
def test_collect_takes_full_batches_then_the_rest_then_nothing(client: pulsar.Client, max_batch_size: int) -> None:
    config = serving(max_batch_size)
    consumer = open_inputs(client, config)
    producer = client.create_producer(config.input_topic, batching_enabled=False)
    total = 2 * max_batch_size + 5
    for index in range(total):
        producer.send(str(index).encode())
    batches: list[list[int]] = []
    while batch := collect(consumer, max_batch_size, idle_poll=2.0):
        batches.append([int(m.data()) for m in batch])
        for message in batch:
            consumer.acknowledge(message)
    consumer.close()
    assert [len(b) for b in batches[:2]] == [max_batch_size, max_batch_size]
    assert all(len(b) <= max_batch_size for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(total))
