"""`pulsetrain produce` publishes what the workers decode; malformed messages reach the dead-letter topic
with their reason. Runs on the real Pulsar standalone."""

from __future__ import annotations

import logging
import subprocess
import sys
import urllib.request
import uuid

import numpy as np
import pulsar
import pytest

from pulsetrain import datasets
from pulsetrain.config_model import PulsarConfig
from pulsetrain.decode import Decoder
from pulsetrain.encode import encode_batch
from pulsetrain.pulsar_io import REASON_PROPERTY, DeadLetters, backlog, connect, subscribe
from tests.conftest import PulsarURLs

pytestmark = pytest.mark.integration


def drain(consumer: pulsar.Consumer, expected: int, timeout_ms: int = 10_000) -> list[pulsar.Message]:
    messages: list[pulsar.Message] = []
    while len(messages) < expected:
        try:
            messages.append(consumer.receive(timeout_millis=timeout_ms))
        except pulsar.Timeout:
            break
    return messages


def test_produce_command_publishes_the_test_split_of_digits(pulsar_broker: PulsarURLs) -> None:
    topic = f"persistent://public/default/digits-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(pulsar_broker.service_url, logger=logging.getLogger("pulsar"))
    consumer = client.subscribe(topic, "check", consumer_type=pulsar.ConsumerType.Exclusive,
                                initial_position=pulsar.InitialPosition.Earliest)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pulsetrain.cli", "produce", "--dataset", "digits", "--split", "test",
             "--service-url", pulsar_broker.service_url, "--topic", topic, "--format", "raw"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, result.stderr
        _, test = datasets.load("digits").split(0.2, seed=0)
        assert f"published {len(test)} raw messages" in result.stdout
        assert "messages" in result.stderr  # the progress line
        messages = drain(consumer, len(test) + 1, timeout_ms=3000)
        assert len(messages) == len(test) == 359
        batch = Decoder(test.data, num_classes=10).decode([m.data() for m in messages])
        assert batch.rejects == []
        np.testing.assert_array_equal(batch.features["pixels"], test.features["pixels"])
        np.testing.assert_array_equal(batch.labels, test.labels)
    finally:
        client.close()


def test_produce_refuses_a_file_without_schema(tmp_path: object) -> None:
    result = subprocess.run([sys.executable, "-m", "pulsetrain.cli", "produce", "--file", "x.csv", "--topic", "t"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "--file needs --config" in result.stderr


def test_malformed_messages_go_to_the_dead_letter_topic_with_reasons(pulsar_broker: PulsarURLs) -> None:
    digits = datasets.load("digits", "json")
    topic = f"persistent://public/default/mixed-{uuid.uuid4().hex[:8]}"
    config = PulsarConfig(service_url=pulsar_broker.service_url, topic=topic, subscription="trainer",
                          batch_receive_max_messages=100)
    good = encode_batch(digits.data, {"pixels": digits.features["pixels"][:20]}, digits.labels[:20])
    bad = [b"not json", b"[1, 2]", b'{"digit": 3}', b'{"pixels": [1, 2], "digit": 3}',
           b'{"pixels": ' + str([float("nan")] * 64).replace("nan", "NaN").encode() + b', "digit": 3}']
    client = connect(config)
    try:
        consumer = subscribe(client, config)
        dlq = client.subscribe(config.dlq_topic, "check", initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(topic)
        for payload in good[:10] + bad + good[10:]:
            producer.send(payload)
        messages = drain(consumer, len(good) + len(bad))
        assert len(messages) == len(good) + len(bad)
        decoded = Decoder(digits.data, num_classes=10).decode([m.data() for m in messages])
        assert len(decoded) == len(good)
        dead = DeadLetters.open(client, config)
        for index, reason in decoded.rejects:
            dead.send(messages[index], reason)
        dead.close()
        for message in messages:
            consumer.acknowledge(message)
        letters = drain(dlq, len(bad) + 1, timeout_ms=3000)
        assert sorted(m.data() for m in letters) == sorted(bad)
        reasons = [m.properties()[REASON_PROPERTY] for m in letters]
        assert all(reasons) and len(set(reasons)) == len(bad)  # a specific reason for each kind
        assert any("NaN" in r or "non-finite" in r for r in reasons)
        assert any("missing" in r for r in reasons)
    finally:
        client.close()


def test_a_refused_dead_letter_copy_sends_its_original_back(pulsar_broker: PulsarURLs) -> None:
    """The copy is refused (its producer is closed): the original is negatively acknowledged, so the broker
    redelivers it, instead of holding it unacknowledged until the consumer goes away."""
    topic = f"persistent://public/default/refused-{uuid.uuid4().hex[:8]}"
    config = PulsarConfig(service_url=pulsar_broker.service_url, topic=topic, subscription="trainer",
                          batch_receive_max_messages=100)
    client = connect(config)
    try:
        consumer = client.subscribe(topic, "trainer", consumer_type=pulsar.ConsumerType.Shared,
                                    initial_position=pulsar.InitialPosition.Earliest,
                                    negative_ack_redelivery_delay_ms=100)
        client.create_producer(topic).send(b"not json")
        message = consumer.receive(timeout_millis=10_000)
        dead = DeadLetters.open(client, config)
        dead.producer.close()
        dead.send(message, "json: invalid")
        assert dead.acknowledge_persisted(consumer) == 0
        again = consumer.receive(timeout_millis=10_000)
        assert again.data() == b"not json" and again.message_id() == message.message_id()
        assert again.redelivery_count() == 1
    finally:
        client.close()


def test_backlog_is_read_from_the_admin_api(pulsar_broker: PulsarURLs) -> None:
    topic = f"persistent://public/default/backlog-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(pulsar_broker.service_url)
    try:
        client.subscribe(topic, "trainer", initial_position=pulsar.InitialPosition.Earliest).close()
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(5):
            producer.send(b"%d" % i)
        assert backlog(pulsar_broker.admin_url, topic, "trainer") == 5
        assert backlog(pulsar_broker.admin_url, topic, "no-such-subscription") is None
        assert backlog("http://127.0.0.1:9", topic, "trainer") is None  # unreachable: None, not an error
    finally:
        client.close()


def test_backlog_of_a_partitioned_topic_named_tenant_namespace_topic(pulsar_broker: PulsarURLs) -> None:
    name = f"public/default/backlog-{uuid.uuid4().hex[:8]}"
    request = urllib.request.Request(f"{pulsar_broker.admin_url}/admin/v2/persistent/{name}/partitions", data=b"3",
                                     method="PUT", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()
    client = pulsar.Client(pulsar_broker.service_url)
    try:
        client.subscribe(name, "trainer", initial_position=pulsar.InitialPosition.Earliest).close()
        producer = client.create_producer(name, batching_enabled=False)
        for i in range(7):
            producer.send(b"%d" % i, partition_key=str(i))  # spread over the partitions
        assert backlog(pulsar_broker.admin_url, name, "trainer") == 7
    finally:
        client.close()
