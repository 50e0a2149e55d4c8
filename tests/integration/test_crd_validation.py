"""The TrainingPipeline CRD on a real kube-apiserver: what it accepts, what it fills in, what it refuses.

Why this exists: the schema's bounds, patterns, enums and CEL rules are enforced by the API server, not by
our code, so only the API server can show that a bad spec is refused before the operator ever sees it,
with an error that names the offending field. The CRD is applied once per module (server-side apply,
left installed: deleting a CRD deletes every pipeline); invalid specs are tried with a server-side dry
run, immutability with a real object and a patch.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulsetrain_operator import crd
from tests.conftest import Cluster
from tests.support import get_json, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRD_MANIFEST = ROOT / "manifests" / "crd" / f"{crd.NAME}.yaml"
DIGITS = ROOT / "manifests" / "samples" / "digits.yaml"
DRY_RUN_NAMESPACE = "default"  # nothing is stored by a dry run, so any existing namespace will do
DELETE = object()  # an edit that removes the field


def digits() -> dict[str, Any]:
    sample: dict[str, Any] = yaml.safe_load(DIGITS.read_text())
    return sample


def edited(document: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """A copy of `document` with each dotted path (`spec.training.workers`) set to its value or deleted."""
    result = copy.deepcopy(document)
    for path, value in edits.items():
        *parents, last = path.split(".")
        target = result
        for key in parents:
            target = target.setdefault(key, {})
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return result


def dry_run_create(cluster: Cluster, document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`kubectl create --dry-run=server` with strict field validation (unknown fields are errors)."""
    return cluster.kubectl("create", "--dry-run=server", "--validate=strict", "-n", DRY_RUN_NAMESPACE,
                           "-o", "json", "-f", "-", input=json.dumps(document), check=False)


@pytest.fixture(scope="module")
def cluster(testbed_cluster: Cluster) -> Iterator[Cluster]:
    """The test bed with the rendered CRD applied and serving its current schema."""
    testbed_cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=pulsetrain-tests",
                            "-f", str(CRD_MANIFEST))
    testbed_cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd.NAME}", "--timeout=60s")

    def serving() -> bool:  # Established can come a moment before the resource is served
        return dry_run_create(testbed_cluster, digits()).returncode == 0

    wait_until(serving, 30, "the TrainingPipeline resource to be served")
    yield testbed_cluster


def _expected_digits_spec() -> dict[str, Any]:
    """The digits sample's spec as the API server stores it: the sample plus every schema default."""
    from pulsetrain_operator import defaults

    spec: dict[str, Any] = digits()["spec"]
    pulsar = spec["source"]["pulsar"]
    pulsar.update(subscription=defaults.SUBSCRIPTION, subscriptionType=defaults.SUBSCRIPTION_TYPE,
                  initialPosition=defaults.INITIAL_POSITION)
    spec["storage"]["path"] = defaults.STORAGE_PATH
    spec["worker"] = {"command": list(defaults.WORKER_COMMAND), "imagePullPolicy": defaults.IMAGE_PULL_POLICY,
                      "port": defaults.COLLECTIVE_PORT, "metricsPort": defaults.METRICS_PORT}
    spec["runPolicy"] = {"backoffLimit": defaults.BACKOFF_LIMIT, "cleanPodPolicy": defaults.CLEAN_POD_POLICY,
                         "pendingTimeoutSeconds": defaults.PENDING_TIMEOUT_SECONDS,
                         "terminationGracePeriodSeconds": defaults.TERMINATION_GRACE_PERIOD_SECONDS,
                         "restartBackoffSeconds": defaults.RESTART_BACKOFF_SECONDS}
    return spec


def test_digits_sample_is_accepted_with_defaults_filled_in(cluster: Cluster) -> None:
    result = dry_run_create(cluster, digits())
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)["spec"]
    assert stored == _expected_digits_spec()
    assert stored["runPolicy"]["backoffLimit"] == 3
    assert stored["source"]["pulsar"]["subscription"] == "pulsetrain"
    assert stored["worker"]["port"] == 2222 and stored["storage"]["path"] == "/var/lib/pulsetrain"
    assert "batchSize" in stored["training"] and "loss" not in stored["model"]  # the worker's defaults stay its own


