"""Pieces of `TrainingPipeline.status`: conditions, worker counts, progress and model, as plain dicts.

Why this exists: `lifecycle` decides *what* the status says; this module knows *how* each part is
shaped on the resource (camelCase keys, RFC 3339 times, a condition's transition time that only moves
when its status flips), so that shape is defined once and unit-tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulsetrain.progress_doc import ProgressDocument, rfc3339
from pulsetrain_operator.observed import WorkerPod

CONDITION_TYPES = ("Created", "Running", "Restarting", "Suspended", "Succeeded", "Failed")
PHASES = ("Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed")
FINISHED_PHASES = ("Succeeded", "Failed")


def set_condition(conditions: Iterable[Mapping[str, Any]], type_: str, status: bool, reason: str, message: str,
                  now: float) -> list[dict[str, Any]]:
    """The conditions with `type_` set; `lastTransitionTime` changes only when the status flips."""
    value = "True" if status else "False"
    result: list[dict[str, Any]] = []
    found = False
    for condition in conditions:
        current = dict(condition)
        if current.get("type") == type_:
            found = True
            if current.get("status") != value:
                current["lastTransitionTime"] = rfc3339(now)
            current.update(status=value, reason=reason, message=message)
        result.append(current)
    if not found:
        result.append({"type": type_, "status": value, "reason": reason, "message": message,
                       "lastTransitionTime": rfc3339(now)})
    order = {name: i for i, name in enumerate(CONDITION_TYPES)}
    return sorted(result, key=lambda c: order.get(str(c.get("type")), len(order)))


def condition_status(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def worker_counts(desired: int, pods: Iterable[WorkerPod]) -> dict[str, int]:
    """`status.workers` for the pods of the current attempt."""
    pods = list(pods)
    return {
        "desired": desired,
        "ready": sum(p.ready and p.phase == "Running" for p in pods),
        "running": sum(p.phase == "Running" for p in pods),
        "succeeded": sum(p.phase == "Succeeded" for p in pods),
        "failed": sum(p.phase == "Failed" for p in pods),
    }


def progress_status(doc: ProgressDocument) -> dict[str, Any]:
    """`status.progress` from a worker's progress document (the chief's)."""
    progress: dict[str, Any] = {
        "step": doc.step,
        "samples": doc.samples,
        "messagesAcknowledged": doc.messages_acknowledged,
        "deadLettered": doc.dead_lettered.total,
        "samplesPerSecond": round(doc.samples_per_second, 3),
        "metrics": {name: round(value, 6) for name, value in doc.metrics.items()},
        "state": doc.state,
        "message": doc.message[:1024],
    }
    if doc.loss is not None:
        progress["loss"] = round(doc.loss, 6)
    if doc.last_checkpoint is not None:
        progress["lastCheckpointStep"] = doc.last_checkpoint.step
        progress["lastCheckpointTime"] = doc.last_checkpoint.time
    return progress


def model_status(export_dir: str, doc: ProgressDocument | None, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """`status.model`: where versions go, and the newest one a worker reported (kept across attempts)."""
    model: dict[str, Any] = {"exportPath": export_dir}
    if previous and previous.get("version") is not None:
        model["version"] = previous["version"]
    if doc is not None and doc.last_export is not None:
        model["version"] = doc.last_export.version
    return model
