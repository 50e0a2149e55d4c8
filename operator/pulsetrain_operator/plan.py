"""What one decision about a pipeline is made from, and what it comes to: `Observation` in, `Plan` out.

Why this exists: `lifecycle.decide` is a pure function, and these are its arguments and its result, kept
apart from the rules so that the reconciler (which builds an `Observation` from the API server and carries
out a `Plan`) and the tests share them without the rules. Nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pulsetrain.progress_doc import ProgressDocument
from pulsetrain_operator.observed import WorkerPod


@dataclass(frozen=True, kw_only=True)
class Observation:
    name: str
    namespace: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    pods: list[WorkerPod]
    desired_hash: str
    """`builders.pod.spec_hash` of the current spec: what a new attempt would be built from."""
    export_dir: str
    now: float
    progress: ProgressDocument | None = None
    """The chief's live progress document, when it could be read."""
    uid: str = ""
    """The pipeline's UID: pods another UID controls belong to a deleted predecessor of the same name."""
    config_refusal: str | None = None
    """Why the workers would refuse the current spec (`builders.config.worker_refusal`), None if they would not."""


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(kw_only=True)
class Plan:
    status: dict[str, Any]
    create: list[int] = field(default_factory=list)
    """Worker indices to create for `status.attempt`."""
    delete: list[tuple[str, int | None]] = field(default_factory=list)
    """Pods to delete, with a grace period override (None: the pod's own)."""
    events: list[Event] = field(default_factory=list)
    delete_pipeline: bool = False
    requeue_after: float | None = None
    """Look again after this many seconds even if nothing changes (back-off end, TTL, deadline)."""

    def requeue(self, seconds: float) -> None:
        """Look again within `seconds` (at least 0.5 s), keeping an earlier time asked for already."""
        seconds = max(seconds, 0.5)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)