def test_continuous_sample_is_accepted(cluster: Cluster) -> None:
    sample = yaml.safe_load((ROOT / "manifests" / "samples" / "continuous.yaml").read_text())
    result = dry_run_create(cluster, sample)
    assert result.returncode == 0, result.stderr


TLS_URL = "pulsar+ssl://pulsar.pulsar.svc.cluster.local:6651"
EVERY_OPTIONAL_FIELD = {
    "spec.source.pulsar.serviceUrl": TLS_URL,
    "spec.source.pulsar.subscription": "digits-trainer",
    "spec.source.pulsar.subscriptionType": "KeyShared",
    "spec.source.pulsar.initialPosition": "Latest",
    "spec.source.pulsar.receiverQueueSize": 500,
    "spec.source.pulsar.batchReceiveMaxMessages": 64,
    "spec.source.pulsar.batchReceiveTimeoutMs": 250,
    "spec.source.pulsar.tlsValidateHostname": True,
    "spec.source.pulsar.deadLetterTopic": "persistent://public/default/digits-dlq",
    "spec.source.pulsar.authentication": {"token": {"secretName": "pulsar-token", "key": "jwt"}},
    "spec.source.pulsar.tlsTrustCerts": {"secretName": "pulsar-ca", "key": "bundle.pem"},
    "spec.data.normalization": {"mode": "given", "mean": [8.0] * 64, "std": [4.5] * 64},
    "spec.model.optimizer": "sgd",
    "spec.model.loss": "sparse_categorical_crossentropy",
    "spec.model.metrics": ["accuracy", "top_k_accuracy"],
    "spec.model.preprocess": "mypkg.steps:scale",
    "spec.training.maxSteps": 1000,
    "spec.training.maxMessages": 100_000,
    "spec.training.checkpointEverySteps": 50,
    "spec.training.checkpointEverySeconds": 120.5,
    "spec.training.keepCheckpoints": 5,
    "spec.training.seed": 2**63 - 1,
    "spec.storage.path": "/data/pulsetrain",
    "spec.worker": {
        "image": "registry.example/pulsetrain/worker:1.2.3", "imagePullPolicy": "Always",
        "command": ["/opt/venv/bin/python", "-m", "pulsetrain.worker"],
        "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": 2, "nvidia.com/gpu": 1}},
        "nodeSelector": {"pool": "training"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule",
                         "tolerationSeconds": 60}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}},
        "env": [{"name": "FOO", "value": "bar"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "serviceAccountName": "trainer", "port": 3333, "metricsPort": 9200,
    },
    "spec.runPolicy": {"backoffLimit": 5, "activeDeadlineSeconds": 3600,  # ttl: not with serving (below)
                       "cleanPodPolicy": "All", "suspend": False, "pendingTimeoutSeconds": 300,
                       "terminationGracePeriodSeconds": 90, "restartBackoffSeconds": 5},
    "spec.serving": {"replicas": 2, "inputTopic": "digits-in", "outputTopic": "digits-out",
                     "subscription": "answers", "subscriptionType": "KeyShared", "maxBatchSize": 128,
                     "maxLatencyMs": 15, "modelVersion": 3, "deadLetterTopic": "digits-in-dlq",
                     "modelPollSeconds": 2.5, "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
}


def test_every_optional_field_is_accepted_as_given(cluster: Cluster) -> None:
    result = dry_run_create(cluster, edited(digits(), EVERY_OPTIONAL_FIELD))
    assert result.returncode == 0, result.stderr
    stored = json.loads(result.stdout)
    for path, given in EVERY_OPTIONAL_FIELD.items():
        value = stored
        for key in path.split("."):
            value = value[key]
        assert value == given, path


def test_a_pipeline_without_serving_may_be_deleted_after_it_finished(cluster: Cluster) -> None:
    result = dry_run_create(cluster, edited(digits(), {"spec.runPolicy": {"ttlSecondsAfterFinished": 600}}))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["runPolicy"]["ttlSecondsAfterFinished"] == 600


@dataclass(frozen=True)
class Invalid:
    """A spec the API server must refuse: the edits to the digits sample, and what the error must say."""

    id: str
    edits: dict[str, Any]
    field: str
    word: str


PIXELS = {"name": "pixels", "dtype": "float32", "shape": [64]}
INVALID = [
    Invalid("workers-not-an-integer", {"spec.training.workers": "two"}, "spec.training.workers", "integer"),
    Invalid("workers-zero", {"spec.training.workers": 0}, "spec.training.workers", "greater than or equal to 1"),
    Invalid("workers-above-64", {"spec.training.workers": 65}, "spec.training.workers", "less than or equal to 64"),
    Invalid("batch-size-zero", {"spec.training.batchSize": 0}, "spec.training.batchSize", "greater than or equal"),
    Invalid("learning-rate-zero", {"spec.model.learningRate": 0}, "spec.model.learningRate", "greater than 0"),
    Invalid("learning-rate-negative", {"spec.model.learningRate": -0.01}, "spec.model.learningRate", "greater"),
    Invalid("topic-missing", {"spec.source.pulsar.topic": DELETE}, "spec.source.pulsar.topic", "Required"),
    Invalid("topic-non-persistent", {"spec.source.pulsar.topic": "non-persistent://public/default/digits"},
            "spec.source.pulsar.topic", "should match"),
    Invalid("service-url-missing", {"spec.source.pulsar.serviceUrl": DELETE}, "spec.source.pulsar.serviceUrl",
            "Required"),
    Invalid("service-url-http", {"spec.source.pulsar.serviceUrl": "http://pulsar:6650"},
            "spec.source.pulsar.serviceUrl", "should match"),
    Invalid("custom-not-module-function", {"spec.model.builtin": DELETE, "spec.model.mlp": DELETE,
                                           "spec.model.custom": "mymodels.build"}, "spec.model.custom", "should match"),
    Invalid("subscription-type-exclusive", {"spec.source.pulsar.subscriptionType": "Exclusive"},
            "spec.source.pulsar.subscriptionType", "Unsupported value"),
    Invalid("mode-streaming", {"spec.training.mode": "streaming"}, "spec.training.mode", "Unsupported value"),
    Invalid("format-xml", {"spec.data.format": "xml"}, "spec.data.format", "Unsupported value"),
    Invalid("clean-pod-policy-some", {"spec.runPolicy.cleanPodPolicy": "Some"}, "spec.runPolicy.cleanPodPolicy",
            "Unsupported value"),
    Invalid("builtin-and-custom", {"spec.model.mlp": DELETE, "spec.model.custom": "mymodels:build"},
            "spec.model.custom", "mutually exclusive"),
    Invalid("classification-without-num-classes", {"spec.model.numClasses": DELETE}, "spec.model.numClasses",
            "required"),
    Invalid("num-classes-with-regression", {"spec.model.task": "regression", "spec.data.label.dtype": "float32"},
            "spec.model.numClasses", "only allowed"),
    Invalid("mlp-with-linear", {"spec.model.builtin": "linear"}, "spec.model.mlp", "only allowed"),
    Invalid("csv-options-with-raw", {"spec.data.csv": {"delimiter": ";"}}, "spec.data.csv", "only allowed"),
    Invalid("max-steps-with-continuous", {"spec.training.mode": "continuous", "spec.training.idleTimeoutSeconds":
                                          DELETE, "spec.training.maxSteps": 100}, "spec.training.maxSteps",
            "only allowed"),
    Invalid("export-every-steps-with-bounded", {"spec.training.exportEverySteps": 100},
            "spec.training.exportEverySteps", "only allowed"),
    Invalid("token-and-tls", {"spec.source.pulsar.serviceUrl": TLS_URL, "spec.source.pulsar.authentication": {
        "token": {"secretName": "pulsar-token"}, "tls": {"secretName": "pulsar-client-tls"}}},
            "spec.source.pulsar.authentication", "exactly one"),
    Invalid("tls-without-pulsar-ssl", {"spec.source.pulsar.authentication": {"tls": {"secretName": "client-tls"}}},
            "spec.source.pulsar.serviceUrl", "pulsar+ssl"),
    Invalid("hostname-check-without-pulsar-ssl", {"spec.source.pulsar.tlsValidateHostname": True},
            "spec.source.pulsar.serviceUrl", "pulsar+ssl"),
    Invalid("label-named-like-a-feature", {"spec.data.label.name": "pixels"}, "spec.data.label.name", "differ"),
    Invalid("duplicate-feature-names", {"spec.data.features": [PIXELS, PIXELS]}, "spec.data.features", "unique"),
    Invalid("normalization-given-without-std", {"spec.data.normalization": {"mode": "given", "mean": [0.5] * 64}},
            "spec.data.normalization", "required"),
    Invalid("normalization-lengths-differ", {"spec.data.normalization": {
        "mode": "given", "mean": [0.5] * 64, "std": [1.0] * 63}}, "spec.data.normalization", "equally many"),
    Invalid("metrics-port-is-collective-port", {"spec.worker.metricsPort": 2222}, "spec.worker.metricsPort",
            "differ"),
    Invalid("name-too-long-for-pod-names", {"metadata.name": "d" * 54}, "metadata.name", "DNS label"),
    Invalid("unknown-field", {"spec.training.epochs": 3}, "spec.training.epochs", "unknown field"),
    Invalid("serving-without-output-topic", {"spec.serving": {"inputTopic": "in"}}, "spec.serving.outputTopic",
            "Required"),
    Invalid("serving-answers-onto-its-input", {"spec.serving": {"inputTopic": "in", "outputTopic": "in"}},
            "spec.serving.outputTopic", "differ"),
    Invalid("serving-model-version-zero", {"spec.serving": {"inputTopic": "in", "outputTopic": "out",
                                                            "modelVersion": 0}}, "spec.serving.modelVersion",
            "'latest' or a version number"),
    Invalid("serving-model-version-newest", {"spec.serving": {"inputTopic": "in", "outputTopic": "out",
                                                              "modelVersion": "newest"}}, "spec.serving.modelVersion",
            "'latest' or a version number"),
    Invalid("storage-without-a-claim", {"spec.storage": {"path": "/data"}}, "spec.storage.claimName",
            "storage.claimName is required"),
    Invalid("serving-deleted-with-a-finished-pipeline", {
        "spec.runPolicy": {"ttlSecondsAfterFinished": 60}, "spec.serving": {"inputTopic": "in", "outputTopic": "out"}},
        "spec.runPolicy.ttlSecondsAfterFinished", "delete its predictors"),
    Invalid("serving-batch-too-large", {"spec.serving": {"inputTopic": "in", "outputTopic": "out",
                                                         "maxBatchSize": 5000}}, "spec.serving.maxBatchSize",
            "less than or equal to 4096"),
]


@pytest.mark.parametrize("case", INVALID, ids=[case.id for case in INVALID])
def test_invalid_spec_is_refused_naming_the_field(cluster: Cluster, case: Invalid) -> None:
    result = dry_run_create(cluster, edited(digits(), case.edits))
    assert result.returncode != 0, f"accepted: {case.edits}"
    assert case.field in result.stderr, result.stderr
    assert case.word in result.stderr, result.stderr


@pytest.fixture
def pipeline(cluster: Cluster, namespace: str) -> str:
    """The digits sample created (for real) in a fresh namespace; its name. No operator acts on it here."""
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(digits()))
    name: str = digits()["metadata"]["name"]
    return name


