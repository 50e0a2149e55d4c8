"""Readiness and liveness probes (httpGet, tcpSocket, exec) with Kubernetes' timing fields.

A `ProbeState` per probe tracks its own schedule and consecutive results; the pod worker asks it
each tick whether the container is ready (readiness) or must be restarted (liveness).
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from tests.cluster.kubelet.api import Obj


def _port(container: Obj, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"container {container['name']}: no port named {port!r}")


def run_probe(probe: Obj, container: Obj, pod_ip: str, netns: str) -> bool:
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = str(get.get("scheme", "HTTP")).lower()
            url = f"{scheme}://{get.get('host') or pod_ip}:{_port(container, get['port'])}{get.get('path', '/')}"
            request = urllib.request.Request(url)
            for header in get.get("httpHeaders") or []:
                request.add_header(header["name"], header["value"])
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return 200 <= int(response.status) < 400
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            with socket.create_connection((tcp.get("host") or pod_ip, _port(container, tcp["port"])), timeout):
                return True
        if "exec" in probe:
            argv = ["nsenter", f"--net=/run/netns/{netns}", "--", *probe["exec"]["command"]]
            return subprocess.run(argv, capture_output=True, timeout=timeout, check=False).returncode == 0
    except (urllib.error.URLError, OSError, ValueError, subprocess.TimeoutExpired):
        return False
    return False


@dataclass
class ProbeState:
    probe: Obj
    started: float
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    ok: bool = False

    @classmethod
    def begin(cls, probe: Obj) -> ProbeState:
        now = time.monotonic()
        return cls(probe, now, now + float(probe.get("initialDelaySeconds", 0)))

    def tick(self, container: Obj, pod_ip: str, netns: str) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + float(self.probe.get("periodSeconds", 10))
        if run_probe(self.probe, container, pod_ip, netns):
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.probe.get("successThreshold", 1)):
                self.ok = True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.probe.get("failureThreshold", 3)):
                self.ok = False

    @property
    def failed(self) -> bool:
        return self.failures >= int(self.probe.get("failureThreshold", 3))
