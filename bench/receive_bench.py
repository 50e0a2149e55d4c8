"""`python -m bench.receive_bench`: the worker's own CPU per received message, outside TensorFlow.

What each Pulsar-fed message costs the worker before and after its training step: receiving it, reading
its payload and message ID, serializing the ID for the ledger, its exactly-once digest, and acknowledging
it at the commit. Baseline, in the same run: how the worker did it before, through the client's Python
`Message` wrappers with a crc32 + adler32 digest per payload. Against it: the code `Source` runs,
`pulsar_io.receive_batch`, `source.unpack` (digests included) and `pulsar_io.acknowledger`. Both read the
same ~3 KB raw records through fresh subscriptions, taking turns; each figure is the thread CPU time (not
wall time: the broker shares the machine) per message, the median of `--repeat` rounds. Needs Pulsar: the
running test bed's (`python -m tests.cluster up`) or `--service-url`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pulsar

from pulsetrain.pulsar_io import acknowledger, receive_batch
from pulsetrain.source import unpack

RECORD_BYTES = 784 * 4 + 8  # the ingestion benchmark's raw record: 784 float32 features and an int64 label
BATCH = 256
LIMIT = 40 * BATCH  # well below the broker's 50,000 unacknowledged messages per consumer


@dataclass(frozen=True)
class ReceiveCosts:
    before_receive_us: float  # per message: receive, payload, ID, serialized ID, digest
    before_ack_us: float
    now_receive_us: float
    now_ack_us: float
    messages: int

    @property
    def before_us(self) -> float:
        return self.before_receive_us + self.before_ack_us

    @property
    def now_us(self) -> float:
        return self.now_receive_us + self.now_ack_us


def _before(consumer: pulsar.Consumer) -> tuple[list[Any], Callable[[Any], None]]:
    messages = consumer.batch_receive()
    payloads = [m.data() for m in messages]
    ids = [m.message_id() for m in messages]
    [i.serialize() for i in ids]
    np.array([((zlib.crc32(p) << 8) ^ zlib.adler32(p)) % (1 << 40) for p in payloads], dtype=np.int64)
    return ids, consumer.acknowledge


def _now(consumer: pulsar.Consumer) -> tuple[list[Any], Callable[[Any], None]]:
    _, ids, _, _ = unpack(receive_batch(consumer))  # what Source's receive thread does before decoding
    return ids, acknowledger(consumer)


def _one_pass(client: pulsar.Client, topic: str, receive: Callable[[pulsar.Consumer],
              tuple[list[Any], Callable[[Any], None]]]) -> tuple[float, float]:
    """Thread CPU seconds per message spent receiving `LIMIT` messages, then acknowledging them all."""
    consumer = client.subscribe(topic, f"bench-{uuid.uuid4().hex[:6]}", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=4 * BATCH,
                                batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(BATCH, -1, 100))
    ids: list[Any] = []
    spent = 0.0
    acknowledge: Callable[[Any], None] = consumer.acknowledge
    while len(ids) < LIMIT:
        started = time.thread_time()
        got, acknowledge = receive(consumer)
        spent += time.thread_time() - started
        ids += got
    started = time.thread_time()
    for message_id in ids:
        acknowledge(message_id)
    acked = time.thread_time() - started
    consumer.unsubscribe()
    consumer.close()
    return spent / len(ids), acked / len(ids)


def measure(service_url: str, repeat: int = 3) -> ReceiveCosts:
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        topic = f"persistent://public/default/bench-receive-{uuid.uuid4().hex[:8]}"
        producer = client.create_producer(topic, batching_enabled=True, block_if_queue_full=True)
        rng = np.random.default_rng(0)
        for _ in range(LIMIT):
            producer.send_async(rng.bytes(RECORD_BYTES), None)
        producer.flush()
        producer.close()
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "now": []}
        for _ in range(repeat):
            runs["before"].append(_one_pass(client, topic, _before))
            runs["now"].append(_one_pass(client, topic, _now))
    finally:
        client.close()

    def median(name: str, part: int) -> float:
        return statistics.median(run[part] for run in runs[name]) * 1e6

    return ReceiveCosts(median("before", 0), median("before", 1), median("now", 0), median("now", 1), LIMIT)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receive_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-url", default=os.environ.get("PULSETRAIN_PULSAR_URL"),
                        help="Pulsar service URL (default: $PULSETRAIN_PULSAR_URL)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.service_url:
        parser.error("give --service-url or set PULSETRAIN_PULSAR_URL (the test bed's `make testbed-up` prints it)")
    costs = measure(args.service_url, args.repeat)
    print(f"{'per message (thread CPU, us)':30} {'receive':>8} {'ack':>8} {'total':>8}")
    print(f"{'before (wrappers, crc+adler)':30} {costs.before_receive_us:8.2f} {costs.before_ack_us:8.2f} "
          f"{costs.before_us:8.2f}")
    print(f"{'now (binding, digests)':30} {costs.now_receive_us:8.2f} {costs.now_ack_us:8.2f} {costs.now_us:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
