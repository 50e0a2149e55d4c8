"""The operator end to end on the test bed: TrainingPipeline in, trained model and honest status out.

Real parts only: the API server validates the CRD, the scheduler places the worker pods, the process
kubelet runs them (as host processes, in a namespace that enforces the `restricted` Pod Security
Standard), they train digits from the real Pulsar broker, and the operator runs as its own process with
its ServiceAccount's token. Each test reads the pipeline's status the way a user would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pulsetrain.digest import digest
from pulsetrain_operator.lifecycle import REFUSED_RETRY_SECONDS
from tests.conftest import Cluster, PulsarURLs
from tests.e2e.operator_harness import OperatorProcess, install_crd, kill_worker, operator_kubeconfig
from tests.integration.test_trainer import digits_payloads, publish
from tests.support import get_json, logs, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def operator(testbed_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    install_crd(testbed_cluster)
    directory = tmp_path_factory.mktemp("operator")
    process = OperatorProcess(operator_kubeconfig(testbed_cluster, directory), directory / "operator.log")
    if os.environ.get("PULSETRAIN_OPERATOR_DEPLOYED") != "1":
        process.start()
    yield process
    process.stop()
    print(f"operator log tail:\n{process.tail(30)}")


@pytest.fixture
def ml_namespace(testbed_cluster: Cluster, namespace: str) -> str:
    """The test's namespace, enforcing the restricted Pod Security Standard, with a data volume claim."""
    testbed_cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pulsetrain-data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    testbed_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(claim))
    return namespace


def pipeline(name: str, broker: PulsarURLs, topic: str, *, workers: int = 2, mode: str = "bounded",
             training: dict[str, Any] | None = None, run_policy: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "pulsetrain.dev/v1alpha1", "kind": "TrainingPipeline", "metadata": {"name": name},
        "spec": {
            "source": {"pulsar": {"serviceUrl": broker.pod_service_url, "adminUrl": broker.pod_admin_url,
                                  "topic": topic}},
            "data": {"format": "raw", "features": [{"name": "pixels", "dtype": "float32", "shape": [64]}],
                     "label": {"name": "digit", "dtype": "int64", "shape": []}},
            "model": {"task": "classification", "builtin": "mlp", "numClasses": 10, "learningRate": 0.01,
                      "mlp": {"hiddenUnits": [64]}, "metrics": ["accuracy"]},
            "training": {"workers": workers, "batchSize": 64, "mode": mode, "checkpointEverySteps": 20,
                         "seed": 7, **({"idleTimeoutSeconds": 8} if mode == "bounded" else {"exportEverySteps": 50}),
                         **(training or {})},
            "storage": {"claimName": "pulsetrain-data", "path": "/var/lib/pulsetrain"},
            "worker": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}},
            "runPolicy": {"terminationGracePeriodSeconds": 30, "restartBackoffSeconds": 1, "cleanPodPolicy": "None",
                          **(run_policy or {})},
        },
    }


def apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    result = cluster.kubectl("get", "trainingpipelines.pulsetrain.dev", name, "-n", namespace, "-o", "json")
    return dict(json.loads(result.stdout).get("status") or {})


