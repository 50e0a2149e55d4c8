"""The SIGTERM handler of the worker and the predictor: it must take no lock, because it runs in the main
thread between two bytecodes, possibly while that thread holds telemetry's lock (a CI run once hung
exactly so) or the stop event's own condition lock."""

from __future__ import annotations

import logging
import signal
import threading

from pulsetrain.stop_request import StopRequest
from pulsetrain.telemetry import Telemetry
from tests.support import wait_until


def handle_in_a_thread(stop: StopRequest) -> None:
    caller = threading.Thread(target=stop.handle, args=(signal.SIGTERM, None))
    caller.start()
    caller.join(timeout=5)
    assert not caller.is_alive(), "the handler blocked on a lock"


def test_handler_returns_while_the_telemetry_lock_is_held_and_the_state_follows() -> None:
    telemetry = Telemetry(pipeline="digits", namespace="ml", worker=1)
    stop = StopRequest(lambda: telemetry.set_state("stopping"), logging.getLogger("test"), "the step")
    with telemetry._lock:  # what the main thread may hold when the signal lands
        handle_in_a_thread(stop)
        assert stop.signals == [signal.SIGTERM]
    wait_until(lambda: stop.event.is_set() and telemetry.snapshot().state == "stopping", 5,
               "the stop event and the state 'stopping'")


def test_handler_returns_while_the_event_itself_is_locked() -> None:
    stopped: list[bool] = []
    stop = StopRequest(lambda: stopped.append(True), logging.getLogger("test"), "the batch")
    with stop.event._cond:  # type: ignore[attr-defined]  # the main thread inside Event.wait or Event.set
        handle_in_a_thread(stop)
    wait_until(lambda: stop.event.is_set() and stopped == [True], 5, "the stop event set by the watcher")
