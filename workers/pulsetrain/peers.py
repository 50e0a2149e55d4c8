"""Wait until every peer worker is reachable, before TensorFlow's collectives are set up.

Why this exists: a worker whose peer never comes blocks inside `MultiWorkerMirroredStrategy` without
a word, and (seen here) ignores SIGTERM. So the worker first checks, without TensorFlow, that every
other worker's host name resolves and its port accepts a TCP connection, retrying with back-off until
a deadline, logging which peers are still missing; on timeout `PeerTimeout` names each missing peer
and why (`name does not resolve`, `connection refused`, ...).

A refused connection means "not up yet": a peer's gRPC server listens only once its TensorFlow has
started, so it is retried like an unresolvable name (a pod's DNS record appears once it runs).
Resolution and connection are injectable so the logic is unit-testable without a network.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["PeerTimeout", "check_peer", "parse_address", "wait_for_peers"]

log = logging.getLogger(__name__)

Resolve = Callable[[str, int, int, int], Sequence[tuple[Any, ...]]]
"""Like `socket.getaddrinfo(host, port, family, type)`: 5-tuples ending in a socket address."""
Connect = Callable[[int, Any, float], None]
"""Open and close a TCP connection to (family, socket address) within the timeout; raise OSError."""

_ADDRESS = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):(?P<port>\d{1,5})")


class PeerTimeout(TimeoutError):
    """Some peers were still unreachable at the deadline; `missing` maps worker index to reason."""

    def __init__(self, message: str, missing: dict[int, str]) -> None:
        super().__init__(message)
        self.missing = missing


def tcp_connect(family: int, sockaddr: Any, timeout: float) -> None:
    """The default connector: a plain TCP connect, closed at once."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(sockaddr)


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as (host, port); ValueError naming the value otherwise."""
    match = _ADDRESS.fullmatch(address)
    if match is None or not 1 <= int(match.group("port")) <= 65535:
        raise ValueError(f"peer address {address!r} is not a 'host:port' address (port 1..65535)")
    return match.group("host").strip("[]"), int(match.group("port"))


def check_peer(address: str, resolve: Resolve = socket.getaddrinfo, connect: Connect = tcp_connect,
               timeout: float = 2.0) -> str | None:
    """None when `address` resolves and accepts a TCP connection, else why not (a short phrase)."""
    host, port = parse_address(address)
    try:
        infos = resolve(host, port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"name does not resolve ({exc.strerror or exc})"
    except OSError as exc:
        return f"name does not resolve ({exc})"
    if not infos:
        return "name does not resolve (no addresses)"
    reason = "no addresses"
    for info in infos:
        family, sockaddr = info[0], info[-1]
        try:
            connect(family, sockaddr, timeout)
            return None
        except ConnectionRefusedError:
            reason = "connection refused"
        except TimeoutError:
            reason = f"connection timed out after {timeout:g}s"
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                reason = "connection refused"
            else:
                reason = f"cannot connect ({exc.strerror or exc})"
    return reason


def wait_for_peers(
    addresses: Sequence[str],
    self_index: int,
    deadline_s: float,
    resolve: Resolve = socket.getaddrinfo,
    connect: Connect = tcp_connect,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log_every_s: float = 5.0,
    first_backoff_s: float = 0.2,
    max_backoff_s: float = 2.0,
) -> None:
    """Return once every worker but `self_index` in `addresses` is reachable; or raise `PeerTimeout`.

    `addresses` is TF_CONFIG's `cluster.worker` list; `deadline_s` is how long to keep trying, in
    seconds. A peer found reachable once is not checked again.
    """
    if not 0 <= self_index < len(addresses):
        raise ValueError(f"self_index: {self_index} is out of range; allowed 0..{len(addresses) - 1} "
                         f"({len(addresses)} worker address(es))")
    if deadline_s < 0:
        raise ValueError(f"deadline_s: {deadline_s} is not allowed; it must be >= 0")
    for address in addresses:
        parse_address(address)
    start = clock()
    end = start + deadline_s
    missing = {i: "not checked yet" for i in range(len(addresses)) if i != self_index}
    backoff, next_log = first_backoff_s, start
    while True:
        for index in list(missing):
            connect_timeout = max(0.05, min(max_backoff_s, end - clock()))
            reason = check_peer(addresses[index], resolve, connect, connect_timeout)
            if reason is None:
                log.info("worker %d (%s) is reachable", index, addresses[index])
                del missing[index]
            else:
                missing[index] = reason
        if not missing:
            log.info("all %d peer(s) reachable after %.1fs", len(addresses) - 1, clock() - start)
            return
        now = clock()
        if now >= end:
            raise PeerTimeout(
                f"peers unreachable after {deadline_s:g}s: {_describe(addresses, missing)}", dict(missing))
        if now >= next_log:
            log.info("waiting for %d peer(s), %.0fs left: %s", len(missing), end - now, _describe(addresses, missing))
            next_log = now + log_every_s
        sleep(min(backoff, max(0.0, end - now)))
        backoff = min(backoff * 2, max_backoff_s)


def _describe(addresses: Sequence[str], missing: dict[int, str]) -> str:
    return "; ".join(f"worker {i} ({addresses[i]}): {why}" for i, why in sorted(missing.items()))
