"""Which worker exits are worth a gang restart, and how long to wait before the next attempt.

Why this exists: retrying what cannot succeed (a bad worker configuration, a missing command) burns the
back-off budget and hides the cause, and not retrying what can (a killed process, a peer that was not
up in time) fails pipelines for nothing. TFJob's ExitCode restart policy is the model: the exit code
decides, and the condition message says which kind it was.

Permanent: 2 (the worker refused its configuration), 126 (command not executable), 127 (command not
found). Retryable: everything else, in particular 1 (an unexpected error, often a peer's failure seen
through a collective), 3 (a peer did not come up before the deadline), 4 (a bounded run got no message to
train before its idle timeout: the producer may start late) and 128+N (killed by signal N, e.g. 137 for
SIGKILL or an OOM kill).
"""

from __future__ import annotations

import signal

from pulsetrain_operator.defaults import RESTART_BACKOFF_CAP_SECONDS

PERMANENT_EXIT_CODES = {2: "invalid worker configuration", 126: "command not executable",
                        127: "command not found"}
_KNOWN = {1: "worker error", 3: "a peer worker did not come up in time",
          4: "nothing trained: no message arrived before the idle timeout"}


def is_permanent(exit_code: int) -> bool:
    return exit_code in PERMANENT_EXIT_CODES


def describe_exit(exit_code: int) -> str:
    """`exit code 137 (killed by SIGKILL, retryable)` and the like, for condition messages and events."""
    if exit_code in PERMANENT_EXIT_CODES:
        return f"exit code {exit_code} ({PERMANENT_EXIT_CODES[exit_code]}, permanent)"
    if exit_code > 128:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        return f"exit code {exit_code} (killed by {name}, retryable)"
    return f"exit code {exit_code} ({_KNOWN.get(exit_code, 'error')}, retryable)"


def restart_backoff(base_seconds: float, restarts_so_far: int) -> float:
    """Exponential back-off before attempt n+1: base, 2*base, 4*base... capped."""
    return float(min(base_seconds * (2 ** max(restarts_so_far, 0)), RESTART_BACKOFF_CAP_SECONDS))
