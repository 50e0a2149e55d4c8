"""Streaming predictions end to end: a pipeline with `spec.serving` trains digits, the operator starts its
predictors once the model is exported, and held-out digits sent to the input topic come back answered.

Real parts only, as in `test_operator.py` (whose fixtures and helpers this module shares): the API
server, the scheduler, the Deployment and ReplicaSet controllers, the process kubelet running the
predictor as a host process, and the real Pulsar broker. Inputs carry their index as the message key,
and every answer carries its input's key and message ID, so each answer is matched to its digit.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pulsar
import pytest

from pulsetrain.encode import encode_batch
from tests.conftest import Cluster, PulsarURLs
from tests.e2e.operator_harness import OperatorProcess
from tests.e2e.test_operator import apply, ml_namespace, operator, pipeline, status, wait_phase
from tests.integration.test_trainer import digits_payloads, publish
from tests.support import wait_until

pytestmark = pytest.mark.e2e
__all__ = ["ml_namespace", "operator"]  # the shared fixtures

INPUTS = 1000
INPUT_ID = "pulsetrain.input-message-id"


def held_out(count: int) -> tuple[list[bytes], list[int]]:
    """`count` held-out digits (the test split, repeated), encoded as the pipeline's data, and their labels."""
    test, _ = digits_payloads(repeat=1)
    payloads = encode_batch(test.data, test.features, test.labels)
    labels = [int(label) for label in test.labels]
    repeat = -(-count // len(payloads))
    return (payloads * repeat)[:count], (labels * repeat)[:count]


class Answers:
    """Everything on the output topic, by input key."""

    def __init__(self, client: pulsar.Client, topic: str) -> None:
        self.consumer = client.subscribe(topic, "e2e-reader", initial_position=pulsar.InitialPosition.Earliest)
        self.by_key: dict[str, list[dict[str, Any]]] = {}

    def drain(self, keys: set[str]) -> bool:
        """Read what arrived (for at most a second: answers may keep coming); True once every key in `keys`
        has at least one answer."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                message = self.consumer.receive(timeout_millis=200)
            except pulsar.Timeout:
                break
            answer = json.loads(message.data())
            answer["inputId"] = message.properties().get(INPUT_ID)
            self.by_key.setdefault(message.partition_key(), []).append(answer)
            self.consumer.acknowledge(message)
        return keys <= self.by_key.keys()


def send(client: pulsar.Client, topic: str, payloads: list[bytes], prefix: str, per_second: float = 0) -> list[str]:
    """Publish `payloads` keyed `{prefix}{index}`, at most `per_second` a second when given."""
    producer = client.create_producer(topic, batching_enabled=False, block_if_queue_full=True)
    keys = [f"{prefix}{i}" for i in range(len(payloads))]
    for key, payload in zip(keys, payloads, strict=True):
        producer.send_async(payload, None, partition_key=key)
        if per_second:
            time.sleep(1 / per_second)
    producer.flush()
    producer.close()
    return keys


def kill_predictor(cluster: Cluster, namespace: str, pipeline_name: str) -> None:
    """Kill the pipeline's predictor pod at once (no grace: no drain, no last acknowledgements), as a node loss
    would; its Deployment starts another. Works on the test bed and on kind alike."""
    cluster.kubectl("delete", "pod", "-n", namespace, "-l",
                    f"pulsetrain.dev/pipeline={pipeline_name},app.kubernetes.io/component=predictor",
                    "--grace-period=0", "--force", "--wait=false")


def test_trained_digits_are_served_from_topic_to_topic_and_survive_a_killed_predictor(
        testbed_cluster: Cluster, operator: OperatorProcess, ml_namespace: str, pulsar_broker: PulsarURLs,
        unique: Any) -> None:
    topic, inputs, outputs = unique("tp-serve"), unique("digits-in"), unique("digits-out")
    publish(pulsar_broker.service_url, topic, digits_payloads(repeat=6)[1])
    body = pipeline("serve", pulsar_broker, topic)
    body["spec"]["serving"] = {"replicas": 1, "inputTopic": inputs, "outputTopic": outputs, "maxLatencyMs": 20,
                               "modelPollSeconds": 1}
    apply(testbed_cluster, ml_namespace, body)
    wait_phase(testbed_cluster, operator, ml_namespace, "serve", "Succeeded", 300)
    serving = wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "serve").get("serving") or {})
                         .get("readyReplicas") == 1 and s.get("modelVersion") == 1 and s, 240,
                         "one ready predictor serving model version 1", interval=1)
    assert serving["replicas"] == 1

    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        answers = Answers(client, outputs)
        payloads, labels = held_out(INPUTS)
        keys = send(client, inputs, payloads, "a")
        wait_until(lambda: answers.drain(set(keys)), 180, f"answers to all {INPUTS} inputs", interval=0.5)
        answers.drain(set(keys))  # anything late would be a second answer
        assert all(len(answers.by_key[k]) == 1 for k in keys), "an input was answered twice without any failure"
        correct = sum(answers.by_key[k][0]["prediction"]["class"] == label for k, label in zip(keys, labels,
                                                                                               strict=True))
        assert correct / INPUTS >= 0.95, f"held-out accuracy {correct / INPUTS:.3f}"
        assert {answers.by_key[k][0]["modelVersion"] for k in keys} == {1}
        assert len({answers.by_key[k][0]["inputId"] for k in keys}) == INPUTS  # every answer names its input

        # a predictor killed mid-stream: another pod takes over, and every input is still answered (at least once)
        second = [f"b{i}" for i in range(INPUTS)]
        sender = threading.Thread(target=send, args=(client, inputs, payloads, "b", 100.0))
        sender.start()

        def under_way() -> bool:
            answers.drain(set())
            return len([k for k in second if k in answers.by_key]) >= 200

        wait_until(under_way, 120, "the second stream under way", interval=0.2)
        kill_predictor(testbed_cluster, ml_namespace, "serve")
        assert len([k for k in second if k in answers.by_key]) < INPUTS  # killed with inputs still to come
        sender.join()
        wait_until(lambda: answers.drain(set(second)), 300, f"answers to all {INPUTS} inputs after the kill",
                   interval=0.5)
        for key in second:  # duplicates are the same input, identified by its message ID
            assert len({a["inputId"] for a in answers.by_key[key]}) == 1, answers.by_key[key]
    finally:
        client.close()
    final = wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "serve").get("serving") or {})
                       .get("readyReplicas") == 1 and s.get("predictions", 0) > 0 and s, 120,
                       "the restarted predictor ready and counting", interval=1)
    assert final["modelVersion"] == 1


def test_a_continuous_pipeline_swaps_in_version_2_while_answers_flow(
        testbed_cluster: Cluster, operator: OperatorProcess, ml_namespace: str, pulsar_broker: PulsarURLs,
        unique: Any) -> None:
    topic, inputs, outputs = unique("tp-live"), unique("live-in"), unique("live-out")
    train = digits_payloads(repeat=3)[1]  # 4,314 rows: 33 steps of 2 x 64, so one export at step 30
    publish(pulsar_broker.service_url, topic, train)
    body = pipeline("live", pulsar_broker, topic, mode="continuous", training={"exportEverySteps": 30})
    body["spec"]["serving"] = {"replicas": 1, "inputTopic": inputs, "outputTopic": outputs, "modelPollSeconds": 1}
    apply(testbed_cluster, ml_namespace, body)
    wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "live").get("serving") or {})
               .get("readyReplicas") == 1 and s.get("modelVersion") == 1 and s, 300,
               "one ready predictor serving model version 1", interval=1)

    client = pulsar.Client(pulsar_broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        answers = Answers(client, outputs)
        payloads, _ = held_out(2 * INPUTS)
        keys = [f"c{i}" for i in range(len(payloads))]
        sender = threading.Thread(target=send, args=(client, inputs, payloads, "c", 50.0))
        sender.start()

        def answered(count: int) -> bool:
            answers.drain(set())
            return len([k for k in keys if k in answers.by_key]) >= count

        wait_until(lambda: answered(100), 120, "answers from version 1 flowing", interval=0.5)
        publish(pulsar_broker.service_url, topic, train)  # 33 more steps: version 2 at step 60
        sender.join()
        wait_until(lambda: answers.drain(set(keys)), 300, "an answer to every input", interval=0.5)
        answers.drain(set(keys))
    finally:
        client.close()
    assert all(len(answers.by_key[k]) == 1 for k in keys), "an input was answered twice"
    versions = [answers.by_key[k][0]["modelVersion"] for k in keys]
    assert set(versions) == {1, 2}, f"versions answered: {sorted(set(versions))}"
    switch = versions.index(2)
    assert all(v == 2 for v in versions[switch:]), "an answer went back to version 1 after the swap"
    final = status(testbed_cluster, ml_namespace, "live")
    assert final["model"]["version"] >= 2 and final["phase"] == "Running"
