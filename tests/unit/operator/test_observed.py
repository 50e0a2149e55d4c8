"""`observed.WorkerPod.from_pod`: what the operator reads of a worker pod, in particular why it is not starting."""

from __future__ import annotations

from typing import Any

from pulsetrain_operator.builders.pod import worker_pod
from pulsetrain_operator.names import ATTEMPT_LABEL, WORKER_INDEX_LABEL
from pulsetrain_operator.observed import WorkerPod
from pulsetrain_operator.settings import Settings
from tests.unit.operator import samples


def worker(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "p-worker-1", "labels": {WORKER_INDEX_LABEL: "1", ATTEMPT_LABEL: "2"},
                         "creationTimestamp": "2026-11-24T10:00:00Z"},
            "status": status}


def test_an_unschedulable_pod_says_what_the_scheduler_said() -> None:
    observed = WorkerPod.from_pod(worker({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."}]}))
    assert observed is not None and observed.not_starting
    assert observed.reason == ("Unschedulable: 0/1 nodes are available: 1 node(s) didn't match Pod's node "
                               "affinity/selector.")


def test_an_image_that_cannot_be_pulled_is_not_starting_but_container_creation_is() -> None:
    def waiting(reason: str, message: str = "") -> WorkerPod | None:
        state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        return WorkerPod.from_pod(worker({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"}], "containerStatuses": [{"name": "worker", "state": state}]}))

    pulling = waiting("ImagePullBackOff", 'Back-off pulling image "nope:1"')
    assert pulling is not None and pulling.not_starting and pulling.reason.startswith("ImagePullBackOff: ")
    creating = waiting("ContainerCreating")
    assert creating is not None and not creating.not_starting
    scheduled_only = WorkerPod.from_pod(worker({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "True"}]}))
    assert scheduled_only is not None and scheduled_only.reason == "" and not scheduled_only.not_starting


def test_the_controlling_pipeline_uid_is_read_from_the_owner_reference() -> None:
    tp = samples.minimal()
    built = worker_pod(tp, 0, 1, Settings(worker_image="pulsetrain/worker:test"))
    observed = WorkerPod.from_pod({**built, "status": {"phase": "Pending"}})
    assert observed is not None and observed.owner_uid == tp["metadata"]["uid"] == samples.UID
