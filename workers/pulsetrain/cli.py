"""The `pulsetrain` command line. Subcommands: `produce` (publish training data to a topic).

`pulsetrain run` (one machine, no cluster) and the worker entry point come with the trainer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from pulsetrain import datasets
from pulsetrain.config import load_config_file
from pulsetrain.config_model import DataConfig
from pulsetrain.produce import produce, read_file

FORMATS = ("raw", "json", "csv", "tfexample")


def _produce_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("produce", help="publish a data set or file to a Pulsar topic",
                       description="Publish records to a topic, encoded as the workers will decode them.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=datasets.DATASETS, help="a data set bundled with scikit-learn")
    source.add_argument("--file", type=Path, help="a .csv, .jsonl or .npz file (needs --config for its schema)")
    p.add_argument("--config", type=Path, help="a worker configuration: its data schema, service URL and topic")
    p.add_argument("--service-url", help="pulsar://host:port (default: the configuration's, else localhost)")
    p.add_argument("--topic", help="topic to publish to (default: the configuration's)")
    p.add_argument("--format", choices=FORMATS, help="message format (default: the configuration's, else raw)")
    p.add_argument("--split", choices=("all", "train", "test"), default="all",
                   help="publish the whole data set, or the train/test part of a seeded split (default all)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="test share of the split (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--limit", type=int, help="publish at most this many records")
    p.add_argument("--repeat", type=int, default=1, help="publish the records this many times (default 1)")
    p.add_argument("--print-schema", action="store_true", help="print the data schema as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress line")


def _schema_json(data: DataConfig) -> str:
    def field(spec: object) -> dict[str, object]:
        doc = dataclasses.asdict(spec)  # type: ignore[call-overload]
        return {"name": doc["name"], "dtype": doc["dtype"], "shape": list(doc["shape"])}

    return json.dumps({"format": data.format, "features": [field(f) for f in data.features],
                       "label": field(data.label)}, indent=2)


def run_produce(args: argparse.Namespace) -> int:
    import numpy as np
    import pulsar

    config = load_config_file(args.config) if args.config else None
    if args.file and config is None:
        print("pulsetrain produce: --file needs --config (its `data` section declares the schema)", file=sys.stderr)
        return 2
    if args.repeat < 1 or (args.limit is not None and args.limit < 1):
        print("pulsetrain produce: --repeat and --limit must be >= 1", file=sys.stderr)
        return 2
    if args.dataset:
        dataset = datasets.load(args.dataset, args.format or (config.data.format if config else "raw"))
        if args.split != "all":
            train, test = dataset.split(args.test_fraction, args.seed)
            dataset = train if args.split == "train" else test
        data, features, labels = dataset.data, dataset.features, dataset.labels
    else:
        assert config is not None
        data = dataclasses.replace(config.data, format=args.format) if args.format else config.data
        features, labels = read_file(args.file, data)
    if args.print_schema:
        print(_schema_json(data))
        return 0
    if args.limit is not None:
        features, labels = {k: v[: args.limit] for k, v in features.items()}, np.asarray(labels)[: args.limit]
    topic = args.topic or (config.source.pulsar.topic if config else None)
    if not topic:
        print("pulsetrain produce: give --topic (or --config with source.pulsar.topic)", file=sys.stderr)
        return 2
    service_url = args.service_url or (config.source.pulsar.service_url if config else "pulsar://localhost:6650")
    client = pulsar.Client(service_url, operation_timeout_seconds=30,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        count = produce(client, topic, data, features, labels, repeat=args.repeat, progress=not args.no_progress)
    except pulsar.PulsarException as exc:
        print(f"pulsetrain produce: cannot publish to {topic} at {service_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"published {count} {data.format} messages to {topic}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pulsetrain", description="Train TensorFlow models on Pulsar streams.")
    sub = parser.add_subparsers(dest="command", required=True)
    _produce_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_produce(args)
    except ValueError as exc:  # bad input or configuration: say what, no traceback
        print(f"pulsetrain {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
