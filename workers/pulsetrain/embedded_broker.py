"""The embedded broker of `pulsetrain run`: the `pulsar-lite` binary, started on a free loopback port.

Why this exists: trying pulsetrain on one machine should need no Java and no Pulsar install. The PyPI
package `pulsar-lite` ships a native broker that speaks the Pulsar binary protocol to the ordinary
`pulsar-client`; we start its binary ourselves (not through its Python helper, which picks ports from
6650 up and logs to /tmp) with its RocksDB storage, its configuration and its log in the state
directory, so what `pulsetrain produce --pipeline` publishes is still there when `pulsetrain run`
starts the broker again on the same directory.

What the worker needs was checked against pulsar-lite 0.2.0 with pulsar-client 3.x: Shared and
Key_Shared subscriptions, `batch_receive` with a batch policy, acknowledging by message and by
(deserialized) message ID, redelivery of unacknowledged messages when a consumer closes or its process
is killed, negative acknowledgements and `redeliver_unacknowledged_messages`, producers with batching,
properties and partition keys (the dead-letter producer), and messages kept across a broker restart.
What it does not have: the HTTP admin API (the worker's backlog watcher needs `adminUrl`, so the
backlog is not reported), authentication and TLS. As in Apache Pulsar, a batch of messages is
dispatched to one consumer and redelivered whole.

One gap decides how many workers it can serve: pulsar-lite 0.2.0 identifies the consumers of a
subscription by the consumer ID each client connection numbers from 0, so the first consumer of a second
worker process is refused ("Consumer 0 already exists", the client retries until it times out), while
two consumers of one process are fine. A gang of N processes needs N consumers on one subscription, so
the embedded broker runs pipelines with one worker (`MAX_WORKERS`); a gang needs a real Pulsar
(`--service-url`). Working around it in the worker (opening throw-away consumers so that worker i's
consumer gets ID i) would depend on both sides' private numbering and break on a reconnect: not done.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

MAX_WORKERS = 1
"""Worker processes the embedded broker can serve on one subscription (see the module docstring)."""
BINARY_ENV = "PULSAR_LITE_BINARY"
"""Overrides where the broker binary is found (by default: inside the installed `pulsar_lite` package)."""
CONFIG = 'default_partitions = 0\nlog_level = "warn"\n\n[metrics]\nenabled = false\n'
"""Non-partitioned topics, as Apache Pulsar's default; warnings only (its info log is a line per dispatch); no
Prometheus endpoint (by default it listens on a fixed address of its own, which may be taken or exposed)."""


class BrokerError(RuntimeError):
    """The embedded broker cannot be found or did not start; the message says why and where its log is."""


def find_binary() -> Path:
    """The `pulsar-lite` executable: `$PULSAR_LITE_BINARY`, else the one inside the `pulsar_lite` package."""
    override = os.environ.get(BINARY_ENV)
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerError(f"{BINARY_ENV}={override} is not an executable file")
        return Path(override)
    spec = importlib.util.find_spec("pulsar_lite")  # located, not imported: its module starts a process manager
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "bin" / "pulsar-lite"
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("pulsar-lite")
    if found:
        return Path(found)
    raise BrokerError("the embedded broker needs the pulsar-lite package: pip install 'pulsetrain[local]' "
                      f"(or set {BINARY_ENV}); or give a broker with --service-url pulsar://HOST:PORT")


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file ('' when there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedBroker:
    """A pulsar-lite process whose storage, configuration and log live in `directory`.

    Use it as a context manager, or call `start()` and `stop()`; `url` is `pulsar://127.0.0.1:PORT`."""

    def __init__(self, directory: Path, port: int | None = None, startup_timeout: float = 30.0) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"pulsar://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    def start(self) -> EmbeddedBroker:
        binary = find_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "pulsar-lite.toml"
        config.write_text(CONFIG)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(binary), "--config", str(config), "--addr", f"127.0.0.1:{self.port}",
                 "--db-path", str(self.directory / "db")],
                cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # a Ctrl-C in the terminal is ours to handle, not the broker's
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the embedded broker exited with code {self.process.returncode} "
                                  f"(is another pulsetrain command using {self.directory}?); "
                                  f"its log {self.log_path} ends:\n{tail(self.log_path)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on 127.0.0.1:{self.port} within "
                          f"{self.startup_timeout:.0f}s; its log {self.log_path} ends:\n{tail(self.log_path)}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; safe to call twice."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
