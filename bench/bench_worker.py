"""One benchmark worker: the trainer fed from Pulsar, from in-memory tensors, or by the naive pipeline.

`memory` runs the very same training loop with a source that hands out pre-built rows (no Pulsar,
no decoding): the ceiling the Pulsar-fed loop is compared with. `naive` is what existing Pulsar
connectors do: one `receive()` per message, acknowledged at once, into `tf.data.Dataset.from_generator`,
batched, then the same train step. `waiting` is the Pulsar-fed trainer as it was before a worker short of
rows stopped waiting out `batchReceiveTimeoutMs` while its peers had rows (`Source.fill`). `receive` is
the Pulsar feed alone: the trainer's Source with no training (`receive_only`). Writes one JSON summary with
samples/s for this worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class CpuWindow:
    """This process's CPU time (every thread) from the first `mark` to the last: the CPU a run spent while rows
    flowed, without start-up (TensorFlow's import, the strategy) or the export at the end."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0

    def mark(self) -> None:
        self.last = time.process_time()
        self.first = self.last if self.first is None else self.first

    @property
    def seconds(self) -> float:
        return self.last - (self.first if self.first is not None else self.last)


CPU = CpuWindow()  # marked by the memory and receive modes, whose rows pass through this module


class MemorySource:  # the interface of pulsetrain.source.Source that the trainer uses
    def __init__(self, ledger: Any, rows: int, feature_size: int, classes: int, seed: int) -> None:
        from pulsetrain.source import Rows

        self.ledger = ledger
        rng = np.random.default_rng(seed)
        self._rows_type = Rows
        self.features = rng.normal(size=(rows, feature_size)).astype(np.float32)
        self.labels = rng.integers(0, classes, rows).astype(np.int64)
        self.offset, self.buffered = 0, 0
        self.unavailable: str | None = None
        self.partitions = 1
        self.id_prefix = b"%d-" % seed  # one per worker: the commit check refuses an ID in two workers' ledgers

    def fill(self, wanted: int, wait: bool = True) -> None:
        self.buffered = len(self.labels) - self.offset

    def take(self, limit: int) -> Any:
        start, end = self.offset, min(self.offset + limit, len(self.labels))
        self.offset = end
        if end > start:
            CPU.mark()
        self.buffered = len(self.labels) - end
        return self._rows_type(self.features[start:end], self.labels[start:end], np.zeros(end - start, np.int64),
                               [self.id_prefix + b"%d" % i for i in range(start, end)])

    def idle_for(self) -> float:
        return float("inf") if self.offset >= len(self.labels) else 0.0

    def buffered_features(self) -> Any:
        return self.features[self.offset:]

    def acknowledge(self, ids: list[bytes]) -> int:
        return len(ids)

    def connection_lost(self) -> bool:
        return False

    unacknowledged = 0

    def unacknowledged_limit(self) -> int:
        return 1

    def close(self) -> None:
        pass


def naive(trainer: Any, config: Any, per_worker: int) -> dict[str, Any]:
    import pulsar
    import tensorflow as tf

    from pulsetrain.gang_flags import Flags
    from pulsetrain.pulsar_io import connect

    pulsar_cfg = config.source.pulsar
    size, batch = config.data.feature_size, config.training.batch_size
    client = connect(pulsar_cfg)
    consumer = client.subscribe(pulsar_cfg.topic, pulsar_cfg.subscription, consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=100)
    # Each worker must take the same number of steps, or the other blocks in a collective for ever: stop
    # one batch short of an even share, leaving slack for the messages the other consumer prefetched.
    per_worker -= batch

    def messages() -> Any:
        for _ in range(per_worker):
            message = consumer.receive(timeout_millis=30_000)
            consumer.acknowledge(message)  # at once, as the old connectors do: a crash loses it
            record = np.frombuffer(message.data(), dtype=np.uint8)
            yield record[: size * 4].view("<f4"), record[size * 4:].view("<i8")[0]

    dataset = tf.data.Dataset.from_generator(messages, output_signature=(
        tf.TensorSpec([size], tf.float32), tf.TensorSpec([], tf.int64))).batch(batch, drop_remainder=True)
    weights, digests = tf.ones([batch]), tf.zeros([batch], tf.int64)
    flags = Flags(rows=batch, idle=0, stop=0, checkpoint_due=0, export_due=0, connection_lost=0, unacknowledged=0,
                  stalled=0).vector()
    rows, first, last = 0, 0.0, 0.0
    for x, y in dataset:
        started = time.monotonic()
        trainer.gang_step(x, y, weights, digests, flags)
        first, last, rows = first or started, time.monotonic(), rows + batch
    client.close()
    return {"localRows": rows, "trainSeconds": last - first}


def receive_only(config: Any, per_worker: int) -> dict[str, Any]:
    """The trainer's own Source (receive thread, decoding, ledger) with no training: each taken batch is
    recorded and acknowledged at once, until the topic has run dry for a few seconds. The feed's ceiling
    on this machine: a Pulsar-fed trainer cannot train faster than its Source delivers."""
    from pulsetrain.ledger import Ledger
    from pulsetrain.source import Source

    source = Source(config, Ledger(), lambda _: None, lambda _: None)
    batch = config.training.batch_size
    rows, first, last = 0, 0.0, 0.0
    try:
        while rows < per_worker * 2 and not (rows and source.idle_for() >= 3.0):
            source.fill(batch)
            taken = source.take(batch)
            if len(taken):
                now = time.monotonic()
                first, last, rows = first or now, now, rows + len(taken)
                CPU.mark()
                source.ledger.record(taken.ids)
                source.acknowledge(taken.ids)
    finally:
        source.close()
    return {"localRows": rows, "trainSeconds": last - first}


def main() -> int:
    if os.environ.get("PULSETRAIN_BENCH_CPUS"):  # bench.run --pin: the workers share these CPUs
        os.sched_setaffinity(0, {int(c) for c in os.environ["PULSETRAIN_BENCH_CPUS"].split(",")})
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--mode", choices=("pulsar", "memory", "naive", "waiting", "receive"), required=True)
    parser.add_argument("--rows-per-worker", type=int, required=True)
    parser.add_argument("--summary", type=Path, required=True)
    args = parser.parse_args()
    from pulsetrain.config import load_config_file, tf_config_from_env

    config, tf_config = load_config_file(args.config), tf_config_from_env()
    index = tf_config.task_index if tf_config else 0
    summary = (receive_only(config, args.rows_per_worker) if args.mode == "receive"  # no TensorFlow, no gang
               else train(args.mode, config, tf_config, index, args.rows_per_worker))
    summary["samplesPerSecond"] = summary["localRows"] / max(summary["trainSeconds"], 1e-9)
    summary["cpuSeconds"] = CPU.seconds  # memory and receive modes only (0 in the others)
    args.summary.write_text(json.dumps({"mode": args.mode, "worker": index, **summary}))
    return 0


def train(mode: str, config: Any, tf_config: Any, index: int, rows_per_worker: int) -> dict[str, Any]:
    """The trainer in `mode` (pulsar, memory, waiting), or the naive pipeline's loop; the run's summary."""
    from pulsetrain.gc_tuning import freeze_long_lived
    from pulsetrain.telemetry import Telemetry
    from pulsetrain.trainer import Trainer

    telemetry = Telemetry(worker=index, is_chief=index == 0)
    options: dict[str, Any] = {}
    if mode == "waiting":  # how the trainer filled before: always waiting out the batch timeout
        from pulsetrain.source import Source

        class AlwaysWaiting(Source):
            def fill(self, wanted: int, wait: bool = True) -> None:
                super().fill(wanted, wait=True)

        options["source_factory"] = AlwaysWaiting
    if mode == "memory":
        classes = config.model.num_classes or 2
        options["source_factory"] = lambda _, ledger, *__: MemorySource(
            ledger, rows_per_worker, config.data.feature_size, classes, index)
    trainer = Trainer(config, tf_config, telemetry, threading.Event(), **options)
    freeze_long_lived()  # as pulsetrain.worker does, in every mode
    summary: dict[str, Any] = naive(trainer, config, rows_per_worker) if mode == "naive" else trainer.run()
    return summary


if __name__ == "__main__":
    sys.exit(main())
