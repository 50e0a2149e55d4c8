"""A progress line for long command-line work (publishing a data set), on stderr.

On a terminal it redraws one line; elsewhere (CI logs, pipes) it prints a line every few seconds, so
long work shows it is moving without flooding a log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, what: str, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.total, self.what, self.done = total, what, 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.1 if self.tty else every
        self.started = self.last = time.monotonic()

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        return (f"[{bar:<30}] {self.done}/{self.total} {self.what} "
                f"({share:4.0%}, {self.done / elapsed:,.0f}/s, {elapsed:.1f}s)")

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.stream.write(("\r" if self.tty else "") + self._line() + ("" if self.tty else "\n"))
            self.stream.flush()

    def finish(self) -> None:
        self.stream.write(("\r" if self.tty else "") + self._line() + "\n")
        self.stream.flush()