def wait_phase(cluster: Cluster, operator: OperatorProcess, namespace: str, name: str, phase: str,
               timeout: float) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        current = status(cluster, namespace, name)
        if current.get("phase") == "Failed" and phase != "Failed":
            raise AssertionError(f"pipeline failed: {current.get('message')}\n{operator.tail()}")
        return current if current.get("phase") == phase else None

    try:
        return wait_until(check, timeout, f"phase {phase}", interval=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\noperator log:\n{operator.tail()}") from None


def worker_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = get_json(cluster, "pods", "-n", namespace, "-l", f"pulsetrain.dev/pipeline={name}")["items"]
    return list(items)


def events(cluster: Cluster, namespace: str, name: str) -> list[str]:
    found = get_json(cluster, "events", "-n", namespace,
                     "--field-selector", f"involvedObject.kind=TrainingPipeline,involvedObject.name={name}")
    return [e["reason"] for e in sorted(found["items"], key=lambda e: e["metadata"]["creationTimestamp"])]


def final_summary(cluster: Cluster, namespace: str, pod: str) -> dict[str, Any]:
    """The summary line a worker prints when it finishes (`pulsetrain: finished {...}`)."""
    match = re.search(r"pulsetrain: finished (\{.*\})", logs(cluster, namespace, pod))
    assert match, f"no summary line in the logs of {pod}"
    return dict(json.loads(match.group(1)))


def test_digits_pipeline_trains_to_succeeded(testbed_cluster: Cluster, operator: OperatorProcess,
                                             ml_namespace: str, pulsar_broker: PulsarURLs, unique: Any) -> None:
    topic = unique("tp-digits")
    payloads = digits_payloads(repeat=6)[1]
    publish(pulsar_broker.service_url, topic, payloads)
    apply(testbed_cluster, ml_namespace, pipeline("digits", pulsar_broker, topic))

    running = wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "digits")).get("progress", {})
                         .get("step", 0) > 0 and s, 180, "progress on the status while training", interval=1)
    assert running["phase"] in ("Running", "Succeeded") and running["attempt"] == 1
    done = wait_phase(testbed_cluster, operator, ml_namespace, "digits", "Succeeded", 300)

    assert done["progress"]["samples"] == len(payloads)
    assert done["progress"]["metrics"]["accuracy"] >= 0.95, done["progress"]
    assert done["model"]["version"] >= 1 and done["model"]["exportPath"].endswith(f"/{ml_namespace}/digits/export")
    assert done["workers"]["succeeded"] == 2 and done["restarts"] == 0
    assert done["observedGeneration"] == 1 and done["completionTime"] >= done["startTime"]
    assert {c["type"]: c["status"] for c in done["conditions"]}["Succeeded"] == "True"
    assert {"Created", "WorkersRunning", "TrainingFinished"} <= set(events(testbed_cluster, ml_namespace, "digits"))
    pods = worker_pods(testbed_cluster, ml_namespace, "digits")
    assert sorted(p["metadata"]["name"] for p in pods) == ["digits-worker-0", "digits-worker-1"]
    table = testbed_cluster.kubectl("get", "tp", "-n", ml_namespace).stdout
    assert re.search(r"digits\s+Succeeded\s+0/2", table), table


INTERRUPTIONS = {  # how worker 1 is interrupted mid-run: the restarts that counts, and the event that says so
    "sigkill": (1, "WorkerFailed"),
    "pod-deleted": (0, "WorkerDisrupted"),  # what a node drain does: the eviction deletes the pod gracefully
}


@pytest.mark.parametrize("interruption", sorted(INTERRUPTIONS))
def test_interrupted_worker_restarts_the_gang_and_trains_every_message_once(
        testbed_cluster: Cluster, operator: OperatorProcess, ml_namespace: str, pulsar_broker: PulsarURLs,
        unique: Any, interruption: str) -> None:
    restarts, reason = INTERRUPTIONS[interruption]
    name = f"cut-{interruption}"
    topic = unique("tp-cut")
    payloads = digits_payloads(repeat=6)[1]
    publish(pulsar_broker.service_url, topic, payloads)
    apply(testbed_cluster, ml_namespace, pipeline(name, pulsar_broker, topic, training={"checkpointEverySteps": 10}))
    wait_until(lambda: status(testbed_cluster, ml_namespace, name).get("progress", {})
               .get("lastCheckpointStep", 0) >= 10, 180, "a first checkpoint", interval=0.5)

    if interruption == "sigkill":
        kill_worker(testbed_cluster, ml_namespace, name, 1)
    else:
        testbed_cluster.kubectl("delete", "pod", f"{name}-worker-1", "-n", ml_namespace, "--wait=false")
    wait_until(lambda: reason in events(testbed_cluster, ml_namespace, name), 60, f"a {reason} event", interval=1)
    done = wait_phase(testbed_cluster, operator, ml_namespace, name, "Succeeded", 360)
    assert done["restarts"] == restarts and done["attempt"] == 2, done
    others = {"WorkerLost", "WorkerFailed", "WorkerDisrupted"} - {reason}
    assert not others & set(events(testbed_cluster, ml_namespace, name))  # one interruption, told one way
    summary = final_summary(testbed_cluster, ml_namespace, f"{name}-worker-0")
    assert summary["restoredStep"] >= 10  # the second attempt resumed from a checkpoint
    assert summary["trainedSamples"] == len(payloads)
    assert summary["digestSum"] == sum(digest(p) for p in payloads)
    assert done["progress"]["samples"] == len(payloads)


