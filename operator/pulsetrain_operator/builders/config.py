"""TrainingPipeline spec → the worker configuration document that `python -m pulsetrain.worker` reads.

Why this exists: the spec is written for Kubernetes users (Secret names, a storage root, a worker count);
the worker reads one JSON document of files, paths and ports (`pulsetrain.config`). This module is the
one translation between them, so the ConfigMap, the pod hash and the tests all see the same document:
Secrets become the file paths the pod builder mounts them at, the storage root becomes the pipeline's
own directories, and `data`, `model` and `training` (less `workers`) are copied as they are.

Fields the operator itself relies on (subscription, subscription type, initial position, training mode)
are written out with the defaults from `defaults.py` when absent, so the worker and the operator never
act on different defaults. The other optional fields are copied only when present: the worker's own
defaults apply. The result is not checked while it is built; `worker_refusal` runs it through the worker's own
parser (`pulsetrain.config.load_config`), which knows what the CRD's schema cannot say (the metrics of a task,
the label dtype a task needs, normalisation lengths), so that the operator can refuse a pipeline before any pod
starts only to exit 2.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from pulsetrain.config import ConfigError, load_config
from pulsetrain_operator import defaults

TOKEN_DIR: Final = f"{defaults.SECRETS_DIR}/token"
"""Where the token Secret (`authentication.token.secretName`) is mounted."""
TLS_DIR: Final = f"{defaults.SECRETS_DIR}/tls"
"""Where the client certificate Secret (`authentication.tls.secretName`, type kubernetes.io/tls) is mounted."""
CA_DIR: Final = f"{defaults.SECRETS_DIR}/ca"
"""Where the CA Secret (`tlsTrustCerts.secretName`) is mounted."""
TLS_CERT_KEY: Final = "tls.crt"
TLS_KEY_KEY: Final = "tls.key"

PULSAR_COPIED: Final = ("serviceUrl", "adminUrl", "topic", "receiverQueueSize", "batchReceiveMaxMessages",
                        "batchReceiveTimeoutMs", "deadLetterTopic", "tlsValidateHostname")
"""`spec.source.pulsar` fields the worker reads as they are; with PULSAR_DEFAULTS and PULSAR_MOUNTED, every field
of the CRD's `source.pulsar` (a unit test checks that none is left out)."""
PULSAR_DEFAULTS: Final[Mapping[str, str]] = {
    "subscription": defaults.SUBSCRIPTION,
    "subscriptionType": defaults.SUBSCRIPTION_TYPE,
    "initialPosition": defaults.INITIAL_POSITION,
}
PULSAR_MOUNTED: Final = ("authentication", "tlsTrustCerts")
"""`spec.source.pulsar` fields that name Secrets: the worker reads the mounted files instead."""


def identity(tp: Mapping[str, Any]) -> tuple[str, str]:
    """The pipeline's (name, namespace)."""
    meta = tp["metadata"]
    return str(meta["name"]), str(meta["namespace"])


def spec_section(tp: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    """`spec.<keys>`, or an empty mapping when any level is absent or null."""
    node: Mapping[str, Any] = tp.get("spec") or {}
    for key in keys:
        node = node.get(key) or {}
    return node


def worker_count(tp: Mapping[str, Any]) -> int:
    """`spec.training.workers`, default `defaults.WORKERS`."""
    return int(spec_section(tp, "training").get("workers", defaults.WORKERS))


def collective_port(tp: Mapping[str, Any]) -> int:
    """`spec.worker.port`: the gRPC port listed in `TF_CONFIG`."""
    return int(spec_section(tp, "worker").get("port", defaults.COLLECTIVE_PORT))


def metrics_port(tp: Mapping[str, Any]) -> int:
    """`spec.worker.metricsPort`: the worker's HTTP port (/metrics, /progress, /readyz)."""
    return int(spec_section(tp, "worker").get("metricsPort", defaults.METRICS_PORT))


def storage_root(tp: Mapping[str, Any]) -> str:
    """`spec.storage.path`: where the storage is mounted (or the URI prefix), default `defaults.STORAGE_PATH`."""
    return str(spec_section(tp, "storage").get("path") or defaults.STORAGE_PATH)


def storage_paths(tp: Mapping[str, Any]) -> dict[str, str]:
    """The worker configuration's `storage`: `{path}/{namespace}/{name}/` + checkpoints, export, logs."""
    name, namespace = identity(tp)
    base = f"{storage_root(tp).rstrip('/')}/{namespace}/{name}"
    return {"checkpointDir": f"{base}/checkpoints", "exportDir": f"{base}/export", "logDir": f"{base}/logs"}


def token_file(token: Mapping[str, Any]) -> str:
    """The path at which the worker reads the token of `authentication.token`."""
    return f"{TOKEN_DIR}/{token.get('key') or defaults.TOKEN_KEY}"


def ca_file(trust: Mapping[str, Any]) -> str:
    """The path at which the worker reads the CA bundle of `tlsTrustCerts`."""
    return f"{CA_DIR}/{trust.get('key') or defaults.CA_KEY}"


def worker_config(tp: Mapping[str, Any]) -> dict[str, Any]:
    """The worker configuration document for pipeline `tp` (a fresh dict; the spec is not aliased)."""
    name, namespace = identity(tp)
    spec: Mapping[str, Any] = tp.get("spec") or {}
    doc: dict[str, Any] = {
        "pipeline": {"name": name, "namespace": namespace},
        "source": {"pulsar": _pulsar(spec_section(tp, "source", "pulsar"))},
        "training": _training(spec_section(tp, "training")),
        "storage": storage_paths(tp),
        "observability": {"port": metrics_port(tp)},
    }
    for key in ("data", "model"):
        if spec.get(key) is not None:
            doc[key] = copy.deepcopy(spec[key])
    return doc


def _pulsar(pulsar: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: pulsar[key] for key in PULSAR_COPIED if pulsar.get(key) is not None}
    out.update({key: pulsar.get(key) or default for key, default in PULSAR_DEFAULTS.items()})
    auth = _authentication(pulsar.get("authentication") or {})
    if auth:
        out["authentication"] = auth
    if pulsar.get("tlsTrustCerts"):
        out["tlsTrustCertsFile"] = ca_file(pulsar["tlsTrustCerts"])
    return out


def _authentication(auth: Mapping[str, Any]) -> dict[str, Any]:
    """Secret references → mounted files. Both kinds are rendered when both are given (the CRD allows one),
    so that the worker's own check reports the mistake instead of one being dropped silently."""
    out: dict[str, Any] = {}
    if auth.get("token") is not None:
        out["token"] = {"file": token_file(auth["token"])}
    if auth.get("tls") is not None:
        out["tls"] = {"certFile": f"{TLS_DIR}/{TLS_CERT_KEY}", "keyFile": f"{TLS_DIR}/{TLS_KEY_KEY}"}
    return out


def _training(training: Mapping[str, Any]) -> dict[str, Any]:
    out = {key: copy.deepcopy(value) for key, value in training.items() if key != "workers"}
    out["mode"] = training.get("mode") or defaults.MODE
    return out


def worker_refusal(tp: Mapping[str, Any]) -> str | None:
    """Why the workers would refuse the configuration built for `tp` (each problem with its path under `spec`),
    or None when they would accept it."""
    return refusal(worker_config(tp))


def refusal(document: Mapping[str, Any]) -> str | None:
    """Why the worker's parser refuses a configuration document built from a spec (paths under `spec`), or None."""
    try:
        load_config(document)
    except ConfigError as exc:
        return "; ".join(f"spec.{problem}" for problem in exc.problems)
    return None
