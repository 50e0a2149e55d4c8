"""`python -m pulsetrain.predictor --config FILE`: one replica of the streaming predictor.

The serving stage of a pipeline: inputs arrive on `serving.inputTopic`, are predicted by the newest
exported model version (or the pinned one) and answered on `serving.outputTopic`, one answer per input.
The configuration is the worker configuration with a `serving` section; the predictor connects like the
trainer (`source.pulsar`), decodes with `data` (labels optional) and applies `model.preprocess` as the
trainer does, then calls the SavedModel's `serving_default` signature. In order, it validates the
configuration (exit 2), starts `/metrics`, `/progress`, `/healthz`, `/readyz` (ready while serving: a model
loaded and the broker connected), waits for a model version (state `waiting-for-model`), subscribes, and
serves (state `source-unavailable`, not ready, while the client has lost the broker):

- micro-batches (`maxBatchSize`, or `maxLatencyMs` after the publish time of a batch's first input) → decode →
  predict → one asynchronous send per answer; each input is acknowledged once its answer's send is confirmed,
  so a crash at any point leaves every unanswered input unacknowledged and redelivered (at least once; a
  duplicate carries the same `pulsetrain.input-message-id`). An answer the broker refuses negatively
  acknowledges its input, which comes back.
- undecodable inputs go to the dead-letter topic with the decoder's reason (`pulsetrain.reason`) and are
  acknowledged;
- when a batch cannot be predicted (an exception from `model.preprocess`, the model call or the encoding of
  the answers), its inputs are tried again one by one (`predict_rows.answer_rows`): those that fail alone
  too go to the dead-letter topic with `predict: <exception type>: <message>` as their reason and are
  acknowledged, the others are answered. Without that, the unacknowledged inputs would come back and crash
  every replica again, forever. The price: a failure that is not the inputs' fault sends every input to the
  dead-letter topic while it lasts, from where they can be published again. A version whose signature does
  not take the declared features never gets that far (the watcher refuses it at load); one that fits but
  fails on every input of its first batches is swapped out again when the version it replaced answers them
  (`_fall_back`), and skipped until a restart; one that fails only later, after it has answered, is not;
- a newer version, loaded in the background, is swapped in between two batches: a batch is answered by
  exactly one version, and no input waits for a load.

SIGTERM or SIGINT: finish the batch, wait for every answer's confirmation (up to `DRAIN_SECONDS`),
acknowledge, exit 0. Inputs still queued in the replica go to another one unanswered; but when clients
publish inputs in Pulsar batches, a broker without `acknowledgmentAtBatchIndexLevelEnabled=true` (Pulsar's
default) redelivers a batch entry that was only partly acknowledged whole, so some answered inputs are
answered again (with the same `pulsetrain.input-message-id`). Unbatched inputs, or that broker setting,
avoid it.
Exit codes: 0 stopped, 1 unexpected error (retryable), 2 invalid configuration (permanent).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt
import pulsar

from pulsetrain.config import ConfigError, ServingConfig, WorkerConfig, load_config_file
from pulsetrain.cpus import size_tensorflow_pools
from pulsetrain.decode import Decoder
from pulsetrain.gc_tuning import freeze_long_lived
from pulsetrain.hooks import load_hook
from pulsetrain.http_server import serve
from pulsetrain.model_watcher import LoadedModel, ModelWatcher, load_model
from pulsetrain.predict_io import (
    Inflight,
    answer_properties,
    batch_shapes,
    check_answer_sizes,
    collect,
    encode_answers,
    max_inflight,
    open_answers,
    open_inputs,
    pad_rows,
    padded_size,
)
from pulsetrain.predict_progress import NOT_READY
from pulsetrain.predict_rows import RowsOutcome, answer_rows
from pulsetrain.predict_telemetry import PredictorTelemetry
from pulsetrain.pulsar_io import DeadLetters, Send, acknowledger, connect, lost_connection, sender
from pulsetrain.stop_request import StopRequest
from pulsetrain_operator.defaults import PREDICTOR_DRAIN_SECONDS

log = logging.getLogger("pulsetrain.predictor")
EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2
DRAIN_SECONDS = PREDICTOR_DRAIN_SECONDS
"""After a stop request, how long the predictor waits for its answers' confirmations (the operator gives its pods
a longer `terminationGracePeriodSeconds`)."""
class Predictor:
    """The serving loop of one replica; `run` returns a summary once `stop` is set."""

    def __init__(self, config: WorkerConfig, serving: ServingConfig, telemetry: PredictorTelemetry,
                 stop: threading.Event, watcher: ModelWatcher | None = None) -> None:
        self.config, self.serving, self.telemetry, self.stop = config, serving, telemetry, stop
        shapes, declared = batch_shapes(serving.max_batch_size), {f.name: f.shape for f in config.data.features}
        self.watcher = watcher or ModelWatcher(Path(config.storage.export_dir), pinned=serving.pinned_version,
                                               poll_seconds=serving.model_poll_seconds,
                                               loader=functools.partial(load_model, warm_sizes=shapes,
                                                                        features=declared))
        self.decoder = Decoder(config.data, features_only=True)
        self.preprocess = load_hook(config.model.preprocess, "model.preprocess") if config.model.preprocess else None
        self.inflight = Inflight()
        self.max_inflight = max_inflight(serving)
        self.model: LoadedModel | None = None
        self.replaced: LoadedModel | None = None
        """The version `model` replaced, while `model` has not answered a batch yet."""
        self.client: pulsar.Client | None = None
        self.consumer: pulsar.Consumer | None = None
        self.producer: pulsar.Producer | None = None
        self.send_answer: Send | None = None
        self.dead_letters: DeadLetters | None = None

    # -- model ------------------------------------------------------------------------------------
    def _install(self, model: LoadedModel) -> None:
        previous = self.model.version if self.model else None
        self.replaced = self.model  # kept until the new version has answered a batch (see `_fall_back`)
        self.model = model
        self.telemetry.model_loaded(model.version, str(model.path))
        if previous is None:
            log.info("serving model version %d from %s", model.version, model.path)
        else:
            log.info("swapped model version %d in for version %d between batches", model.version, previous)

    def _first_model(self) -> bool:
        """Wait until a version is loaded; False when stopped first."""
        said = ""
        while not self.stop.is_set():
            model = self.watcher.wait(1.0)
            if model is not None:
                self._install(model)
                return True
            message = self.watcher.waiting_message()
            if message != said:
                log.info("%s; polling every %gs", message, self.serving.model_poll_seconds)
                self.telemetry.set_state("waiting-for-model", message)
                said = message
        return False

    # -- Pulsar ------------------------------------------------------------------------------------
    def _connect(self) -> bool:
        """Subscribe and open the producers, retrying with back-off while Pulsar is unreachable."""
        backoff, pulsar_cfg = 1.0, self.config.source.pulsar
        while not self.stop.is_set():
            try:
                self.client = connect(pulsar_cfg)
                self.consumer = open_inputs(self.client, self.serving)
                self.producer = open_answers(self.client, self.serving)
                self.send_answer = sender(self.producer)
                partitions = len(self.client.get_topic_partitions(self.serving.output_topic))
                self.inflight.callback_per_answer = partitions > 1
                if partitions > 1:
                    log.info("%s has %d partitions, each confirming on its own: one confirmation per answer",
                             self.serving.output_topic, partitions)
                self.dead_letters = DeadLetters(self.client.create_producer(
                    self.serving.dlq_topic, batching_enabled=True, block_if_queue_full=True),
                    self.serving.input_topic)
                return True
            except pulsar.PulsarException as exc:  # network and broker failures; anything else is a bug: raise it
                message = f"Pulsar at {pulsar_cfg.service_url} unreachable: {exc}; retrying in {backoff:.0f}s"
                log.warning(message)
                self.telemetry.set_state("source-unavailable", message)
                self._close()
                self.stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
        return False

    def _track_connection(self) -> None:
        """`source-unavailable` (so not ready) while the client has lost the broker, `serving` once it is back:
        the client reconnects by itself, and the inputs it had not acknowledged come to a replica again."""
        assert self.consumer is not None and self.producer is not None
        connected = self.consumer.is_connected() and self.producer.is_connected()
        state = self.telemetry.state
        if not connected and state == "serving":
            message = lost_connection(self.config.source.pulsar.service_url)
            log.warning(message)
            self.telemetry.set_state("source-unavailable", message)
        elif connected and state == "source-unavailable":
            log.info("Pulsar is reachable again")
            self.telemetry.set_state("serving")

    def _close(self) -> None:
        for closer in (self.dead_letters, self.producer, self.consumer, self.client):
            if closer is not None:
                try:
                    closer.close()
                except Exception as exc:  # closing after a broken connection: nothing left to do
                    log.debug("close: %s", exc)
        self.client, self.consumer, self.producer, self.dead_letters = None, None, None, None
        self.send_answer = None

    # -- serving -----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.watcher.start()
        try:
            if self._first_model() and self._connect():
                self.telemetry.set_state("serving")
                log.info("answering %s on %s (subscription %s, batches of up to %d or %d ms)",
                         self.serving.input_topic, self.serving.output_topic, self.serving.subscription,
                         self.serving.max_batch_size, self.serving.max_latency_ms)
                self._serve()
        finally:
            self._close()
            self.watcher.stop()
        doc = self.telemetry.snapshot()
        return {"received": doc.messages_received, "predictions": doc.predictions,
                "deadLettered": doc.dead_lettered.total, "sendFailures": doc.send_failures,
                "modelVersion": doc.model_version, "modelSwaps": doc.model_swaps}

    def _serve(self) -> None:
        assert self.consumer is not None and self.producer is not None
        while not self.stop.is_set():
            model = self.watcher.take()
            if model is not None:
                self._install(model)
            messages = collect(self.consumer, self.serving.max_batch_size, self.serving.max_latency_ms)
            self._track_connection()
            self._confirmations()
            if messages:
                self._answer(messages)
        try:
            self.producer.flush()  # every answer sent so far is confirmed (or failed) when this returns
            if self.dead_letters is not None:
                self.dead_letters.flush()  # and every dead-letter copy
        except Exception as exc:  # the broker is gone: the unconfirmed answers' inputs stay unacknowledged
            log.warning("flushing the answers failed: %s", exc)
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.inflight.pending and time.monotonic() < deadline:
            self._confirmations()
            time.sleep(0.005)
        self._confirmations()

    def _answer(self, messages: list[Any]) -> None:
        assert self.model is not None and self.producer is not None
        self.telemetry.received(len(messages))
        batch = self.decoder.decode([m.data() for m in messages])
        for index, reason in batch.rejects:
            self._dead_letter(messages[index], reason)
        if not len(batch):
            return
        model = self.model
        decoded = [messages[i] for i in batch.valid_index.tolist()]
        ids = [str(m.message_id()) for m in decoded]
        outcome = answer_rows(len(decoded), functools.partial(self._predict, model, batch.features, ids))
        if self.replaced is not None and outcome.answered:
            self.replaced = None  # the new version answers: the one it replaced is not needed any more
        elif self.replaced is not None and outcome.failure is not None:
            outcome, model = self._fall_back(outcome, batch.features, ids)
        if outcome.failure is not None:
            log.warning("a batch of %d inputs could not be predicted (%s); one by one, %d were answered and %d "
                        "dead-lettered", len(decoded), outcome.failure, len(outcome.answered), len(outcome.rejected))
        for row, reason in outcome.rejected:
            self._dead_letter(decoded[row], reason)
        if not outcome.answered:
            return
        answered = [decoded[row] for row, _ in outcome.answered]
        while self.inflight.pending + len(answered) > self.max_inflight:
            time.sleep(0.0005)  # the broker is behind: let confirmations come in (releases the GIL)
            self._confirmations()
        assert self.send_answer is not None
        keys = [message.partition_key() for message in answered]  # read once: a property and the answer's key
        self.inflight.send(self.send_answer, [
            (payload, answer_properties(ids[row], model.version, key), key or None)
            for (row, payload), key in zip(outcome.answered, keys, strict=True)], answered)

    def _fall_back(self, failed: RowsOutcome, features: Mapping[str, npt.NDArray[Any]],
                   ids: list[str]) -> tuple[RowsOutcome, LoadedModel]:
        """A version just swapped in failed on every input of a batch: when the version it replaced answers
        them, that one serves again and the new one is skipped until a restart (a broken export must not send
        the stream to the dead-letter topic); otherwise the inputs are at fault and are dead-lettered."""
        assert self.model is not None and self.replaced is not None
        new, old = self.model, self.replaced
        outcome = answer_rows(len(ids), functools.partial(self._predict, old, features, ids))
        if not outcome.answered:
            return failed, new
        log.error("model version %d failed on every input of a batch that version %d answers (%s): serving version "
                  "%d again, skipping version %d until a restart", new.version, old.version, failed.failure,
                  old.version, new.version)
        self.watcher.refuse(new.version)
        self._install(old)
        self.replaced = None
        return outcome, old

    def _predict(self, model: LoadedModel, features: Mapping[str, npt.NDArray[Any]], ids: list[str],
                 rows: list[int]) -> list[bytes]:
        """The answers to `rows` of a decoded batch: preprocess, one model call (padded), encoding."""
        if len(rows) != len(ids):
            features = {name: values[rows] for name, values in features.items()}
        if self.preprocess:
            features = self.preprocess(features)
        started = time.perf_counter()
        outputs = model.predict(pad_rows(features, padded_size(len(rows), self.serving.max_batch_size)))
        self.telemetry.batch(len(rows), time.perf_counter() - started)
        outputs = {name: values[:len(rows)] for name, values in outputs.items()}
        answers = encode_answers(outputs, model.version, [ids[row] for row in rows])
        check_answer_sizes(answers)
        return answers

    def _dead_letter(self, message: Any, reason: str) -> None:
        """To the dead-letter topic with `reason`, then acknowledged."""
        assert self.consumer is not None and self.dead_letters is not None
        self.dead_letters.send(message, reason)  # acknowledged by `_confirmations` once the copy is persisted
        self.telemetry.dead_lettered(reason)

    def _confirmations(self) -> None:
        """Acknowledge inputs whose answers (or dead-letter copies) are confirmed; negatively acknowledge inputs
        whose answers were refused."""
        assert self.consumer is not None
        if self.dead_letters is not None:
            self.dead_letters.acknowledge_persisted(self.consumer)
        latencies: list[float] = []
        failed, acknowledge = 0, acknowledger(self.consumer)
        for done in self.inflight.drain():
            for message in done.messages:
                if done.ok:
                    acknowledge(message)
                    latencies.append(done.at - message.publish_timestamp() / 1000)
                else:
                    self.consumer.negative_acknowledge(message)
            if not done.ok:
                failed += len(done.messages)
                log.warning("the broker did not confirm a batch of %d answers (%s); their inputs will be "
                            "redelivered and answered again", len(done.messages), done.result)
        if latencies:
            self.telemetry.answered(latencies)
        if failed:
            self.telemetry.send_failed(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulsetrain.predictor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the worker configuration with `serving` (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config_file(args.config)
        if config.serving is None:
            raise ConfigError(["serving: required field is missing (the predictor needs serving.inputTopic and "
                               "serving.outputTopic)"])
        serving = config.serving
    except ConfigError as exc:
        print(f"pulsetrain predictor: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    telemetry = PredictorTelemetry(pipeline=config.pipeline.name, namespace=config.pipeline.namespace,
                                   replica=os.environ.get("HOSTNAME") or socket.gethostname())
    port = int(os.environ.get("PULSETRAIN_METRICS_PORT", config.observability.port))
    server = serve(telemetry, config.observability.host, port, not_ready=NOT_READY)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  # here, in the main thread, before the signal handlers are installed

    size_tensorflow_pools()  # before the model loads: a pod's CPU limit, not the node's cores (see cpus.py)
    freeze_long_lived()  # TensorFlow's objects out of every full collection; before a model loads (see gc_tuning.py)

    stop = StopRequest(lambda: telemetry.set_state("stopping"), log,
                       "the current batch (answers confirmed, inputs acknowledged)")
    stop.install()
    try:
        summary = Predictor(config, serving, telemetry, stop.event).run()
    except ConfigError as exc:
        telemetry.set_state("failed", str(exc))
        print(f"pulsetrain predictor: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        telemetry.set_state("failed", f"{type(exc).__name__}: {exc}")
        log.exception("the predictor failed")
        return EXIT_ERROR
    finally:
        server.close()
    telemetry.set_state("stopped")
    print(f"pulsetrain predictor: stopped {json.dumps(summary)}", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
