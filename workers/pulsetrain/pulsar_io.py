"""Pulsar clients for the workers and the producer: authentication, the shared consumer, dead letters.

One place decides how pulsetrain talks to Pulsar, so the trainer, the producer and later the
predictor agree: one shared (or key-shared) subscription for all workers, ack timeout off (messages
are acknowledged only after the checkpoint that contains them is durable), a bounded receiver queue
so no worker hoards messages, and malformed messages republished to the dead-letter topic with the
reason as a property. Secrets are read when connecting and never logged.

Why dead letters are sent asynchronously: a synchronous send through a batching producer waits out the
batching delay, 14 ms per message against the test bed, on the thread that trains or predicts, so a
stream with one malformed message in a hundred would spend more time dead-lettering than training. The
copy is sent with `send_async`; the client's callback only notes that the broker persisted it (it calls
nothing on the client, to stay off the client's own threads), and the owner acknowledges the original
on its own thread (`acknowledge_persisted`). A copy the broker refused leaves its original unacknowledged, so it is
redelivered and dead-lettered again: at least once.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import _pulsar
import pulsar

from pulsetrain.config import full_topic
from pulsetrain.config_model import PulsarConfig, TlsAuth, TokenAuth

log = logging.getLogger(__name__)

REASON_PROPERTY = "pulsetrain.reason"
ORIGINAL_ID_PROPERTY = "pulsetrain.originalMessageId"
ORIGINAL_TOPIC_PROPERTY = "pulsetrain.originalTopic"


def lost_connection(service_url: str) -> str:
    """What the trainer and the predictor report while their client has lost the broker and reconnects."""
    return f"lost the connection to Pulsar at {service_url}; the client is reconnecting"


def connect(config: PulsarConfig, environ: Mapping[str, str] | None = None) -> pulsar.Client:
    """A client for `config.service_url`, with token or TLS authentication when configured."""
    auth: pulsar.Authentication | None = None
    if isinstance(config.authentication, TokenAuth):
        auth = pulsar.AuthenticationToken(config.authentication.read(environ).reveal())
    elif isinstance(config.authentication, TlsAuth):
        auth = pulsar.AuthenticationTLS(config.authentication.cert_file, config.authentication.key_file)
    log.info("connecting to %s (authentication: %s)", config.service_url,
             type(config.authentication).__name__ if config.authentication else "none")
    # The client logs through its own console logger: a Python logger makes the client's threads call
    # into the interpreter while it shuts down, which aborts the process ("terminate called ...").
    return pulsar.Client(
        config.service_url,
        authentication=auth,
        tls_trust_certs_file_path=config.tls_trust_certs_file,
        tls_validate_hostname=config.tls_validate_hostname,
        operation_timeout_seconds=30,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn),
    )


def subscribe(client: pulsar.Client, config: PulsarConfig) -> pulsar.Consumer:
    """The worker's consumer on the pipeline's one shared subscription (ack timeout off)."""
    kind = pulsar.ConsumerType.KeyShared if config.subscription_type == "KeyShared" else pulsar.ConsumerType.Shared
    position = (pulsar.InitialPosition.Latest if config.initial_position == "Latest"
                else pulsar.InitialPosition.Earliest)
    return client.subscribe(
        config.topic,
        config.subscription,
        consumer_type=kind,
        initial_position=position,
        receiver_queue_size=config.receiver_queue_size,
        batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(
            config.batch_receive_max_messages, -1, config.batch_receive_timeout_ms
        ),
    )


def receive_batch(consumer: pulsar.Consumer) -> list[Any]:
    """`consumer.batch_receive()` less the Python wrapper it builds around each message: the binding's own
    messages, which have the same `data()`, `message_id()`, `properties()`, `partition_key()` and
    `topic_name()`. Part of what `bench.receive_bench` measures."""
    return list(consumer._consumer.batch_receive())


def acknowledger(consumer: pulsar.Consumer) -> Callable[[Any], None]:
    """The binding's own `acknowledge` (of a message ID from `receive_batch`, or a message from `receiver`),
    without the wrapper's type dispatch in front of it: called once per trained message at every commit, and
    once per answered input."""
    ack: Callable[[Any], None] = consumer._consumer.acknowledge
    return ack


def receiver(consumer: pulsar.Consumer) -> Callable[[int], Any]:
    """The binding's own `receive(timeout_ms)`: one message, without the wrapper `consumer.receive` builds around
    it (the binding's message has the same `data()`, `message_id()`, `partition_key()`, `publish_timestamp()`;
    raises `pulsar.Timeout`; a zero timeout returns at once). The predictor's per-input receive."""
    receive: Callable[[int], Any] = consumer._consumer.receive
    return receive


