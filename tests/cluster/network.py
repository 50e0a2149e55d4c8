"""Pod networking for the process kubelet: one bridge, one network namespace and veth per pod.

TensorFlow's collective server binds 0.0.0.0:<port>, so two workers can only share a port number if
each has its own network namespace, as on Kubernetes. Pods sit on a bridge with the host at the first
address, so pods reach each other, the API server and Pulsar (both listening on the host address)
without routing or NAT; pods get no default route, so
nothing they send can leave the bridge. Everything is named with a prefix so that `down` can find and remove it.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

NETNS_PREFIX = "pt-"
VETH_PREFIX = "ptv"
NETNS_DIR = Path("/run/netns")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


@dataclass(frozen=True)
class PodNetwork:
    """The bridge and the subnet pods get their addresses from."""

    bridge: str
    cidr: str

    @classmethod
    def from_env(cls) -> PodNetwork:
        return cls(
            bridge=os.environ.get("PULSETRAIN_BRIDGE", "ptbr0"),
            cidr=os.environ.get("PULSETRAIN_POD_CIDR", "10.244.0.0/24"),
        )

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def host_ip(self) -> str:
        """The bridge's own address: where pods reach the API server and Pulsar."""
        return str(next(self.network.hosts()))

    def pod_ips(self) -> list[str]:
        return [str(ip) for ip in list(self.network.hosts())[1:]]

    def exists(self) -> bool:
        return _ip("link", "show", self.bridge, check=False).returncode == 0

    def create(self) -> None:
        if not self.exists():
            _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "replace", f"{self.host_ip}/{self.network.prefixlen}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def delete(self) -> None:
        for name in list_sandboxes():
            delete_sandbox(name)
        if self.exists():
            _ip("link", "del", self.bridge)


def sandbox_name(pod_uid: str) -> str:
    return NETNS_PREFIX + pod_uid.replace("-", "")[:12]


def list_sandboxes() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX))


def create_sandbox(net: PodNetwork, name: str, ip: str) -> None:
    """A network namespace with `lo` up and `eth0` at `ip`, its peer attached to the bridge."""
    delete_sandbox(name)
    host_end = VETH_PREFIX + name[len(NETNS_PREFIX) :][:11]
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("link", "set", host_end, "master", net.bridge)
        _ip("link", "set", host_end, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", f"{ip}/{net.network.prefixlen}", "dev", "eth0")
        _ip("-n", name, "link", "set", "eth0", "up")
    except Exception:
        delete_sandbox(name)
        raise


def delete_sandbox(name: str) -> None:
    """Remove the namespace; its veth pair goes with it."""
    if (NETNS_DIR / name).exists():
        _ip("netns", "del", name, check=False)
