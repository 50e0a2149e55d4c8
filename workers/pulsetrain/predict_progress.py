"""The JSON progress document a predictor replica serves on `/progress`, for the operator's `status.serving`.

Why this exists: the operator reports each pipeline's serving stage (model version served, predictions/s,
dead-lettered) without predictor pods holding API credentials, the same way it reads the training chief's
progress; both sides import this module, so the wire format has one definition. It follows the rules of
`pulsetrain.progress_doc` (camelCase keys, fields added without a new `schemaVersion`, unknown keys
ignored, unknown states and versions refused, RFC 3339 times, non-finite numbers never written) and
carries `"kind": "predictor"` so a reader can never mistake it for a training worker's document.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pulsetrain.progress_doc import DeadLettered, JsonReader

SCHEMA_VERSION = 1
KIND = "predictor"

PredictorState = Literal["starting", "waiting-for-model", "serving", "source-unavailable", "stopping", "stopped",
                         "failed"]
PREDICTOR_STATES: tuple[PredictorState, ...] = ("starting", "waiting-for-model", "serving", "source-unavailable",
                                                "stopping", "stopped", "failed")
NOT_READY: frozenset[str] = frozenset({"starting", "waiting-for-model", "source-unavailable", "failed"})
"""States in which a replica answers nothing (its `/readyz` says 503): no model yet, no broker, or broken."""


@dataclass(frozen=True, kw_only=True)
class PredictorProgress:
    """One predictor replica at `updated_at`. Counts cover this process's life (they restart at zero)."""

    schema_version: int = SCHEMA_VERSION
    pipeline: str
    namespace: str = "default"
    replica: str
    """The replica's name (the pod's host name)."""
    state: PredictorState
    message: str = ""
    """Human text: what it waits for, why the source is unavailable, why it failed."""
    model_version: int | None = None
    """The version answering now; None before the first one is loaded."""
    model_path: str | None = None
    model_loaded_at: str | None = None
    model_swaps: int = 0
    """Versions swapped in after the first."""
    messages_received: int = 0
    predictions: int = 0
    """Answers whose send the broker confirmed (each input's is counted once it is persisted)."""
    messages_acknowledged: int = 0
    dead_lettered: DeadLettered = field(default_factory=DeadLettered)
    send_failures: int = 0
    """Answers the broker refused; their inputs were negatively acknowledged and come back."""
    predictions_per_second: float = 0.0
    latency_seconds: Mapping[str, float] = field(default_factory=dict)
    """Estimated quantiles (`p50`, `p99`) of input publish time to answer confirmed, from the histogram."""
    started_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemaVersion": self.schema_version, "kind": KIND, "pipeline": self.pipeline,
            "namespace": self.namespace, "replica": self.replica, "state": self.state, "message": self.message,
            "modelVersion": self.model_version, "modelPath": self.model_path, "modelLoadedAt": self.model_loaded_at,
            "modelSwaps": self.model_swaps, "messagesReceived": self.messages_received,
            "predictions": self.predictions, "messagesAcknowledged": self.messages_acknowledged,
            "deadLettered": {"total": self.dead_lettered.total,
                             "byReason": dict(sorted(self.dead_lettered.by_reason.items()))},
            "sendFailures": self.send_failures,
            "predictionsPerSecond": self.predictions_per_second if math.isfinite(self.predictions_per_second) else 0.0,
            "latencySeconds": {k: v for k, v in sorted(self.latency_seconds.items()) if math.isfinite(v)},
            "startedAt": self.started_at, "updatedAt": self.updated_at,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> PredictorProgress:
        """Parse and validate a document; ValueError naming the field for anything wrong or missing."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"predictor progress document is not JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> PredictorProgress:
        r = JsonReader(data, "")
        version = r.integer("schemaVersion")
        if version != SCHEMA_VERSION:
            raise ValueError(f"schemaVersion: {version} is not supported (this reader knows {SCHEMA_VERSION})")
        kind = r.string("kind")
        if kind != KIND:
            raise ValueError(f"kind: {kind!r} is not {KIND!r} (not a predictor's progress document)")
        state = r.string("state")
        if state not in PREDICTOR_STATES:
            raise ValueError(f"state: {state!r} is not one of {', '.join(PREDICTOR_STATES)}")
        dead = r.child("deadLettered", required=False)
        return cls(
            schema_version=version, pipeline=r.string("pipeline"), namespace=r.string("namespace", default="default"),
            replica=r.string("replica"), state=state, message=r.string("message", default=""),
            model_version=r.optional_integer("modelVersion"),
            model_path=None if r.data.get("modelPath") is None else r.string("modelPath"),
            model_loaded_at=None if r.data.get("modelLoadedAt") is None else r.time("modelLoadedAt"),
            model_swaps=r.integer("modelSwaps"), messages_received=r.integer("messagesReceived"),
            predictions=r.integer("predictions"), messages_acknowledged=r.integer("messagesAcknowledged"),
            dead_lettered=DeadLettered() if dead is None else DeadLettered(
                total=dead.integer("total"), by_reason=dead.counts("byReason")),
            send_failures=r.integer("sendFailures"),
            predictions_per_second=r.optional_number("predictionsPerSecond") or 0.0,
            latency_seconds=r.numbers("latencySeconds"),
            started_at=r.time("startedAt"), updated_at=r.time("updatedAt"))
