"""Deterministic names and labels of a pipeline's children, and the rule that keeps them valid.

Why this exists: the operator never stores the names of the objects it creates; it derives them from
the pipeline's name every time (`{name}-workers`, `{name}-worker-config`, `{name}-worker-{i}`), so a
restarted operator finds exactly what its predecessor made, and the workers find each other by DNS
(`TF_CONFIG` lists `{pod}.{service}.{namespace}.svc`). The same goes for the labels that select a
pipeline's pods and tell attempts apart.

The name rule: a worker pod's name is also its `hostname`, a DNS-1123 label of at most 63 characters,
and the Service `{name}-workers` must be a DNS-1035 label (it starts with a letter). So a pipeline name
must match `NAME_PATTERN` and be at most `MAX_NAME_LENGTH` (53) characters: 53 + len("-worker-") +
two digits for the highest index (`MAX_WORKERS - 1` = 63) is exactly 63. `crd.py` publishes the same
limit as a rule on `metadata.name`; the functions here raise `PipelineNameError` (a `ValueError`)
rather than build a name the API server would refuse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pulsetrain_operator.defaults import MAX_WORKERS

PIPELINE_LABEL: Final = "pulsetrain.dev/pipeline"
WORKER_INDEX_LABEL: Final = "pulsetrain.dev/worker-index"
ATTEMPT_LABEL: Final = "pulsetrain.dev/attempt"
SPEC_HASH_ANNOTATION: Final = "pulsetrain.dev/spec-hash"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"

DNS_LABEL_MAX: Final = 63
_SERVICE_SUFFIX: Final = "-workers"
_CONFIG_MAP_SUFFIX: Final = "-worker-config"
_POD_INFIX: Final = "-worker-"
_PREDICTOR_SUFFIX: Final = "-predictor"
_PREDICTOR_CONFIG_SUFFIX: Final = "-predictor-config"

MAX_NAME_LENGTH: Final = DNS_LABEL_MAX - len(_POD_INFIX) - len(str(MAX_WORKERS - 1))
"""The longest pipeline name whose last worker pod name still fits a DNS label (53)."""
NAME_PATTERN: Final = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1035 label: lower-case letters, digits and '-', starting with a letter, not ending with '-'."""
_NAME_RE: Final = re.compile(NAME_PATTERN)


class PipelineNameError(ValueError):
    """A pipeline name (or worker index) from which no valid child name can be made."""


def check_pipeline_name(name: str) -> str:
    """`name` itself when every child name derived from it is valid; `PipelineNameError` otherwise."""
    if len(name) > MAX_NAME_LENGTH:
        raise PipelineNameError(
            f"pipeline name {name!r} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed, "
            f"so that worker pod names ('{{name}}{_POD_INFIX}{{0..{MAX_WORKERS - 1}}}') fit a "
            f"{DNS_LABEL_MAX}-character DNS label")
    if not _NAME_RE.match(name):
        raise PipelineNameError(
            f"pipeline name {name!r} is not a DNS-1035 label (lower-case letters, digits and '-', starting with "
            "a letter and ending with a letter or digit), which its Service and worker pod names must be")
    return name


def check_worker_index(index: int) -> int:
    """`index` itself when it is in 0..MAX_WORKERS-1; `PipelineNameError` otherwise."""
    if not 0 <= index < MAX_WORKERS:
        raise PipelineNameError(f"worker index {index} is out of range; allowed 0..{MAX_WORKERS - 1}")
    return index


def service_name(name: str) -> str:
    """The headless Service that gives every worker its DNS name."""
    return f"{check_pipeline_name(name)}{_SERVICE_SUFFIX}"


def config_map_name(name: str) -> str:
    """The ConfigMap holding the rendered worker configuration."""
    return f"{check_pipeline_name(name)}{_CONFIG_MAP_SUFFIX}"


def pod_name(name: str, index: int) -> str:
    """Worker `index`'s pod, also its `hostname`."""
    return f"{check_pipeline_name(name)}{_POD_INFIX}{check_worker_index(index)}"


def predictor_name(name: str) -> str:
    """The Deployment of the pipeline's predictors (`spec.serving`)."""
    return f"{check_pipeline_name(name)}{_PREDICTOR_SUFFIX}"


def predictor_config_map_name(name: str) -> str:
    """The ConfigMap holding the rendered predictor configuration."""
    return f"{check_pipeline_name(name)}{_PREDICTOR_CONFIG_SUFFIX}"


def worker_host(name: str, namespace: str, index: int) -> str:
    """Worker `index`'s DNS name through the headless Service, without the cluster domain.

    `{pod}.{service}.{namespace}.svc` resolves through the pod's DNS search list (which ends with the
    cluster domain), so it works whatever that domain is.
    """
    return f"{pod_name(name, index)}.{service_name(name)}.{namespace}.svc"


def common_labels(name: str) -> dict[str, str]:
    """Labels on every child of pipeline `name`; `PIPELINE_LABEL` alone selects them."""
    return {
        PIPELINE_LABEL: name,
        "app.kubernetes.io/name": "pulsetrain-worker",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/managed-by": "pulsetrain-operator",
        COMPONENT_LABEL: "worker",
    }


def predictor_selector(name: str) -> dict[str, str]:
    """What selects pipeline `name`'s predictor pods (the Deployment's immutable selector)."""
    return {PIPELINE_LABEL: name, COMPONENT_LABEL: "predictor"}


def predictor_labels(name: str) -> dict[str, str]:
    """Labels of the predictor Deployment, its ConfigMap and its pods."""
    return {**common_labels(name), "app.kubernetes.io/name": "pulsetrain-predictor", **predictor_selector(name)}


def worker_labels(name: str, index: int, attempt: int) -> dict[str, str]:
    """A worker pod's labels: the common ones, its index and the gang attempt it belongs to."""
    return {**common_labels(name), WORKER_INDEX_LABEL: str(index), ATTEMPT_LABEL: str(attempt)}


def child_metadata(tp: Mapping[str, Any], name: str, labels: Mapping[str, str],
                   annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`metadata` of a child object `name`: in the pipeline's namespace, labelled, owned by the pipeline."""
    metadata: dict[str, Any] = {"name": name, "namespace": tp["metadata"]["namespace"], "labels": dict(labels)}
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    metadata["ownerReferences"] = [owner_reference(tp)]
    return metadata


def controller_uid(metadata: Mapping[str, Any]) -> str:
    """The UID in an object's controller reference, "" when it has none: for a child, its pipeline's."""
    return next((str(ref.get("uid") or "") for ref in metadata.get("ownerReferences") or [] if ref.get("controller")),
                "")


def owner_reference(tp: Mapping[str, Any]) -> dict[str, Any]:
    """The controller reference every child carries, so deleting the pipeline deletes them."""
    meta = tp["metadata"]
    return {
        "apiVersion": tp["apiVersion"],
        "kind": tp["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
