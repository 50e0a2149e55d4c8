"""The JSON progress document a worker serves on `/progress` and the operator copies into `status`.

Why this exists: the operator must show a pipeline's progress on the resource without workers holding
write access to the Kubernetes API, so each worker publishes this document over HTTP and the operator
reads the chief's. Both sides import this module, so the wire format has exactly one definition.

Compatibility rules, because worker and operator images are upgraded independently:
- keys are camelCase, as on the resource's `status`;
- fields may be added without bumping `schemaVersion`; readers ignore keys they do not know;
- `schemaVersion` is bumped only for an incompatible change, and a reader refuses a version it does
  not support rather than misread it;
- a reader refuses a `state` it does not know, so a state is added without a new `schemaVersion` only
  where older readers cannot meet it: `stopped` (the worker ended because a stop was requested) is
  written only in the final document a worker leaves in its termination log (`pulsetrain.outcome`),
  never served on `/progress`, which older operators poll;
- a missing or mistyped required field is a `ValueError` that names the field;
- times are RFC 3339 UTC strings (what `status` fields of format date-time want), kept as strings
  here so a document round-trips exactly; non-finite numbers, which JSON cannot carry, are written as
  `null` (loss) or left out (metrics).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

SCHEMA_VERSION = 1

State = Literal["starting", "waiting-for-peers", "training", "checkpointing", "exporting", "idle",
                "stopping", "finished", "failed", "source-unavailable", "stopped"]
STATES: tuple[State, ...] = ("starting", "waiting-for-peers", "training", "checkpointing", "exporting",
                             "idle", "stopping", "finished", "failed", "source-unavailable", "stopped")


def rfc3339(timestamp: float) -> str:
    """Unix seconds as an RFC 3339 UTC string with milliseconds, e.g. `2024-05-01T12:00:00.250Z`."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """An RFC 3339 string (with `Z` or an offset) as Unix seconds; ValueError if it is not one."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment.timestamp()


@dataclass(frozen=True, kw_only=True)
class DeadLettered:
    """Messages sent to the dead-letter topic: the total and the count per reason kind (`shape`, `json`...)."""

    total: int = 0
    by_reason: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CheckpointInfo:
    """The newest durable checkpoint: the step it holds, when it was written, where."""

    step: int
    time: str
    path: str


@dataclass(frozen=True, kw_only=True)
class ExportInfo:
    """The newest exported model version (a SavedModel directory named by its version)."""

    version: int
    path: str
    time: str


