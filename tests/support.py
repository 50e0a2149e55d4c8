"""Small helpers shared by the tests: polling with a deadline and a clear failure, free ports, kubectl reads."""

from __future__ import annotations

import json
import socket
import textwrap
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.conftest import Cluster

T = TypeVar("T")


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def get_json(cluster: Cluster, *args: str) -> Any:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def pod_phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    pod = get_json(cluster, "pod", name, "-n", namespace)
    return pod["status"].get("phase") if pod else None


def wait_pod_phase(cluster: Cluster, namespace: str, name: str, phases: set[str], timeout: float = 90) -> str:
    def check() -> str | None:
        phase = pod_phase(cluster, namespace, name)
        return phase if phase in phases else None

    return wait_until(check, timeout, f"pod {namespace}/{name} phase in {sorted(phases)}")


def container_status(cluster: Cluster, namespace: str, pod: str) -> dict[str, Any]:
    """The first container's status of a pod ({} while there is none)."""
    found = get_json(cluster, "pod", pod, "-n", namespace)
    statuses = (found or {}).get("status", {}).get("containerStatuses") or [{}]
    status: dict[str, Any] = statuses[0]
    return status


def pod_report(cluster: Cluster, namespace: str, selector: str, kubelet_lines: int = 30) -> str:
    """What a test that waited in vain for pods prints: each pod's phase, conditions and container states, the
    namespace's events, and the last lines of the test bed's kubelet log (where there is one)."""
    lines = []
    for pod in (get_json(cluster, "pods", "-n", namespace, "-l", selector) or {"items": []})["items"]:
        status = pod.get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        states = {c["name"]: c.get("state") for c in status.get("containerStatuses", [])}
        lines.append(f"pod {pod['metadata']['name']}: phase {status.get('phase')}, node "
                     f"{pod['spec'].get('nodeName')}, conditions {conditions}, containers {states}")
    events = cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    lines += ["events:", events.strip() or "(none)"]
    kubelet_log = cluster.state / "logs" / "process-kubelet.log" if cluster.state else None
    if kubelet_log and kubelet_log.exists():
        lines += ["kubelet log:", *kubelet_log.read_text(errors="replace").splitlines()[-kubelet_lines:]]
    return "\n".join(lines)


def logs(cluster: Cluster, namespace: str, pod: str, container: str | None = None) -> str:
    args = ["logs", "-n", namespace, pod] + (["-c", container] if container else [])
    return cluster.kubectl(*args, check=False).stdout


def apply(cluster: Cluster, namespace: str, manifest: str) -> None:
    """`kubectl apply` an indented YAML string (one or more documents) in `namespace`."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=textwrap.dedent(manifest))