Send = Callable[[bytes, Mapping[str, str], str | None, Callable[[pulsar.Result, Any], None] | None], None]


def sender(producer: pulsar.Producer) -> Send:
    """`producer.send_async(payload, callback, properties=..., partition_key=...)` without the wrapper's
    argument checks and ten optional fields in front of it (5 of the predictor's 17 µs per answer there, as
    profiled): `send(payload, properties, key or None, callback or None)`."""
    binding = producer._producer

    def send(payload: bytes, properties: Mapping[str, str], key: str | None,
             callback: Callable[[pulsar.Result, Any], None] | None) -> None:
        builder = _pulsar.MessageBuilder()
        builder.content(payload)
        for name, value in properties.items():
            builder.property(name, value)
        if key:
            builder.partition_key(key)
        binding.send_async(builder.build(), callback)
    return send


@dataclass
class DeadLetters:
    """Republishes malformed messages to the dead-letter topic with the reason, without waiting (see the module)."""

    producer: pulsar.Producer
    source_topic: str
    _persisted: deque[Any] = field(default_factory=deque)  # appended on the client's thread, drained on ours
    _refused: deque[Any] = field(default_factory=deque)  # the same, for copies the broker refused

    @classmethod
    def open(cls, client: pulsar.Client, config: PulsarConfig) -> DeadLetters:
        producer = client.create_producer(config.dlq_topic, batching_enabled=True, block_if_queue_full=True)
        return cls(producer, config.topic)

    def send(self, message: Any, reason: str, acknowledge: Any = None) -> None:
        """Publish a copy of `message` (a `pulsar.Message`, or the binding's own from `receive_batch`): same
        payload, original properties and key, plus the reason, without waiting;
        `acknowledge` (the message or its ID; default the message) is what `acknowledge_persisted` acknowledges
        once the broker has persisted the copy."""
        properties = dict(message.properties())
        properties[REASON_PROPERTY] = reason
        properties[ORIGINAL_ID_PROPERTY] = str(message.message_id())
        properties[ORIGINAL_TOPIC_PROPERTY] = message.topic_name() or self.source_topic
        key = message.partition_key()
        token = message if acknowledge is None else acknowledge

        def done(result: pulsar.Result, _: Any) -> None:  # the client's thread: no calls into the client here
            if result == pulsar.Result.Ok:
                self._persisted.append(token)
            else:
                self._refused.append(token)
                log.warning("the dead-letter topic refused a copy (%s); the original will be redelivered", result)

        self.producer.send_async(message.data(), done, properties=properties, partition_key=key or None)

    def acknowledge_persisted(self, consumer: pulsar.Consumer) -> int:
        """On the owner's thread: acknowledge, with `consumer`, the originals whose copies the broker has persisted
        since the last call, and negatively acknowledge those whose copies it refused (they come back after the
        consumer's redelivery delay and are dead-lettered again); returns how many were acknowledged."""
        done = 0
        while self._persisted:
            consumer.acknowledge(self._persisted.popleft())
            done += 1
        while self._refused:
            consumer.negative_acknowledge(self._refused.popleft())
        return done

    def flush(self) -> None:
        """Wait until every copy sent is persisted (or refused)."""
        self.producer.flush()

    def close(self) -> None:
        self.flush()
        self.producer.close()


def backlog(admin_url: str, topic: str, subscription: str, timeout: float = 5.0,
            token: str | None = None) -> int | None:
    """The subscription's backlog from the admin REST API (summed over the partitions of a partitioned topic),
    sent with `token` as a bearer token when given; None when it cannot be read."""
    kind, name = full_topic(topic).split("://", 1)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    stats = None
    for endpoint in ("stats", "partitioned-stats"):  # a partitioned topic has no stats of its own: 404
        request = urllib.request.Request(f"{admin_url.rstrip('/')}/admin/v2/{kind}/{name}/{endpoint}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                stats = json.load(response)
            break
        except urllib.error.HTTPError as exc:
            if exc.code != 404 or endpoint == "partitioned-stats":
                log.debug("backlog of %s unavailable: %s", topic, exc)
                return None
        except (OSError, ValueError) as exc:
            log.debug("backlog of %s unavailable: %s", topic, exc)
            return None
    value = (stats or {}).get("subscriptions", {}).get(subscription, {}).get("msgBacklog")
    return int(value) if isinstance(value, int) else None