def test_scale_suspend_resume_and_delete(testbed_cluster: Cluster, operator: OperatorProcess, ml_namespace: str,
                                         pulsar_broker: PulsarURLs, unique: Any) -> None:
    topic = unique("tp-scale")
    publish(pulsar_broker.service_url, topic, digits_payloads(repeat=4)[1])
    apply(testbed_cluster, ml_namespace, pipeline("scale", pulsar_broker, topic, mode="continuous"))
    wait_phase(testbed_cluster, operator, ml_namespace, "scale", "Running", 180)

    testbed_cluster.kubectl("patch", "tp", "scale", "-n", ml_namespace, "--type=merge",
                            "-p", '{"spec": {"training": {"workers": 3}}}')
    wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "scale")).get("attempt") == 2
               and s.get("phase") == "Running" and s, 240, "attempt 2 running with 3 workers", interval=1)
    pods = worker_pods(testbed_cluster, ml_namespace, "scale")
    assert sorted(p["metadata"]["name"] for p in pods) == [f"scale-worker-{i}" for i in range(3)]
    assert {p["metadata"]["labels"]["pulsetrain.dev/attempt"] for p in pods} == {"2"}
    assert "Rescaling" in events(testbed_cluster, ml_namespace, "scale")

    testbed_cluster.kubectl("patch", "tp", "scale", "-n", ml_namespace, "--type=merge",
                            "-p", '{"spec": {"runPolicy": {"suspend": true}}}')
    wait_until(lambda: status(testbed_cluster, ml_namespace, "scale").get("phase") == "Suspended"
               and not worker_pods(testbed_cluster, ml_namespace, "scale"), 120, "suspended with no pods", interval=1)
    step_at_suspend = status(testbed_cluster, ml_namespace, "scale")["progress"].get("lastCheckpointStep", 1)

    testbed_cluster.kubectl("patch", "tp", "scale", "-n", ml_namespace, "--type=merge",
                            "-p", '{"spec": {"runPolicy": {"suspend": false}}}')
    resumed = wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "scale")).get("phase") == "Running"
                         and s.get("attempt") == 3 and s, 240, "running again (attempt 3)", interval=1)
    assert resumed["restarts"] == 0
    wait_until(lambda: status(testbed_cluster, ml_namespace, "scale").get("progress", {}).get("step", 0)
               >= step_at_suspend, 120, "progress resumed from the suspended checkpoint", interval=1)

    testbed_cluster.kubectl("delete", "tp", "scale", "-n", ml_namespace, "--wait=true", "--timeout=60s")
    wait_until(lambda: not worker_pods(testbed_cluster, ml_namespace, "scale"), 120, "every worker pod gone")
    left = get_json(testbed_cluster, "services,configmaps", "-n", ml_namespace, "-l",
                    "pulsetrain.dev/pipeline=scale")["items"]
    assert left == []


