"""The real Kubernetes control plane of the test bed: etcd, kube-apiserver, controller-manager, scheduler.

Only the kubelet is replaced (by the process kubelet); everything that validates, authorises, admits,
garbage-collects and schedules is the upstream code, so schema pruning, CEL rules, RBAC, Pod Security
admission and owner-reference cleanup behave exactly as on a real cluster.
"""

from __future__ import annotations

import logging
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.cluster.pki import CertificateAuthority, CertPair, Identity, service_account_keys
from tests.cluster.process import Daemon
from tests.cluster.tools_go import KubeTools

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
KUBELET_PORT = 10250

# Every default controller but those that need a cloud or pod CIDRs. Node lifecycle stays on (it lifts
# the not-ready taint from a new node) with a long grace period, so that a late heartbeat from the
# process kubelet on a loaded 2-core machine does not mark the node NotReady.
CONTROLLERS = "*,-node-ipam-controller,-service-lb-controller,-cloud-node-lifecycle-controller,-node-route-controller"
NODE_MONITOR_GRACE = "2m"

ADMIN = Identity("admin", "kubernetes-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("controller-manager", "system:kube-controller-manager")
SCHEDULER = Identity("scheduler", "system:kube-scheduler")
# The process kubelet also provisions host-directory volumes, which a node identity may not do.
PROCESS_KUBELET = Identity("process-kubelet", "pulsetrain:process-kubelet", ("system:masters",))
APISERVER_KUBELET_CLIENT = Identity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)
)


@dataclass(frozen=True)
class ControlPlaneConfig:
    state: Path
    host_ip: str
    apiserver_port: int = 6443
    etcd_client_port: int = 12379
    etcd_peer_port: int = 12380
    controller_manager_port: int = 10257
    scheduler_port: int = 10259

    @property
    def server(self) -> str:
        return f"https://{self.host_ip}:{self.apiserver_port}"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    def kubeconfig(self, identity: Identity) -> Path:
        return self.state / f"{identity.name}.kubeconfig"


def write_kubeconfig(path: Path, server: str, ca: Path, client: CertPair, user: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "pulsetrain", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
        "contexts": [{"name": "pulsetrain", "context": {"cluster": "pulsetrain", "user": user}}],
        "current-context": "pulsetrain",
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)


def _component_flags(kubeconfig: Path, port: int) -> list[str]:
    """What controller-manager and scheduler share: one identity for the API, health on loopback."""
    return [
        f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={port}", "--leader-elect=false",
    ]


