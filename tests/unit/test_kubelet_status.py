"""Pod phase and status rules of the process kubelet."""

from __future__ import annotations

import pytest

from tests.cluster.kubelet.runtime import ImageEnv, container_argv, image_prefix
from tests.cluster.kubelet.status import ContainerRecord, pod_phase, pod_status


def rec(state: str, code: int | None = None, started: bool = True) -> ContainerRecord:
    return ContainerRecord("c", "img", state=state, exit_code=code, ever_started=started)


@pytest.mark.parametrize(
    ("policy", "records", "phase"),
    [
        ("Never", [rec("waiting", started=False)], "Pending"),
        ("Never", [rec("running")], "Running"),
        ("Never", [rec("terminated", 0)], "Succeeded"),
        ("Never", [rec("terminated", 0), rec("terminated", 1)], "Failed"),
        ("OnFailure", [rec("terminated", 1)], "Running"),
        ("OnFailure", [rec("terminated", 0)], "Succeeded"),
        ("Always", [rec("terminated", 0)], "Running"),
        ("Never", [rec("running"), rec("waiting", started=False)], "Pending"),
    ],
)
def test_phase(policy: str, records: list[ContainerRecord], phase: str) -> None:
    assert pod_phase(policy, False, records) == phase


def test_failed_init_container_with_never_fails_pod() -> None:
    assert pod_phase("Never", True, [rec("waiting", started=False)]) == "Failed"


def test_conditions_keep_transition_time_while_unchanged() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"restartPolicy": "Always"},
           "status": {"conditions": [{"type": "PodScheduled", "status": "True"},
                                     {"type": "Ready", "status": "True", "lastTransitionTime": "T0"}]}}
    ready = rec("running")
    ready.ready = True
    status = pod_status(pod, pod_ip="10.0.0.2", host_ip="10.0.0.1", start_time="S", sandbox_ready=True,
                        initialized=True, init_failed=False, init_records=[], records=[ready])
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["lastTransitionTime"] == "T0"
    assert conditions["PodScheduled"]["status"] == "True"
    assert status["podIP"] == "10.0.0.2" and status["phase"] == "Running"
    assert status["containerStatuses"][0]["state"] == {"running": {"startedAt": None}}


def test_terminated_container_status_has_exit_code_and_reason() -> None:
    record = rec("terminated", 3)
    record.reason, record.pid = "Error", 42
    assert record.status()["state"]["terminated"]["exitCode"] == 3
    assert record.status()["state"]["terminated"]["reason"] == "Error"
    assert record.status()["containerID"] == "process://42"


def test_image_mapping_first_match_and_argv() -> None:
    envs = [ImageEnv.parse("pulsetrain/*=/opt/pt"), ImageEnv.parse("*=/opt/any")]
    assert image_prefix("pulsetrain/worker:1", envs) == "/opt/pt"
    assert image_prefix("python:3.11", envs) == "/opt/any"
    with pytest.raises(ValueError, match="PATTERN=PREFIX"):
        ImageEnv.parse("nope")
    assert container_argv({"name": "c", "command": ["echo"], "args": ["$(X)"]}, {"X": "1"}) == ["echo", "1"]
