"""The worker's stream of rows: receive from Pulsar, decode, route rejects and duplicates, buffer.

Everything that is decided per message happens here, on the host, before TensorFlow sees a batch:
malformed messages go to the dead-letter topic and are acknowledged once their copy is persisted
(asynchronously: see `pulsar_io.DeadLetters`); messages already inside a durable
checkpoint (redelivered after a restart) are acknowledged and skipped; good rows wait in a buffer,
each with its message ID, until a training step takes them. Nothing good is acknowledged here: that
happens after the checkpoint containing it is committed. If Pulsar is unreachable, `fill` keeps
retrying with back-off and reports it, so the training loop keeps stepping with its peers. A receive
thread receives and decodes a few batches ahead, overlapping with the training step (which releases
the GIL); everything that touches the ledger, acknowledges or dead-letters stays on the loop's thread.

Why `connection_lost` and `rewind`: when the consumer loses its broker (a broker restart, a network cut),
the broker hands every unacknowledged message of that consumer to the subscription again, possibly to
another worker, which cannot know that a peer already trained it. So a lost connection is reported
(sticky until read) and the trainer rolls the whole gang back to the last commit; `rewind` then drops
everything received and hands this consumer's unacknowledged messages back to the subscription by closing
the consumer and subscribing again. Not `redeliver_unacknowledged_messages()`: the client keeps the
messages already in its receiver queue and hands them out too, while the broker redelivers them to any
consumer, so 90 of 200 came out twice in a test here. A consumer found disconnected at a rewind is kept
(the broker has its messages back already, and the client empties its queue when it reconnects), but a
stale message could slip out of its queue just before that: once it is connected again, it reports a
lost connection once more, so the gang rolls back again and the consumer is replaced while connected.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pulsar

from pulsetrain.config import ConfigError, WorkerConfig
from pulsetrain.decode import DecodedBatch, Decoder
from pulsetrain.digest import digests
from pulsetrain.hooks import load_hook
from pulsetrain.ledger import Ledger
from pulsetrain.preprocessing import preprocess_batch
from pulsetrain.pulsar_io import DeadLetters, acknowledger, connect, lost_connection, receive_batch, subscribe

log = logging.getLogger(__name__)
PREFETCH_BATCHES = 4  # decoded batches the receive thread may hold ahead of the training loop
# The broker stops dispatching to a consumer holding 50,000 unacknowledged messages, and to a whole
# subscription holding 200,000 (Pulsar's defaults of maxUnackedMessagesPerConsumer/PerSubscription). A gang
# that checkpoints rarely would wait for data that never comes (a continuous run for ever), so a commit is
# due well before either: see `unacknowledged_limit` and `gang_flags.SUBSCRIPTION_UNACKED_LIMIT`.
BROKER_UNACKED_PER_CONSUMER = 50_000


@dataclass(frozen=True)
class Received:
    """One received batch, decoded by the receive thread: messages, their IDs, digests, decoded rows."""

    messages: list[Any]  # the binding's messages (see `pulsar_io.receive_batch`)
    message_ids: list[Any]
    ids: list[bytes]  # the same, serialized: what the ledger keeps
    digests: npt.NDArray[np.int64]
    decoded: DecodedBatch


@dataclass
class Rows:
    """Decoded rows ready for a step: flat features, labels, digests and the messages they came from."""

    features: npt.NDArray[np.float32]
    labels: npt.NDArray[Any]
    digests: npt.NDArray[np.int64]
    ids: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


def unpack(messages: list[Any]) -> tuple[list[bytes], list[Any], list[bytes], npt.NDArray[np.int64]]:
    """A received batch's payloads, message IDs, serialized IDs (what the ledger keeps) and digests."""
    payloads = [m.data() for m in messages]
    message_ids = [m.message_id() for m in messages]
    return payloads, message_ids, [i.serialize() for i in message_ids], digests(payloads)


def flatten(config: WorkerConfig, features: dict[str, npt.NDArray[Any]], rows: int) -> npt.NDArray[np.float32]:
    """All features of `rows` records as one `[rows, feature_size]` float32 matrix, in declared order."""
    parts = [np.asarray(features[f.name], dtype=np.float32).reshape(rows, f.size) for f in config.data.features]
    if len(parts) == 1:
        return parts[0]  # one float32 feature: a view, no copy
    return np.concatenate(parts, axis=1) if parts else np.zeros((rows, 0), np.float32)


