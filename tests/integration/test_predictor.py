"""Acceptance of the streaming predictor on the real Pulsar standalone, with a digits model trained for real.

A one-worker gang trains the digits MLP from Pulsar once for the module and exports version 1; each test
copies that export and runs `python -m pulsetrain.predictor` as a process. Every input's message ID comes
back in its answer's `pulsetrain.input-message-id` property, so "one answer per input", "none lost" and
"duplicates identifiable" are checked on IDs, not on counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pulsar
import pytest

from pulsetrain.config import full_topic
from pulsetrain.datasets import Dataset
from pulsetrain.encode import encode_batch
from tests.conftest import PulsarURLs
from tests.integration.predictor_support import Answers, PredictorProcess, send_inputs
from tests.integration.test_trainer import (
    MALFORMED,
    digits_payloads,
    finish,
    gang,
    make_config,
    own_broker,
    publish,
    restart,
)
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Trained:
    models: Path
    config: dict[str, Any]
    test: Dataset


@pytest.fixture(scope="module")
def trained(pulsar_broker: PulsarURLs, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("trained")
    topic = f"persistent://public/default/serve-train-{uuid.uuid4().hex[:8]}"
    test, payloads = digits_payloads(repeat=3)
    publish(pulsar_broker.service_url, topic, payloads)
    config = make_config(root, pulsar_broker.service_url, topic)
    g = gang(root, config, workers=1)
    g.start(root)
    finish(g, root)
    assert (root / "models" / "1" / "saved_model.pb").is_file()
    return Trained(root / "models", json.loads(config.read_text()), test)


@pytest.fixture
def client(pulsar_broker: PulsarURLs) -> Iterator[pulsar.Client]:
    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    yield client
    client.close()


@dataclass
class Setup:
    predictor: PredictorProcess
    config: Path
    models: Path
    input_topic: str
    output_topic: str


def setup(trained: Trained, tmp_path: Path, data_format: str = "raw", **serving: Any) -> Setup:
    """A copy of the trained export and a predictor configuration over it (not started)."""
    models = tmp_path / "models"
    shutil.copytree(trained.models, models)
    name = uuid.uuid4().hex[:8]
    document = json.loads(json.dumps(trained.config))
    document["storage"]["exportDir"] = str(models)
    document["data"]["format"] = data_format
    document["serving"] = {"inputTopic": f"serve-in-{name}", "outputTopic": f"serve-out-{name}",
                           "modelPollSeconds": 0.5, **serving}
    config = tmp_path / "predictor.json"
    config.write_text(json.dumps(document))
    process = PredictorProcess(config, tmp_path / "predictor.log", free_port())
    return Setup(process, config, models, document["serving"]["inputTopic"], document["serving"]["outputTopic"])


@contextlib.contextmanager
def started(trained: Trained, tmp_path: Path, client: pulsar.Client, before: Callable[[Setup], None] | None = None,
            **serving: Any) -> Iterator[tuple[Setup, Answers]]:
    """A predictor over a copy of the trained export, serving, and a reader of its answers (`before` runs
    first, on the setup, before anything subscribes); killed and closed afterwards."""
    s = setup(trained, tmp_path, **serving)
    if before is not None:
        before(s)
    answers = Answers(client, s.output_topic)
    s.predictor.start()
    try:
        s.predictor.wait_state("serving", 120)
        yield s, answers
    finally:
        s.predictor.kill()
        answers.close()


def held_out(test: Dataset, count: int) -> tuple[list[bytes], np.ndarray]:
    """`count` raw inputs from the test split, repeated: every other one carries its label, the rest do not."""
    index = np.arange(count) % len(test)
    pixels, labels = test.features["pixels"][index], test.labels[index]
    labelled = encode_batch(test.data, {"pixels": pixels}, labels)
    payloads = [labelled[i] if i % 2 else pixels[i].astype("<f4").tobytes() for i in range(count)]
    return payloads, labels


def write_version(models: Path, source: int, version: int) -> None:
    """Publish version `version` the way the exporter does: written under a temporary name, then renamed."""
    scratch = models / f".tmp-{version}"
    shutil.copytree(models / str(source), scratch)
    metadata = json.loads((scratch / "pulsetrain.json").read_text())
    (scratch / "pulsetrain.json").write_text(json.dumps({**metadata, "version": version}))
    scratch.rename(models / str(version))


def test_held_out_digits_are_answered_once_each_and_accurately(trained: Trained, tmp_path: Path,
                                                                client: pulsar.Client) -> None:
    with started(trained, tmp_path, client) as (s, answers):
        payloads, labels = held_out(trained.test, 1000)
        keys = [f"digit-{i}" for i in range(len(payloads))]
        ids = send_inputs(client, s.input_topic, payloads, keys)
        grouped = answers.wait_for(ids, timeout=120)
        assert set(grouped) == set(ids), "answers for inputs that were never sent"
        assert Counter(len(a) for a in grouped.values()) == Counter({1: 1000}), "not exactly one answer per input"
        first = [grouped[i][0] for i in ids]
        assert all(a.version == 1 and a.body["modelVersion"] == 1 for a in first)
        assert [a.key for a in first] == keys == [a.input_key for a in first]  # the answer's key and a property
        assert all(a.body["inputMessageId"] == a.input_id for a in first)
        probabilities = np.array([a.body["prediction"]["probabilities"] for a in first])
        assert probabilities.shape == (1000, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        predicted = np.array([a.body["prediction"]["class"] for a in first])
        accuracy = float(np.mean(predicted == labels))
        assert accuracy >= 0.95, accuracy
        progress = wait_until(lambda: (p := s.predictor.progress()) and p["predictions"] == 1000 and p, 30,
                              "the progress document to count 1000 answers")
        assert progress["messagesAcknowledged"] == 1000 and progress["modelVersion"] == 1
        metrics = s.predictor.get("/metrics") or ""
        assert any(line.startswith("pulsetrain_predictor_latency_seconds_count{") and line.endswith(" 1000")
                   for line in metrics.splitlines()), metrics[:2000]
        assert s.predictor.terminate() == 0, s.predictor.log_tail()
        assert "pulsetrain predictor: stopped" in s.predictor.log_tail()


def test_a_new_version_is_swapped_in_while_answers_flow(trained: Trained, tmp_path: Path,
                                                        client: pulsar.Client) -> None:
    with started(trained, tmp_path, client) as (s, answers):
        payloads, _ = held_out(trained.test, 1500)
        sent: list[str] = []
        sender = threading.Thread(target=lambda: sent.extend(send_inputs(client, s.input_topic, payloads, rate=200)))
        sender.start()
        wait_until(lambda: len(answers.answers) >= 300, 60, "300 answers from version 1")
        write_version(s.models, 1, 2)
        sender.join(timeout=120)
        assert len(sent) == len(payloads)
        grouped = answers.wait_for(sent, timeout=120)
        assert set(grouped) == set(sent)
        assert [i for i in sent if len(grouped[i]) != 1] == [], "an input answered twice"
        versions = [grouped[i][0].version for i in sent]  # in the order the inputs were sent
        switch = versions.index(2)
        assert 300 <= switch < len(versions) and versions == [1] * switch + [2] * (len(versions) - switch)
        progress = s.predictor.progress()
        assert progress is not None and progress["modelVersion"] == 2 and progress["modelSwaps"] == 1
        assert s.predictor.terminate() == 0, s.predictor.log_tail()
        assert "swapped model version 2 in for version 1 between batches" in s.predictor.log_tail()


def write_foreign_version(models: Path, version: int) -> None:
    """A SavedModel whose serving signature takes an `image` feature, not the pipeline's `pixels` (the export
    of another pipeline, say), published as `version` the way the exporter publishes."""
    import tensorflow as tf

    module = tf.Module()
    module.serve = tf.function(lambda image: {"class": tf.zeros([tf.shape(image)[0]], tf.int64)},
                               input_signature=[tf.TensorSpec([None, 64], tf.float32, name="image")])
    scratch = models / f".tmp-{version}"
    tf.saved_model.save(module, str(scratch), signatures={"serving_default": module.serve})
    scratch.rename(models / str(version))


def test_a_version_that_does_not_take_the_pipelines_features_is_skipped(trained: Trained, tmp_path: Path,
                                                                        client: pulsar.Client) -> None:
    with started(trained, tmp_path, client) as (s, answers):
        write_foreign_version(s.models, 2)
        wait_until(lambda: "model version 2 does not fit this pipeline" in s.predictor.log_tail(), 60,
                   "the predictor to refuse version 2")
        payloads, _ = held_out(trained.test, 200)
        ids = send_inputs(client, s.input_topic, payloads)
        grouped = answers.wait_for(ids, timeout=120)
        assert {a.version for group in grouped.values() for a in group} == {1}  # version 1 goes on answering
        assert set(grouped) == set(ids) and all(len(group) == 1 for group in grouped.values())
        assert "its serving signature takes ['image'], the pipeline's data declares ['pixels']" in (
            s.predictor.log_tail())
        assert s.predictor.terminate() == 0, s.predictor.log_tail()


def write_failing_version(models: Path, version: int) -> None:
    """A SavedModel that takes the pipeline's `pixels` and loads and warms up (on zeros), but raises on any real
    digit (a pixel above 0): a broken export that only running it shows."""
    import tensorflow as tf

    def serve(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        check = tf.debugging.assert_less_equal(tf.reduce_max(pixels), 0.0, message="a broken export")
        with tf.control_dependencies([check]):
            return {"class": tf.zeros([tf.shape(pixels)[0]], tf.int64)}

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])
    scratch = models / f".tmp-{version}"
    tf.saved_model.save(module, str(scratch), signatures={"serving_default": module.serve})
    scratch.rename(models / str(version))


def test_a_version_that_fails_on_every_input_is_swapped_out_for_the_one_it_replaced(
        trained: Trained, tmp_path: Path, client: pulsar.Client) -> None:
    with started(trained, tmp_path, client) as (s, answers):
        write_failing_version(s.models, 2)
        wait_until(lambda: "swapped model version 2 in" in s.predictor.log_tail(), 60, "version 2 to be swapped in")
        payloads, _ = held_out(trained.test, 200)
        ids = send_inputs(client, s.input_topic, payloads)
        grouped = answers.wait_for(ids, timeout=120)
        assert set(grouped) == set(ids) and all(len(group) == 1 for group in grouped.values())
        assert {a.version for group in grouped.values() for a in group} == {1}  # none dead-lettered
        log = s.predictor.log_tail(20_000)
        assert "model version 2 failed on every input of a batch that version 1 answers" in log
        assert "a broken export" in log
        progress = s.predictor.progress()
        assert progress is not None and progress["deadLettered"]["total"] == 0, progress
        write_version(s.models, 1, 3)  # a later good version is still taken
        wait_until(lambda: "swapped model version 3 in" in s.predictor.log_tail(), 60, "version 3 to be swapped in")
        assert s.predictor.terminate() == 0, s.predictor.log_tail()


def test_a_partitioned_output_topic_answers_every_input_once(trained: Trained, tmp_path: Path,
                                                             client: pulsar.Client, pulsar_broker: PulsarURLs) -> None:
    """Answers keyed by their inputs spread over 3 partitions, each confirmed by its own producer: every input
    is acknowledged only after its own answer is persisted (one callback per answer, not per batch)."""
    def three_partitions(s: Setup) -> None:
        topic = full_topic(s.output_topic).replace("://", "/")
        request = urllib.request.Request(f"{pulsar_broker.admin_url}/admin/v2/{topic}/partitions", data=b"3",
                                         method="PUT", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).close()

    with started(trained, tmp_path, client, before=three_partitions) as (s, answers):
        assert "one confirmation per answer" in s.predictor.log_tail()
        payloads, _ = held_out(trained.test, 300)
        ids = send_inputs(client, s.input_topic, payloads, [f"digit-{i}" for i in range(len(payloads))])
        grouped = answers.wait_for(ids, timeout=120)
        assert set(grouped) == set(ids) and all(len(group) == 1 for group in grouped.values())
        assert len({a.topic for group in grouped.values() for a in group}) == 3
        progress = wait_until(lambda: (p := s.predictor.progress()) and p["messagesAcknowledged"] == 300 and p, 30,
                              "the predictor to acknowledge all 300 inputs")
        assert progress["predictions"] == 300 and progress["sendFailures"] == 0
        assert s.predictor.terminate() == 0, s.predictor.log_tail()


def test_kill_9_mid_stream_every_input_is_still_answered(trained: Trained, tmp_path: Path,
                                                         client: pulsar.Client) -> None:
    s = setup(trained, tmp_path)
    answers = Answers(client, s.output_topic)
    first = s.predictor.start()
    second = PredictorProcess(s.config, tmp_path / "predictor-2.log", free_port())
    try:
        first.wait_state("serving", 120)
        payloads, _ = held_out(trained.test, 1000)
        sent: list[str] = []
        sender = threading.Thread(target=lambda: sent.extend(send_inputs(client, s.input_topic, payloads, rate=150)))
        sender.start()
        wait_until(lambda: len(answers.answers) >= 250, 60, "250 answers before the crash")
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGKILL)
        assert first.proc.wait(10) == -signal.SIGKILL
        before = len(answers.answers)
        assert before < len(payloads), "the crash came after the stream ended"
        second.start()
        sender.join(timeout=120)
        grouped = answers.wait_for(sent, timeout=180)
        assert set(grouped) == set(sent)  # every input answered, and only inputs that were sent
        duplicates = {i: len(a) for i, a in grouped.items() if len(a) > 1}
        # a duplicate names its input like the first answer does, and one crash answers an input twice at most
        assert all(a.input_id == i and a.body["inputMessageId"] == i for i, group in grouped.items() for a in group)
        assert max(len(group) for group in grouped.values()) <= 2, duplicates
        print(f"answers before the crash: {before}; inputs answered twice: {len(duplicates)}")
        assert second.terminate() == 0, second.log_tail()
    finally:
        first.kill()
        second.kill()
        answers.close()


def test_a_predictor_that_loses_the_broker_is_not_ready_until_it_is_back(trained: Trained, tmp_path: Path,
                                                                        client: pulsar.Client,
                                                                        pulsar_broker: PulsarURLs) -> None:
    broker = own_broker(pulsar_broker)
    with started(trained, tmp_path, client) as (s, answers):
        assert s.predictor.get("/readyz") == "ready (serving)\n"
        broker.stop()
        try:
            lost = s.predictor.wait_state("source-unavailable", 60)
            assert "lost the connection to Pulsar" in lost["message"], lost
            assert s.predictor.get("/readyz") is None  # 503: not ready
        finally:
            restart(broker)
        s.predictor.wait_state("serving", 120)
        assert s.predictor.get("/readyz") == "ready (serving)\n"
        payloads, _ = held_out(trained.test, 50)
        sent = send_inputs(client, s.input_topic, payloads)
        assert set(answers.wait_for(sent, timeout=120)) == set(sent)


def test_malformed_inputs_are_dead_lettered_and_the_rest_answered(trained: Trained, tmp_path: Path,
                                                                   client: pulsar.Client) -> None:
    s = setup(trained, tmp_path, data_format="json")
    answers = Answers(client, s.output_topic)
    dlq = client.subscribe(f"{s.input_topic}-digits-predictor-DLQ", "check",
                           initial_position=pulsar.InitialPosition.Earliest)
    s.predictor.start()
    try:
        s.predictor.wait_state("serving", 120)
        test = trained.test
        good = [json.dumps({"pixels": row}).encode() for row in test.features["pixels"][:200].tolist()]
        labels_only_bad = {"missing-label", "label-out-of-range", "label-not-integral"}  # fine without a label
        mixed = list(good)
        for offset, payload in enumerate(MALFORMED.values()):
            mixed.insert(15 * offset + 3, payload)
        ids = send_inputs(client, s.input_topic, mixed)
        bad_ids = {ids[mixed.index(p)]: name for name, p in MALFORMED.items() if name not in labels_only_bad}
        answered_ids = [i for i in ids if i not in bad_ids]
        grouped = answers.wait_for(answered_ids, timeout=120)
        assert set(grouped) == set(answered_ids)
        assert all(len(a) == 1 for a in grouped.values())
        letters: dict[str, str] = {}
        while len(letters) < len(bad_ids):
            message = dlq.receive(timeout_millis=30_000)
            letters[message.properties()["pulsetrain.originalMessageId"]] = message.properties()["pulsetrain.reason"]
        assert set(letters) == set(bad_ids)
        kinds = {bad_ids[i]: reason.split(":")[0] for i, reason in letters.items()}
        assert kinds == {"invalid-json": "json", "not-an-object": "json", "empty": "empty",
                         "missing-feature": "json", "short-shape": "shape", "string-value": "dtype",
                         "nan": "non-finite", "infinity": "non-finite", "binary-garbage": "json"}
        progress = wait_until(lambda: (p := s.predictor.progress()) and p["deadLettered"]["total"] == 9 and p, 30,
                              "9 dead-lettered inputs in the progress document")
        assert progress["predictions"] == len(answered_ids) and progress["messagesAcknowledged"] == len(mixed)
        assert s.predictor.terminate() == 0, s.predictor.log_tail()
    finally:
        s.predictor.kill()
        answers.close()
        dlq.close()


def test_sigterm_mid_stream_acknowledges_what_it_answered(trained: Trained, tmp_path: Path,
                                                          client: pulsar.Client) -> None:
    # One input per batch: a model call per input slows the replica down to where, when SIGTERM lands, answers
    # are in flight (unconfirmed) and inputs wait in its queue; the stop must confirm and acknowledge the
    # former and leave the latter to the next replica, so nothing is answered twice. Inputs are published
    # unbatched: the broker redelivers a batch entry only partly acknowledged whole (see send_inputs).
    s = setup(trained, tmp_path, maxBatchSize=1)
    answers = Answers(client, s.output_topic)
    first = s.predictor.start()
    second = PredictorProcess(s.config, tmp_path / "predictor-2.log", free_port())
    try:
        first.wait_state("serving", 120)
        payloads, _ = held_out(trained.test, 2000)
        sent = send_inputs(client, s.input_topic, payloads, batching=False)
        wait_until(lambda: len(answers.answers) >= 300, 60, "300 answers before the stop", interval=0.05)
        assert first.terminate() == 0, first.log_tail()
        stopped_after = len(answers.answers)
        assert stopped_after < len(payloads), "the stop came after the stream ended"
        second.start()
        grouped = answers.wait_for(sent, timeout=180)
        assert set(grouped) == set(sent)
        assert [i for i in sent if len(grouped[i]) != 1] == [], "a graceful stop left answered inputs unacknowledged"
        assert "stopping after the current batch" in first.log_tail()
        assert second.terminate() == 0, second.log_tail()
    finally:
        first.kill()
        second.kill()
        answers.close()
