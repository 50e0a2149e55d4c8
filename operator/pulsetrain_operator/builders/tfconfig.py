"""`TF_CONFIG` for worker *i*: every worker's DNS name and port, and this worker's index.

Why this exists: `MultiWorkerMirroredStrategy` (and the worker's own peer check, `pulsetrain.tfconfig`)
learn the gang from `TF_CONFIG`. The peers are addressed through the headless Service
(`{pod}.{service}.{namespace}.svc:{port}`), so the value depends only on the spec and is known before any
pod exists; worker 0 is the chief. Every worker of an attempt gets the same `cluster` in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulsetrain_operator.builders.config import collective_port, identity, worker_count
from pulsetrain_operator.names import worker_host


def worker_addresses(tp: Mapping[str, Any]) -> list[str]:
    """Every worker's `host:port`, in index order."""
    name, namespace = identity(tp)
    port = collective_port(tp)
    return [f"{worker_host(name, namespace, i)}:{port}" for i in range(worker_count(tp))]


def tf_config(tp: Mapping[str, Any], index: int) -> str:
    """The `TF_CONFIG` value (compact JSON) for worker `index`; `ValueError` when it is not a worker."""
    workers = worker_addresses(tp)
    if not 0 <= index < len(workers):
        raise ValueError(f"worker index {index} is out of range; the pipeline has {len(workers)} workers")
    doc = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
