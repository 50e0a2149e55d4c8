"""Worker pod `{name}-worker-{i}` of one gang attempt, and the hash that says when pods are out of date.

Why this exists: the operator runs the workers as bare pods (`restartPolicy: Never`), one gang per
attempt, because a TensorFlow collective cannot lose one member and go on: when any worker fails, the
whole gang is replaced. Each pod is built here from the spec alone: its DNS identity (`hostname` +
`subdomain`), `TF_CONFIG`, the ConfigMap and Secrets mounted where the worker configuration says, and a
security context that passes the `restricted` Pod Security Standard (workers need no privileges and no
API access).

`spec_hash` digests everything that shapes a pod: the worker configuration and the pod spec itself
(image actually used, `spec.worker`, the worker count through `TF_CONFIG`, Secret and claim names,
`terminationGracePeriodSeconds`). The operator stamps it on every pod (`SPEC_HASH_ANNOTATION`) and
restarts the gang when the current spec's hash differs. `runPolicy` fields the operator applies itself
(suspend, backoffLimit, TTL, activeDeadlineSeconds, cleanPodPolicy, ...) never reach a pod, so changing
them does not restart training. Absent fields are hashed with their defaults filled in, so the API
server filling in a default never looks like a change.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from pulsetrain_operator import defaults
from pulsetrain_operator.builders.config import (
    CA_DIR,
    TLS_DIR,
    TOKEN_DIR,
    collective_port,
    identity,
    metrics_port,
    spec_section,
    storage_root,
    worker_config,
)
from pulsetrain_operator.builders.service import COLLECTIVE_PORT_NAME, METRICS_PORT_NAME
from pulsetrain_operator.builders.tfconfig import tf_config
from pulsetrain_operator.names import (
    SPEC_HASH_ANNOTATION,
    child_metadata,
    config_map_name,
    pod_name,
    service_name,
    worker_labels,
)
from pulsetrain_operator.settings import Settings

__all__ = ["CONTAINER_NAME", "RESERVED_ENV", "RUN_AS", "container_security_context", "pod_security_context",
           "pod_settings", "pod_volumes", "spec_hash", "worker_image", "worker_pod"]

CONTAINER_NAME: Final = "worker"
RUN_AS: Final = 1000
"""UID, GID and fsGroup of the worker process (non-root, as the restricted standard demands)."""
RESERVED_ENV: Final = ("TF_CONFIG", "PULSETRAIN_PIPELINE", "PULSETRAIN_NAMESPACE", "PYTHONUNBUFFERED")
"""Variables the operator sets before the user's `spec.worker.env` (a later duplicate would override them)."""
READINESS_PATH: Final = "/readyz"
HASH_LENGTH: Final = 16
_FROM_WORKER_SPEC: Final = ("serviceAccountName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets")


def worker_image(tp: Mapping[str, Any], settings: Settings) -> str:
    """The image actually used: `spec.worker.image`, else the operator's default."""
    return str(spec_section(tp, "worker").get("image") or settings.worker_image)


def spec_hash(tp: Mapping[str, Any], settings: Settings) -> str:
    """A short sha256 of everything that shapes the worker pods (see the module docstring)."""
    # the operator's default pull Secrets are credentials, not what runs: changing them restarts no gang
    shape = {"config": worker_config(tp), "pod": _pod_spec(tp, 0, dataclasses.replace(settings,
                                                                                      worker_image_pull_secrets=()))}
    encoded = json.dumps(shape, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:HASH_LENGTH]


def worker_pod(tp: Mapping[str, Any], index: int, attempt: int, settings: Settings) -> dict[str, Any]:
    """Worker `index`'s pod for gang attempt `attempt`; `ValueError` for an unusable name or index."""
    name, _ = identity(tp)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": child_metadata(tp, pod_name(name, index), worker_labels(name, index, attempt),
                                   {SPEC_HASH_ANNOTATION: spec_hash(tp, settings)}),
        "spec": _pod_spec(tp, index, settings),
    }


def _pod_spec(tp: Mapping[str, Any], index: int, settings: Settings) -> dict[str, Any]:
    name, _ = identity(tp)
    volumes = pod_volumes(tp, config_map_name(name))
    spec: dict[str, Any] = {
        "hostname": pod_name(name, index),
        "subdomain": service_name(name),
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": int(spec_section(tp, "runPolicy").get(
            "terminationGracePeriodSeconds", defaults.TERMINATION_GRACE_PERIOD_SECONDS)),
        "securityContext": pod_security_context(),
        "containers": [_container(tp, index, settings, [mount for _, mount in volumes])],
        "volumes": [volume for volume, _ in volumes],
    }
    spec.update(pod_settings(tp, settings))
    return spec


