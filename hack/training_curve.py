#!/usr/bin/env python3
"""Train digits for real and draw docs/training-curve.svg from the run (`make curve`).

Why this exists: the README's training curve must come from a real run that anyone can repeat. This
publishes the scikit-learn digits training split (repeated, so the curve has room to fall) to a fresh
topic on a Pulsar broker (the test bed's by default), trains it with two workers as local processes
(`pulsetrain.local.LocalGang`, the same worker program the pods run) with TensorBoard summaries on, checks
that every worker exited 0, and renders the chief's event files with `pulsetrain.curve`.

Usage: python hack/training_curve.py [--service-url pulsar://...] [--output docs/training-curve.svg]
       [--workers 2] [--repeat 6] [--batch-size 16] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.cluster` (where the test bed's broker is) when run as a script


def test_bed_service_url() -> str | None:
    """The running test bed's broker URL, if there is one."""
    from tests.cluster import testbed

    info = testbed.TestBedInfo.load()
    return info.pulsar_service_url if info is not None and all(testbed.status().values()) else None


def free_port_block(count: int) -> int:
    """A base port such that base..base+count-1 are all free on loopback now."""
    for _ in range(200):
        base = random.randrange(24000, 31000)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports between 24000 and 31000")


def digits_split() -> tuple[Any, Any]:
    """The digits data set, split as the trainer tests split it: (train, held out)."""
    from pulsetrain import datasets

    return datasets.load("digits", "raw").split(0.2, seed=0)


def publish_digits(service_url: str, topic: str, train: Any, repeat: int) -> int:
    import pulsar

    from pulsetrain import produce
    from pulsetrain.encode import encode_batch

    payloads = encode_batch(train.data, train.features, train.labels) * repeat
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(topic, batching_enabled=False, block_if_queue_full=True)
        return produce.publish(producer, payloads, progress=False)
    finally:
        client.close()


def held_out_accuracy(model_dir: Path, held_out: Any) -> float:
    """Accuracy of the exported SavedModel (its serving signature) on digits it never saw."""
    import numpy as np
    import tensorflow as tf

    serve = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    predicted = serve(pixels=tf.constant(held_out.features["pixels"]))["class"].numpy()
    return float(np.mean(predicted == held_out.labels))


def worker_config(run_dir: Path, service_url: str, topic: str, batch_size: int) -> Path:
    document: dict[str, Any] = {
        "pipeline": {"name": "digits-curve", "namespace": "local"},
        "source": {"pulsar": {"serviceUrl": service_url, "topic": topic, "subscription": "curve",
                              "receiverQueueSize": 200}},
        "data": {"format": "raw", "features": [{"name": "pixels", "dtype": "float32", "shape": [64]}],
                 "label": {"name": "digit", "dtype": "int64", "shape": []},
                 "normalization": {"mode": "estimate", "estimateRecords": 500}},
        "model": {"builtin": "mlp", "task": "classification", "numClasses": 10, "mlp": {"hiddenUnits": [64]},
                  "optimizer": "adam", "learningRate": 0.01, "metrics": ["accuracy"]},
        "training": {"mode": "bounded", "batchSize": batch_size, "idleTimeoutSeconds": 8,
                     "checkpointEverySteps": 100, "seed": 7},
        "storage": {"checkpointDir": str(run_dir / "checkpoints"), "exportDir": str(run_dir / "models"),
                    "logDir": str(run_dir / "tensorboard")},
    }
    path = run_dir / "worker.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def train(config: Path, run_dir: Path, workers: int, timeout: float) -> list[dict[str, Any]]:
    from pulsetrain.local import LocalGang

    base = free_port_block(2 * workers)
    gang = LocalGang(config, workers, base_port=base, metrics_base_port=base + workers, log_dir=run_dir)
    gang.start(summaries=run_dir)
    try:
        codes = gang.wait(timeout)
    finally:
        gang.stop(grace=10)
    if codes != [0] * workers:
        tails = "\n".join(f"--- worker {i}:\n" + (run_dir / f"worker-{i}.log").read_text()[-2000:]
                          for i in range(workers))
        raise RuntimeError(f"the workers exited with {codes} (logs in {run_dir}):\n{tails}")
    return [json.loads((run_dir / f"summary-{i}.json").read_text()) for i in range(workers)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--service-url", help="Pulsar service URL (default: the running test bed's broker)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "training-curve.svg")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=6, help="times the digits training split is published")
    parser.add_argument("--batch-size", type=int, default=16, help="per worker")
    parser.add_argument("--timeout", type=float, default=900, help="seconds the training may take")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (logs, checkpoints, model)")
    args = parser.parse_args(argv)
    service_url = args.service_url or test_bed_service_url()
    if not service_url:
        print("no Pulsar: start the test bed (make testbed-up) or pass --service-url", file=sys.stderr)
        return 2

    from pulsetrain import curve

    run_dir = Path(tempfile.mkdtemp(prefix="pulsetrain-curve-"))
    try:
        topic = f"persistent://public/default/digits-curve-{uuid.uuid4().hex[:8]}"
        train_split, held_out = digits_split()
        published = publish_digits(service_url, topic, train_split, args.repeat)
        print(f"published {published} digits records to {topic}; training with {args.workers} workers")
        summaries = train(worker_config(run_dir, service_url, topic, args.batch_size), run_dir, args.workers,
                          args.timeout)
        chief = summaries[0]
        if chief["trainedSamples"] != published:
            raise RuntimeError(f"trained {chief['trainedSamples']} samples, published {published}")
        accuracy = held_out_accuracy(run_dir / "models" / "1", held_out)
        run = f"digits, {args.workers} workers, {published} records, held-out accuracy {accuracy:.3f}"
        subtitle = curve.draw(run_dir / "tensorboard", args.output, run)
        print(f"wrote {args.output}: {subtitle}")
    finally:
        if args.keep:
            print(f"run directory kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
