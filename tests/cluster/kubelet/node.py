"""The Node object of the process kubelet, its status heartbeat and its Lease.

The scheduler places pods by the node's allocatable resources (cpu, memory, pods and, when asked, a
fake `nvidia.com/gpu` count so GPU requests schedule), so those are configurable; the figures are a
test bed's promise, not a measurement of the machine.
"""

from __future__ import annotations

import datetime as dt
import platform
from typing import TYPE_CHECKING

from tests.cluster.kubelet.api import Kube, NotFound, Obj
from tests.cluster.kubelet.status import now

if TYPE_CHECKING:
    from tests.cluster.kubelet.kubelet import KubeletConfig

KUBELET_VERSION = "v1.36.3-pulsetrain-process"
LEASE_SECONDS = 40


def node_object(config: KubeletConfig) -> Obj:
    stamp = now()
    conditions = [
        {"type": kind, "status": "False", "reason": f"KubeletHas{reason}", "message": "",
         "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
        for kind, reason in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                             ("PIDPressure", "SufficientPID"))
    ]
    conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                       "message": "process kubelet is posting ready status",
                       "lastHeartbeatTime": stamp, "lastTransitionTime": stamp})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.node_name,
            "labels": {
                "kubernetes.io/hostname": config.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "pulsetrain.dev/process-kubelet": "true",
            },
        },
        "spec": {},
        "status": {
            "capacity": dict(config.capacity),
            "allocatable": dict(config.capacity),
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": config.host_ip},
                          {"type": "Hostname", "address": config.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": config.kubelet_port}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                "osImage": "pulsetrain process kubelet", "containerRuntimeVersion": "process://1",
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def register_node(kube: Kube, config: KubeletConfig) -> None:
    node = node_object(config)
    try:
        kube.get(f"/api/v1/nodes/{config.node_name}")
        kube.patch(f"/api/v1/nodes/{config.node_name}", {"metadata": {"labels": node["metadata"]["labels"]}})
    except NotFound:
        kube.post("/api/v1/nodes", {k: v for k, v in node.items() if k != "status"})
    kube.patch(f"/api/v1/nodes/{config.node_name}/status", {"status": node["status"]})


def heartbeat(kube: Kube, config: KubeletConfig) -> None:
    kube.patch(f"/api/v1/nodes/{config.node_name}/status", {"status": node_object(config)["status"]})
    micro = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{config.node_name}"
    spec = {"holderIdentity": config.node_name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro}
    try:
        kube.patch(path, {"spec": spec})
    except NotFound:
        kube.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                  {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": config.node_name}, "spec": spec})
