"""`python -m bench.run`: the streaming trainer's benchmarks, each against a baseline in the same run.

1. Ingestion: samples/s per worker of the reference MLP (784 -> 64 -> 10, batch 256 per worker, 2
   workers) fed from Pulsar raw-tensor messages, against the same loop fed from in-memory tensors
   (goal: ratio >= 0.9) and against the naive pipeline, one `receive()` per message into
   `tf.data.Dataset.from_generator` (goal: >= 5x faster).
   Beside them, the feed's own ceiling: the trainer's Pulsar Source on the same topic and subscription
   type, each taken batch acknowledged at once and nothing trained (`bench_worker --mode receive`); and the
   ratio's CPU-bound ceiling (`cpu_ceiling`): training CPU per sample plus feeding CPU per message, over the
   workers' cores. A ratio goal above that ceiling cannot be met on these cores.
2. Checkpoint-then-acknowledge overhead: checkpoints every 100 steps against none (goal: <= 5%).
3. Decode alone: messages/s for ~3 KB raw records in batches of 256 (goal: >= 100,000/s), with JSON
   records of the same values for comparison.
4. Dead-lettering a malformed message: time on the training thread, against the synchronous send used
   before (`bench.dead_letter_bench`).
5. Uneven supply: a Key_Shared subscription of a topic with 95% of its messages under one key (nearly all
   of them go to one of the 2 workers), against the trainer as it was before a worker short of rows
   stopped waiting out the batch timeout while its peers had rows (`bench.bench_worker --mode waiting`).
6. The worker's own CPU per received message outside TensorFlow (receive, payload, ID, digest,
   acknowledgement), against how it did that before (`bench.receive_bench`).

Needs Pulsar: the running test bed's (`python -m tests.cluster up`) or `--service-url`. On the test bed
the broker shares the machine's cores with the workers, so the CPU time it used in each run is shown.
All runs read one topic, each through a fresh subscription, so they see identical data; the topic is read
once before the first timed run (`warm_up`), so every Pulsar-fed run finds the broker equally warm. The
in-memory, Pulsar-fed and checkpointing runs take turns for `--repeat` rounds (default 3), and each figure is
the median of its runs: on this machine one configuration's rate varies by 20% and more from run to run.

`--pin` (test bed only, at least 2 CPUs): every run's workers share CPU 0 and the broker gets the others,
the way a cluster gives the broker its own machines; without it the broker's work (about 20 µs of CPU per
3 KB message on this machine) comes out of the Pulsar-fed runs' share of the same cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pulsar

from bench import dead_letter_bench, receive_bench
from pulsetrain.config import load_config
from pulsetrain.decode import Decoder
from pulsetrain.encode import encode_batch
from pulsetrain.local import LocalGang
from pulsetrain.produce import publish

FEATURES = 784


def worker_config(service_url: str, topic: str, root: Path, batch: int, checkpoint_every: int,
                  total: int = 0, subscription_type: str = "Shared") -> dict[str, Any]:
    """Stops at `total` messages (so no idle tail is timed); the idle timeout only guards a broken run."""
    return {
        "source": {"pulsar": {"serviceUrl": service_url, "topic": topic, "subscriptionType": subscription_type,
                              "subscription": f"bench-{uuid.uuid4().hex[:6]}", "receiverQueueSize": 4 * batch}},
        "data": {"format": "raw", "features": [{"name": "image", "dtype": "float32", "shape": [FEATURES]}],
                 "label": {"name": "label", "dtype": "int64", "shape": []}},
        "model": {"builtin": "mlp", "task": "classification", "numClasses": 10, "mlp": {"hiddenUnits": [64]}},
        "training": {"mode": "bounded", "batchSize": batch, "idleTimeoutSeconds": 30,
                     "checkpointEverySteps": checkpoint_every, **({"maxMessages": total} if total else {})},
        "storage": {"checkpointDir": str(root / "checkpoints"), "exportDir": str(root / "models")},
    }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Every thread of process `pid` (a JVM has many) onto `cpus`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), cpus)


@contextlib.contextmanager
def broker_pinned(parser: argparse.ArgumentParser, broker_pid: int | None, pin: bool) -> Iterator[None]:
    """With `pin` (`--pin`), the test bed's broker runs on every CPU but 0 while the block runs, and on all of
    them again after; the caller puts its own work on CPU 0."""
    all_cpus = os.sched_getaffinity(0)
    if not pin:
        yield
        return
    if broker_pid is None or len(all_cpus) < 2:
        parser.error("--pin needs the test bed's broker and at least 2 CPUs")
    pin_threads(broker_pid, all_cpus - {0})
    try:
        yield
    finally:
        pin_threads(broker_pid, all_cpus)


def run_gang(mode: str, doc: dict[str, Any], root: Path, workers: int, rows_per_worker: int) -> tuple[float, float]:
    """Mean samples/s per worker of one run, and the CPU-seconds its workers spent while rows flowed (summed;
    the memory and receive modes only, see `bench_worker.CpuWindow`)."""
    root.mkdir(parents=True)
    config = root / "worker.json"
    config.write_text(json.dumps(doc))
    base = 26000 + (uuid.uuid4().int % 300) * 10
    gang = LocalGang(config, workers, base_port=base, metrics_base_port=base + 5, log_dir=root,
                     command=[sys.executable, "-m", "bench.bench_worker", "--mode", mode,
                              "--rows-per-worker", str(rows_per_worker)])
    gang.start(root)
    codes = gang.wait(900)
    gang.stop(grace=5)
    if codes != [0] * workers:
        raise RuntimeError(f"{mode} run failed with {codes}; see {root}/worker-*.log")
    summaries = [json.loads((root / f"summary-{i}.json").read_text()) for i in range(workers)]
    return float(np.mean([s["samplesPerSecond"] for s in summaries])), float(sum(s["cpuSeconds"] for s in summaries))


@dataclass(frozen=True)
class CpuCeiling:
    ratio: float
    detail: str


def cpu_ceiling(memory_rate: float, worker_cpu: dict[str, float], broker_cpu: dict[str, float], messages: int,
                workers: int, pinned: bool) -> CpuCeiling:
    """The highest Pulsar-fed / in-memory ratio the CPUs allow: a Pulsar-fed worker spends, per sample, the
    in-memory run's training CPU plus the feed-alone run's CPU per message (its workers', and the broker's
    where it shares the workers' cores), and the gang has only the workers' cores. Medians of the runs."""
    train_us = worker_cpu["memory"] / messages * 1e6
    client_us, broker_us = worker_cpu["receive"] / messages * 1e6, broker_cpu["receive"] / messages * 1e6
    cores = 1 if pinned else len(os.sched_getaffinity(0))
    feed_us = client_us + (0.0 if pinned else broker_us)
    rate = cores / workers / ((train_us + feed_us) / 1e6)
    broker = "on other CPUs" if pinned else "on the same cores"
    return CpuCeiling(rate / memory_rate, f"{rate:,.0f} samples/s/worker on {cores} core(s): training "
                      f"{train_us:.1f} us/sample (in-memory run) + feeding {client_us:.1f} us/message in the workers "
                      f"(feed-alone run), broker {broker_us:.1f} us/message {broker}")


def decode_rates(batch: int) -> tuple[float, float]:
    doc = worker_config("pulsar://unused:6650", "t", Path("/tmp"), batch, 100)
    data = load_config(doc).data
    rng = np.random.default_rng(0)
    features, labels = {"image": rng.normal(size=(batch, FEATURES)).astype(np.float32)}, rng.integers(0, 10, batch)
    raw = encode_batch(data, features, labels)
    json_data = load_config({**doc, "data": {**doc["data"], "format": "json"}}).data
    as_json = encode_batch(json_data, features, labels)
    decoder, json_decoder = Decoder(data), Decoder(json_data)
    raw_s = min(timeit.repeat(lambda: decoder.decode(raw), number=50, repeat=5)) / 50
    json_s = min(timeit.repeat(lambda: json_decoder.decode(as_json), number=3, repeat=3)) / 3
    return batch / raw_s, batch / json_s


def warm_up(client: pulsar.Client, topic: str, total: int) -> None:
    """Read the whole topic once through a throw-away subscription before any timed run, so that the first
    Pulsar-fed run does not pay alone for the broker's JIT compilation of its read path and for cold reads
    (measured: the first Pulsar-fed run after publishing was always the slowest)."""
    started = time.monotonic()
    consumer = client.subscribe(topic, f"warm-up-{uuid.uuid4().hex[:6]}",
                                consumer_type=pulsar.ConsumerType.Exclusive,
                                initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=2000,
                                batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(1000, -1, 500))
    read = 0
    while read < total and time.monotonic() - started < 300:
        messages = consumer.batch_receive()
        if messages:  # acknowledged, or the broker stops at 50,000 unacknowledged
            consumer.acknowledge_cumulative(messages[-1])
        read += len(messages)
    consumer.unsubscribe()
    consumer.close()
    print(f"  warm-up: read {read:,} messages in {time.monotonic() - started:.1f}s", file=sys.stderr)


def broker(parser: argparse.ArgumentParser, service_url: str | None) -> tuple[str, int | None]:
    """The Pulsar service URL to benchmark against, and the broker's pid when it is the test bed's own
    (for its CPU time): the given URL, else the running test bed's (`parser.error` when none runs)."""
    if service_url:
        return service_url, None
    from tests.cluster.pulsar_server import PulsarServer
    from tests.cluster.testbed import TestBedInfo

    info = TestBedInfo.load()
    if info is None or not info.pulsar_service_url:
        parser.error("no test bed is running: start one (python -m tests.cluster up) or give --service-url")
    return info.pulsar_service_url, PulsarServer(Path(info.state) / "pulsar").pid()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-url", help="Pulsar service URL (default: the running test bed's)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200, help="training steps per run (default 200)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the runs' directories (logs, summaries)")
    parser.add_argument("--only", nargs="*", help="run only these (memory, pulsar, pulsar+checkpoints, receive, "
                        "naive, uneven, uneven-waiting)")
    parser.add_argument("--pin", action="store_true", help="workers on CPU 0, the test bed's broker on the others")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the in-memory and Pulsar-fed runs, taking "
                        "turns; each figure is the median (default 3)")
    args = parser.parse_args()
    service_url, broker_pid = broker(parser, args.service_url)
    with broker_pinned(parser, broker_pid, args.pin):
        if args.pin:
            os.environ["PULSETRAIN_BENCH_CPUS"] = "0"
            print("pinned: workers on CPU 0, the broker on the others", file=sys.stderr)
        return measure(args, service_url, broker_pid)


def measure(args: argparse.Namespace, service_url: str, broker_pid: int | None) -> int:
    rows_per_worker = args.steps * args.batch
    total = rows_per_worker * args.workers
    topic = f"persistent://public/default/bench-{uuid.uuid4().hex[:8]}"
    print(f"publishing {total} raw records of {FEATURES * 4 + 8} bytes to {topic}", file=sys.stderr)
    doc = worker_config(service_url, topic, Path("/tmp"), args.batch, 100)
    data = load_config(doc).data
    rng = np.random.default_rng(1)
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    producer = client.create_producer(topic, batching_enabled=True, block_if_queue_full=True)
    for start in range(0, total, 10_000):
        n = min(10_000, total - start)
        payloads = encode_batch(data, {"image": rng.normal(size=(n, FEATURES)).astype(np.float32)},
                                rng.integers(0, 10, n))
        publish(producer, payloads, progress=False)
    producer.close()
    warm_up(client, topic, total)
    # the uneven-supply runs' topic: a quarter as many records, 95% of them under one key, so that a Key_Shared
    # subscription hands nearly all of them to one worker (the acceptance test's uneven supply)
    skewed_topic, skewed_total = f"{topic}-skewed", total // 4
    producer = client.create_producer(skewed_topic, batching_enabled=True, block_if_queue_full=True,
                                      batching_type=pulsar.BatchingType.KeyBased)
    publish(producer, encode_batch(data, {"image": rng.normal(size=(skewed_total, FEATURES)).astype(np.float32)},
                                   rng.integers(0, 10, skewed_total)),
            keys=["hot" if i % 20 else f"cold-{i}" for i in range(skewed_total)], progress=False)
    producer.close()
    warm_up(client, skewed_topic, skewed_total)
    client.close()

    runs: dict[str, list[float]] = {}
    broker_cpu: dict[str, list[float]] = {}
    worker_cpu: dict[str, list[float]] = {}
    root = Path(tempfile.mkdtemp(prefix="pulsetrain-bench-"))  # kept when a run fails, for its logs
    never = 10**9
    # the baselines and the Pulsar-fed runs take turns, `--repeat` rounds: the machine's speed drifts by 20%
    # and more between runs a minute apart, and a drift should not fall on one side of a ratio
    plan = [*[("memory", "memory", never), ("pulsar", "pulsar", never), ("pulsar+checkpoints", "pulsar", 100),
              ("receive", "receive", never)] * args.repeat, ("naive", "naive", never),
            *[("uneven", "pulsar", never), ("uneven-waiting", "waiting", never)] * args.repeat]
    for index, (name, mode, every) in enumerate(plan):
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        if name.startswith("uneven"):
            doc = worker_config(service_url, skewed_topic, root / f"{index}-{name}", args.batch, every, skewed_total,
                                "KeyShared")
        else:
            doc = worker_config(service_url, topic, root / f"{index}-{name}", args.batch, every, total)
        broker_before = cpu_seconds(broker_pid)
        rate, cpu = run_gang(mode, doc, root / f"{index}-{name}", args.workers, rows_per_worker)
        wall = time.monotonic() - started
        used = cpu_seconds(broker_pid) - broker_before
        runs.setdefault(name, []).append(rate)
        broker_cpu.setdefault(name, []).append(used)
        worker_cpu.setdefault(name, []).append(cpu)
        print(f"  {name}: {rate:,.0f} samples/s per worker ({wall:.0f}s; the broker used "
              f"{used:.1f} CPU-s = {used / (wall * (os.cpu_count() or 1)):.0%} of the machine)", file=sys.stderr)
    results = {name: float(np.median(rates)) for name, rates in runs.items()}
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    if args.only:
        return 0
    raw_rate, json_rate = decode_rates(args.batch)
    dead = dead_letter_bench.measure(service_url)
    received = receive_bench.measure(service_url)
    spread = {name: f"{min(rates):,.0f}-{max(rates):,.0f}" for name, rates in runs.items()}
    ceiling = cpu_ceiling(results["memory"], {n: float(np.median(c)) for n, c in worker_cpu.items()},
                          {n: float(np.median(c)) for n, c in broker_cpu.items()}, total, args.workers, args.pin)
    rows = [
        ("ingestion: Pulsar-fed / in-memory", results["pulsar"] / results["memory"], ">= 0.90",
         f"{results['pulsar']:,.0f} vs {results['memory']:,.0f} samples/s/worker (medians of {args.repeat}: "
         f"{spread['pulsar']} vs {spread['memory']})"),
        ("feed alone: Pulsar Source, no model / in-mem", results["receive"] / results["memory"], "",
         f"{results['receive']:,.0f} messages/s/worker taken from the trainer's Source with nothing trained (medians "
         f"of {args.repeat}: {spread['receive']}): the most a Pulsar-fed worker can train here"),
        ("ceiling: CPU-bound Pulsar-fed / in-memory", ceiling.ratio, "", ceiling.detail),
        ("ingestion: Pulsar-fed / naive from_generator", results["pulsar"] / results["naive"], ">= 5.0",
         f"{results['pulsar']:,.0f} vs {results['naive']:,.0f} samples/s/worker"),
        ("checkpoint every 100 steps: overhead", 1 - results["pulsar+checkpoints"] / results["pulsar"], "<= 0.05",
         f"{results['pulsar+checkpoints']:,.0f} vs {results['pulsar']:,.0f} samples/s/worker"),
        ("uneven supply: now / waiting out the timeout", results["uneven"] / results["uneven-waiting"], "> 1",
         f"{results['uneven']:,.0f} vs {results['uneven-waiting']:,.0f} samples/s/worker, 95% of the messages "
         "under one key, Key_Shared"),
        ("decode raw 3 KB records (msgs/s)", raw_rate, ">= 100000", f"json, same values: {json_rate:,.0f}/s"),
        ("dead-letter one bad message, loop thread (us)", dead.async_seconds_per_message * 1e6, "< sync",
         f"synchronous send + ack (before): {dead.sync_seconds_per_message * 1e6:,.0f} us; all {dead.messages} "
         f"acknowledged {dead.settled_seconds * 1e3:.0f} ms after the first send"),
        ("worker CPU per message, receive to ack (us)", received.now_us, "< before",
         f"before (client wrappers, crc32 + adler32): {received.before_us:.2f} us; now receive "
         f"{received.now_receive_us:.2f} + ack {received.now_ack_us:.2f}"),
    ]
    print(f"\n{'benchmark':46} {'result':>12} {'goal':>10}  detail")
    for label, value, goal, detail in rows:
        print(f"{label:46} {value:12.3f} {goal:>10}  {detail}")
    if args.json:
        args.json.write_text(json.dumps({"samplesPerSecondPerWorker": results, "runs": runs,
                                         "brokerCpuSeconds": broker_cpu, "workerCpuSeconds": worker_cpu,
                                         "cpuCeilingRatio": ceiling.ratio,
                                         "decodeRawPerSecond": raw_rate,
                                         "decodeJsonPerSecond": json_rate,
                                         "deadLetterSecondsPerMessage": {"sync": dead.sync_seconds_per_message,
                                                                         "async": dead.async_seconds_per_message},
                                         "workerCpuMicrosecondsPerMessage": {"before": received.before_us,
                                                                             "now": received.now_us}},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
