"""The predictors of `spec.serving`: a ConfigMap `{name}-predictor-config` and a Deployment `{name}-predictor`.

Why this exists: serving is not part of the training gang. Predictors are independent replicas on one
Shared subscription, so a Deployment (restart one pod, roll on change) fits them where bare pods fit
the gang. They read the worker configuration the trainers read (same broker, same schema, same
storage, so the same export directory) plus its `serving` section, from their own ConfigMap: a change
of `spec.serving` then rolls the predictors without touching the trainers' ConfigMap or their spec hash.
The pod template carries a hash of that configuration, so a changed configuration rolls the pods.
Predictor pods share the workers' image, scheduling fields (`spec.worker`), Secrets, storage and the
`restricted` security context; their resources come from `spec.serving.resources`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from pulsetrain_operator import defaults
from pulsetrain_operator.builders.config import identity, metrics_port, refusal, spec_section, worker_config
from pulsetrain_operator.builders.pod import (
    container_security_context,
    pod_security_context,
    pod_settings,
    pod_volumes,
    worker_image,
)
from pulsetrain_operator.builders.service import METRICS_PORT_NAME
from pulsetrain_operator.names import (
    child_metadata,
    predictor_config_map_name,
    predictor_labels,
    predictor_name,
    predictor_selector,
)
from pulsetrain_operator.settings import Settings

CONTAINER_NAME: Final = "predictor"
CONFIG_HASH_ANNOTATION: Final = "pulsetrain.dev/config-hash"
_NOT_FOR_THE_PREDICTOR: Final = ("replicas", "resources")
"""`spec.serving` fields the operator applies itself (to the Deployment), not the predictor process."""


def serving_spec(tp: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """`spec.serving`, or None when the pipeline serves nothing."""
    serving = (tp.get("spec") or {}).get("serving")
    return serving if serving else None


def replicas(tp: Mapping[str, Any]) -> int:
    return int(spec_section(tp, "serving").get("replicas", defaults.SERVING_REPLICAS))


def serving_section(tp: Mapping[str, Any]) -> dict[str, Any]:
    """The worker configuration's `serving` section: `spec.serving` less what the operator applies itself."""
    return {k: copy.deepcopy(v) for k, v in spec_section(tp, "serving").items() if k not in _NOT_FOR_THE_PREDICTOR}


def predictor_config(tp: Mapping[str, Any]) -> dict[str, Any]:
    """The worker configuration plus its `serving` section, less `training` (the predictor reads none of it,
    so tuning training does not roll the predictors): what `python -m pulsetrain.predictor` reads."""
    doc = worker_config(tp)
    doc.pop("training", None)
    doc["serving"] = serving_section(tp)
    return doc


def predictor_refusal(tp: Mapping[str, Any]) -> str | None:
    """Why the predictors would refuse the configuration built for `tp` (paths under `spec`), None when they would
    not, or when `tp` serves nothing (`builders.config.worker_refusal` is the workers' side)."""
    return refusal(predictor_config(tp)) if serving_spec(tp) is not None else None


def _config_text(tp: Mapping[str, Any]) -> str:
    return json.dumps(predictor_config(tp), indent=2, sort_keys=True)


def predictor_config_map(tp: Mapping[str, Any]) -> dict[str, Any]:
    name, _ = identity(tp)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(tp, predictor_config_map_name(name), predictor_labels(name)),
        "data": {defaults.PREDICTOR_CONFIG_KEY: _config_text(tp)},
    }


def config_hash(tp: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> str:
    """A short sha256 of what a predictor pod runs: its configuration and its pod spec. A change to either rolls
    the pods, and nothing else does (the workers' replicas or resources, say)."""
    shape = {"config": predictor_config(tp), "pod": pod_spec}
    return hashlib.sha256(json.dumps(shape, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def predictor_deployment(tp: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The Deployment of pipeline `tp`'s predictors."""
    name, namespace = identity(tp)
    worker = spec_section(tp, "worker")
    serving = spec_section(tp, "serving")
    volumes = pod_volumes(tp, predictor_config_map_name(name))
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": worker_image(tp, settings),
        "imagePullPolicy": worker.get("imagePullPolicy") or defaults.IMAGE_PULL_POLICY,
        "command": list(defaults.PREDICTOR_COMMAND),
        "args": ["--config", f"{defaults.CONFIG_DIR}/{defaults.PREDICTOR_CONFIG_KEY}"],
        "terminationMessagePolicy": "FallbackToLogsOnError",  # why it exited, for status.serving.message
        "securityContext": container_security_context(),
        "env": [{"name": "PULSETRAIN_PIPELINE", "value": name}, {"name": "PULSETRAIN_NAMESPACE", "value": namespace},
                {"name": "PYTHONUNBUFFERED", "value": "1"}, *copy.deepcopy(list(worker.get("env") or []))],
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": metrics_port(tp), "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": METRICS_PORT_NAME}, "periodSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": METRICS_PORT_NAME}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "volumeMounts": [mount for _, mount in volumes],
    }
    if serving.get("resources"):
        container["resources"] = copy.deepcopy(serving["resources"])
    pod_spec: dict[str, Any] = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        # above the predictor's own drain deadline (defaults.PREDICTOR_DRAIN_SECONDS), so SIGTERM is answered
        # by a clean stop and not cut short by SIGKILL
        "terminationGracePeriodSeconds": defaults.PREDICTOR_TERMINATION_GRACE_PERIOD_SECONDS,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [volume for volume, _ in volumes],
    }
    pod_spec.update(pod_settings(tp, settings))
    labels = predictor_labels(name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(tp, predictor_name(name), labels),
        "spec": {
            "replicas": replicas(tp),
            "selector": {"matchLabels": predictor_selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {CONFIG_HASH_ANNOTATION: config_hash(tp, pod_spec)}},
                "spec": pod_spec,
            },
        },
    }
