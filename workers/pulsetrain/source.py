"""The worker's stream of rows: receive from Pulsar, decode, route rejects and duplicates, buffer.

Everything that is decided per message happens here, on the host, before TensorFlow sees a batch:
malformed messages go to the dead-letter topic and are acknowledged; messages already inside a durable
checkpoint (redelivered after a restart) are acknowledged and skipped; good rows wait in a buffer,
each with its message ID, until a training step takes them. Nothing good is acknowledged here: that
happens after the checkpoint containing it is committed. If Pulsar is unreachable, `take` keeps
retrying with back-off and reports it, so the training loop keeps stepping with its peers.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pulsar

from pulsetrain.config import WorkerConfig
from pulsetrain.decode import Decoder
from pulsetrain.hooks import load_hook
from pulsetrain.ledger import Ledger
from pulsetrain.pulsar_io import DeadLetters, connect, subscribe

log = logging.getLogger(__name__)
DIGEST_MODULUS = 1 << 40  # per-message digests are summed in int64: 2^40 leaves room for 2^23 messages


def digest(payload: bytes) -> int:
    """A message's contribution to the exactly-once check: crc32 and adler32 combined, below 2^40."""
    return ((zlib.crc32(payload) << 8) ^ zlib.adler32(payload)) % DIGEST_MODULUS


@dataclass
class Rows:
    """Decoded rows ready for a step: flat features, labels, digests and the messages they came from."""

    features: npt.NDArray[np.float32]
    labels: npt.NDArray[Any]
    digests: npt.NDArray[np.int64]
    ids: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


def flatten(config: WorkerConfig, features: dict[str, npt.NDArray[Any]], rows: int) -> npt.NDArray[np.float32]:
    """All features of `rows` records as one `[rows, feature_size]` float32 matrix, in declared order."""
    parts = [np.asarray(features[f.name], dtype=np.float32).reshape(rows, f.size) for f in config.data.features]
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
        self._retry_at = 0.0
        self._backoff = 1.0

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> bool:
        if self.consumer is not None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        pulsar_cfg = self.config.source.pulsar
        try:
            self.client = connect(pulsar_cfg)
            self.consumer = subscribe(self.client, pulsar_cfg)
            self.dead_letters = DeadLetters.open(self.client, pulsar_cfg)
        except Exception as exc:  # the client raises its own exception types for every network failure
            self.unavailable = (f"Pulsar at {pulsar_cfg.service_url} unreachable: {exc}; "
                                f"retrying in {self._backoff:.0f}s")
            log.warning(self.unavailable)
            self.close()
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, 60.0)
            return False
        self.unavailable, self._backoff = None, 1.0
        self.last_message_at = time.monotonic()
        return True

    # -- receiving ----------------------------------------------------------------------------
    def fill(self, wanted: int) -> None:
        """Receive one batch if fewer than `wanted` rows are buffered."""
        if self.buffered >= wanted or not self._connect():
            return
        assert self.consumer is not None
        try:
            messages = self.consumer.batch_receive()
        except pulsar.Timeout:
            return
        except Exception as exc:
            self.unavailable = f"receive failed: {exc}"
            log.warning(self.unavailable)
            return
        if len(messages):
            self.last_message_at = time.monotonic()
            self.on_received(len(messages))
            self._admit(list(messages))

    def _admit(self, messages: list[pulsar.Message]) -> None:
        assert self.consumer is not None and self.dead_letters is not None
        fresh = []
        for message in messages:
            message_id = message.message_id().serialize()
            if self.ledger.is_duplicate(message_id):
                self.consumer.acknowledge(message)  # already inside a committed checkpoint
            elif not self.ledger.is_pending(message_id) and message_id not in self.pending:
                fresh.append(message)  # (pending ones came back after a reconnect: acked at the next commit)
        if not fresh:
            return
        batch = self.decoder.decode([m.data() for m in fresh])
        for index, reason in batch.rejects:
            self.dead_letters.send(fresh[index], reason)
            self.consumer.acknowledge(fresh[index])
            self.on_reject(reason)
        good = [fresh[int(i)] for i in batch.valid_index]
        if not good:
            return
        features, labels = batch.features, batch.labels
        if self.preprocess is not None:
            features = self.preprocess(features)
        ids = [m.message_id().serialize() for m in good]
        self.pending.update((i, m.message_id()) for i, m in zip(ids, good, strict=True))
        rows = Rows(flatten(self.config, features, len(good)), labels,
                    np.array([digest(m.data()) for m in good], dtype=np.int64), ids)
        self.buffer.append(rows)
        self.buffered += len(rows)

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
        return Rows(np.concatenate([t.features for t in taken]), np.concatenate([t.labels for t in taken]),
                    np.concatenate([t.digests for t in taken]), [i for t in taken for i in t.ids])

    def buffered_features(self) -> npt.NDArray[np.float32]:
        size = self.config.data.feature_size
        return np.concatenate([r.features for r in self.buffer]) if self.buffer else np.zeros((0, size), np.float32)

    def acknowledge(self, ids: list[bytes]) -> int:
        """Acknowledge messages whose checkpoint is committed."""
        if self.consumer is None:
            return 0
        done = 0
        for message_id in ids:
            mid = self.pending.pop(message_id, None)
            if mid is not None:
                self.consumer.acknowledge(mid)
                done += 1
        return done

    def close(self) -> None:
        for closer in (self.dead_letters, self.consumer, self.client):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # closing after a broken connection: nothing left to do
                    log.debug("close: %s", exc)
        self.client, self.consumer, self.dead_letters = None, None, None
