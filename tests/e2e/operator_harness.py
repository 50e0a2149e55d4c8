"""Runs the operator as its own process, with its ServiceAccount's token and nothing more.

Why this exists: the acceptance criteria want the operator tested with the RBAC rules it ships with,
not as cluster-admin. So the harness applies the CRD and the operator's RBAC objects (both from their
one source), mints a token for the operator's ServiceAccount, writes a kubeconfig holding only that
token, and starts `python -m pulsetrain_operator` with it. The process can be killed and started again
(the operator-restart test). Against an external cluster where the chart already runs the operator
(`PULSETRAIN_OPERATOR_DEPLOYED=1`), nothing is started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from pulsetrain_operator.rbac import OPERATOR_NAME, objects
from tests.conftest import Cluster
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CRD_MANIFEST = ROOT / "manifests" / "crd" / "trainingpipelines.pulsetrain.dev.yaml"
OPERATOR_NAMESPACE = "pulsetrain-system"
WORKER_IMAGE = "pulsetrain/worker:e2e"


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

    def start(self) -> None:
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
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


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

