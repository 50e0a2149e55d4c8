"""One reconcile of one pipeline: read what exists, ask `lifecycle.decide`, apply its plan.

Why this exists: it is the only place where observation, decision and action meet. Reads come first
(the pipeline, its pods, the chief's progress), then the pure decision, then idempotent writes in a
safe order: deletions, the Service and ConfigMap before any pod that needs them, pods, the status,
and the events last (an event must never describe a status that failed to be written).

A reconcile comes in two halves so that the caller can run them on different thread pools: `act`
(reads, decision, child writes: what users wait for when they apply a pipeline) and `record` (the
status patch, the events, a TTL deletion). When many pipelines arrive at once, pods are then not
queued behind other pipelines' status writes. The caller runs the halves of one pipeline in order,
so there is still one writer per pipeline. The pipeline itself need not be read back each time: the
caller may pass the newest copy it knows (from the watch, or the status patch's answer; see
`newest`), and `act` reads it from the API server only when it has none.

A child write the API server refuses for good (a quota, an admission policy: `kube.Refused`) does not fail
the reconcile: its words go into the status with a Warning event (`lifecycle.refused`), and the write is
planned again 30 s later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pulsetrain.progress_doc import ProgressDocument
from pulsetrain_operator import defaults
from pulsetrain_operator.builders.config import metrics_port, storage_paths, worker_refusal
from pulsetrain_operator.builders.configmap import worker_config_map
from pulsetrain_operator.builders.pod import spec_hash, worker_pod
from pulsetrain_operator.builders.service import worker_service
from pulsetrain_operator.kube import Kube, Refused
from pulsetrain_operator.lifecycle import REFUSED_RETRY_SECONDS, decide, refused
from pulsetrain_operator.names import COMPONENT_LABEL, predictor_config_map_name, predictor_name
from pulsetrain_operator.observed import WorkerPod
from pulsetrain_operator.plan import Event, Observation, Plan
from pulsetrain_operator.progress import read_predictor_progress, read_progress
from pulsetrain_operator.serving import ServingPlan, plan_serving, predictor_trouble
from pulsetrain_operator.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Acted:
    """The first half of a reconcile: the pipeline as it was seen, the plan, and the child writes made."""

    pipeline: Mapping[str, Any] | None
    """None when the pipeline is gone (or being deleted)."""
    plan: Plan | None = None
    status: Mapping[str, Any] = field(default_factory=dict)
    """The status to write: the plan's, with `serving` as the serving plan has it."""
    serving: bool = False
    """Predictors run (or should): their figures are worth polling often."""
    writes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did, for the caller's scheduling, metrics and logs."""

    exists: bool
    phase: str | None = None
    requeue_after: float | None = None
    restarts: int = 0
    writes: int = 0
    seconds: float = 0.0
    """How long the reconcile itself took (not the waits for a free thread before its halves)."""
    pipeline: Mapping[str, Any] | None = field(default=None, repr=False)
    """The newest copy of the pipeline this reconcile saw (the status patch's answer when it wrote one)."""
    serving: bool = False
    """Predictors run (or should): the caller polls their figures as often as a running chief's."""


