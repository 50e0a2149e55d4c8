"""Pod status from the state of a pod's processes: phase, conditions and containerStatuses.

Pure: the pod worker keeps one `ContainerRecord` per container and this module turns them into the
status a kubelet reports, with the phase rules of the Kubernetes pod lifecycle, condition
transition times that only move when a condition's status changes, and termination messages cut to
each container's share of the pod's 12 KiB, as the kubelet's status manager cuts them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tests.cluster.kubelet.api import Obj
from tests.cluster.kubelet.termination import trim_message


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRecord:
    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    restart_count: int = 0
    pid: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    ready: bool = False
    ever_started: bool = False
    last_state: Obj = field(default_factory=dict)

    def terminated_dict(self) -> Obj:
        return {
            "terminated": {
                "exitCode": self.exit_code,
                "reason": self.reason,
                "message": self.message or None,
                "startedAt": self.started_at,
                "finishedAt": self.finished_at,
                "containerID": f"process://{self.pid}",
            }
        }

    def status(self, containers: int = 1) -> Obj:
        """The containerStatus; `containers` (init containers included) share the pod's message bytes."""
        if self.state == "running":
            state: Obj = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = self.terminated_dict()
        else:
            state = {"waiting": {"reason": self.reason, "message": self.message or None}}
        result: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": f"process://{self.image}",
            "ready": self.ready,
            "started": self.state == "running",
            "restartCount": self.restart_count,
            "state": _trimmed(state, containers),
            "lastState": _trimmed(self.last_state, containers),
        }
        if self.pid is not None:
            result["containerID"] = f"process://{self.pid}"
        return result


def _trimmed(state: Obj, containers: int) -> Obj:
    terminated = state.get("terminated")
    if not terminated or not terminated.get("message"):
        return state
    return {**state, "terminated": {**terminated, "message": trim_message(terminated["message"], containers)}}


def pod_phase(restart_policy: str, init_failed: bool, containers: list[ContainerRecord]) -> str:
    if init_failed and restart_policy == "Never":
        return "Failed"
    if not containers or not all(c.ever_started for c in containers):
        return "Pending"
    if any(c.state != "terminated" for c in containers) or restart_policy == "Always":
        return "Running"
    succeeded = all(c.exit_code == 0 for c in containers)
    if succeeded:
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def _condition(kind: str, ok: bool, previous: list[Obj], reason: str | None = None) -> Obj:
    status = "True" if ok else "False"
    before = next((c for c in previous if c.get("type") == kind), None)
    since = before["lastTransitionTime"] if before and before.get("status") == status else now()
    condition: Obj = {"type": kind, "status": status, "lastTransitionTime": since, "lastProbeTime": None}
    if reason and not ok:
        condition["reason"] = reason
    return condition


def pod_status(
    pod: Obj,
    *,
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    sandbox_ready: bool,
    initialized: bool,
    init_failed: bool,
    init_records: list[ContainerRecord],
    records: list[ContainerRecord],
) -> Obj:
    spec, previous = pod.get("spec", {}), pod.get("status", {}).get("conditions") or []
    phase = pod_phase(spec.get("restartPolicy", "Always"), init_failed, records)
    terminal = phase in ("Succeeded", "Failed")
    containers_ready = bool(records) and all(r.ready for r in records) and not terminal
    not_ready = "PodCompleted" if terminal else "ContainersNotReady"
    containers = len(records) + len(init_records)
    conditions = [c for c in previous if c.get("type") == "PodScheduled"]
    conditions += [
        _condition("PodReadyToStartContainers", sandbox_ready and not terminal, previous),
        _condition("Initialized", initialized, previous, "ContainersNotInitialized"),
        _condition("ContainersReady", containers_ready, previous, not_ready),
        _condition("Ready", containers_ready, previous, not_ready),
    ]
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [r.status(containers) for r in records],
        "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
    }
    if init_records:
        status["initContainerStatuses"] = [r.status(containers) for r in init_records]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
