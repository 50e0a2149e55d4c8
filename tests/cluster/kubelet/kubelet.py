"""The process kubelet's main object: node registration, the pod watch, DNS records, IP addresses.

Threads: a pod watch (pods bound to this node) that starts one `PodWorker` per pod; a resync loop
that keeps the cluster-wide DNS records (all pods and services) fresh and runs the volume
provisioner; a heartbeat that renews the node's Lease and status; the log server for `kubectl logs`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.cluster.kubelet import hosts
from tests.cluster.kubelet.api import Kube, Obj
from tests.cluster.kubelet.node import heartbeat, register_node
from tests.cluster.kubelet.pods import PodWorker
from tests.cluster.kubelet.provisioner import HostDirProvisioner
from tests.cluster.kubelet.runtime import ImageEnv
from tests.cluster.network import PodNetwork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KubeletConfig:
    node_name: str
    host_ip: str
    apiserver_port: int
    state: Path
    pki: Path  # ca.crt, and kubelet-serving.crt/.key for the log server
    network: PodNetwork
    image_envs: list[ImageEnv] = field(default_factory=list)
    capacity: dict[str, str] = field(default_factory=dict)
    extra_hosts: dict[str, str] = field(default_factory=dict)
    backoff_base: float = 2.0
    backoff_max: float = 60.0
    kubelet_port: int = 10250

    @property
    def pods_dir(self) -> Path:
        return self.state / "pods"

    @property
    def volumes_dir(self) -> Path:
        return self.state / "volumes"


class Kubelet:
    def __init__(self, config: KubeletConfig, kube: Kube) -> None:
        self.config, self.kube = config, kube
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._workers: dict[str, PodWorker] = {}
        self._ips: dict[str, str] = {}
        self._endpoints: list[hosts.Endpoint] = []
        self._services: list[Obj] = []
        self.provisioner = HostDirProvisioner(kube, config.volumes_dir)

    # -- shared state for pod workers -----------------------------------------------------------
    def allocate_ip(self, uid: str) -> str:
        with self._lock:
            if uid in self._ips:
                return self._ips[uid]
            used = set(self._ips.values())
            for ip in self.config.network.pod_ips():
                if ip not in used:
                    self._ips[uid] = ip
                    return ip
        raise RuntimeError(f"pod network {self.config.network.cidr} has no free address")

    def release_ip(self, uid: str) -> None:
        with self._lock:
            self._ips.pop(uid, None)

    def hosts_content(self, pod: Obj, pod_ip: str) -> str:
        with self._lock:
            endpoints, services = list(self._endpoints), list(self._services)
        records = hosts.cluster_records(endpoints, services, pod["metadata"]["namespace"])
        return hosts.hosts_file(pod, pod_ip, records, self.config.extra_hosts)

    def resolv_content(self, pod: Obj) -> str:
        return hosts.resolv_conf(pod["metadata"]["namespace"])

    def forget(self, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]

    def worker(self, namespace: str, name: str) -> PodWorker | None:
        with self._lock:
            return next((w for w in self._workers.values() if w.key == f"{namespace}/{name}"), None)

    # -- loops ----------------------------------------------------------------------------------
    def _on_pod(self, event_type: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
            if event_type == "DELETED":
                if worker:
                    worker.pod = pod
                    worker.gone.set()
                return
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and not pod["metadata"].get(
                    "deletionTimestamp"
                ):
                    return  # finished before this kubelet started: nothing to run
                worker = PodWorker(self, pod)
                self._workers[uid] = worker
                worker.start()
            else:
                worker.pod["metadata"] = pod["metadata"]
                worker.pod["spec"] = pod["spec"]

    def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.config.node_name}"
        while not self.stopping.is_set():
            try:
                listing = self.kube.get("/api/v1/pods", fieldSelector=selector)
                for pod in listing.get("items", []):
                    self._on_pod("ADDED", pod)
                version = listing["metadata"]["resourceVersion"]
                for event in self.kube.watch("/api/v1/pods", timeout=30, fieldSelector=selector,
                                             resourceVersion=version, allowWatchBookmarks="false"):
                    if self.stopping.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._on_pod(event["type"], event["object"])
            except Exception as exc:
                log.warning("pod watch failed, relisting: %s", exc)
                time.sleep(1)

    def _resync(self) -> None:
        while not self.stopping.is_set():
            try:
                pods = self.kube.items("/api/v1/pods")
                services = self.kube.items("/api/v1/services")
                endpoints = [ep for ep in map(hosts.endpoint_of, pods) if ep is not None]
                with self._lock:
                    self._endpoints, self._services = endpoints, services
                    workers = list(self._workers.values())
                for worker in workers:
                    worker.refresh_hosts()
                self.provisioner.sync()
            except Exception as exc:
                log.warning("resync failed: %s", exc)
            self.stopping.wait(1.0)

    def _heartbeat(self) -> None:
        while not self.stopping.is_set():
            try:
                heartbeat(self.kube, self.config)
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)
            self.stopping.wait(10.0)

    def run(self) -> None:
        from tests.cluster.kubelet.server import serve_logs

        self.config.pods_dir.mkdir(parents=True, exist_ok=True)
        self.config.network.create()
        register_node(self.kube, self.config)
        for target in (self._watch_pods, self._resync, self._heartbeat):
            threading.Thread(target=target, name=target.__name__, daemon=True).start()
        serve_logs(self, self.stopping)
        log.info("process kubelet %s ready on %s", self.config.node_name, self.config.host_ip)
        self.stopping.wait()

    def shutdown(self) -> None:
        """Stop every pod's processes (SIGTERM, then SIGKILL) and remove their sandboxes."""
        self.stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.gone.set()
        deadline = time.monotonic() + 40
        for worker in workers:
            worker.join(timeout=max(0.1, deadline - time.monotonic()))