def newest(known: Mapping[str, Any] | None, candidate: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The newer of two copies of one object, by `metadata.resourceVersion`; None when they cannot be
    ordered (then the caller reads the object from the API server instead of trusting either).

    Kubernetes documents resourceVersions as opaque; every etcd-backed API server makes them the etcd
    revision, an increasing integer, and this relies on that only to pick between two copies of an
    object it has itself been handed. Anything that does not parse as an integer turns the shortcut off.
    """
    if candidate is None or known is None:
        return candidate if known is None else known
    try:
        known_rv = int(known["metadata"]["resourceVersion"])
        candidate_rv = int(candidate["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None
    return candidate if candidate_rv >= known_rv else known


def _chief_progress(pods: list[WorkerPod], spec: Mapping[str, Any], settings: Settings) -> ProgressDocument | None:
    chief = next((p for p in pods if p.index == 0 and p.phase == "Running" and p.ip), None)
    if chief is None or chief.ip is None:
        return None
    port = int((spec.get("worker") or {}).get("metricsPort", defaults.METRICS_PORT))
    return read_progress(chief.ip, port, settings.progress_timeout_seconds)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning `old` into `new`: changed keys, removed keys as None, at every depth
    of nested objects (a merge patch merges an object it is given into the one there, so a key dropped from,
    say, `serving` or `progress.metrics` would otherwise stay for ever); lists are replaced whole."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            patch[key] = status_patch(before, value)
        else:
            patch[key] = value
    patch.update({k: None for k in old if k not in new})
    return patch


def act(kube: Kube, settings: Settings, namespace: str, name: str,
        known: Callable[[], Mapping[str, Any] | None] = lambda: None, now: float | None = None) -> Acted:
    """Observe, decide and make the child writes (deletions, Service, ConfigMap, pods). `known` gives
    the newest copy of the pipeline the caller has when the thread starts (None: read it)."""
    started = time.monotonic()
    tp = known() or kube.get_pipeline(namespace, name)
    if tp is None or tp.get("metadata", {}).get("deletionTimestamp"):
        return Acted(pipeline=None, seconds=time.monotonic() - started)
    spec: Mapping[str, Any] = tp.get("spec") or {}
    status: Mapping[str, Any] = tp.get("status") or {}
    # A pipeline never started has no pods to look at (one left by a crash mid-creation makes its create
    # a harmless 409), which spares the API server a LIST per new pipeline.
    listed = kube.worker_pods(namespace, name) if status.get("attempt") else []
    pods = [p for p in (WorkerPod.from_pod(obj) for obj in listed) if p is not None]
    current_attempt, uid = int(status.get("attempt", 0)), str(tp["metadata"].get("uid") or "")
    progress = _chief_progress([p for p in pods if p.attempt == current_attempt and p.belongs_to(uid)],
                               spec, settings)  # not a deleted predecessor's chief
    obs = Observation(name=name, namespace=namespace, generation=int(tp["metadata"].get("generation", 0)),
                      spec=spec, status=status, pods=pods, desired_hash=spec_hash(tp, settings),
                      export_dir=storage_paths(tp)["exportDir"], now=time.time() if now is None else now,
                      progress=progress, uid=uid, config_refusal=worker_refusal(tp))
    plan = decide(obs)
    try:
        writes = write_children(kube, settings, tp, plan)
    except Refused as exc:  # e.g. a ResourceQuota used up: say so on the pipeline, not only in the operator's log
        plan, writes = refused(plan, status, exc.reason, str(exc)), 0
    status = dict(plan.status)
    serving = None
    predictors_left = any(((p.get("metadata") or {}).get("labels") or {}).get(COMPONENT_LABEL) == "predictor"
                          for p in listed)
    if spec.get("serving") or status.get("serving") or predictors_left:
        serving = _serving(kube, settings, tp, listed, (status.get("model") or {}).get("version"))
        serving_status = serving.status
        try:
            writes += write_serving(kube, tp, serving)
        except Refused as exc:
            serving_status = {**(serving_status or {}), "message": str(exc)}
            if ((tp.get("status") or {}).get("serving") or {}).get("message") != str(exc):
                plan.events.append(Event("Warning", exc.reason, str(exc)))
            plan.requeue(REFUSED_RETRY_SECONDS)
        if serving_status is None:
            status.pop("serving", None)
        else:
            status["serving"] = serving_status
    return Acted(pipeline=tp, plan=plan, status=status, serving=serving is not None and serving.active,
                 writes=writes, seconds=time.monotonic() - started)


def _running_predictors(listed: list[dict[str, Any]]) -> list[str]:
    """Pod IPs of the running predictor pods among the pipeline's pods: the ready ones, and those that run but
    are not ready, whose progress document says why (a lost broker, say) and still holds their counts."""
    ips = []
    for pod in listed:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        status = pod.get("status") or {}
        if labels.get(COMPONENT_LABEL) == "predictor" and status.get("phase") == "Running" and status.get("podIP"):
            ips.append(str(status["podIP"]))
    return ips


def _serving(kube: Kube, settings: Settings, tp: Mapping[str, Any], listed: list[dict[str, Any]],
             model_version: int | None) -> ServingPlan:
    name, namespace = tp["metadata"]["name"], tp["metadata"]["namespace"]
    deployment = kube.get_deployment(namespace, predictor_name(name))
    port = metrics_port(tp)
    found = [read_predictor_progress(ip, port, settings.progress_timeout_seconds) for ip in _running_predictors(listed)]
    return plan_serving(tp, settings, model_version, deployment, [p for p in found if p is not None],
                        predictor_trouble(listed))


def write_serving(kube: Kube, tp: Mapping[str, Any], serving: ServingPlan) -> int:
    """Carry out a serving plan; returns the number of API writes made."""
    name, namespace = tp["metadata"]["name"], tp["metadata"]["namespace"]
    context = {"pipeline": name, "namespace": namespace}
    if serving.delete:
        kube.delete_deployment(namespace, predictor_name(name))
        kube.delete_config_map(namespace, predictor_config_map_name(name))
        log.info("spec.serving removed: predictors deleted", extra=context)
        return 2
    if serving.update and serving.deployment is not None and serving.config_map is not None:
        kube.ensure_config_map(namespace, serving.config_map)
        kube.apply_deployment(namespace, serving.deployment)
        log.info("predictor Deployment applied (%d replica(s))", serving.deployment["spec"]["replicas"],
                 extra=context)
        return 2
    return 0


def record(kube: Kube, acted: Acted) -> Outcome:
    """The second half: write the plan's status, post its events, delete the pipeline when its TTL passed."""
    tp, plan = acted.pipeline, acted.plan
    if tp is None or plan is None:
        return Outcome(exists=False, seconds=acted.seconds)
    started = time.monotonic()
    meta = tp["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    writes, latest = acted.writes, tp
    patch = status_patch(tp.get("status") or {}, acted.status)
    if patch:
        patched = kube.patch_status(namespace, name, patch)
        writes += 1
        if patched is None:  # deleted since it was read: nothing more to say about it
            return Outcome(exists=False, writes=writes, seconds=acted.seconds + time.monotonic() - started)
        latest = patched
    for event in plan.events:
        kube.post_event(tp, event.type, event.reason, event.message)
        log.info("%s: %s", event.reason, event.message, extra={"pipeline": name, "namespace": namespace})
        writes += 1
    if plan.delete_pipeline:
        log.info("ttlSecondsAfterFinished passed: deleting the pipeline",
                 extra={"pipeline": name, "namespace": namespace})
        kube.delete_pipeline(namespace, name)
        writes += 1
    return Outcome(exists=True, phase=plan.status.get("phase"), requeue_after=plan.requeue_after,
                   restarts=int(plan.status.get("restarts", 0)), writes=writes,
                   seconds=acted.seconds + time.monotonic() - started, pipeline=latest, serving=acted.serving)


def write_children(kube: Kube, settings: Settings, tp: Mapping[str, Any], plan: Plan) -> int:
    """Carry out a plan's deletions and creations; returns the number of API writes made."""
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
    return writes