def test_refused_and_unschedulable_pods_are_reported_on_the_pipeline(
        testbed_cluster: Cluster, operator: OperatorProcess, ml_namespace: str, pulsar_broker: PulsarURLs,
        unique: Any) -> None:
    """Two ways a gang never starts that used to show only in the operator's log or at the pending timeout: the
    API server refuses a pod (here a ResourceQuota of one pod), and the scheduler cannot place one."""
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "one-pod"},
             "spec": {"hard": {"pods": "1"}}}
    apply(testbed_cluster, ml_namespace, quota)
    wait_until(lambda: get_json(testbed_cluster, "resourcequota", "one-pod", "-n", ml_namespace)
               .get("status", {}).get("hard"), 60, "the quota controller counting pods")
    apply(testbed_cluster, ml_namespace, pipeline("quota", pulsar_broker, unique("tp-quota")))
    refused = wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "quota")).get("reason") == "FailedCreate"
                         and s, 60, "FailedCreate on the status", interval=1)
    assert refused["phase"] == "Pending"
    assert refused["message"].startswith("creating pod quota-worker-1 was refused: 403 Forbidden: "), refused
    assert "exceeded quota: one-pod" in refused["message"], refused
    assert "FailedCreate" in events(testbed_cluster, ml_namespace, "quota")
    time.sleep(REFUSED_RETRY_SECONDS + 2)  # a retry: the pod that was created is not created again (nor refused)
    assert status(testbed_cluster, ml_namespace, "quota")["message"].startswith("creating pod quota-worker-1 ")
    testbed_cluster.kubectl("delete", "resourcequota", "one-pod", "-n", ml_namespace)
    wait_until(lambda: len(worker_pods(testbed_cluster, ml_namespace, "quota")) == 2, 60,
               "the refused pod created once the quota is gone", interval=1)
    started = wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "quota")).get("reason") != "FailedCreate"
                         and s, 30, "the refusal gone from the status", interval=1)
    assert started["attempt"] == 1 and started["restarts"] == 0 and started["phase"] in ("Pending", "Running")
    testbed_cluster.kubectl("delete", "tp", "quota", "-n", ml_namespace, "--wait=true", "--timeout=60s")

    nowhere = pipeline("nowhere", pulsar_broker, unique("tp-nowhere"))
    nowhere["spec"]["worker"]["nodeSelector"] = {"pulsetrain.dev/no-such-pool": "x"}
    apply(testbed_cluster, ml_namespace, nowhere)
    stuck = wait_until(lambda: (s := status(testbed_cluster, ml_namespace, "nowhere")).get("reason")
                       == "WorkersNotStarting" and s, 60, "WorkersNotStarting on the status", interval=1)
    assert stuck["phase"] == "Pending"
    assert re.search(r"pod nowhere-worker-\d is not starting: Unschedulable: 0/\d+ nodes are available",
                     stuck["message"]), stuck
    assert "WorkersNotStarting" in events(testbed_cluster, ml_namespace, "nowhere")
    testbed_cluster.kubectl("delete", "tp", "nowhere", "-n", ml_namespace, "--wait=true", "--timeout=60s")


def test_a_spec_the_workers_would_refuse_fails_at_once_without_pods(
        testbed_cluster: Cluster, operator: OperatorProcess, ml_namespace: str, pulsar_broker: PulsarURLs,
        unique: Any) -> None:
    """Metrics that do not fit the task pass the CRD's schema (free strings); the operator runs the workers'
    parser on the spec and fails the pipeline, naming the field, instead of starting pods that would exit 2."""
    body = pipeline("refused", pulsar_broker, unique("tp-refused"))
    body["spec"]["model"]["metrics"] = ["auc"]
    apply(testbed_cluster, ml_namespace, body)
    failed = wait_phase(testbed_cluster, operator, ml_namespace, "refused", "Failed", 60)
    assert failed["reason"] == "InvalidSpec", failed
    assert failed["message"].startswith("the workers would refuse this pipeline: spec.model.metrics[0]: 'auc' is "
                                        "not one of accuracy, top_k_accuracy"), failed
    assert "InvalidSpec" in events(testbed_cluster, ml_namespace, "refused")
    assert worker_pods(testbed_cluster, ml_namespace, "refused") == []


