"""The Node the process kubelet registers: what the scheduler places pods by."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.kubelet.kubelet import KubeletConfig
from tests.cluster.kubelet.node import node_object
from tests.cluster.network import PodNetwork


def config(capacity: dict[str, str]) -> KubeletConfig:
    net = PodNetwork("ptbr-test", "10.250.0.0/24")
    return KubeletConfig(node_name="n1", host_ip=net.host_ip, apiserver_port=6443, state=Path("/tmp/x"),
                         pki=Path("/tmp/x/pki"), network=net, capacity=capacity)


def test_node_advertises_capacity_address_and_ready() -> None:
    node = node_object(config({"cpu": "8", "memory": "32Gi", "pods": "110", "nvidia.com/gpu": "2"}))
    status = node["status"]
    assert status["allocatable"]["nvidia.com/gpu"] == "2"
    assert status["capacity"]["cpu"] == "8"
    assert {"type": "InternalIP", "address": "10.250.0.1"} in status["addresses"]
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"


def test_no_gpu_unless_asked() -> None:
    assert "nvidia.com/gpu" not in node_object(config({"cpu": "8"}))["status"]["allocatable"]


def test_pod_network_addresses() -> None:
    net = PodNetwork("ptbr-test", "10.250.0.0/24")
    assert net.host_ip == "10.250.0.1"
    ips = net.pod_ips()
    assert ips[0] == "10.250.0.2" and net.host_ip not in ips and len(ips) == 253