@dataclass(frozen=True, kw_only=True)
class ProgressDocument:
    """One worker's progress at `updated_at`. Counts are epoch-free: a stream has no epochs."""

    schema_version: int = SCHEMA_VERSION
    pipeline: str
    namespace: str = "default"
    worker: int
    is_chief: bool
    state: State
    step: int
    samples: int
    """Real samples trained (not padding) by the whole gang, over the whole life of the pipeline."""
    messages_received: int
    messages_acknowledged: int
    dead_lettered: DeadLettered = field(default_factory=DeadLettered)
    backlog: int | None = None
    """The subscription backlog last seen, if the worker has looked."""
    loss: float | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    samples_per_second: float = 0.0
    step_time_seconds: float | None = None
    last_checkpoint: CheckpointInfo | None = None
    last_export: ExportInfo | None = None
    started_at: str
    updated_at: str
    message: str = ""
    """Human text: why the source is unavailable, why the worker failed..."""

    def to_dict(self) -> dict[str, Any]:
        """The document as JSON-ready data with camelCase keys; non-finite numbers made JSON-safe."""
        def finite(value: float | None) -> float | None:
            return value if value is not None and math.isfinite(value) else None

        return {
            "schemaVersion": self.schema_version, "pipeline": self.pipeline, "namespace": self.namespace,
            "worker": self.worker, "isChief": self.is_chief, "state": self.state, "step": self.step,
            "samples": self.samples, "messagesReceived": self.messages_received,
            "messagesAcknowledged": self.messages_acknowledged,
            "deadLettered": {"total": self.dead_lettered.total,
                             "byReason": dict(sorted(self.dead_lettered.by_reason.items()))},
            "backlog": self.backlog, "loss": finite(self.loss),
            "metrics": {k: v for k, v in sorted(self.metrics.items()) if math.isfinite(v)},
            "samplesPerSecond": finite(self.samples_per_second) or 0.0,
            "stepTimeSeconds": finite(self.step_time_seconds),
            "lastCheckpoint": None if self.last_checkpoint is None else {
                "step": self.last_checkpoint.step, "time": self.last_checkpoint.time,
                "path": self.last_checkpoint.path},
            "lastExport": None if self.last_export is None else {
                "version": self.last_export.version, "path": self.last_export.path,
                "time": self.last_export.time},
            "startedAt": self.started_at, "updatedAt": self.updated_at, "message": self.message,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ProgressDocument:
        """Parse and validate a document; ValueError naming the field for anything wrong or missing."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"progress document is not JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> ProgressDocument:
        r = _Reader(data, "")
        version = r.integer("schemaVersion")
        if version != SCHEMA_VERSION:
            raise ValueError(f"schemaVersion: {version} is not supported (this reader knows {SCHEMA_VERSION})")
        state = r.string("state")
        if state not in STATES:
            raise ValueError(f"state: {state!r} is not one of {', '.join(STATES)}")
        dead = r.child("deadLettered", required=False)
        ckpt = r.child("lastCheckpoint", required=False)
        export = r.child("lastExport", required=False)
        return cls(
            schema_version=version, pipeline=r.string("pipeline"),
            namespace=r.string("namespace", default="default"), worker=r.integer("worker"),
            is_chief=r.boolean("isChief"), state=state, step=r.integer("step"),
            samples=r.integer("samples"), messages_received=r.integer("messagesReceived"),
            messages_acknowledged=r.integer("messagesAcknowledged"),
            dead_lettered=DeadLettered() if dead is None else DeadLettered(
                total=dead.integer("total"), by_reason=dead.counts("byReason")),
            backlog=r.optional_integer("backlog"), loss=r.optional_number("loss"),
            metrics=r.numbers("metrics"),
            samples_per_second=r.optional_number("samplesPerSecond") or 0.0,
            step_time_seconds=r.optional_number("stepTimeSeconds"),
            last_checkpoint=None if ckpt is None else CheckpointInfo(
                step=ckpt.integer("step"), time=ckpt.time("time"), path=ckpt.string("path")),
            last_export=None if export is None else ExportInfo(
                version=export.integer("version"), path=export.string("path"), time=export.time("time")),
            started_at=r.time("startedAt"), updated_at=r.time("updatedAt"),
            message=r.string("message", default=""))


class _Reader:
    """Typed access to one JSON object; every error names the field by its dotted path."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise ValueError(f"{path or 'progress document'}: expected an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.data:
            if required:
                raise ValueError(f"{self._name(key)}: required field is missing")
            return None
        return self.data[key]

    def _fail(self, key: str, want: str, value: Any) -> ValueError:
        return ValueError(f"{self._name(key)}: expected {want}, got {value!r}")

    def integer(self, key: str) -> int:
        value = self._get(key, True)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._fail(key, "a non-negative integer", value)
        return value

    def optional_integer(self, key: str) -> int | None:
        return None if self._get(key, False) is None else self.integer(key)

    def optional_number(self, key: str) -> float | None:
        value = self._get(key, False)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._fail(key, "a number or null", value)
        return float(value)

    def string(self, key: str, default: str | None = None) -> str:
        value = self._get(key, default is None)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def time(self, key: str) -> str:
        value = self.string(key)
        try:
            parse_rfc3339(value)
        except ValueError:
            raise self._fail(key, "an RFC 3339 time", value) from None
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key, True)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def child(self, key: str, required: bool) -> _Reader | None:
        value = self._get(key, required)
        return None if value is None else _Reader(value, self._name(key))

    def counts(self, key: str) -> dict[str, int]:
        sub = self.child(key, required=False)
        return {} if sub is None else {name: sub.integer(name) for name in sub.data}

    def numbers(self, key: str) -> dict[str, float]:
        sub = self.child(key, required=False)
        if sub is None:
            return {}
        values = {name: sub.optional_number(name) for name in sub.data}
        return {name: value for name, value in values.items() if value is not None}


JsonReader = _Reader
"""Typed access to a JSON object with dotted field paths in errors; `pulsetrain.predict_progress` reads with it too."""
