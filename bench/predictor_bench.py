"""`python -m bench.predictor_bench`: the streaming predictor against the same SavedModel called in-process.

In one run, on the same inputs (held-out digits as raw features, repeated):
1. In-process ceiling: the digits MLP's SavedModel loaded in this process, fed decoded batches of
   `maxBatchSize` (decode + pad + predict, as the predictor does, minus Pulsar); also one input per call,
   for scale.
2. Peak throughput through Pulsar: `--messages` inputs already waiting on the input topic, drained by one
   predictor process (`python -m pulsetrain.predictor`); answers/s from the answers' publish times.
   Goal: >= 0.8x the in-process rate.
3. Latency at half that peak rate: inputs paced at peak/2 for `--seconds`; each input's latency is from its
   `send_async` call here to its answer's arrival here (so it includes the broker both ways, the batching
   wait and the answer's persistence). Goal: p99 <= maxLatencyMs + 20 ms. The predictor's own histogram
   (input publish time to answer confirmed) is shown beside it.
4. The floor under that latency, in the same run: the same inputs at the same rate through one Pulsar hop
   (publish here, receive here), no predictor. An answer makes two hops.
5. The ceiling over that throughput, in the same run: the same inputs relayed from one topic to another in
   Python with no model (`bench.relay_ceiling`): what any predictor through this broker on this machine pays
   per answer for Pulsar alone. Relay / in-process bounds the throughput ratio reachable here.

Needs Pulsar: the running test bed's (`python -m tests.cluster up`) or `--service-url`. On the test bed the
broker, this process and the predictor share the machine's cores; the CPU time each used is shown. `--pin`
(test bed only, at least 2 CPUs) puts this process, the in-process runs and the predictor on CPU 0 and the
broker on the others, as a cluster gives the broker machines of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pulsar

from bench.relay_ceiling import relay
from bench.run import CpuCeiling, broker, broker_pinned, cpu_seconds, pin_threads
from pulsetrain import datasets
from pulsetrain.config import WorkerConfig, load_config
from pulsetrain.decode import Decoder
from pulsetrain.exposition import Histogram
from pulsetrain.gc_tuning import freeze_long_lived
from pulsetrain.predict_io import batch_shapes, pad_rows, padded_size
from pulsetrain.predict_telemetry import LATENCY_BUCKETS
from pulsetrain.pulsar_io import acknowledger, receiver, sender
from tests.integration.predictor_support import PredictorProcess, send_inputs
from tests.support import free_port


def pipeline(service_url: str, root: Path, max_batch: int, max_latency_ms: int) -> dict[str, Any]:
    name = uuid.uuid4().hex[:8]
    return {
        "pipeline": {"name": "bench"},
        "source": {"pulsar": {"serviceUrl": service_url, "topic": f"bench-train-{name}"}},
        "data": {"format": "raw", "features": [{"name": "pixels", "dtype": "float32", "shape": [64]}],
                 "label": {"name": "digit", "dtype": "int64", "shape": []}},
        "model": {"builtin": "mlp", "task": "classification", "numClasses": 10, "mlp": {"hiddenUnits": [64, 32]}},
        "storage": {"checkpointDir": str(root / "checkpoints"), "exportDir": str(root / "models")},
        "observability": {"host": "127.0.0.1"},
        "serving": {"inputTopic": f"bench-in-{name}", "outputTopic": f"bench-out-{name}",
                    "maxBatchSize": max_batch, "maxLatencyMs": max_latency_ms},
    }


def train_and_export(config: WorkerConfig, train: datasets.Dataset, test: datasets.Dataset) -> tuple[Path, float]:
    """The digits MLP, fitted here with Keras (the streaming trainer is benchmarked elsewhere), exported as v1."""
    import keras

    from pulsetrain.export import export
    from pulsetrain.model import Normalizer, build_network

    x = train.features["pixels"]
    normalizer = Normalizer(config.data.feature_size)
    normalizer.set(x.mean(axis=0), x.std(axis=0))
    network = build_network(config)
    network.compile(optimizer=keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    network.fit(normalizer(x).numpy(), train.labels, epochs=40, batch_size=64, verbose=0)
    logits = network(normalizer(test.features["pixels"]), training=False).numpy()
    accuracy = float(np.mean(logits.argmax(axis=1) == test.labels))
    result = export(config, network, normalizer, is_chief=True, worker_index=0, step=1, samples=len(x),
                    metrics={"accuracy": accuracy})
    assert result is not None
    return result[1], accuracy


def in_process(model_dir: Path, config: WorkerConfig, payloads: list[bytes],
               max_batch: int) -> tuple[float, float, float]:
    """(predictions/s in batches of `max_batch`, predictions/s one input per call, this process's CPU-seconds per
    prediction in batches (every thread: TensorFlow's too)): best of three passes, the CPU the least of three."""
    from pulsetrain.model_watcher import load_model

    model = load_model(model_dir, 1, warm_sizes=batch_shapes(max_batch))
    decoder = Decoder(config.data, features_only=True)

    def run(batch: int, inputs: list[bytes]) -> tuple[float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(inputs), batch):
            decoded = decoder.decode(inputs[start:start + batch])
            rows = len(decoded)
            outputs = model.predict(pad_rows(decoded.features, padded_size(rows, max_batch)))
            assert len(outputs["class"]) >= rows
        return len(inputs) / (time.perf_counter() - started), (time.process_time() - cpu) / len(inputs)

    batched = [run(max_batch, payloads) for _ in range(3)]
    single = max(run(1, payloads[:2000])[0] for _ in range(3))
    return max(rate for rate, _ in batched), single, min(cpu for _, cpu in batched)


def cpu_ceiling(inprocess: float, model_us: float, relay_us: float, broker_us: float, pinned: bool) -> CpuCeiling:
    """The highest through-Pulsar / in-process ratio the CPUs allow: an answer costs the in-process run's CPU per
    prediction plus the relay's per message (its own, and the broker's where it shares the predictor's cores),
    and the predictor has its cores (all of them, or CPU 0 with `--pin`). CPU figures in seconds."""
    cores = 1 if pinned else len(os.sched_getaffinity(0))
    rate = cores / (model_us + relay_us + (0.0 if pinned else broker_us))
    broker = "on other CPUs" if pinned else "on the same cores"
    return CpuCeiling(rate / inprocess, f"{rate:,.0f}/s on {cores} core(s): model {model_us * 1e6:.1f} us/prediction "
                      f"(in-process run) + Pulsar {relay_us * 1e6:.1f} us/message in this process (relay), broker "
                      f"{broker_us * 1e6:.1f} us/message {broker}")


def answer_times(client: pulsar.Client, topic: str, count: int, timeout: float = 120) -> list[int]:
    """Publish times (ms) of the first `count` answers on `topic`, read after the fact."""
    consumer = client.subscribe(topic, f"times-{uuid.uuid4().hex[:6]}",
                                initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=5000)
    times: list[int] = []
    deadline = time.monotonic() + timeout
    while len(times) < count and time.monotonic() < deadline:
        try:
            message = consumer.receive(timeout_millis=2000)
        except pulsar.Timeout:
            continue
        times.append(message.publish_timestamp())
        consumer.acknowledge(message)
    consumer.close()
    return times


class KeyedArrivals:
    """Arrival times of answers by their key, read in a thread with as little work per answer as possible (the
    load generator shares the cores with the predictor and the broker, so its own cost must stay small)."""

    def __init__(self, client: pulsar.Client, topic: str) -> None:
        self.arrived: dict[str, float] = {}
        self._consumer = client.subscribe(topic, f"arrivals-{uuid.uuid4().hex[:6]}",
                                          initial_position=pulsar.InitialPosition.Latest, receiver_queue_size=5000)
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        receive, acknowledge = receiver(self._consumer), acknowledger(self._consumer)
        while not self._stop:
            try:
                message = receive(200)
            except pulsar.Timeout:
                continue
            self.arrived.setdefault(message.partition_key(), time.time())
            acknowledge(message)

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrived) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        self._stop = True
        self._thread.join(timeout=5)
        self._consumer.close()


def paced_send(client: pulsar.Client, topic: str, payloads: list[bytes], rate: float) -> list[float]:
    """Publish `payloads` at `rate` per second, in bursts every millisecond, each keyed by its index (answers
    carry their input's key back); the wall time each was handed to the client."""
    producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=1,
                                      block_if_queue_full=True, max_pending_messages=50_000)
    sent_at: list[float] = []
    send, no_properties = sender(producer), dict[str, str]()
    started = time.monotonic()
    for index, payload in enumerate(payloads):
        delay = started + index / rate - time.monotonic()
        if delay > 0.001:
            time.sleep(delay)
        sent_at.append(time.time())
        send(payload, no_properties, str(index), None)
    producer.flush()
    producer.close()
    return sent_at


