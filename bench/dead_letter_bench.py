"""`python -m bench.dead_letter_bench`: what dead-lettering a malformed message costs the training thread.

Baseline, in the same run: what the trainer did before, a synchronous `send` of the copy through a batching
producer (it waits out the batching delay) and then the acknowledgement. Against it: `DeadLetters.send`
(asynchronous), with the originals acknowledged by `acknowledge_persisted` as the trainer's next `fill` does.
Both handle the same number of received messages of the same size. Needs Pulsar: the running test bed's
(`python -m tests.cluster up`) or `--service-url`.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from dataclasses import dataclass

import pulsar

from pulsetrain.pulsar_io import DeadLetters


@dataclass(frozen=True)
class DeadLetterCosts:
    sync_seconds_per_message: float  # on the calling thread, send and acknowledge
    async_seconds_per_message: float  # on the calling thread, send (acknowledging comes later, in bulk)
    settled_seconds: float  # from the first asynchronous send until every original is acknowledged
    messages: int


def measure(service_url: str, count: int = 300) -> DeadLetterCosts:
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        topic = f"persistent://public/default/bench-dlq-{uuid.uuid4().hex[:8]}"
        consumer = client.subscribe(topic, "bench", consumer_type=pulsar.ConsumerType.Shared,
                                    initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(topic, batching_enabled=True, block_if_queue_full=True)
        for index in range(2 * count):
            producer.send_async(b"{not json %d" % index + b" " * 280, None)
        producer.flush()
        received = [consumer.receive(timeout_millis=30_000) for _ in range(2 * count)]

        sync = client.create_producer(f"{topic}-DLQ", batching_enabled=True, block_if_queue_full=True)
        started = time.perf_counter()
        for message in received[:count]:
            sync.send(message.data(), properties={"pulsetrain.reason": "bench"})
            consumer.acknowledge(message)
        sync_seconds = time.perf_counter() - started

        letters = DeadLetters(client.create_producer(f"{topic}-DLQ", batching_enabled=True, block_if_queue_full=True),
                              topic)
        started = time.perf_counter()
        for message in received[count:]:
            letters.send(message, "bench", acknowledge=message.message_id())
        async_seconds = time.perf_counter() - started
        acknowledged = 0
        deadline = time.monotonic() + 60
        while acknowledged < count and time.monotonic() < deadline:
            acknowledged += letters.acknowledge_persisted(consumer)
            time.sleep(0.001)
        settled = time.perf_counter() - started
        if acknowledged != count:
            raise RuntimeError(f"only {acknowledged} of {count} dead-letter copies were persisted within 60 s")
        return DeadLetterCosts(sync_seconds / count, async_seconds / count, settled, count)
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dead_letter_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-url", help="Pulsar service URL (default: the running test bed's)")
    parser.add_argument("--messages", type=int, default=300, help="malformed messages per way (default 300)")
    args = parser.parse_args()
    from bench.run import broker

    service_url, _ = broker(parser, args.service_url)
    costs = measure(service_url, args.messages)
    print(f"dead-letter one malformed message, on the training thread ({costs.messages} each way):")
    print(f"  synchronous send + acknowledge (before): {costs.sync_seconds_per_message * 1e3:8.2f} ms")
    print(f"  DeadLetters.send (asynchronous):         {costs.async_seconds_per_message * 1e6:8.1f} us  "
          f"({costs.sync_seconds_per_message / costs.async_seconds_per_message:,.0f}x less; all "
          f"{costs.messages} acknowledged {costs.settled_seconds * 1e3:.0f} ms after the first send)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
