"""A worker's live counters and gauges, read as a progress document or as Prometheus text.

Why this exists: the training loop, the consumer and the checkpointing code all report what they did,
from different threads, while the HTTP server reads it; one lock-guarded object keeps those readings
consistent (a snapshot never shows more acknowledged messages than it has received, say). Prometheus
text format 0.0.4 is written here by hand: it is small, and it keeps `prometheus_client` out of the
worker image. Every sample carries `pipeline`, `namespace` and `worker` labels so one scrape config
can collect every pipeline's workers.

Throughput is the samples trained over the last `window` seconds of wall time (or since the first step,
if that is shorter), so it falls to zero when training stalls instead of showing the last good rate.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from pulsetrain import __version__
from pulsetrain.exposition import Exposition
from pulsetrain.progress_doc import STATES, CheckpointInfo, DeadLettered, ExportInfo, ProgressDocument, State, rfc3339


def exception_reason(kind: str, exc: BaseException, limit: int) -> str:
    """A dead-letter reason for a failure of the pipeline's own code: `kind: ExceptionType: text`, on one line,
    the text cut to `limit` characters (a TensorFlow error can run to pages); `reason_kind` reads `kind` back."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return f"{kind}: {text if len(text) <= limit else text[:limit - 3] + '...'}"


def reason_kind(reason: str) -> str:
    """The kind of a decoder reason: the text before its first colon (`shape: expected 64...` → `shape`)."""
    kind = reason.split(":", 1)[0].strip()
    return kind or "unknown"