def test_a_pipeline_deleted_and_applied_again_at_once_waits_for_its_predecessor(
        testbed_cluster: Cluster, operator: OperatorProcess, ml_namespace: str, pulsar_broker: PulsarURLs,
        unique: Any) -> None:
    """The README's advice for a finished pipeline (delete it, apply it again) while the garbage collector is still
    stopping the old workers: the new pipeline must not take their pods, Service or ConfigMap for its own."""
    topic = unique("tp-again")
    publish(pulsar_broker.service_url, topic, digits_payloads(repeat=2)[1])
    body = pipeline("again", pulsar_broker, topic, mode="continuous")
    apply(testbed_cluster, ml_namespace, body)
    wait_phase(testbed_cluster, operator, ml_namespace, "again", "Running", 180)
    testbed_cluster.kubectl("delete", "tp", "again", "-n", ml_namespace, "--wait=true", "--timeout=60s")
    apply(testbed_cluster, ml_namespace, body)  # at once: the old workers are still checkpointing
    uid = get_json(testbed_cluster, "tp", "again", "-n", ml_namespace)["metadata"]["uid"]

    def running_as_its_own() -> dict[str, Any] | None:
        current = status(testbed_cluster, ml_namespace, "again")
        pods = worker_pods(testbed_cluster, ml_namespace, "again")
        owners = {ref["uid"] for p in pods for ref in p["metadata"].get("ownerReferences", [])}
        return current if current.get("phase") == "Running" and owners == {uid} and len(pods) == 2 else None

    current = wait_until(running_as_its_own, 180, "the new pipeline running with its own two pods", interval=1)
    assert current["restarts"] == 0, current
    seen = events(testbed_cluster, ml_namespace, "again")
    assert not {"WorkerFailed", "WorkerLost", "PermanentError", "PodPendingTimeout"} & set(seen), seen
    for kind in ("service", "configmap"):
        for obj in get_json(testbed_cluster, kind, "-n", ml_namespace, "-l", "pulsetrain.dev/pipeline=again")["items"]:
            assert [ref["uid"] for ref in obj["metadata"]["ownerReferences"]] == [uid], obj["metadata"]
    testbed_cluster.kubectl("delete", "tp", "again", "-n", ml_namespace, "--wait=true", "--timeout=60s")


def test_operator_restart_keeps_pods_and_status_continues(testbed_cluster: Cluster, operator: OperatorProcess,
                                                          ml_namespace: str, pulsar_broker: PulsarURLs,
                                                          unique: Any, tmp_path: Path) -> None:
    if os.environ.get("PULSETRAIN_OPERATOR_DEPLOYED") == "1":
        pytest.skip("the operator runs in the cluster; this test restarts its own process")
    topic = unique("tp-restart")
    publish(pulsar_broker.service_url, topic, digits_payloads(repeat=4)[1])
    apply(testbed_cluster, ml_namespace, pipeline("restart", pulsar_broker, topic, mode="continuous"))
    wait_until(lambda: status(testbed_cluster, ml_namespace, "restart").get("progress", {}).get("step", 0) > 0,
               180, "progress while running", interval=1)
    pods = worker_pods(testbed_cluster, ml_namespace, "restart")
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}

    operator.stop(signal.SIGKILL)
    step_while_down = status(testbed_cluster, ml_namespace, "restart")["progress"]["step"]
    operator.start()
    # a continuous pipeline steps only while data comes
    publish(pulsar_broker.service_url, topic, digits_payloads(repeat=1)[1])
    wait_until(lambda: status(testbed_cluster, ml_namespace, "restart")["progress"]["step"] > step_while_down,
               60, "the status moving again after the operator restart", interval=1)
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in worker_pods(testbed_cluster, ml_namespace, "restart")}
    assert after == before  # no pod recreated, none duplicated
    current = status(testbed_cluster, ml_namespace, "restart")
    assert current["phase"] == "Running" and current["attempt"] == 1
    testbed_cluster.kubectl("delete", "tp", "restart", "-n", ml_namespace, "--wait=true", "--timeout=60s")
