"""What the operator sees of one worker pod, reduced to the facts its decisions need.

Why this exists: `lifecycle` must stay a pure function of plain values, testable without a cluster, so
the Pod dicts read from the API are turned into `WorkerPod`s here, once: attempt and index from the
labels, phase and readiness, whether it is being deleted, and for an ended container its exit code and
termination message (the worker writes its final progress document there, so the operator learns how
training ended without the pod still being around to ask), and for a pod that does not start, why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulsetrain.progress_doc import ProgressDocument, parse_rfc3339
from pulsetrain_operator.names import ATTEMPT_LABEL, SPEC_HASH_ANNOTATION, WORKER_INDEX_LABEL, controller_uid

WORKER_CONTAINER = "worker"
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
"""Why a container waits while it is simply starting: nothing to report."""


def last_words(message: str) -> str:
    """The last line of a termination message that is a log tail (`FallbackToLogsOnError`), at most 300
    characters: it says most of why the container ended. Empty for an empty message."""
    lines = message.strip().splitlines()
    return lines[-1][-300:] if lines else ""


def unscheduled(pod: Mapping[str, Any]) -> str:
    """The scheduler's words when it could not place the pod (`PodScheduled` False: no node with the CPU, memory
    or GPUs asked for, a node selector or taint nobody matches, an unbound claim); empty otherwise."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = str(condition.get("reason") or "Unschedulable")
            return f"{reason}: {condition['message']}" if condition.get("message") else reason
    return ""


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Whether a Pod's `Ready` condition is `True` (a worker's or a predictor's)."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@dataclass(frozen=True, kw_only=True)
class WorkerPod:
    name: str
    index: int
    attempt: int
    phase: str
    """Pending, Running, Succeeded, Failed or Unknown, as on the Pod."""
    ready: bool
    deleting: bool
    spec_hash: str
    created_at: float
    ip: str | None = None
    exit_code: int | None = None
    """The worker container's exit code once it has ended."""
    outcome: ProgressDocument | None = None
    """The final progress document from the termination message, when the worker wrote one."""
    reason: str = ""
    """Why the pod is not running: a waiting or terminated reason, or the termination message text."""
    owner_uid: str = ""
    """The UID of the pipeline that controls the pod: a pipeline deleted and applied again at once has a new UID,
    while its predecessor's pods, of the same names, may still be stopping."""

    def belongs_to(self, uid: str) -> bool:
        """Not a deleted predecessor's pod: controlled by the pipeline of `uid`, or by none that says otherwise."""
        return not (uid and self.owner_uid and self.owner_uid != uid)

    @property
    def alive(self) -> bool:
        """Still holds (or may still start) a worker process."""
        return self.phase in ("Pending", "Running", "Unknown")

    @property
    def not_starting(self) -> bool:
        """Pending for a reason other than the usual start-up: unschedulable, an image that cannot be pulled, a
        ConfigMap or Secret key missing... (`reason` says which)."""
        return self.phase == "Pending" and bool(self.reason) and self.reason.split(":")[0] not in STARTING_REASONS

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> WorkerPod | None:
        """The pod as a `WorkerPod`; None when it lacks the labels every worker pod carries."""
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        try:
            index, attempt = int(labels[WORKER_INDEX_LABEL]), int(labels[ATTEMPT_LABEL])
        except (KeyError, ValueError):
            return None
        status = pod.get("status") or {}
        statuses = status.get("containerStatuses") or []
        container: Mapping[str, Any] = next((c for c in statuses if c.get("name") == WORKER_CONTAINER), {})
        state = container.get("state") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        exit_code = terminated.get("exitCode")
        message = str(terminated.get("message") or "")
        outcome = _outcome(message)
        reason = waiting.get("reason") or terminated.get("reason") or status.get("reason") or ""
        if waiting.get("message"):
            reason = f"{reason}: {waiting['message']}"
        elif message.strip() and outcome is None:  # a log tail (FallbackToLogsOnError): its last line says most
            last = last_words(message)
            reason = f"{reason}: {last}" if reason else last
        elif outcome is not None and outcome.message:
            reason = outcome.message
        reason = reason or unscheduled(pod)
        ready = pod_ready(pod)
        created = meta.get("creationTimestamp")
        return cls(
            name=str(meta.get("name", "")), index=index, attempt=attempt, phase=str(status.get("phase") or "Pending"),
            ready=ready, deleting=meta.get("deletionTimestamp") is not None,
            spec_hash=str((meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION, "")),
            created_at=parse_rfc3339(created) if created else 0.0, ip=status.get("podIP"),
            exit_code=int(exit_code) if exit_code is not None else None, outcome=outcome, reason=str(reason),
            owner_uid=controller_uid(meta),
        )


def _outcome(message: str) -> ProgressDocument | None:
    if not message.lstrip().startswith("{"):
        return None
    try:
        return ProgressDocument.from_json(message)
    except ValueError:
        return None
