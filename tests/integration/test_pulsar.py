"""Pulsar semantics the trainer relies on, checked against the real standalone broker.

Shared subscriptions split a topic between consumers; a consumer that dies with unacknowledged
messages gets them redelivered to the others; a message negatively acknowledged too often goes to the
dead-letter topic; and the admin API's backlog counts what is not yet acknowledged.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator

import pulsar
import pytest
import requests

from tests.conftest import PulsarURLs
from tests.support import wait_until

pytestmark = pytest.mark.integration

NAMESPACE = "public/default"


def unique_topic(name: str) -> str:
    return f"persistent://{NAMESPACE}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(pulsar_broker: PulsarURLs) -> Iterator[pulsar.Client]:
    # the client library's own log goes through `logging` (pytest shows it on failure), not stdout
    c = pulsar.Client(pulsar_broker.service_url, operation_timeout_seconds=30, logger=logging.getLogger("pulsar"))
    yield c
    c.close()


def produce(client: pulsar.Client, topic: str, payloads: list[bytes]) -> None:
    producer = client.create_producer(topic, batching_enabled=False)
    for payload in payloads:
        producer.send(payload)
    producer.close()


def receive_or_none(consumer: pulsar.Consumer, timeout_ms: int) -> pulsar.Message | None:
    try:
        return consumer.receive(timeout_millis=timeout_ms)
    except pulsar.Timeout:
        return None


def test_shared_subscription_splits_messages_between_two_consumers(client: pulsar.Client) -> None:
    topic = unique_topic("shared")
    # small receiver queues: neither consumer can take the whole backlog in one go
    consumers = [
        client.subscribe(topic, "workers", consumer_type=pulsar.ConsumerType.Shared, receiver_queue_size=5,
                         consumer_name=f"c{i}")
        for i in range(2)
    ]
    sent = [f"msg-{i}".encode() for i in range(60)]
    produce(client, topic, sent)

    got: list[list[bytes]] = [[], []]
    deadline = time.monotonic() + 30
    while sum(map(len, got)) < len(sent) and time.monotonic() < deadline:
        for i, consumer in enumerate(consumers):
            msg = receive_or_none(consumer, 100)
            if msg is not None:
                got[i].append(msg.data())
                consumer.acknowledge(msg)
    for consumer in consumers:
        assert receive_or_none(consumer, 500) is None, "a message arrived twice or was left over"
        consumer.close()

    assert got[0] and got[1], f"one consumer got nothing: {len(got[0])} / {len(got[1])}"
    assert sorted(got[0] + got[1]) == sorted(sent)


# A consumer in its own process, so that it can die as a crashed worker would. Its lines that start with
# "@@ " are for the test (the client library logs to stdout too).
CHILD_CONSUMER = textwrap.dedent(
    """
    import sys, pulsar
    service_url, topic, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = pulsar.Client(service_url)
    consumer = client.subscribe(topic, "workers", consumer_type=pulsar.ConsumerType.Shared,
                                consumer_name="doomed")
    print("@@ subscribed", flush=True)
    for _ in range(expected):
        print("@@", consumer.receive(timeout_millis=30000).data().decode(), flush=True)  # never acked
    print("@@ holding", flush=True)
    sys.stdin.read()  # until killed
    """
)


def test_messages_of_a_killed_consumer_are_redelivered_to_the_other(
    client: pulsar.Client, pulsar_broker: PulsarURLs
) -> None:
    topic = unique_topic("redeliver")
    sent = [f"job-{i}" for i in range(10)]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_CONSUMER, pulsar_broker.service_url, topic, str(len(sent))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert child.stdout is not None
    stdout = child.stdout

    def said() -> str:
        while line := stdout.readline():
            if line.startswith("@@ "):
                return line[3:].strip()
        raise AssertionError(f"the consumer process ended (rc {child.wait(timeout=10)})")

    try:
        assert said() == "subscribed"
        produce(client, topic, [s.encode() for s in sent])
        held = [said() for _ in sent]
        assert said() == "holding"
        assert sorted(held) == sorted(sent)

        survivor = client.subscribe(topic, "workers", consumer_type=pulsar.ConsumerType.Shared,
                                    consumer_name="survivor")
        # the doomed consumer holds every message unacknowledged: nothing for the survivor yet
        assert receive_or_none(survivor, 1500) is None

        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)

        redelivered: list[str] = []
        while len(redelivered) < len(sent):
            msg = receive_or_none(survivor, 30000)
            assert msg is not None, f"only {len(redelivered)} of {len(sent)} redelivered"
            redelivered.append(msg.data().decode())
            survivor.acknowledge(msg)
        assert sorted(redelivered) == sorted(sent)
        assert receive_or_none(survivor, 500) is None
        survivor.close()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)


def test_negatively_acknowledged_message_lands_in_the_dead_letter_topic(client: pulsar.Client) -> None:
    topic = unique_topic("poison")
    dlq_topic = f"{topic}-DLQ"
    max_redeliver = 2
    # subscribe to the DLQ first so that its copy is not missed
    dlq = client.subscribe(dlq_topic, "dlq-check", consumer_type=pulsar.ConsumerType.Shared)
    consumer = client.subscribe(
        topic, "workers", consumer_type=pulsar.ConsumerType.Shared,
        negative_ack_redelivery_delay_ms=100,
        dead_letter_policy=pulsar.ConsumerDeadLetterPolicy(max_redeliver, dead_letter_topic=dlq_topic),
    )
    payload = f"poison-{uuid.uuid4().hex}".encode()
    produce(client, topic, [payload])

    deliveries: list[int] = []
    while True:
        msg = receive_or_none(consumer, 5000)
        if msg is None:
            break
        assert msg.data() == payload
        deliveries.append(msg.redelivery_count())
        consumer.negative_acknowledge(msg)
    assert deliveries == list(range(max_redeliver + 1)), deliveries

    dead = dlq.receive(timeout_millis=30000)
    assert dead.data() == payload
    dlq.acknowledge(dead)
    consumer.close()
    dlq.close()


def test_admin_stats_report_the_unacknowledged_backlog(
    client: pulsar.Client, pulsar_broker: PulsarURLs
) -> None:
    topic = unique_topic("backlog")
    stats_url = f"{pulsar_broker.admin_url}/admin/v2/persistent/{NAMESPACE}/{topic.rsplit('/', 1)[1]}/stats"
    consumer = client.subscribe(topic, "workers", consumer_type=pulsar.ConsumerType.Shared)
    produce(client, topic, [f"m-{i}".encode() for i in range(7)])

    def backlog() -> int:
        response = requests.get(stats_url, timeout=10)
        response.raise_for_status()
        return int(response.json()["subscriptions"]["workers"]["msgBacklog"])

    wait_until(lambda: backlog() == 7, 15, "a backlog of 7")
    received = [consumer.receive(timeout_millis=10000) for _ in range(7)]
    for msg in received[:3]:
        consumer.acknowledge(msg)
    wait_until(lambda: backlog() == 4, 15, "a backlog of 4 after acknowledging 3 of 7")
    stats = requests.get(stats_url, timeout=10).json()
    assert stats["msgInCounter"] == 7
    assert stats["subscriptions"]["workers"]["unackedMessages"] == 4
    consumer.close()
