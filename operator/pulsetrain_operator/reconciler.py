"""One reconcile of one pipeline: read what exists, ask `lifecycle.decide`, apply its plan.

Why this exists: it is the only place where observation, decision and action meet. Reads come first
(the pipeline, its pods, the chief's progress), then the pure decision, then idempotent writes in a
safe order: deletions, the Service and ConfigMap before any pod that needs them, pods, the status,
and the events last (an event must never describe a status that failed to be written).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulsetrain.progress_doc import ProgressDocument
from pulsetrain_operator import defaults
from pulsetrain_operator.builders.config import storage_paths
from pulsetrain_operator.builders.configmap import worker_config_map
from pulsetrain_operator.builders.pod import spec_hash, worker_pod
from pulsetrain_operator.builders.service import worker_service
from pulsetrain_operator.kube import Kube
from pulsetrain_operator.lifecycle import Observation, Plan, decide
from pulsetrain_operator.observed import WorkerPod
from pulsetrain_operator.progress import read_progress
from pulsetrain_operator.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did, for the caller's scheduling, metrics and logs."""

    exists: bool
    phase: str | None = None
    requeue_after: float | None = None
    restarts: int = 0
    writes: int = 0
    seconds: float = 0.0
    """How long the reconcile itself took (not the wait for a free thread before it)."""


def _chief_progress(pods: list[WorkerPod], spec: Mapping[str, Any], settings: Settings) -> ProgressDocument | None:
    chief = next((p for p in pods if p.index == 0 and p.phase == "Running" and p.ip), None)
    if chief is None or chief.ip is None:
        return None
    port = int((spec.get("worker") or {}).get("metricsPort", defaults.METRICS_PORT))
    return read_progress(chief.ip, port, settings.progress_timeout_seconds)


def _status_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning `old` into `new` at the top level (removed keys become None)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


def reconcile(kube: Kube, settings: Settings, namespace: str, name: str, now: float | None = None) -> Outcome:
    started = time.monotonic()
    tp = kube.get_pipeline(namespace, name)
    if tp is None or tp.get("metadata", {}).get("deletionTimestamp"):
        return Outcome(exists=False)
    spec: Mapping[str, Any] = tp.get("spec") or {}
    status: Mapping[str, Any] = tp.get("status") or {}
    # A pipeline never started has no pods to look at (one left by a crash mid-creation makes its create
    # a harmless 409), which spares the API server a LIST per new pipeline.
    listed = kube.worker_pods(namespace, name) if status.get("attempt") else []
    pods = [p for p in (WorkerPod.from_pod(obj) for obj in listed) if p is not None]
    current_attempt = int(status.get("attempt", 0))
    progress = _chief_progress([p for p in pods if p.attempt == current_attempt], spec, settings)
    obs = Observation(name=name, namespace=namespace, generation=int(tp["metadata"].get("generation", 0)),
                      spec=spec, status=status, pods=pods, desired_hash=spec_hash(tp, settings),
                      export_dir=storage_paths(tp)["exportDir"], now=time.time() if now is None else now,
                      progress=progress)
    plan = decide(obs)
    writes = apply(kube, settings, tp, plan)
    return Outcome(exists=True, phase=plan.status.get("phase"), requeue_after=plan.requeue_after,
                   restarts=int(plan.status.get("restarts", 0)), writes=writes, seconds=time.monotonic() - started)


def apply(kube: Kube, settings: Settings, tp: Mapping[str, Any], plan: Plan) -> int:
    """Carry out a plan; returns the number of API writes made."""
    meta = tp["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    writes = 0
    for pod_name, grace in plan.delete:
        kube.delete_pod(namespace, pod_name, grace)
        writes += 1
    if plan.create:
        kube.ensure_service(namespace, worker_service(tp))
        kube.ensure_config_map(namespace, worker_config_map(tp))
        attempt = int(plan.status["attempt"])
        for index in plan.create:
            kube.create_pod(namespace, worker_pod(tp, index, attempt, settings))
        writes += 2 + len(plan.create)
        log.info("created %d worker pod(s) for attempt %d", len(plan.create), attempt,
                 extra={"pipeline": name, "namespace": namespace})
    patch = _status_changed(tp.get("status") or {}, plan.status)
    if patch:
        kube.patch_status(namespace, name, patch)
        writes += 1
    for event in plan.events:
        kube.post_event(tp, event.type, event.reason, event.message)
        log.info("%s: %s", event.reason, event.message, extra={"pipeline": name, "namespace": namespace})
        writes += 1
    if plan.delete_pipeline:
        log.info("ttlSecondsAfterFinished passed: deleting the pipeline",
                 extra={"pipeline": name, "namespace": namespace})
        kube.delete_pipeline(namespace, name)
        writes += 1
    return writes
