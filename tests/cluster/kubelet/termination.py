"""Termination messages: the file a container may leave its last words in, read back as a kubelet does.

Why this exists: programs (the pulsetrain worker among them) report how they ended through
`state.terminated.message`, and the operator reads it from there; the process kubelet must produce
that field by the same rules as the real kubelet, or tests of those readers prove nothing.

The rules (Kubernetes' kubelet and status manager):
- each container run gets a new empty file on the node (here in the pod's sandbox directory), mounted
  at the container's `terminationMessagePath` (default `/dev/termination-log`; the shim mounts it);
- when the run ends, the last 4096 bytes of that file are the message (the kubelet's `tail.ReadAtMost`
  keeps the end of a longer file, so a writer must stay under the limit to be read whole);
- with `terminationMessagePolicy: FallbackToLogsOnError`, an empty file and a non-zero exit code, the
  message is the tail of the run's log instead: its last 80 lines, of those at most the last 2048 bytes;
- the pod's status keeps at most 12 KiB of messages: each container's state and last state are cut to
  their first `12288 / (containers + init containers)` bytes (`trim_message`, used by status.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.kubelet.api import Obj

DEFAULT_PATH = "/dev/termination-log"
FALLBACK_TO_LOGS = "FallbackToLogsOnError"
MAX_MESSAGE_BYTES = 4 * 1024
MAX_LOG_LINES = 80
MAX_LOG_BYTES = 2 * 1024
MAX_POD_MESSAGE_BYTES = 12 * 1024


@dataclass(frozen=True)
class TerminationMount:
    """What the shim mounts: the node's `source` file at the container's `target` path. `stage` is an
    empty node directory the shim may mount a private copy of the target's directory on (see shim.py)."""

    source: str
    target: str
    stage: str


def message_path(container: Obj) -> str:
    """The container's terminationMessagePath as an absolute, normalised path."""
    path = str(container.get("terminationMessagePath") or DEFAULT_PATH)
    return os.path.normpath(os.path.join("/", path))


def falls_back_to_logs(container: Obj) -> bool:
    return container.get("terminationMessagePolicy") == FALLBACK_TO_LOGS


def prepare(directory: Path, container: Obj) -> TerminationMount:
    """A fresh empty message file (and an empty stage directory) for the container's next run."""
    name = container["name"]
    source, stage = directory / f"{name}.termination-log", directory / f"{name}.termination-stage"
    directory.mkdir(parents=True, exist_ok=True)
    stage.mkdir(exist_ok=True)
    source.write_bytes(b"")
    source.chmod(0o666)  # as the kubelet does, so that a container running as any user can write it
    return TerminationMount(str(source), message_path(container), str(stage))


def _tail(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - limit, 0))
            return handle.read(limit)
    except FileNotFoundError:
        return b""


def log_tail(log_path: Path) -> str:
    """The last 80 lines of a log, of those at most the last 2048 bytes (what FallbackToLogsOnError shows).

    Both limits cut from the end, so reading the last 2048 bytes and then keeping at most 80 lines of
    them is the same as the kubelet's reading 80 lines into a 2048-byte ring buffer."""
    data = _tail(log_path, MAX_LOG_BYTES)
    lines = data.splitlines(keepends=True)
    if len(lines) > MAX_LOG_LINES:
        data = b"".join(lines[-MAX_LOG_LINES:])
    return data.decode(errors="replace")


def read_message(source: Path | None, log_path: Path, exit_code: int, fallback_to_logs: bool) -> str:
    """A finished run's termination message: its file's last 4096 bytes, else maybe the log tail."""
    data = _tail(source, MAX_MESSAGE_BYTES) if source is not None else b""
    if data:
        return data.decode(errors="replace")
    if fallback_to_logs and exit_code != 0:
        return log_tail(log_path)
    return ""


def trim_message(message: str, containers: int) -> str:
    """A message cut to this container's share of the pod's 12 KiB (whole characters only)."""
    limit = MAX_POD_MESSAGE_BYTES // max(containers, 1)
    data = message.encode()
    return message if len(data) <= limit else data[:limit].decode(errors="ignore")
