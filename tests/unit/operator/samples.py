"""Sample TrainingPipeline resources shared by the builder tests, each a fresh deep copy per call.

Every sample is a spec the worker accepts once rendered (`test_config_builder` checks that), so a test
can change one field and know any difference it sees comes from that field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

UID = "6f1c2a4e-0000-4000-8000-000000000001"

MINIMAL_SPEC: dict[str, Any] = {
    "source": {"pulsar": {"serviceUrl": "pulsar://pulsar.pulsar.svc:6650", "topic": "digits"}},
    "data": {"format": "raw",
             "features": [{"name": "pixels", "dtype": "float32", "shape": [64]}],
             "label": {"name": "digit", "dtype": "int32", "shape": []}},
    "model": {"task": "classification", "numClasses": 10},
}

FULL_SPEC: dict[str, Any] = {
    "source": {"pulsar": {
        "serviceUrl": "pulsar://pulsar.pulsar.svc:6650",
        "adminUrl": "http://pulsar.pulsar.svc:8080",
        "topic": "persistent://public/default/digits",
        "subscription": "digits-training",
        "subscriptionType": "KeyShared",
        "initialPosition": "Latest",
        "receiverQueueSize": 500,
        "batchReceiveTimeoutMs": 250,
        "batchReceiveMaxMessages": 64,
        "deadLetterTopic": "persistent://public/default/digits-dlq",
    }},
    "data": {"format": "csv",
             "features": [{"name": "pixels", "dtype": "float32", "shape": [64]}],
             "label": {"name": "digit", "dtype": "int32", "shape": []},
             "csv": {"delimiter": ";", "header": True},
             "normalization": {"mode": "estimate", "estimateRecords": 500}},
    "model": {"task": "classification", "builtin": "mlp", "numClasses": 10,
              "mlp": {"hiddenUnits": [128, 64], "activation": "gelu", "dropout": 0.1},
              "optimizer": "sgd", "learningRate": 0.01, "loss": "sparse_categorical_crossentropy",
              "metrics": ["accuracy", "top_k_accuracy"]},
    "training": {"workers": 3, "batchSize": 32, "mode": "bounded", "idleTimeoutSeconds": 20, "maxSteps": 1000,
                 "maxMessages": 100000, "checkpointEverySteps": 50, "checkpointEverySeconds": 120,
                 "keepCheckpoints": 5, "seed": 7},
    "storage": {"claimName": "pulsetrain-data", "path": "/data/pulsetrain"},
    "worker": {
        "image": "registry.example/pulsetrain/worker:1.2.3",
        "imagePullPolicy": "Always",
        "command": ["/opt/venv/bin/python", "-m", "pulsetrain.worker"],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "nodeSelector": {"pool": "training"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}},
        "env": [{"name": "FOO", "value": "bar"},
                {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"}],
        "serviceAccountName": "trainer",
        "imagePullSecrets": [{"name": "registry-example"}],
        "port": 3333,
        "metricsPort": 9200,
    },
    "runPolicy": {"backoffLimit": 5, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 600,
                  "cleanPodPolicy": "All", "suspend": False, "pendingTimeoutSeconds": 300,
                  "terminationGracePeriodSeconds": 90, "restartBackoffSeconds": 5},
}

SERVING: dict[str, Any] = {"replicas": 2, "inputTopic": "digits-in", "outputTopic": "digits-out",
                           "maxBatchSize": 32, "maxLatencyMs": 10, "modelVersion": "latest",
                           "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}

CONTINUOUS_TRAINING: dict[str, Any] = {"workers": 2, "mode": "continuous", "exportEverySteps": 1000,
                                       "exportEverySeconds": 600}

TOKEN_AUTH: dict[str, Any] = {"token": {"secretName": "pulsar-token", "key": "jwt"}}
TLS_AUTH: dict[str, Any] = {"tls": {"secretName": "pulsar-client-tls"}}
TRUST_CERTS: dict[str, Any] = {"secretName": "pulsar-ca", "key": "bundle.pem"}
TLS_URL = "pulsar+ssl://pulsar.pulsar.svc:6651"


def resource(spec: Mapping[str, Any], *, name: str = "digits", namespace: str = "ml") -> dict[str, Any]:
    """A TrainingPipeline object around a deep copy of `spec`."""
    return {
        "apiVersion": "pulsetrain.dev/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": name, "namespace": namespace, "uid": UID, "generation": 1},
        "spec": copy.deepcopy(dict(spec)),
    }


def edited(tp: Mapping[str, Any], edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    """A deep copy of `tp` with `edit` applied to its spec."""
    result = copy.deepcopy(dict(tp))
    edit(result["spec"])
    return result


def minimal(**kwargs: str) -> dict[str, Any]:
    return resource(MINIMAL_SPEC, **kwargs)


def full() -> dict[str, Any]:
    return resource(FULL_SPEC)


def continuous() -> dict[str, Any]:
    return edited(minimal(), lambda spec: spec.update(training=copy.deepcopy(CONTINUOUS_TRAINING)))


def serving() -> dict[str, Any]:
    """The minimal pipeline with predictors."""
    return edited(minimal(), lambda spec: spec.update(serving=copy.deepcopy(SERVING)))


def token() -> dict[str, Any]:
    """Token authentication, key given."""
    return edited(minimal(), lambda spec: spec["source"]["pulsar"].update(authentication=copy.deepcopy(TOKEN_AUTH)))


def tls() -> dict[str, Any]:
    """Mutual TLS plus a CA bundle, over pulsar+ssl://."""
    def edit(spec: dict[str, Any]) -> None:
        spec["source"]["pulsar"].update(serviceUrl=TLS_URL, authentication=copy.deepcopy(TLS_AUTH),
                                        tlsTrustCerts=copy.deepcopy(TRUST_CERTS))
    return edited(minimal(), edit)


ALL: dict[str, Callable[[], dict[str, Any]]] = {
    "minimal": minimal, "full": full, "continuous": continuous, "token": token, "tls": tls, "serving": serving,
}
