"""The `pulsetrain` command line: `produce` (publish training data), `run` (train a pipeline file on this
machine, `pulsetrain.runner`) and `status` (a pipeline's status from a cluster, `pulsetrain.status_view`).

Kept thin: each subcommand parses its flags and hands over to its module. The worker itself is
`python -m pulsetrain.worker`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pulsetrain import datasets
from pulsetrain.config import ConfigError, load_config, load_config_file
from pulsetrain.config_model import DataConfig, WorkerConfig
from pulsetrain.embedded_broker import MAX_WORKERS as EMBEDDED_MAX_WORKERS
from pulsetrain.embedded_broker import BrokerError
from pulsetrain.produce import produce, read_file

if TYPE_CHECKING:
    from pulsetrain.pipeline_file import Pipeline

FORMATS = ("raw", "json", "csv", "tfexample")


def _produce_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("produce", help="publish a data set or file to a Pulsar topic",
                       description="Publish records to a topic, encoded as the workers will decode them.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=datasets.DATASETS, help="a data set bundled with scikit-learn")
    source.add_argument("--file", type=Path, help="a .csv, .jsonl or .npz file (needs --config or --pipeline)")
    schema = p.add_mutually_exclusive_group()
    schema.add_argument("--config", type=Path, help="a worker configuration: its data schema, service URL and topic")
    schema.add_argument("--pipeline", type=Path, help="a TrainingPipeline file: its data schema, broker and topic; "
                                                      "with no serviceUrl, its embedded broker (as `pulsetrain run`)")
    p.add_argument("--state-dir", type=Path, help="with --pipeline: the state directory `pulsetrain run` uses "
                                                  "(default ./.pulsetrain/NAME; the embedded broker keeps its data "
                                                  "there)")
    p.add_argument("--service-url", help="pulsar://host:port, or `embedded` with --pipeline (default: the "
                                         "configuration's or pipeline's, else localhost)")
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
    if args.pipeline is None:
        return _produce(args, load_config_file(args.config) if args.config else None, args.service_url)
    from pulsetrain import pipeline_file, runner

    pipeline = pipeline_file.load(args.pipeline, service_url=args.service_url)
    state_dir = runner.state_dir_for(pipeline, args.state_dir)
    if args.print_schema:  # no broker needed
        return _produce(args, load_config(pipeline_file.local_worker_config(
            pipeline, state_dir, service_url="pulsar://localhost:6650")), None)
    with runner.broker_for(pipeline, state_dir) as service_url:
        config = load_config(pipeline_file.local_worker_config(pipeline, state_dir, service_url=service_url))
        return _produce(args, config, service_url)


def _produce(args: argparse.Namespace, config: WorkerConfig | None, service_url: str | None) -> int:
    import numpy as np
    import pulsar

    from pulsetrain.pulsar_io import connect

    if args.file and config is None:
        print("pulsetrain produce: --file needs --config or --pipeline (they declare the schema)", file=sys.stderr)
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
    service_url = service_url or (config.source.pulsar.service_url if config else "pulsar://localhost:6650")
    try:  # with --config, its authentication and TLS settings too
        client = (connect(dataclasses.replace(config.source.pulsar, service_url=service_url)) if config else
                  pulsar.Client(service_url, operation_timeout_seconds=30,
                                logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)))
    except ConfigError as exc:  # a token file that is missing or empty, say
        print(f"pulsetrain produce: {exc}", file=sys.stderr)
        return 2
    try:
        count = produce(client, topic, data, features, labels, repeat=args.repeat, progress=not args.no_progress)
    except pulsar.PulsarException as exc:
        print(f"pulsetrain produce: cannot publish to {topic} at {service_url}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"published {count} {data.format} messages to {topic}")
    return 0


def _run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="train a TrainingPipeline file on this machine, without Kubernetes",
                       description="Check a TrainingPipeline file against the CRD, start its workers as local "
                                   "processes (and an embedded broker when it names no serviceUrl), show "
                                   "progress and print a summary. Ctrl-C stops gracefully (checkpoint).")
    p.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml", help="the file you would kubectl apply")
    p.add_argument("--workers", type=int, help="number of workers (default: spec.training.workers)")
    p.add_argument("--state-dir", type=Path, help="checkpoints, exported models, logs and the embedded broker's "
                                                  "data (default ./.pulsetrain/NAME)")
    p.add_argument("--service-url", help="use this broker (pulsar://host:port), or `embedded`, instead of the "
                                         "pipeline's serviceUrl")
    p.add_argument("--admin-url", help="the broker's admin URL (http://host:port) for backlog reports")
    p.add_argument("--secrets-dir", type=Path, help="where Secret files are read, laid out as they are mounted "
                                                    "in a pod: token/KEY, tls/tls.crt, ca/KEY (default STATE/secrets)")
    p.add_argument("--grace-period", type=float, metavar="SECONDS",
                   help="how long stopping workers may take (default: runPolicy.terminationGracePeriodSeconds)")
    p.add_argument("--quiet", action="store_true", help="no progress line; only the summary")
    p.add_argument("--check", action="store_true", help="only check the file (the CRD's schema and rules, then the "
                   "workers' and predictors' own checks) and say what a cluster's API server would also refuse; "
                   "start nothing")


def check_only(pipeline: Pipeline, path: Path) -> int:
    """`pulsetrain run --check`: 0 when `pulsetrain run` would start the pipeline (notes on what a cluster would
    refuse besides), 2 when the workers would refuse it."""
    from pulsetrain import pipeline_file
    from pulsetrain_operator.builders.config import worker_refusal
    from pulsetrain_operator.builders.predictor import predictor_refusal

    for who, refusal in (("worker", worker_refusal(pipeline.resource)),
                         ("predictor", predictor_refusal(pipeline.resource))):
        if refusal is not None:
            print(f"pulsetrain run: the {who} would refuse {path}: {refusal}", file=sys.stderr)
            return 2
    broker = "the embedded broker" if pipeline.embedded else pipeline.spec["source"]["pulsar"]["serviceUrl"]
    workers = min(pipeline.workers, EMBEDDED_MAX_WORKERS) if pipeline.embedded else pipeline.workers
    print(f"{path}: valid; `pulsetrain run` would train {pipeline.name} with {workers} worker(s) on {broker}")
    refusals, unchecked = pipeline_file.cluster_refusals(pipeline)
    for refused in refusals:
        print(f"  a cluster's API server would refuse it: {refused}")
    for rule in unchecked:
        print(f"  not checked (no CEL library), as a cluster's API server would: {rule}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    from pulsetrain import pipeline_file, runner

    pipeline = pipeline_file.load(args.pipeline, workers=args.workers, service_url=args.service_url)
    if pipeline.embedded and args.workers is not None and args.workers > EMBEDDED_MAX_WORKERS:
        print(f"pulsetrain run: --workers {args.workers}: the embedded broker serves {EMBEDDED_MAX_WORKERS} worker "
              "process per subscription (pulsar-lite 0.2.0); give --service-url pulsar://HOST:PORT to run a gang",
              file=sys.stderr)
        return 2
    for rule in pipeline.unchecked_rules:
        print(f"pulsetrain run: not checked (no CEL library): {rule}", file=sys.stderr)
    if args.check:
        return check_only(pipeline, args.pipeline)
    options = runner.RunOptions(state_dir=args.state_dir, admin_url=args.admin_url, secrets_dir=args.secrets_dir,
                                quiet=args.quiet, grace_seconds=args.grace_period)
    return runner.run(pipeline, options)


def _status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="print a pipeline's status from a cluster",
                       description="Read a TrainingPipeline's status from the cluster and print it readably.")
    p.add_argument("name", help="the pipeline's name")
    p.add_argument("-n", "--namespace", help="its namespace (default: the context's, else default)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="json: the raw status")


def run_status(args: argparse.Namespace) -> int:
    import time

    from pulsetrain import status_view

    try:
        resource = status_view.fetch(args.name, args.namespace, kubeconfig=args.kubeconfig, context=args.context)
    except status_view.StatusError as exc:
        print(f"pulsetrain status: {exc}", file=sys.stderr)
        return 1
    print(status_view.status_json(resource) if args.output == "json" else status_view.render(resource, time.time()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pulsetrain", description="Train TensorFlow models on Pulsar streams.")
    sub = parser.add_subparsers(dest="command", required=True)
    _produce_parser(sub)
    _run_parser(sub)
    _status_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    commands = {"produce": run_produce, "run": run_run, "status": run_status}
    try:
        return commands[args.command](args)
    except BrokerError as exc:
        print(f"pulsetrain {args.command}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad input, configuration or pipeline file: say what, no traceback
        print(f"pulsetrain {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
