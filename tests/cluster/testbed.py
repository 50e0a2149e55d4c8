"""Bring the whole test bed up and down: tools, pod network, control plane, process kubelet, Pulsar.

`up` installs what is missing (cached), starts every server detached and records where they are in
`<state>/testbed.json`, so `status`, `down` and later test runs (which reuse a running test bed) find
them from any process. `down` stops them all and removes every network namespace and the bridge.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from tests.cluster import controlplane, network, pulsar_server
from tests.cluster.controlplane import KUBELET_PORT, PROCESS_KUBELET, ControlPlane, ControlPlaneConfig
from tests.cluster.kubelet.api import Kube, NotFound
from tests.cluster.paths import state_dir
from tests.cluster.process import Daemon
from tests.cluster.tools_go import KubeTools, ensure_etcd, ensure_helm, ensure_kubernetes

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = Path(__file__).with_name("bootstrap.yaml")


@dataclass(frozen=True)
class TestBedInfo:
    """What a client of a running test bed needs; saved as `<state>/testbed.json`."""

    kubeconfig: str
    host_ip: str
    node_name: str
    kubectl: str
    helm: str
    pulsar_service_url: str
    pulsar_admin_url: str
    state: str

    @classmethod
    def load(cls, state: Path | None = None) -> TestBedInfo | None:
        path = (state or state_dir()) / "testbed.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))


def _stage(name: str, started: float) -> None:
    print(f"[testbed] {name}: {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)


def _kubelet(state: Path) -> Daemon:
    return Daemon("process-kubelet", state / "logs")


def _wait_for_cluster(kube: Kube, kubelet: Daemon, node: str, host_ip: str, timeout: float = 90.0) -> None:
    """The kubelet serves, its node is Ready and the `default` service account exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not kubelet.running():
            raise RuntimeError(f"the process kubelet exited during start-up; log tail:\n{kubelet.log_tail()}")
        try:
            kube.session.get(f"https://{host_ip}:{KUBELET_PORT}/healthz", timeout=3).raise_for_status()
            conditions = kube.get(f"/api/v1/nodes/{node}").get("status", {}).get("conditions", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            kube.get("/api/v1/namespaces/default/serviceaccounts/default")
            if ready:
                return
        except (NotFound, requests.RequestException):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"node {node} not Ready (or no default service account) after {timeout:.0f}s")


def install() -> tuple[KubeTools, Path, Path]:
    started = time.monotonic()
    tools, etcd, helm = ensure_kubernetes(), ensure_etcd(), ensure_helm()
    pulsar_server.ensure_pulsar()
    _stage("tools installed", started)
    return tools, etcd, helm


def up(*, with_pulsar: bool = True, gpus: int = 0, node_name: str = "testbed-node") -> TestBedInfo:
    state = state_dir()
    existing = TestBedInfo.load(state)
    if existing and all(status(state).values()):
        return existing
    down(state)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    started = time.monotonic()
    tools, etcd, helm = install()
    net = network.PodNetwork.from_env()
    net.create()
    pulsar = pulsar_server.PulsarServer(state / "pulsar", advertised_address=net.host_ip)
    if with_pulsar:
        pulsar.start()
    plane = ControlPlane(ControlPlaneConfig(state=state, host_ip=net.host_ip), tools, etcd)
    plane.start()
    _stage("control plane healthy", started)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    _kubelet(state).start(
        [sys.executable, "-m", "tests.cluster.kubelet", f"--kubeconfig={plane.config.kubeconfig(PROCESS_KUBELET)}",
         f"--state={state / 'kubelet'}", f"--pki={plane.config.pki}",
         f"--node-name={node_name}", f"--gpus={gpus}",
         f"--extra-host=pulsar.testbed.internal={net.host_ip}"],
        env=env, cwd=ROOT,
    )
    admin = Kube.from_kubeconfig(plane.config.admin_kubeconfig)
    _wait_for_cluster(admin, _kubelet(state), node_name, net.host_ip)
    subprocess.run([str(tools.kubectl), f"--kubeconfig={plane.config.admin_kubeconfig}", "apply", "-f",
                    str(BOOTSTRAP)], check=True, capture_output=True)
    _stage("process kubelet ready", started)
    if with_pulsar:
        pulsar.wait_ready(timeout=180)
        _stage("pulsar healthy", started)
    info = TestBedInfo(
        kubeconfig=str(plane.config.admin_kubeconfig), host_ip=net.host_ip, node_name=node_name,
        kubectl=str(tools.kubectl), helm=str(helm),
        pulsar_service_url=pulsar.service_url if with_pulsar else "",
        pulsar_admin_url=pulsar.admin_url if with_pulsar else "",
        state=str(state),
    )
    (state / "testbed.json").write_text(json.dumps(asdict(info), indent=2))
    return info


def status(state: Path | None = None) -> dict[str, bool]:
    state = state or state_dir()
    result = {"process-kubelet": _kubelet(state).running()}
    result.update(controlplane.running(state))
    info = TestBedInfo.load(state)
    if info is None or info.pulsar_service_url:
        result["pulsar"] = pulsar_server.PulsarServer(state / "pulsar").running()
    return result


def down(state: Path | None = None) -> None:
    """Stop everything this test bed started; leaves logs in the state directory."""
    state = state or state_dir()
    _kubelet(state).stop(grace=60.0)
    controlplane.stop(state)
    pulsar_server.PulsarServer(state / "pulsar").stop()
    network.PodNetwork.from_env().delete()
    (state / "testbed.json").unlink(missing_ok=True)