def one_hop(client: pulsar.Client, payloads: list[bytes], rate: float) -> tuple[float, float]:
    """p50 and p99 (ms) of one trip through the broker (publish here, receive here) at `rate`: an answer
    makes two such trips (input in, answer out), so twice this is the floor under the predictor's latency."""
    topic = f"bench-hop-{uuid.uuid4().hex[:8]}"
    arrivals = KeyedArrivals(client, topic)
    sent_at = paced_send(client, topic, payloads, rate)
    arrivals.wait(len(payloads), timeout=120)
    hops = np.array([arrivals.arrived[str(i)] - t for i, t in enumerate(sent_at) if str(i) in arrivals.arrived])
    p50, p99 = np.percentile(hops * 1000, [50, 99])
    return float(p50), float(p99)


def latency_buckets(metrics: str) -> list[int]:
    """The predictor's cumulative latency histogram counts, bucket by bucket, from its /metrics text."""
    prefix = "pulsetrain_predictor_latency_seconds_bucket{"
    return [int(float(line.rsplit(" ", 1)[1])) for line in metrics.splitlines() if line.startswith(prefix)]


def histogram_quantiles(before: list[int], after: list[int]) -> tuple[float | None, float | None]:
    """p50 and p99 (seconds) of the observations made between two readings of the latency histogram."""
    histogram = Histogram(LATENCY_BUCKETS)
    cumulative = [b - a for a, b in zip(before, after, strict=True)]
    histogram.counts = [c - p for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True)]
    histogram.count = cumulative[-1]
    return histogram.quantile(0.5), histogram.quantile(0.99)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.predictor_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service-url", help="Pulsar service URL (default: the running test bed's)")
    parser.add_argument("--messages", type=int, default=30_000, help="inputs for the peak run (default 30000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the half-rate run (default 10)")
    parser.add_argument("--rate", type=float, help="inputs/s of the latency run (default: half the peak rate)")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-latency-ms", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (model, predictor log)")
    parser.add_argument("--pin", action="store_true", help="this process and the predictor on CPU 0, the test "
                        "bed's broker on the others")
    args = parser.parse_args()
    service_url, broker_pid = broker(parser, args.service_url)
    with broker_pinned(parser, broker_pid, args.pin):
        if args.pin:
            pin_threads(os.getpid(), {0})  # the predictor process inherits it
            print("pinned: this process and the predictor on CPU 0, the broker on the others", file=sys.stderr)
        return measure(args, service_url, broker_pid)