def pod_settings(tp: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The pod-level fields of `spec.worker` that worker and predictor pods share (service account, scheduling,
    image pull Secrets, else the operator's `PULSETRAIN_WORKER_IMAGE_PULL_SECRETS`), set only when given."""
    worker = spec_section(tp, "worker")
    found = {key: copy.deepcopy(worker[key]) for key in _FROM_WORKER_SPEC if worker.get(key)}
    if "imagePullSecrets" not in found and settings.worker_image_pull_secrets:
        found["imagePullSecrets"] = [{"name": name} for name in settings.worker_image_pull_secrets]
    return found


def _container(tp: Mapping[str, Any], index: int, settings: Settings,
               mounts: list[dict[str, Any]]) -> dict[str, Any]:
    worker = spec_section(tp, "worker")
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": worker_image(tp, settings),
        "imagePullPolicy": worker.get("imagePullPolicy") or defaults.IMAGE_PULL_POLICY,
        "command": list(worker.get("command") or defaults.WORKER_COMMAND),
        "args": ["--config", f"{defaults.CONFIG_DIR}/{defaults.CONFIG_KEY}",
                 "--termination-log", defaults.TERMINATION_LOG],
        "terminationMessagePath": defaults.TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": container_security_context(),
        "env": _env(tp, index),
        "ports": [
            {"name": COLLECTIVE_PORT_NAME, "containerPort": collective_port(tp), "protocol": "TCP"},
            {"name": METRICS_PORT_NAME, "containerPort": metrics_port(tp), "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": READINESS_PATH, "port": METRICS_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "volumeMounts": mounts,
    }
    if worker.get("resources"):
        container["resources"] = copy.deepcopy(worker["resources"])
    return container


def _env(tp: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    """The operator's variables first (`RESERVED_ENV`), then the user's `spec.worker.env` as given."""
    name, namespace = identity(tp)
    values = (tf_config(tp, index), name, namespace, "1")
    ours = [{"name": key, "value": value} for key, value in zip(RESERVED_ENV, values, strict=True)]
    return ours + copy.deepcopy(list(spec_section(tp, "worker").get("env") or []))


def pod_security_context() -> dict[str, Any]:
    """Non-root, fixed IDs, the runtime's seccomp profile: what the `restricted` standard asks of a pod. The volume's
    ownership is changed only when its root is not the fsGroup's already: otherwise every attempt would walk the
    whole checkpoint volume before the worker starts (time that counts against `pendingTimeoutSeconds`)."""
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    """No privilege escalation and no capabilities: what the `restricted` standard asks of a container."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_volumes(tp: Mapping[str, Any], config_map: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(volume, mount) pairs: the ConfigMap `config_map` at the config directory, storage, the configured
    Secrets, and a writable /tmp (for the workers, and for the predictors with their own ConfigMap)."""
    pairs = [_pair("config", {"configMap": {"name": config_map}}, defaults.CONFIG_DIR, read_only=True)]
    storage = _storage_volume(tp)
    if storage is not None:
        pairs.append(storage)
    pulsar = spec_section(tp, "source", "pulsar")
    auth = pulsar.get("authentication") or {}
    secrets = (("pulsar-token", auth.get("token"), TOKEN_DIR), ("pulsar-tls", auth.get("tls"), TLS_DIR),
               ("pulsar-ca", pulsar.get("tlsTrustCerts"), CA_DIR))
    for volume_name, ref, path in secrets:
        if ref:
            pairs.append(_pair(volume_name, {"secret": {"secretName": ref["secretName"]}}, path, read_only=True))
    pairs.append(_pair("tmp", {"emptyDir": {}}, "/tmp"))
    return pairs


def _storage_volume(tp: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The claim at the storage path. The CRD requires a claim; a pipeline stored before it did gets an emptyDir
    there (so the non-root worker can write), which holds for one worker until its pod goes."""
    claim = spec_section(tp, "storage").get("claimName")
    root = storage_root(tp)
    if claim:
        return _pair("storage", {"persistentVolumeClaim": {"claimName": claim}}, root)
    if root.startswith("/"):
        return _pair("storage", {"emptyDir": {}}, root)
    return None


def _pair(name: str, source: dict[str, Any], path: str, *, read_only: bool = False) -> tuple[
        dict[str, Any], dict[str, Any]]:
    mount: dict[str, Any] = {"name": name, "mountPath": path}
    if read_only:
        mount["readOnly"] = True
    return {"name": name, **source}, mount