class Telemetry:
    """Thread-safe progress of one worker. `clock` is wall time (Unix seconds), `monotonic` for rates."""

    def __init__(self, *, pipeline: str = "local", namespace: str = "default", worker: int = 0,
                 is_chief: bool = True, version: str = __version__, window: float = 30.0,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pipeline, self.namespace, self.worker, self.is_chief = pipeline, namespace, worker, is_chief
        self.version, self.window = version, window
        self._clock, self._monotonic = clock, monotonic
        self._lock = threading.Lock()
        self._started = clock()
        self._state: State = "starting"
        self._message = ""
        self._step = self._samples = self._received = self._acknowledged = self._rollbacks = 0
        self._dead: dict[str, int] = {}
        self._backlog: int | None = None
        self._loss: float | None = None
        self._metrics: dict[str, float] = {}
        self._step_time: float | None = None
        self._recent: deque[tuple[float, float, int]] = deque()  # (start, end, samples), monotonic
        self._checkpoint: tuple[int, float, str] | None = None
        self._export: tuple[int, str, float] | None = None

    # -- updates -----------------------------------------------------------------------------------

    def step_done(self, step: int, samples: int, loss: float | None = None,
                  metrics: Mapping[str, float] | None = None, seconds: float = 0.0) -> None:
        """A training step `step` finished: it trained `samples` real samples in `seconds`."""
        if samples < 0 or seconds < 0 or step < 0:
            raise ValueError("step, samples and seconds must not be negative")
        now = self._monotonic()
        with self._lock:
            self._step = max(self._step, step)
            self._samples += samples
            self._loss = None if loss is None else float(loss)
            if metrics is not None:
                self._metrics.update({name: float(value) for name, value in metrics.items()})
            self._step_time = seconds
            self._recent.append((now - seconds, now, samples))
            self._trim(now)

    def restored(self, step: int, samples: int) -> None:
        """Resumed from a checkpoint holding `step` and `samples`: counts continue from there."""
        with self._lock:
            self._step, self._samples = step, samples

    def rolled_back(self, step: int, samples: int) -> None:
        """The gang went back to its last commit (`step`, `samples`) after losing the broker."""
        with self._lock:
            self._step, self._samples = step, samples
            self._rollbacks += 1

    def received(self, count: int = 1) -> None:
        self._add("_received", count)

    def acknowledged(self, count: int = 1) -> None:
        self._add("_acknowledged", count)

    def dead_lettered(self, reason: str, count: int = 1) -> None:
        """`count` messages dead-lettered; `reason` is a kind (`shape`) or a whole decoder reason."""
        if count < 0:
            raise ValueError("count must not be negative")
        kind = reason_kind(reason)
        with self._lock:
            self._dead[kind] = self._dead.get(kind, 0) + count

    def set_backlog(self, messages: int | None) -> None:
        with self._lock:
            self._backlog = messages

    def checkpointed(self, step: int, path: str) -> None:
        with self._lock:
            self._checkpoint = (step, self._clock(), path)

    def exported(self, version: int, path: str) -> None:
        with self._lock:
            self._export = (version, path, self._clock())

    def set_state(self, state: State, message: str = "") -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
        with self._lock:
            self._state, self._message = state, message

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def _add(self, attribute: str, count: int) -> None:
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            setattr(self, attribute, getattr(self, attribute) + count)

    # -- readings ----------------------------------------------------------------------------------

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][1] < now - self.window:
            self._recent.popleft()

    def _rate(self) -> float:
        now = self._monotonic()
        self._trim(now)
        if not self._recent:
            return 0.0
        since = max(self._recent[0][0], now - self.window)
        return sum(entry[2] for entry in self._recent) / max(now - since, 1e-9)

    def samples_per_second(self) -> float:
        with self._lock:
            return self._rate()

    def checkpoint_age(self) -> float | None:
        """Seconds since the newest checkpoint was written, None before the first."""
        with self._lock:
            return None if self._checkpoint is None else max(self._clock() - self._checkpoint[1], 0.0)

    def snapshot(self) -> ProgressDocument:
        with self._lock:
            ckpt, export = self._checkpoint, self._export
            return ProgressDocument(
                pipeline=self.pipeline, namespace=self.namespace, worker=self.worker,
                is_chief=self.is_chief, state=self._state, step=self._step, samples=self._samples,
                messages_received=self._received, messages_acknowledged=self._acknowledged,
                dead_lettered=DeadLettered(total=sum(self._dead.values()), by_reason=dict(self._dead)),
                backlog=self._backlog, loss=self._loss, metrics=dict(self._metrics),
                samples_per_second=self._rate(), step_time_seconds=self._step_time,
                last_checkpoint=None if ckpt is None else CheckpointInfo(
                    step=ckpt[0], time=rfc3339(ckpt[1]), path=ckpt[2]),
                last_export=None if export is None else ExportInfo(
                    version=export[0], path=export[1], time=rfc3339(export[2])),
                started_at=rfc3339(self._started), updated_at=rfc3339(self._clock()),
                message=self._message)

    def prometheus_text(self) -> str:
        """Every metric in Prometheus text exposition format 0.0.4."""
        with self._lock:
            now = self._clock()
            ckpt, export = self._checkpoint, self._export
            out = Exposition({"pipeline": self.pipeline, "namespace": self.namespace,
                               "worker": str(self.worker)})
            out.family("pulsetrain_info", "gauge", "Worker identity; always 1.",
                       [({"version": self.version, "chief": str(self.is_chief).lower()}, 1)])
            out.family("pulsetrain_state", "gauge", "1 for the worker's current state, 0 for the others.",
                       [({"state": s}, int(s == self._state)) for s in STATES])
            out.family("pulsetrain_step", "gauge", "Last training step completed.", [({}, self._step)])
            out.family("pulsetrain_samples_total", "counter", "Real samples trained by the whole gang, epoch-free "
                       "(every worker reports the gang's figure; back to the last commit after a rollback).",
                       [({}, self._samples)])
            out.family("pulsetrain_samples_per_second", "gauge",
                       f"Samples trained per second by the whole gang over the last {self.window:g} s.",
                       [({}, self._rate())])
            out.family("pulsetrain_step_time_seconds", "gauge", "Duration of the last training step.",
                       [({}, self._step_time)] if self._step_time is not None else [])
            out.family("pulsetrain_messages_received_total", "counter", "Messages received from Pulsar.",
                       [({}, self._received)])
            out.family("pulsetrain_messages_acknowledged_total", "counter",
                       "Messages acknowledged once a durable checkpoint contains them.",
                       [({}, self._acknowledged)])
            out.family("pulsetrain_messages_dead_lettered_total", "counter",
                       "Messages sent to the dead-letter topic, by reason kind.",
                       [({"reason": kind}, n) for kind, n in sorted(self._dead.items())])
            out.family("pulsetrain_rollbacks_total", "counter",
                       "Times the gang went back to its last commit: a consumer lost the broker, "
                       "or a commit was refused.",
                       [({}, self._rollbacks)])
            out.family("pulsetrain_backlog_messages", "gauge", "Subscription backlog last seen.",
                       [({}, self._backlog)] if self._backlog is not None else [])
            out.family("pulsetrain_loss", "gauge", "Training loss of the last step.",
                       [({}, self._loss)] if self._loss is not None else [])
            out.family("pulsetrain_metric", "gauge", "Training metrics of the last step, by name.",
                       [({"name": name}, value) for name, value in sorted(self._metrics.items())])
            out.family("pulsetrain_last_checkpoint_step", "gauge", "Step held by the newest checkpoint.",
                       [({}, ckpt[0])] if ckpt else [])
            out.family("pulsetrain_last_checkpoint_timestamp_seconds", "gauge",
                       "Unix time the newest checkpoint was written.", [({}, ckpt[1])] if ckpt else [])
            out.family("pulsetrain_checkpoint_age_seconds", "gauge", "Seconds since the newest checkpoint.",
                       [({}, max(now - ckpt[1], 0.0))] if ckpt else [])
            out.family("pulsetrain_last_export_version", "gauge", "Newest exported model version.",
                       [({}, export[0])] if export else [])
            out.family("pulsetrain_start_time_seconds", "gauge", "Unix time the worker started.",
                       [({}, self._started)])
            return out.text()
