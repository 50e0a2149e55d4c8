"""SIGTERM/SIGINT → a stop request that the main loop sees at its next boundary (a step, a batch).

Why this exists: the signal handler runs in the main thread between two bytecodes, possibly while the
main thread holds a lock (telemetry's, logging's, even a `threading.Event`'s own condition lock while
the main thread waits on it). A handler that takes one deadlocks the process with itself (a training
worker did, once in CI, on telemetry's lock). So the handler only records the signal and writes a byte
to a pipe (`os.write` takes no Python lock); a watcher thread reads it, sets the event, logs and
changes the state. The training worker and the predictor both stop through this.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType


class StopRequest:
    """`install()` the handlers; `event` is set on the first SIGTERM/SIGINT; `signals` lists them in order."""

    def __init__(self, on_stop: Callable[[], None], log: logging.Logger, after: str) -> None:
        """On the first signal, a log line saying the process stops `after` (what it finishes first), then
        `on_stop()` (the caller sets its state to `stopping`), both in the watcher thread."""
        self.on_stop, self.log, self.after = on_stop, log, after
        self.event = threading.Event()
        self.signals: list[int] = []
        self._read_end, self._write_end = os.pipe()
        threading.Thread(target=self._announce, name="stop-watcher", daemon=True).start()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)
        os.write(self._write_end, b"!")

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.handle)
        signal.signal(signal.SIGINT, self.handle)

    def _announce(self) -> None:
        os.read(self._read_end, 1)
        self.event.set()
        self.log.info("signal %d: stopping after %s", self.signals[0], self.after)
        self.on_stop()