def merge_patch(cluster: Cluster, namespace: str, name: str, patch: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("patch", f"{crd.PLURAL}.{crd.GROUP}", name, "-n", namespace, "--type=merge",
                           "-p", json.dumps(patch), check=False)


IMMUTABLE = {
    "topic": ({"source": {"pulsar": {"topic": "digits-v2"}}}, "spec.source.pulsar.topic"),
    "subscription": ({"source": {"pulsar": {"subscription": "other"}}}, "spec.source.pulsar.subscription"),
    "model": ({"model": {"learningRate": 0.02}}, "spec.model"),
    "data": ({"data": {"format": "json"}}, "spec.data"),
    "storage": ({"storage": {"claimName": "other-data"}}, "spec.storage"),
}


@pytest.mark.parametrize("change", IMMUTABLE, ids=[f"{key}-changed" for key in IMMUTABLE])
def test_immutable_field_cannot_change_after_creation(cluster: Cluster, namespace: str, pipeline: str,
                                                      change: str) -> None:
    patch, path = IMMUTABLE[change]
    result = merge_patch(cluster, namespace, pipeline, {"spec": patch})
    assert result.returncode != 0, f"{path} was changed"
    assert f"{path} is immutable" in result.stderr, result.stderr
    stored = get_json(cluster, f"{crd.PLURAL}.{crd.GROUP}", pipeline, "-n", namespace)
    assert stored["spec"]["source"]["pulsar"]["topic"] == "digits" and stored["spec"]["model"]["learningRate"] == 0.01


def test_workers_and_suspend_can_change(cluster: Cluster, namespace: str, pipeline: str) -> None:
    result = merge_patch(cluster, namespace, pipeline, {"spec": {"training": {"workers": 3},
                                                                 "runPolicy": {"suspend": True}}})
    assert result.returncode == 0, result.stderr
    stored = get_json(cluster, f"{crd.PLURAL}.{crd.GROUP}", pipeline, "-n", namespace)
    assert stored["spec"]["training"]["workers"] == 3 and stored["spec"]["runPolicy"]["suspend"] is True
    assert stored["metadata"]["generation"] == 2


def test_status_is_a_subresource_with_its_schema(cluster: Cluster, namespace: str, pipeline: str) -> None:
    status = {"phase": "Running", "workersReady": "1/2", "workers": {"desired": 2, "ready": 1},
              "progress": {"step": 40, "loss": 0.5, "metrics": {"accuracy": 0.9}}}
    cluster.kubectl("patch", f"{crd.PLURAL}.{crd.GROUP}", pipeline, "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": status}))
    table = cluster.kubectl("get", "tp", pipeline, "-n", namespace, "--no-headers").stdout.split()
    assert table[:4] == [pipeline, "Running", "1/2", "40"], table
    refused = cluster.kubectl("patch", f"{crd.PLURAL}.{crd.GROUP}", pipeline, "-n", namespace,
                              "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Done"}}',
                              check=False)
    assert refused.returncode != 0 and "status.phase" in refused.stderr, refused.stderr


