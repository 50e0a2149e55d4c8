"""The test bed's broker launcher must recognise its own child from the first poll on (CI flake of stop 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cluster.pulsar_server import _await_exec


def test_a_started_child_shows_its_argv_once_awaited() -> None:
    """Popen returns before the kernel has filled in the new argv; `_await_exec` waits for it.

    Read at once, /proc/<pid>/cmdline of a child started right after another one exited is empty in
    about 19 of 20 tries on the CI machine, and `_alive` took the starting broker for a dead one.
    Each child here runs to its end before the next starts, the pattern that shows the race.
    """
    marker = "pulsetrain-await-exec-marker"
    for _ in range(20):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.05)", marker],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _await_exec(child)
        assert marker.encode() in Path(f"/proc/{child.pid}/cmdline").read_bytes()
        assert child.wait() == 0


def test_a_child_that_exits_at_once_does_not_hold_up_the_start() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    _await_exec(child, timeout=30)  # returns because the child is gone, not after 30 s
    assert child.returncode == 0
