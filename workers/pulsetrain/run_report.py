"""What `pulsetrain run` prints: the live progress line and the closing summary, as pure functions.

Why this exists: the runner's loop only gathers facts (the chief's `/progress` document while it runs,
each worker's exit code, final progress document and log when it ends); how they read to a person is
decided here, where it can be tested without starting anything. The summary names what a user wants
after a run: did it finish, what it learned (loss, metrics), where the model is, how many messages were
trained and dead-lettered, and, when a worker failed, which one and the end of its log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pulsetrain.progress_doc import ProgressDocument

Outcome = Literal["finished", "stopped", "failed"]
BAR_WIDTH = 20


@dataclass(frozen=True)
class WorkerEnd:
    """How one worker ended: its exit code (negative: killed by that signal), final document and log."""

    index: int
    exit_code: int | None
    final: ProgressDocument | None = None
    log: Path | None = None


@dataclass(frozen=True)
class RunResult:
    """Everything the summary says about a run."""

    pipeline: str
    outcome: Outcome
    exit_code: int
    seconds: float
    workers: Sequence[WorkerEnd]
    state_dir: Path
    reason: str = ""
    """Why the run stopped or failed, for a person."""
    failed_log_tail: str = ""
    notes: Sequence[str] = field(default_factory=tuple)


def duration(seconds: float) -> str:
    """`42s`, `3m 05s`, `1h 02m`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def metrics_text(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in sorted(metrics.items()))


def progress_fraction(doc: ProgressDocument, max_steps: int | None, max_messages: int | None) -> float | None:
    """How far a bounded run is, when it has a limit to measure against."""
    if max_steps:
        return min(1.0, doc.step / max_steps)
    if max_messages:
        return min(1.0, doc.samples / max_messages)
    return None


def progress_line(doc: ProgressDocument | None, elapsed: float, *, max_steps: int | None = None,
                  max_messages: int | None = None, waiting: str = "starting workers") -> str:
    """One line: a bar when the run has a limit, then step, samples/s, loss, metrics, state, elapsed time."""
    if doc is None:
        return f"{waiting}... {duration(elapsed)}"
    parts: list[str] = []
    fraction = progress_fraction(doc, max_steps, max_messages)
    if fraction is not None:
        filled = round(fraction * BAR_WIDTH)
        parts.append(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%}")
    parts.append(f"step {doc.step}")
    parts.append(f"{doc.samples_per_second:,.0f} samples/s")
    parts.append(f"loss {doc.loss:.4f}" if doc.loss is not None else "loss -")
    if doc.metrics:
        parts.append(metrics_text(doc.metrics))
    state = doc.state if not doc.message else f"{doc.state} ({doc.message})"
    parts.append(state)
    parts.append(duration(elapsed))
    return " | ".join(parts)


def _dead_letters(workers: Sequence[WorkerEnd]) -> tuple[int, dict[str, int]]:
    total, by_reason = 0, dict[str, int]()
    for end in workers:
        if end.final is None:
            continue
        total += end.final.dead_lettered.total
        for reason, count in end.final.dead_lettered.by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + count
    return total, by_reason


def chief(result: RunResult) -> ProgressDocument | None:
    return next((end.final for end in result.workers if end.index == 0), None)


def summary(result: RunResult) -> str:
    """The closing summary, several lines."""
    head = {"finished": "finished", "stopped": "stopped", "failed": "FAILED"}[result.outcome]
    doc = chief(result)
    lines = [f"pulsetrain run: {result.pipeline} {head} after {duration(result.seconds)} "
             f"({len(result.workers)} worker{'s' if len(result.workers) != 1 else ''}"
             f"{f', step {doc.step}' if doc else ''}){': ' + result.reason if result.reason else ''}"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<13}{text}")

    if doc is not None:
        dead, by_reason = _dead_letters(result.workers)
        reasons = f" ({', '.join(f'{k} {v}' for k, v in sorted(by_reason.items()))})" if by_reason else ""
        row("trained", f"{doc.samples:,} messages, {dead:,} dead-lettered{reasons}")
        row("loss", f"{doc.loss:.4f}" if doc.loss is not None else "-")
        if doc.metrics:
            row("metrics", metrics_text(doc.metrics))
        if doc.last_export is not None:
            row("model", f"version {doc.last_export.version} at {doc.last_export.path}")
        else:
            row("model", "not exported")
        if doc.last_checkpoint is not None:
            row("checkpoint", f"step {doc.last_checkpoint.step} at {doc.last_checkpoint.path}")
    row("state", f"{result.state_dir} (worker logs: worker-N.log)")
    for note in result.notes:
        row("note", note)
    if result.outcome == "stopped":
        lines.append("  Run the same command again to continue from the last checkpoint.")
    if result.failed_log_tail:
        lines.append(result.failed_log_tail)
    return "\n".join(lines)
