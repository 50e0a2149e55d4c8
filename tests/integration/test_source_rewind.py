"""`Source.rewind` against the real broker: after a gang rollback, every message a worker had received
comes back to the subscription once, and nothing the client had already queued is handed out as well.

The client's `redeliver_unacknowledged_messages()` fails this: it leaves the messages in the consumer's
receiver queue (they are still handed out) while the broker redelivers them to any consumer, so two
workers train the same message.
"""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from pulsetrain.config import load_config_file
from pulsetrain.ledger import Ledger
from pulsetrain.source import Source
from tests.conftest import PulsarURLs
from tests.integration.test_trainer import digits_payloads, make_config, publish

pytestmark = pytest.mark.integration


def drain(sources: list[Source], quiet_rounds: int = 15) -> Counter[bytes]:
    """Every row the sources hand out until none has had anything for `quiet_rounds` rounds, by message ID."""
    seen: Counter[bytes] = Counter()
    quiet = 0
    while quiet < quiet_rounds:
        got = 0
        for source in sources:
            source.fill(64)
            rows = source.take(64)
            seen.update(rows.ids)
            got += len(rows)
        quiet = 0 if got else quiet + 1
    return seen


def test_a_rewound_consumer_hands_its_messages_back_once(pulsar_broker: PulsarURLs, tmp_path: Path) -> None:
    topic = f"persistent://public/default/rewind-{uuid.uuid4().hex[:8]}"
    _, payloads = digits_payloads(repeat=1)
    payloads = payloads[:600]
    # receiverQueueSize 200: after one batch taken, up to 200 more wait in the client's queue
    config = load_config_file(make_config(tmp_path, pulsar_broker.service_url, topic))
    first = Source(config, Ledger(), lambda _: None, lambda _: None)
    second = Source(config, Ledger(), lambda _: None, lambda _: None)
    try:
        first.fill(0)  # both subscribe (the subscription starts at the earliest message)
        second.fill(0)
        publish(pulsar_broker.service_url, topic, payloads)
        before = Counter[bytes]()
        while sum(before.values()) < 64:
            first.fill(64)
            before.update(first.take(64).ids)
        assert first.unacknowledged >= 64
        dropped = first.rewind(Ledger())  # as after a gang rollback to "nothing committed"
        assert dropped >= 64 and first.unacknowledged == 0
        assert first.buffered == 0
        after = drain([first, second])
    finally:
        first.close()
        second.close()
    assert len(after) == len(payloads), f"{len(after)} distinct messages after the rewind, {len(payloads)} published"
    twice = {message_id: count for message_id, count in after.items() if count > 1}
    assert not twice, f"{len(twice)} messages handed out twice after the rewind"
    assert set(before) <= set(after), "a message dropped by the rewind did not come back"
