"""The headless Service `{name}-workers`: the DNS names the workers find each other by.

Why this exists: `TF_CONFIG` names every peer as `{pod}.{name}-workers.{namespace}.svc`; those records
exist only for pods whose `subdomain` is a headless Service selecting them. The records are published
before the pods are ready (`publishNotReadyAddresses`), because a worker becomes ready only after it has
reached its peers. The selector is the pipeline label and the worker component, so every attempt's worker
pods are covered and the pipeline's predictor pods are not (they would otherwise show up among the workers'
endpoints, and be scraped as workers by anything that follows this Service).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulsetrain_operator.builders.config import collective_port, identity, metrics_port
from pulsetrain_operator.names import COMPONENT_LABEL, PIPELINE_LABEL, child_metadata, common_labels, service_name

COLLECTIVE_PORT_NAME = "collective"
METRICS_PORT_NAME = "metrics"


def worker_service(tp: Mapping[str, Any]) -> dict[str, Any]:
    """The Service object for pipeline `tp`."""
    name, _ = identity(tp)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(tp, service_name(name), common_labels(name)),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {PIPELINE_LABEL: name, COMPONENT_LABEL: "worker"},
            "ports": [
                _port(COLLECTIVE_PORT_NAME, collective_port(tp)),
                _port(METRICS_PORT_NAME, metrics_port(tp)),
            ],
        },
    }


def _port(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "port": number, "targetPort": number, "protocol": "TCP"}