def measure(args: argparse.Namespace, service_url: str, broker_pid: int | None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = Path(tempfile.mkdtemp(prefix="pulsetrain-predictor-bench-"))
    doc = pipeline(service_url, root, args.max_batch_size, args.max_latency_ms)
    (root / "predictor.json").write_text(json.dumps(doc))
    config = load_config(doc)
    serving = config.serving
    assert serving is not None
    train, test = datasets.load("digits").split(0.2, seed=0)
    model_dir, accuracy = train_and_export(config, train, test)
    pixels = test.features["pixels"]
    payloads = [pixels[i % len(pixels)].astype("<f4").tobytes() for i in range(args.messages)]
    print(f"digits MLP exported to {model_dir} (held-out accuracy {accuracy:.3f}); in-process run ...",
          file=sys.stderr)
    inprocess, single, model_cpu = in_process(model_dir, config, payloads, args.max_batch_size)
    freeze_long_lived()  # no 200 ms full collection here mid-run, which would send the paced inputs in bursts

    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    client.subscribe(serving.input_topic, serving.subscription, consumer_type=pulsar.ConsumerType.Shared).close()
    print(f"publishing {len(payloads)} inputs to {serving.input_topic} ...", file=sys.stderr)
    send_inputs(client, serving.input_topic, payloads)
    predictor = PredictorProcess(root / "predictor.json", root / "predictor.log", free_port())
    try:
        broker_before = cpu_seconds(broker_pid)
        predictor.start()
        progress = predictor.wait_state("serving", 180)
        deadline = time.monotonic() + 600
        while progress["predictions"] < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.5)
            progress = predictor.progress() or progress
        times = answer_times(client, serving.output_topic, len(payloads))
        if len(times) < len(payloads):
            raise RuntimeError(f"only {len(times)} of {len(payloads)} answers; see {root}/predictor.log")
        peak = (len(times) - 1) / max((max(times) - min(times)) / 1000, 1e-3)
        predictor_cpu = cpu_seconds(predictor.proc.pid if predictor.proc else None)
        broker_cpu = cpu_seconds(broker_pid) - broker_before
        print(f"  peak: {peak:,.0f} answers/s; half rate {peak / 2:,.0f}/s for {args.seconds:g}s ...", file=sys.stderr)

        rate = args.rate or peak / 2
        arrivals = KeyedArrivals(client, serving.output_topic)
        paced = [payloads[i % len(payloads)] for i in range(int(rate * args.seconds))]
        before = latency_buckets(predictor.get("/metrics") or "")
        sent_at = paced_send(client, serving.input_topic, paced, rate)
        arrivals.wait(len(paced), timeout=120)
        own = histogram_quantiles(before, latency_buckets(predictor.get("/metrics") or ""))
        if len(arrivals.arrived) < len(paced):
            raise RuntimeError(f"only {len(arrivals.arrived)} of {len(paced)} paced inputs answered")
        latencies = np.array([arrivals.arrived[str(i)] - t for i, t in enumerate(sent_at)]) * 1000
        exit_code = predictor.terminate()
        print("  the floor: the same inputs at the same rate through one Pulsar hop ...", file=sys.stderr)
        hop_p50, hop_p99 = one_hop(client, paced, rate)
        print("  the ceiling: the same inputs relayed through Pulsar in Python, no model ...", file=sys.stderr)
        relayed = relay(client, payloads, broker_pid)
    finally:
        predictor.kill()
        client.close()
    p50, p99 = np.percentile(latencies, [50, 99])
    ceiling = cpu_ceiling(inprocess, model_cpu, relayed.cpu_per_message, relayed.broker_cpu_per_message, args.pin)
    budget = args.max_latency_ms + 20
    rate_name = "half the peak rate" if not args.rate else f"{rate / peak:.2f}x the peak rate"
    rows = [
        ("throughput: through Pulsar / in-process", f"{peak / inprocess:.3f}", ">= 0.80",
         f"{peak:,.0f} vs {inprocess:,.0f} predictions/s (batches of {args.max_batch_size})"),
        (f"latency p50 at {rate_name} (ms)", f"{p50:.1f}", "", f"{len(latencies)} inputs at {rate:,.0f}/s"),
        (f"latency p99 at {rate_name} (ms)", f"{p99:.1f}", f"<= {budget}",
         f"maxLatencyMs {args.max_latency_ms} + 20; the predictor's histogram (publish to confirmed): "
         f"p50 {(own[0] or 0) * 1000:.1f}, p99 {(own[1] or 0) * 1000:.1f} ms"),
        ("floor: one Pulsar hop, p50 / p99 (ms)", f"{hop_p50:.1f} / {hop_p99:.1f}", "",
         "same inputs, same rate, no predictor; an answer takes two hops"),
        ("ceiling: relay without a model / in-process", f"{relayed.per_second / inprocess:.3f}", "",
         f"{relayed.per_second:,.0f} messages/s in, out and acknowledged; the predictor reaches "
         f"{peak / relayed.per_second:.2f}x of it"),
        ("ceiling: CPU-bound through Pulsar / in-process", f"{ceiling.ratio:.3f}", "", ceiling.detail),
        ("in-process, one input per call (pred/s)", f"{single:,.0f}", "", "what micro-batching saves"),
    ]
    print(f"\n{'benchmark':44} {'result':>10} {'goal':>8}  detail")
    for label, value, goal, detail in rows:
        print(f"{label:44} {value:>10} {goal:>8}  {detail}")
    print(f"\npeak run CPU: predictor {predictor_cpu:.1f} s (whole life, start-up included), broker "
          f"{broker_cpu:.1f} s; "
          f"{os.cpu_count()} cores{' (pinned)' if args.pin else ''}; predictor exit code {exit_code}")
    if args.json:
        args.json.write_text(json.dumps({
            "inProcessPerSecond": inprocess, "inProcessSinglePerSecond": single, "pulsarPeakPerSecond": peak,
            "ratio": peak / inprocess, "halfRate": rate, "latencyMs": {"p50": p50, "p99": p99},
            "predictorLatencySeconds": {"p50": own[0], "p99": own[1]}, "maxBatchSize": args.max_batch_size,
            "maxLatencyMs": args.max_latency_ms, "heldOutAccuracy": accuracy, "pinned": args.pin,
            "oneHopLatencyMs": {"p50": hop_p50, "p99": hop_p99},
            "relayPerSecond": relayed.per_second, "relayRatio": relayed.per_second / inprocess,
            "cpuCeilingRatio": ceiling.ratio}, indent=2))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
