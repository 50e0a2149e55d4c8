"""Waiting for peers: fake resolvers and connectors for the logic, a real listener for the real path."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pulsetrain.peers import PeerTimeout, check_peer, parse_address, wait_for_peers
from tests.support import free_port

ADDRESSES = ["w-0.svc:2222", "w-1.svc:2222", "w-2.svc:2222"]


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeNetwork:
    """Hosts that resolve from `up_at` on, and accept connections from `listening_at` on."""

    def __init__(self, clock: FakeClock, resolves_at: dict[str, float], listening_at: dict[str, float]) -> None:
        self.clock, self.resolves_at, self.listening_at = clock, resolves_at, listening_at
        self.connects: list[str] = []

    def resolve(self, host: str, port: int, family: int, type: int) -> Sequence[tuple[Any, ...]]:
        if self.clock.now < self.resolves_at.get(host, float("inf")):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]

    def connect(self, family: int, sockaddr: Any, timeout: float) -> None:
        host = sockaddr[0]
        self.connects.append(host)
        if self.clock.now < self.listening_at.get(host, float("inf")):
            raise ConnectionRefusedError(111, "Connection refused")


def run(network: FakeNetwork, clock: FakeClock, deadline_s: float = 30.0, self_index: int = 0) -> None:
    wait_for_peers(ADDRESSES, self_index, deadline_s, network.resolve, network.connect,
                   clock=clock, sleep=clock.sleep)


def test_returns_at_once_when_every_peer_is_up() -> None:
    clock = FakeClock()
    network = FakeNetwork(clock, {"w-1.svc": 0, "w-2.svc": 0}, {"w-1.svc": 0, "w-2.svc": 0})
    run(network, clock)
    assert clock.sleeps == []
    assert network.connects == ["w-1.svc", "w-2.svc"]  # never itself (worker 0)


def test_times_out_naming_each_missing_peer_and_why() -> None:
    clock = FakeClock()
    network = FakeNetwork(clock, {"w-0.svc": 0, "w-1.svc": 0}, {"w-0.svc": 0})
    with pytest.raises(PeerTimeout) as caught:
        run(network, clock, deadline_s=10, self_index=0)
    message = str(caught.value)
    assert "worker 1 (w-1.svc:2222): connection refused" in message
    assert "worker 2 (w-2.svc:2222): name does not resolve" in message
    assert "worker 0" not in message
    assert caught.value.missing.keys() == {1, 2}
    assert clock.now == pytest.approx(10)
    assert len(clock.sleeps) > 3  # it retried


def test_succeeds_once_peers_come_up_after_retries_and_checks_each_only_until_reachable() -> None:
    clock = FakeClock()
    network = FakeNetwork(clock, {"w-1.svc": 0, "w-2.svc": 4}, {"w-1.svc": 1, "w-2.svc": 7})
    run(network, clock, deadline_s=30, self_index=0)
    assert clock.now == pytest.approx(7.0)  # tries at 0, 0.2, 0.6, 1.4, 3.0, 5.0, 7.0
    # w-1 is tried until it accepts (at 1.4), then never again; w-2 is connected to once it resolves
    assert network.connects == ["w-1.svc"] * 4 + ["w-2.svc"] * 2
    assert max(clock.sleeps) <= 2.0  # back-off is capped
    assert clock.sleeps[:3] == pytest.approx([0.2, 0.4, 0.8])


def test_logs_which_peers_are_still_missing(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    network = FakeNetwork(clock, {"w-1.svc": 0, "w-2.svc": 0}, {"w-1.svc": 0, "w-2.svc": 12})
    with caplog.at_level(logging.INFO, logger="pulsetrain.peers"):
        run(network, clock, self_index=0)
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for")]
    assert 2 <= len(waiting) <= 4  # every few seconds, not on every try
    assert "worker 2 (w-2.svc:2222): connection refused" in waiting[-1]


def test_bad_arguments_name_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"self_index: 3 is out of range; allowed 0..2"):
        wait_for_peers(ADDRESSES, 3, 1.0)
    with pytest.raises(ValueError, match=r"peer address 'w-1' is not a 'host:port' address"):
        wait_for_peers(["w-0:1", "w-1"], 0, 1.0)
    assert parse_address("[::1]:2222") == ("::1", 2222)


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_real_listener_is_reachable(listener: int) -> None:
    assert check_peer(f"127.0.0.1:{listener}") is None
    wait_for_peers(["127.0.0.1:1", f"127.0.0.1:{listener}"], 0, 2.0)  # port 1 is self: never checked


def test_real_unresolvable_name_and_closed_port_time_out(listener: int) -> None:
    closed = free_port()
    addresses = ["127.0.0.1:1", f"127.0.0.1:{listener}", "nonexistent.invalid:2222", f"127.0.0.1:{closed}"]
    with pytest.raises(PeerTimeout) as caught:
        wait_for_peers(addresses, 0, 1.0)
    message = str(caught.value)
    assert "worker 0" not in message and "worker 1" not in message  # self, and the reachable listener
    assert "worker 2 (nonexistent.invalid:2222): name does not resolve" in message
    assert f"worker 3 (127.0.0.1:{closed}): connection refused" in message
    assert caught.value.missing.keys() == {2, 3}
