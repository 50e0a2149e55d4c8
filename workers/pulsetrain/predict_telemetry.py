"""A predictor replica's live counters, gauges and histograms, read as `/progress` JSON or Prometheus text.

Why this exists: the serving loop, the send callbacks it drains and the model watcher report what they did
while the HTTP server reads it; one lock-guarded object keeps the readings consistent. The trainer's
`Telemetry` speaks of steps and checkpoints; a predictor speaks of answers, batches and latency, so it has
its own, written in the same style (hand-written text format 0.0.4, `pipeline`/`namespace`/`replica`
labels on every sample). Histograms have fixed buckets, so Prometheus can aggregate replicas
(`histogram_quantile` over `sum by (le)`); `/progress` gives this replica's p50/p99 estimated from them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from pulsetrain import __version__
from pulsetrain.exposition import Exposition, Histogram
from pulsetrain.predict_progress import PREDICTOR_STATES, PredictorProgress, PredictorState
from pulsetrain.progress_doc import DeadLettered, rfc3339
from pulsetrain.telemetry import reason_kind

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)
"""Seconds from an input's publish time to its answer's confirmation: dense around the default 20 ms batching."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class PredictorTelemetry:
    """Thread-safe progress of one predictor replica. `clock` is wall time, `monotonic` for the rate."""

    def __init__(self, *, pipeline: str = "local", namespace: str = "default", replica: str = "predictor",
                 version: str = __version__, window: float = 30.0, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.pipeline, self.namespace, self.replica, self.version, self.window = (
            pipeline, namespace, replica, version, window)
        self._clock, self._monotonic = clock, monotonic
        self._lock = threading.Lock()
        self._started, self._started_monotonic = clock(), monotonic()
        self._state: PredictorState = "starting"
        self._message = ""
        self._model: tuple[int, str, float] | None = None
        self._swaps = self._received = self._predictions = self._acknowledged = self._send_failures = 0
        self._dead: dict[str, int] = {}
        self._recent: deque[tuple[float, int]] = deque()  # (monotonic time, answers confirmed then)
        self.latency = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.inference = Histogram(INFERENCE_BUCKETS)

    # -- updates -----------------------------------------------------------------------------------

    def set_state(self, state: PredictorState, message: str = "") -> None:
        if state not in PREDICTOR_STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {', '.join(PREDICTOR_STATES)}")
        with self._lock:
            self._state, self._message = state, message

    @property
    def state(self) -> PredictorState:
        with self._lock:
            return self._state

    def model_loaded(self, version: int, path: str) -> None:
        """`version` answers from now on; a version after the first counts as a swap."""
        with self._lock:
            if self._model is not None:
                self._swaps += 1
            self._model = (version, path, self._clock())

    def received(self, count: int) -> None:
        with self._lock:
            self._received += count

    def batch(self, size: int, inference_seconds: float) -> None:
        """One model call predicted `size` inputs in `inference_seconds`."""
        with self._lock:
            self.batch_size.observe(size)
            self.inference.observe(inference_seconds)

    def answered(self, latencies: Iterable[float]) -> None:
        """Answers confirmed by the broker (and their inputs acknowledged), with each one's latency."""
        with self._lock:
            count = 0
            for value in latencies:
                self.latency.observe(max(value, 0.0))
                count += 1
            self._predictions += count
            self._acknowledged += count
            now = self._monotonic()
            self._recent.append((now, count))
            self._trim(now)

    def dead_lettered(self, reason: str) -> None:
        """One input dead-lettered (acknowledged once its copy is persisted); `reason` is the decoder's, counted
        by its kind."""
        kind = reason_kind(reason)
        with self._lock:
            self._dead[kind] = self._dead.get(kind, 0) + 1
            self._acknowledged += 1

    def send_failed(self, count: int = 1) -> None:
        with self._lock:
            self._send_failures += count

    # -- readings ----------------------------------------------------------------------------------

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - self.window:
            self._recent.popleft()

    def _rate(self) -> float:
        now = self._monotonic()
        self._trim(now)
        since = max(now - self.window, self._started_monotonic)
        return sum(n for _, n in self._recent) / max(now - since, 1e-9) if self._recent else 0.0

    def predictions_per_second(self) -> float:
        with self._lock:
            return self._rate()

    def snapshot(self) -> PredictorProgress:
        with self._lock:
            model = self._model
            quantiles = {name: self.latency.quantile(q) for name, q in (("p50", 0.5), ("p99", 0.99))}
            return PredictorProgress(
                pipeline=self.pipeline, namespace=self.namespace, replica=self.replica, state=self._state,
                message=self._message, model_version=model[0] if model else None,
                model_path=model[1] if model else None, model_loaded_at=rfc3339(model[2]) if model else None,
                model_swaps=self._swaps, messages_received=self._received, predictions=self._predictions,
                messages_acknowledged=self._acknowledged,
                dead_lettered=DeadLettered(total=sum(self._dead.values()), by_reason=dict(self._dead)),
                send_failures=self._send_failures, predictions_per_second=self._rate(),
                latency_seconds={k: v for k, v in quantiles.items() if v is not None},
                started_at=rfc3339(self._started), updated_at=rfc3339(self._clock()))

    def prometheus_text(self) -> str:
        """Every metric in Prometheus text exposition format 0.0.4."""
        with self._lock:
            out = Exposition({"pipeline": self.pipeline, "namespace": self.namespace, "replica": self.replica})
            model = self._model
            prefix = "pulsetrain_predictor_"
            out.family(f"{prefix}info", "gauge", "Predictor identity; always 1.", [({"version": self.version}, 1)])
            out.family(f"{prefix}state", "gauge", "1 for the replica's current state, 0 for the others.",
                       [({"state": s}, int(s == self._state)) for s in PREDICTOR_STATES])
            out.family(f"{prefix}model_version", "gauge", "Model version answering now.",
                       [({}, model[0])] if model else [])
            out.family(f"{prefix}model_swaps_total", "counter", "Model versions swapped in after the first.",
                       [({}, self._swaps)])
            out.family(f"{prefix}messages_received_total", "counter", "Input messages received.",
                       [({}, self._received)])
            out.family(f"{prefix}predictions_total", "counter", "Answers published and confirmed by the broker.",
                       [({}, self._predictions)])
            out.family(f"{prefix}predictions_per_second", "gauge",
                       f"Answers confirmed per second over the last {self.window:g} s.", [({}, self._rate())])
            out.family(f"{prefix}messages_acknowledged_total", "counter",
                       "Inputs acknowledged (answered or dead-lettered).", [({}, self._acknowledged)])
            out.family(f"{prefix}messages_dead_lettered_total", "counter",
                       "Inputs sent to the dead-letter topic, by reason kind.",
                       [({"reason": kind}, n) for kind, n in sorted(self._dead.items())])
            out.family(f"{prefix}send_failures_total", "counter",
                       "Answers the broker did not confirm (their inputs are redelivered).",
                       [({}, self._send_failures)])
            out.histogram(f"{prefix}latency_seconds", "Input publish time to answer confirmed by the broker.",
                          self.latency)
            out.histogram(f"{prefix}batch_size", "Inputs per model call.", self.batch_size)
            out.histogram(f"{prefix}inference_seconds", "Duration of one model call.", self.inference)
            out.family(f"{prefix}start_time_seconds", "gauge", "Unix time the replica started.",
                       [({}, self._started)])
            return out.text()