def _healthy(url: str, context: ssl.SSLContext | None) -> bool:
    """GET `url` answers 200 (`context` is only used for https URLs)."""
    try:
        with urllib.request.urlopen(url, context=context if url.startswith("https") else None, timeout=3) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class ControlPlane:
    def __init__(self, config: ControlPlaneConfig, tools: KubeTools, etcd: Path) -> None:
        self.config = config
        self.tools = tools
        self.etcd_binary = etcd
        self.daemons = daemons(config.state)

    # -- set-up ---------------------------------------------------------------------------------
    def _make_pki(self) -> None:
        cfg = self.config
        ca = CertificateAuthority(cfg.pki)
        ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"),
            ips=("127.0.0.1", cfg.host_ip, KUBERNETES_SERVICE_IP),
            server=True,
        )
        ca.issue("kubelet-serving", "process-kubelet", ips=("127.0.0.1", cfg.host_ip), server=True)
        service_account_keys(cfg.pki)
        for identity in (ADMIN, CONTROLLER_MANAGER, SCHEDULER, PROCESS_KUBELET, APISERVER_KUBELET_CLIENT):
            pair = ca.issue_client(identity)
            write_kubeconfig(cfg.kubeconfig(identity), cfg.server, ca.pair.cert, pair, identity.user)
        cfg.kubeconfig(ADMIN).replace(cfg.admin_kubeconfig)

    def _cert(self, name: str) -> CertPair:
        return CertPair(self.config.pki / f"{name}.crt", self.config.pki / f"{name}.key")

    def _ssl(self, client: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.config.pki / "ca.crt"))
        if client:
            admin = self._cert(ADMIN.name)
            context.load_cert_chain(str(admin.cert), str(admin.key))
        return context

    # -- processes ------------------------------------------------------------------------------
    def _etcd_argv(self) -> list[str]:
        cfg = self.config
        client = f"http://127.0.0.1:{cfg.etcd_client_port}"
        peer = f"http://127.0.0.1:{cfg.etcd_peer_port}"
        return [
            str(self.etcd_binary), "--name=testbed", f"--data-dir={cfg.state / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=testbed={peer}", "--unsafe-no-fsync", "--log-level=warn",
            "--quota-backend-bytes=2147483648",
        ]

    def _apiserver_argv(self) -> list[str]:
        cfg, pki = self.config, self.config.pki
        serving, kubelet_client = self._cert("apiserver"), self._cert(APISERVER_KUBELET_CLIENT.name)
        return [
            str(self.tools.apiserver),
            f"--etcd-servers=http://127.0.0.1:{cfg.etcd_client_port}",
            f"--bind-address={cfg.host_ip}", f"--advertise-address={cfg.host_ip}",
            f"--secure-port={cfg.apiserver_port}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction,PodSecurity",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false", "--v=1",
        ]

    def _controller_manager_argv(self) -> list[str]:
        cfg, pki = self.config, self.config.pki
        kubeconfig = cfg.kubeconfig(CONTROLLER_MANAGER)
        return [
            str(self.tools.controller_manager),
            *_component_flags(kubeconfig, cfg.controller_manager_port),
            "--use-service-account-credentials=true",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--controllers={CONTROLLERS}", f"--node-monitor-grace-period={NODE_MONITOR_GRACE}",
            "--concurrent-gc-syncs=5", "--profiling=false", "--v=1",
        ]

    def _scheduler_argv(self) -> list[str]:
        cfg = self.config
        kubeconfig = cfg.kubeconfig(SCHEDULER)
        return [
            str(self.tools.scheduler),
            *_component_flags(kubeconfig, cfg.scheduler_port),
            "--profiling=false", "--v=1",
        ]

    def _wait(self, name: str, check_url: str, context: ssl.SSLContext, timeout: float) -> None:
        started = time.monotonic()
        daemon = self.daemons[name]
        while time.monotonic() - started < timeout:
            if _healthy(check_url, context):
                log.info("%s healthy after %.1fs", name, time.monotonic() - started)
                return
            if not daemon.running():
                raise RuntimeError(f"{name} exited during start-up; log tail:\n{daemon.log_tail()}")
            time.sleep(0.3)
        raise TimeoutError(f"{name} not healthy after {timeout:.0f}s; log tail:\n{daemon.log_tail()}")

    def start(self, timeout: float = 120.0) -> None:
        cfg = self.config
        cfg.state.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        self.daemons["etcd"].start(self._etcd_argv())
        self._wait("etcd", f"http://127.0.0.1:{cfg.etcd_client_port}/health", insecure, timeout)
        self.daemons["kube-apiserver"].start(self._apiserver_argv())
        self._wait("kube-apiserver", f"{cfg.server}/readyz", self._ssl(client=True), timeout)
        self.daemons["kube-controller-manager"].start(self._controller_manager_argv())
        self.daemons["kube-scheduler"].start(self._scheduler_argv())
        self._wait("kube-controller-manager",
                   f"https://127.0.0.1:{cfg.controller_manager_port}/healthz", insecure, timeout)
        self._wait("kube-scheduler", f"https://127.0.0.1:{cfg.scheduler_port}/healthz", insecure, timeout)



def daemons(state: Path) -> dict[str, Daemon]:
    """The control plane's servers in start order, found by their pid files under `state`."""
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    return {name: Daemon(name, state / "logs") for name in names}


def running(state: Path) -> dict[str, bool]:
    return {name: daemon.running() for name, daemon in daemons(state).items()}


def stop(state: Path) -> None:
    for daemon in reversed(daemons(state).values()):
        daemon.stop(grace=10.0)