def _apply_crd(cluster: Cluster, document: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=pulsetrain-tests", "-f", "-",
                    input=json.dumps(document))


def test_a_pipeline_stored_before_the_claim_was_required_can_still_be_updated(cluster: Cluster,
                                                                              namespace: str) -> None:
    """An upgrade of the CRD: a pipeline created without `storage.claimName` before the rule existed keeps its
    (immutable) storage, and validation ratcheting lets its other fields and its status change; a new pipeline
    without a claim is refused."""
    claimless = edited(digits(), {"spec.storage": {"path": "/data"}, "metadata.name": "claimless"})
    current = yaml.safe_load(CRD_MANIFEST.read_text())
    before = copy.deepcopy(current)
    storage = before["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["storage"]
    storage["x-kubernetes-validations"] = [r for r in storage["x-kubernetes-validations"]
                                          if r["rule"] != crd.STORAGE_NEEDS_A_CLAIM]
    try:
        _apply_crd(cluster, before)
        wait_until(lambda: dry_run_create(cluster, claimless).returncode == 0, 30, "the CRD without the claim rule")
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(claimless))
    finally:
        _apply_crd(cluster, current)
    wait_until(lambda: dry_run_create(cluster, claimless).returncode != 0, 30, "the CRD with the claim rule again")
    assert "storage.claimName is required" in dry_run_create(cluster, claimless).stderr
    suspended = merge_patch(cluster, namespace, "claimless", {"spec": {"runPolicy": {"suspend": True}}})
    assert suspended.returncode == 0, suspended.stderr
    status = cluster.kubectl("patch", f"{crd.PLURAL}.{crd.GROUP}", "claimless", "-n", namespace,
                             "--subresource=status", "--type=merge", "-p", '{"status": {"phase": "Suspended"}}',
                             check=False)
    assert status.returncode == 0, status.stderr
