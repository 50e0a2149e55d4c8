"""The worker's SIGTERM handler: it must take no lock, because it runs in the main thread between two
bytecodes, possibly while that thread holds telemetry's lock (a CI run once hung exactly so)."""

from __future__ import annotations

import logging
import signal
import threading

from pulsetrain.stop_request import StopRequest
from pulsetrain.telemetry import Telemetry
from tests.support import wait_until


def test_handler_returns_while_the_telemetry_lock_is_held_and_the_state_follows() -> None:
    telemetry = Telemetry(pipeline="digits", namespace="ml", worker=1)
    stop = StopRequest(lambda: telemetry.set_state("stopping"), logging.getLogger("test"), "the step")
    with telemetry._lock:  # what the main thread may hold when the signal lands
        caller = threading.Thread(target=stop.handle, args=(signal.SIGTERM, None))
        caller.start()
        caller.join(timeout=5)
        assert not caller.is_alive(), "the handler blocked on the telemetry lock"
        assert stop.event.is_set() and stop.signals == [signal.SIGTERM]
    wait_until(lambda: telemetry.snapshot().state == "stopping", 5, "the state 'stopping'")

