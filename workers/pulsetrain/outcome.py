"""How a worker ended, left behind as its final progress document in the termination log.

Why this exists: once a worker's pod has ended, nobody can ask its `/progress` endpoint how training
went. So with `--termination-log PATH` (in a pod, `/dev/termination-log`) the worker writes, as it
exits, one compact progress document whose `state` is the outcome: `finished` (bounded training ended
by itself: idle timeout, maxSteps, maxMessages), `stopped` (it ended because a stop was requested, of
this worker or of another in the gang) or `failed` (`message` says why). Kubernetes turns the file
into the container's `state.terminated.message`, where the operator reads it back with
`ProgressDocument.from_json`.

The kubelet keeps only the last 4096 bytes of the file, and a cut document is not JSON, so the
document is made to fit: metrics are dropped first (last names first), then the message is shortened
(its start kept), then the dead-letter counts by reason (their total kept), then the checkpoint and
export paths (their step, version and time kept). What remains is small and bounded.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal

from pulsetrain.progress_doc import DeadLettered, ProgressDocument, rfc3339

__all__ = ["MAX_BYTES", "NothingTrained", "Outcome", "TerminationLog", "nothing_trained", "stop_message",
           "termination_document", "unconfigured"]

log = logging.getLogger(__name__)
MAX_BYTES = 4096
"""The kubelet's MaxContainerTerminationMessageLength."""
UNKNOWN_PIPELINE = "unknown"
ELLIPSIS = "..."

Outcome = Literal["finished", "stopped", "failed"]


def _size(doc: ProgressDocument) -> int:
    return len(doc.to_json().encode())


def _shorten_message(doc: ProgressDocument, limit: int) -> ProgressDocument:
    """The longest start of the message (plus an ellipsis) with which the document fits, maybe none."""
    text = doc.message
    low, high = 0, len(text)  # keeping `low` characters fits, or `low` is 0
    while low < high:
        middle = (low + high + 1) // 2
        if _size(dataclasses.replace(doc, message=text[:middle] + ELLIPSIS)) <= limit:
            low = middle
        else:
            high = middle - 1
    return dataclasses.replace(doc, message=text[:low] + ELLIPSIS if low else "")


def termination_document(progress: ProgressDocument, state: Outcome, message: str, limit: int = MAX_BYTES) -> str:
    """`progress` with `state` and `message` as compact JSON of at most `limit` bytes (see the module doc)."""
    doc = dataclasses.replace(progress, state=state, message=message)
    metrics = dict(sorted(doc.metrics.items()))
    while metrics and _size(doc) > limit:
        metrics.popitem()
        doc = dataclasses.replace(doc, metrics=dict(metrics))
    if _size(doc) > limit:
        doc = _shorten_message(doc, limit)
    if _size(doc) > limit:
        doc = dataclasses.replace(doc, dead_lettered=DeadLettered(total=doc.dead_lettered.total))
    if _size(doc) > limit:
        doc = dataclasses.replace(
            doc,
            last_checkpoint=doc.last_checkpoint and dataclasses.replace(doc.last_checkpoint, path=""),
            last_export=doc.last_export and dataclasses.replace(doc.last_export, path=""))
    return doc.to_json()


def unconfigured(worker: int, started: float, now: float) -> ProgressDocument:
    """The document of a worker that could not read its configuration: the pipeline is unknown."""
    return ProgressDocument(pipeline=UNKNOWN_PIPELINE, worker=worker, is_chief=worker == 0, state="failed",
                            step=0, samples=0, messages_received=0, messages_acknowledged=0,
                            started_at=rfc3339(started), updated_at=rfc3339(now))


class NothingTrained(RuntimeError):
    """A bounded run ended without a single training step: there is no model to export, and a pipeline that
    "succeeded" with an untrained one would hide a wrong topic or subscription (and serve random answers)."""


def nothing_trained(topic: str, subscription: str, initial_position: str, idle_timeout_seconds: float,
                    received: int, dead_lettered: int) -> NothingTrained:
    """What to say when no step was trained: where the worker read, for how long it waited, and what it got."""
    if received and received == dead_lettered:
        got = f"all {received} messages this worker received were dead-lettered"
    elif received:
        got = f"this worker received {received} messages ({dead_lettered} dead-lettered)"
    else:
        got = "this worker received no message"
    hint = (" (a new subscription at initialPosition Latest skips what the topic held before)"
            if initial_position == "Latest" else "")
    return NothingTrained(
        f"nothing trained, so nothing exported: every worker was idle for idleTimeoutSeconds "
        f"({idle_timeout_seconds:g}s) before a first step; {got} from {topic} (subscription {subscription!r}, "
        f"initialPosition {initial_position}{hint}). Check the topic and subscription, or give a producer that "
        "starts later a longer idleTimeoutSeconds")


def stop_message(signum: int | None) -> str:
    """Why a worker stopped: its own signal, or (None) a stop requested of another worker of the gang."""
    if signum is None:
        return "stopped: another worker of the gang was asked to stop"
    return f"stopped on {signal.Signals(signum).name}"


class TerminationLog:
    """The outcome to report and where; as a context manager it writes the document however the block
    ends, and an exception escaping the block is reported as `failed` with its text (then re-raised)."""

    def __init__(self, path: Path | None, worker: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = path, clock
        started = clock()
        self.progress: Callable[[], ProgressDocument] = lambda: unconfigured(worker, started, clock())
        """Where the final progress comes from: the worker's telemetry, once it has some."""
        self.state: Outcome = "failed"
        self.message = "the worker ended without reporting an outcome"

    def report(self, state: Outcome, message: str = "") -> None:
        self.state, self.message = state, message

    def write(self) -> None:
        if self.path is None:
            return
        try:
            self.path.write_text(termination_document(self.progress(), self.state, self.message))
        except OSError as exc:  # the outcome is lost, but the exit code still tells it
            log.warning("cannot write the termination log %s: %s", self.path, exc)

    def __enter__(self) -> TerminationLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is not None and not issubclass(kind, SystemExit):
            self.report("failed", f"{kind.__name__}: {exc}" if str(exc) else kind.__name__)
        self.write()