class Source:
    def __init__(self, config: WorkerConfig, ledger: Ledger,
                 on_reject: Callable[[str], None], on_received: Callable[[int], None]) -> None:
        self.config = config
        self.decoder = Decoder.from_config(config)
        self.preprocess = load_hook(config.model.preprocess, "model.preprocess") if config.model.preprocess else None
        self.ledger, self.on_reject, self.on_received = ledger, on_reject, on_received
        self.client: pulsar.Client | None = None
        self.consumer: pulsar.Consumer | None = None
        self.dead_letters: DeadLetters | None = None
        self.pending: dict[bytes, pulsar.MessageId] = {}
        self.buffer: list[Rows] = []
        self.buffered = 0
        self.last_message_at = time.monotonic()
        self.unavailable: str | None = None
        self.partitions = 1  # of the topic, read on connecting: how many batch entries may be under way at once
        self._retry_at = 0.0
        self._backoff = 1.0
        self._received: queue.Queue[Received] = queue.Queue()
        self._closing = threading.Event()  # the running receive thread's stop signal (one per thread)
        self._lost = threading.Event()  # the consumer was seen disconnected since the last rewind
        self._stale = False  # rewound while disconnected: replace the consumer once it is connected again
        self._receiver: threading.Thread | None = None

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> bool:
        if self.consumer is not None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        pulsar_cfg = self.config.source.pulsar
        doing = "connecting"
        try:
            self.client = connect(pulsar_cfg)
            doing = f"subscribing to {pulsar_cfg.topic} as {pulsar_cfg.subscription!r}"
            self.consumer = subscribe(self.client, pulsar_cfg)
            self.partitions = len(self.client.get_topic_partitions(pulsar_cfg.topic)) or 1
            doing = f"opening the dead-letter topic {pulsar_cfg.dlq_topic}"
            self.dead_letters = DeadLetters.open(self.client, pulsar_cfg)
        except ConfigError:  # a token file missing or empty: waiting will not fix it, the worker exits 2
            self.close()
            raise
        except Exception as exc:  # the client raises its own exception types for every network failure
            self.unavailable = (f"Pulsar at {pulsar_cfg.service_url} unreachable ({doing}): {exc}; "
                                f"retrying in {self._backoff:.0f}s")
            log.warning(self.unavailable)
            self.close()
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 60.0)
            return False
        self.unavailable, self._backoff, self._stale = None, 1.0, False
        self.last_message_at = time.monotonic()
        self._start_receiver()
        return True

    def _start_receiver(self) -> None:
        assert self.consumer is not None
        # a fresh stop signal per thread: one that outlived its join (stuck in the client) still stops
        self._closing = threading.Event()
        self._receiver = threading.Thread(target=self._receive_loop, args=(self.consumer, self._closing),
                                          name="pulsar-receive", daemon=True)
        self._receiver.start()

    def _stop_receiver(self) -> None:
        self._closing.set()
        if self._receiver is not None:
            self._receiver.join(timeout=5)
            self._receiver = None

    def _check_connection(self, consumer: pulsar.Consumer) -> bool:
        """Whether the consumer is connected; a disconnection is remembered until `connection_lost`."""
        if consumer.is_connected():
            return True
        self._lost.set()
        return False

    def connection_lost(self) -> bool:
        """True once after the consumer was seen disconnected (its unacknowledged messages go back to
        the subscription): the gang must roll back to its last commit before training anything else."""
        lost = self._lost.is_set()
        self._lost.clear()
        return lost

    # -- receiving ----------------------------------------------------------------------------
    def _receive_loop(self, consumer: pulsar.Consumer, closing: threading.Event) -> None:
        """Background thread: receive and decode batches ahead of the training loop (bounded)."""
        while not closing.is_set():
            if self._received.qsize() >= PREFETCH_BATCHES:
                self._check_connection(consumer)
                closing.wait(0.002)
                continue
            try:
                messages = receive_batch(consumer)
            except pulsar.Timeout:
                self._check_connection(consumer)
                continue
            except Exception as exc:  # the client raises its own types; it reconnects by itself
                if closing.is_set():
                    return
                self._lost.set()
                self.unavailable = f"receive failed: {exc}"
                log.warning(self.unavailable)
                closing.wait(1.0)
                continue
            self._check_connection(consumer)  # before any message received after a reconnect is queued
            if messages and not closing.is_set():  # a rewind drops what a stopping thread still received
                payloads, message_ids, ids, sums = unpack(messages)
                self._received.put(Received(messages, message_ids, ids, sums, self.decoder.decode(payloads)))

    def fill(self, wanted: int, wait: bool = True) -> None:
        """Move received batches into the buffer until `wanted` rows are there or the batch timeout passes;
        without `wait`, only what has already been received (the trainer's choice while its peers have rows:
        a worker short of data should not hold up a step that trains theirs).

        While Pulsar is unreachable the reason is in `unavailable` and the idle clock stands still: an
        outage is not the end of a bounded stream, so the gang waits it out (and says so)."""
        connected = self._connect()
        self._settle_dead_letters()
        if connected and self._stale and self.consumer is not None and self.consumer.is_connected():
            self._lost.set()  # back after a rewind while disconnected: roll back once more (see the module)
        if connected and self.consumer is not None and not self._check_connection(self.consumer):
            if not self.unavailable:
                self.unavailable = lost_connection(self.config.source.pulsar.service_url)
                log.warning(self.unavailable)
        elif connected and self.unavailable:
            log.info("Pulsar is reachable again")
            self.unavailable = None
        if self.unavailable:
            self.last_message_at = time.monotonic()
        if self.buffered >= wanted or not connected:
            return
        deadline = time.monotonic() + (self.config.source.pulsar.batch_receive_timeout_ms / 1000 if wait else 0.0)
        while self.buffered < wanted:
            try:
                item = self._received.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            self.unavailable = None
            self.last_message_at = time.monotonic()
            self.on_received(len(item.messages))
            self._admit(item)

    def _admit(self, item: Received) -> None:
        assert self.consumer is not None and self.dead_letters is not None
        duplicates, skip = self.ledger.seen(item.ids, also_pending=self.pending)
        for index in duplicates:
            self.consumer.acknowledge(item.message_ids[index])  # already inside a committed checkpoint
        batch = item.decoded
        for index, reason in batch.rejects:
            if index not in skip:
                self.dead_letters.send(item.messages[index], reason, acknowledge=item.message_ids[index])
                self.on_reject(reason)
        if skip or batch.rejects:
            keep = [row for row, index in enumerate(batch.valid_index.tolist()) if index not in skip]
            if not keep:
                return
            rows_of = np.asarray(keep)
            sources = [int(batch.valid_index[row]) for row in keep]
            features = {name: values[rows_of] for name, values in batch.features.items()}
            labels, digests = batch.labels[rows_of], item.digests[sources]
            ids, message_ids = [item.ids[i] for i in sources], [item.message_ids[i] for i in sources]
        else:  # the usual batch: every message new and well formed, nothing to select or copy
            sources = None
            features, labels, digests = batch.features, batch.labels, item.digests
            ids, message_ids = item.ids, item.message_ids
        if self.preprocess is not None:
            done = preprocess_batch(self.preprocess, features, self.config.data)
            for row, reason in done.rejects:
                index = row if sources is None else sources[row]
                self.dead_letters.send(item.messages[index], reason, acknowledge=item.message_ids[index])
                self.on_reject(reason)
            if done.rejects:
                if not done.kept:
                    return
                labels, digests = labels[done.kept], digests[done.kept]
                ids, message_ids = [ids[r] for r in done.kept], [message_ids[r] for r in done.kept]
            features = done.features
        self.pending.update(zip(ids, message_ids, strict=True))
        rows = Rows(flatten(self.config, features, len(ids)), labels, digests, ids)
        self.buffer.append(rows)
        self.buffered += len(rows)

    def _settle_dead_letters(self) -> None:
        """Acknowledge the malformed messages whose dead-letter copies the broker has persisted since."""
        if self.dead_letters is not None and self.consumer is not None:
            self.dead_letters.acknowledge_persisted(self.consumer)

    @property
    def unacknowledged(self) -> int:
        """Messages received and admitted but not acknowledged yet (buffered or trained since the last commit)."""
        return len(self.pending)

    def unacknowledged_limit(self) -> int:
        """How many `unacknowledged` messages make a commit due: the broker's per-consumer limit less what the
        client and the receive thread may hold on top (its receiver queue, the prefetched batches), with a
        margin; at least one receive batch."""
        pulsar_cfg = self.config.source.pulsar
        held = pulsar_cfg.receiver_queue_size + PREFETCH_BATCHES * pulsar_cfg.batch_receive_max_messages
        return max(pulsar_cfg.batch_receive_max_messages, int(0.8 * BROKER_UNACKED_PER_CONSUMER) - held)

    def idle_for(self) -> float:
        return time.monotonic() - self.last_message_at

    # -- taking rows --------------------------------------------------------------------------
    def take(self, limit: int) -> Rows:
        """Up to `limit` buffered rows (possibly none), oldest first."""
        taken: list[Rows] = []
        count = 0
        while self.buffer and count < limit:
            head = self.buffer[0]
            room = limit - count
            if len(head) <= room:
                taken.append(self.buffer.pop(0))
                count += len(head)
            else:
                taken.append(Rows(head.features[:room], head.labels[:room], head.digests[:room], head.ids[:room]))
                self.buffer[0] = Rows(head.features[room:], head.labels[room:], head.digests[room:], head.ids[room:])
                count += room
        self.buffered -= count
        if not taken:
            size = self.config.data.feature_size
            return Rows(np.zeros((0, size), np.float32), np.zeros((0,), np.int64), np.zeros((0,), np.int64))
        if len(taken) == 1:
            return taken[0]
        return Rows(np.concatenate([t.features for t in taken]), np.concatenate([t.labels for t in taken]),
                    np.concatenate([t.digests for t in taken]), [i for t in taken for i in t.ids])

    def buffered_features(self) -> npt.NDArray[np.float32]:
        size = self.config.data.feature_size
        return np.concatenate([r.features for r in self.buffer]) if self.buffer else np.zeros((0, size), np.float32)

    def acknowledge(self, ids: list[bytes]) -> int:
        """Acknowledge messages whose checkpoint is committed."""
        if self.consumer is None:
            return 0
        done, acknowledge, pending = 0, acknowledger(self.consumer), self.pending
        for message_id in ids:
            mid = pending.pop(message_id, None)
            if mid is not None:
                acknowledge(mid)
                done += 1
        return done

    def rewind(self, ledger: Ledger) -> int:
        """After a gang rollback: forget every received message (buffered, prefetched or trained since
        the last commit), take `ledger` (the last commit's, merged over all workers), and hand this
        consumer's unacknowledged messages back to the subscription (see the module docstring for how).
        Returns the number of rows dropped."""
        self.ledger = ledger
        dropped = len(self.pending)
        self._stop_receiver()
        while not self._received.empty():
            self._received.get_nowait()
        self.buffer, self.buffered, self.pending = [], 0, {}
        self.last_message_at = time.monotonic()
        if self.consumer is None:
            return dropped  # closed after a failed connection: the broker has its messages back
        if not self.consumer.is_connected():
            self._stale = True  # its messages are back with the broker already
        elif not self._resubscribe():
            return dropped  # closed: `fill` connects again, with back-off
        self._start_receiver()
        return dropped

    def _resubscribe(self) -> bool:
        """Close the consumer (the broker hands its unacknowledged messages to the subscription, and what its
        receiver queue held goes with it) and subscribe again; False, with everything closed, if that fails."""
        assert self.client is not None and self.consumer is not None
        try:
            self.consumer.close()
            self.consumer = subscribe(self.client, self.config.source.pulsar)
        except Exception as exc:  # the broker went away meanwhile: start over, as after an outage
            log.warning("subscribing again after a rollback failed (%s); reconnecting", exc)
            self.close()
            return False
        self._stale = False
        return True

    def close(self) -> None:
        """Stop receiving; flush the dead-letter copies and acknowledge their originals while the consumer is
        still open (if that fails, the originals come back and are dead-lettered again); close the rest."""
        self._stop_receiver()
        steps = [] if self.dead_letters is None else [self.dead_letters.close, self._settle_dead_letters]
        steps += [closer.close for closer in (self.consumer, self.client) if closer is not None]
        for step in steps:
            try:
                step()
            except Exception as exc:  # closing after a broken connection: nothing left to do
                log.debug("close: %s", exc)
        self.client, self.consumer, self.dead_letters = None, None, None
