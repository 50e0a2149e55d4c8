"""Runs the operator as its own process, with its ServiceAccount's token and nothing more.

Why this exists: the acceptance criteria want the operator tested with the RBAC rules it ships with,
not as cluster-admin. So the harness applies the CRD and the operator's RBAC objects (both from their
one source), mints a token for the operator's ServiceAccount, writes a kubeconfig holding only that
token, and starts `python -m pulsetrain_operator` with it. The process can be killed and started again
(the operator-restart test). Against an external cluster where the chart already runs the operator
(`PULSETRAIN_OPERATOR_DEPLOYED=1`), nothing is started.

Two operators reconciling the same pipelines break each other's tests, and several test sessions may
share one test bed, so whoever runs an operator (this harness, or tests/e2e/test_install.py for the
chart's) holds a host-wide lock file while it runs: `operator_lock()`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pulsetrain_operator.names import pod_name
from pulsetrain_operator.rbac import OPERATOR_NAME, objects
from tests.cluster.paths import cache_dir
from tests.conftest import Cluster
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CRD_MANIFEST = ROOT / "manifests" / "crd" / "trainingpipelines.pulsetrain.dev.yaml"
OPERATOR_NAMESPACE = "pulsetrain-system"
WORKER_IMAGE = "pulsetrain/worker:e2e"
LOCK_TIMEOUT_S = 1800.0


def acquire_operator_lock(timeout: float = LOCK_TIMEOUT_S) -> int:
    """Wait for the host-wide operator lock (`<cache>/operator.lock`); returns the fd that holds it."""
    fd = os.open(cache_dir() / "operator.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise AssertionError(f"another test session has run an operator for {timeout:.0f}s "
                                     f"(lock {cache_dir() / 'operator.lock'})") from None
            time.sleep(2)


@contextmanager
def operator_lock(timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the host-wide operator lock for the duration of the block."""
    fd = acquire_operator_lock(timeout)
    try:
        yield
    finally:
        os.close(fd)


def install_crd(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_MANIFEST))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    "crd/trainingpipelines.pulsetrain.dev")


def operator_kubeconfig(cluster: Cluster, directory: Path) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (token minted now, 2 h)."""
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    manifest = {"apiVersion": "v1", "kind": "List", "items": objects(OPERATOR_NAMESPACE)}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    token = cluster.kubectl("create", "token", OPERATOR_NAME, "-n", OPERATOR_NAMESPACE,
                            "--duration=2h").stdout.strip()
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "cluster", "cluster": server}],
        "users": [{"name": OPERATOR_NAME, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": OPERATOR_NAME}}],
    }
    path = directory / "operator.kubeconfig"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


class OperatorProcess:
    """`python -m pulsetrain_operator` as a child process, logging to a file."""

    def __init__(self, kubeconfig: Path, log_path: Path) -> None:
        self.kubeconfig, self.log_path = kubeconfig, log_path
        self.health_port, self.metrics_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None

    def start(self) -> None:
        if self._lock is None:
            self._lock = acquire_operator_lock()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PULSETRAIN_WORKER_IMAGE": WORKER_IMAGE,
               "PULSETRAIN_PROGRESS_INTERVAL": "2", "PULSETRAIN_OPERATOR_METRICS_PORT": str(self.metrics_port)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pulsetrain_operator", "--log-format", "full",
                 "--liveness", f"http://127.0.0.1:{self.health_port}/healthz"],
                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        wait_until(self.healthy, 60, "the operator's liveness endpoint")

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the operator exited ({self.process.returncode}):\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def kill_worker(cluster: Cluster, namespace: str, pipeline: str, index: int) -> None:
    """SIGKILL worker `index` of `pipeline`, as a crash would (no SIGTERM, no last checkpoint).

    On the project's test bed the process kubelet runs it as a host process. On a kind cluster it runs in
    a container on the node the pod names, and a kind node is a Docker container of that name, so the
    kill goes through `docker exec` and the node's `crictl`.
    """
    if cluster.host_ip is not None:
        os.kill(pid_of_worker(pipeline, index), signal.SIGKILL)
        return
    pod = json.loads(cluster.kubectl("get", "pod", pod_name(pipeline, index), "-n", namespace, "-o", "json").stdout)
    node, container = pod["spec"]["nodeName"], pod["status"]["containerStatuses"][0]["containerID"]
    docker = shutil.which("docker")
    if docker is None:
        raise AssertionError(f"cannot kill {pod_name(pipeline, index)} on node {node}: this test kills workers "
                             "through `docker exec` on kind nodes, and docker is not installed")
    inspect = subprocess.run([docker, "exec", node, "crictl", "inspect", container.split("://", 1)[-1]],
                             capture_output=True, text=True, check=True, timeout=60)
    pid = int(json.loads(inspect.stdout)["info"]["pid"])
    subprocess.run([docker, "exec", node, "kill", "-KILL", str(pid)], check=True, timeout=60)


def pid_of_worker(pipeline: str, index: int) -> int:
    """The host pid of worker `index` of `pipeline` (the process kubelet runs pods as host processes)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"pulsetrain.worker" not in cmdline:
                continue
            pairs = (entry / "environ").read_bytes().split(b"\0")
            environ = dict(item.split(b"=", 1) for item in pairs if b"=" in item)
        except OSError:
            continue
        if environ.get(b"PULSETRAIN_PIPELINE") != pipeline.encode():
            continue
        tf_config = json.loads(environ.get(b"TF_CONFIG", b"{}"))
        if tf_config.get("task", {}).get("index") == index:
            return int(entry.name)
    raise LookupError(f"no worker {index} process of pipeline {pipeline}")

