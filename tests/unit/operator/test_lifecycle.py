"""The pipeline state machine, rule by rule, with no cluster: observation in, plan and status out."""

from __future__ import annotations

import json
from typing import Any

from pulsetrain.progress_doc import rfc3339
from pulsetrain_operator.lifecycle import FAILURE_GRACE_SECONDS, decide
from pulsetrain_operator.observed import WorkerPod
from pulsetrain_operator.plan import Observation, Plan

NOW = 1_800_000_000.0
HASH = "h1"


def spec(workers: int = 2, **run_policy: Any) -> dict[str, Any]:
    return {"training": {"workers": workers, "mode": "bounded"}, "runPolicy": run_policy}


def pod(index: int, attempt: int = 1, phase: str = "Running", *, ready: bool = True, exit_code: int | None = None,
        deleting: bool = False, spec_hash: str = HASH, created_at: float = NOW - 60, outcome_state: str | None = None,
        reason: str = "") -> WorkerPod:
    outcome = None
    if outcome_state is not None:
        from pulsetrain.progress_doc import ExportInfo, ProgressDocument
        outcome = ProgressDocument(pipeline="p", worker=index, is_chief=index == 0, state=outcome_state,  # type: ignore[arg-type]
                                   step=120, samples=7000, messages_received=7000, messages_acknowledged=7000,
                                   metrics={"accuracy": 0.97}, started_at=rfc3339(NOW - 100),
                                   updated_at=rfc3339(NOW - 1),
                                   last_export=ExportInfo(version=3, path="/x/3", time=rfc3339(NOW - 2)))
    return WorkerPod(name=f"p-worker-{index}", index=index, attempt=attempt, phase=phase, ready=ready,
                     deleting=deleting, spec_hash=spec_hash, created_at=created_at, ip="10.244.0.9",
                     exit_code=exit_code, outcome=outcome, reason=reason)


def running_status(**extra: Any) -> dict[str, Any]:
    return {"phase": "Running", "attempt": 1, "restarts": 0, "attemptSpecHash": HASH,
            "startTime": rfc3339(NOW - 120), "conditions": [], **extra}


def run(spec_: dict[str, Any], status: dict[str, Any], pods: list[WorkerPod], *, desired_hash: str = HASH,
        now: float = NOW, config_refusal: str | None = None) -> Plan:
    return decide(Observation(name="p", namespace="ns", generation=4, spec=spec_, status=status, pods=pods,
                              desired_hash=desired_hash, export_dir="/data/ns/p/export", now=now,
                              config_refusal=config_refusal))


def condition(plan: Plan, type_: str) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == type_)


def test_new_pipeline_creates_every_worker_of_attempt_one() -> None:
    plan = run(spec(3), {}, [])
    assert plan.create == [0, 1, 2]
    assert plan.status["attempt"] == 1 and plan.status["phase"] == "Pending"
    assert plan.status["attemptSpecHash"] == HASH and plan.status["observedGeneration"] == 4
    assert condition(plan, "Created")["status"] == "True"
    assert [e.reason for e in plan.events] == ["Created"]


def test_a_spec_the_workers_would_refuse_fails_the_pipeline_before_any_pod() -> None:
    refusal = "spec.model.metrics[0]: 'auc' is not one of accuracy, top_k_accuracy"
    plan = run(spec(2), {}, [], config_refusal=refusal)
    assert plan.create == [] and plan.status["phase"] == "Failed" and plan.status["reason"] == "InvalidSpec"
    assert refusal in plan.status["message"] and "completionTime" in plan.status
    assert condition(plan, "Failed")["status"] == "True"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "InvalidSpec")]
    # an edit the workers would refuse does not stop a running gang; it is said once per edit (generation)
    running = run(spec(2), running_status(), [pod(0), pod(1)], desired_hash="edited", config_refusal=refusal)
    assert running.delete == [] and running.status["phase"] == "Running" and "stopReason" not in running.status
    (said,) = [e for e in running.events if e.reason == "SpecRefused"]
    assert said.type == "Warning" and refusal in said.message
    seen = run(spec(2), running_status(observedGeneration=4), [pod(0), pod(1)], desired_hash="edited",
               config_refusal=refusal)
    assert not [e for e in seen.events if e.reason == "SpecRefused"] and seen.delete == []
    # but the next attempt (after a worker failed) starts nothing and fails the pipeline
    restarting = running_status(phase="Restarting", restarts=1, stopReason="WorkerFailed")
    again = run(spec(2), restarting, [], config_refusal=refusal)
    assert again.create == [] and again.status["phase"] == "Failed" and again.status["attempt"] == 1


def test_reconcile_is_idempotent_once_pods_exist() -> None:
    first = run(spec(2), {}, [])
    pods = [pod(0, phase="Pending", ready=False), pod(1, phase="Pending", ready=False)]
    again = run(spec(2), first.status, pods)
    assert again.create == [] and again.delete == [] and again.events == []
    assert again.status["attempt"] == 1


def test_all_running_is_phase_running_with_counts() -> None:
    plan = run(spec(2), running_status(phase="Pending"), [pod(0), pod(1)])
    assert plan.status["phase"] == "Running"
    assert plan.status["workers"] == {"desired": 2, "ready": 2, "running": 2, "succeeded": 0, "failed": 0}
    assert plan.status["workersReady"] == "2/2"
    assert condition(plan, "Running")["status"] == "True"


def test_failed_worker_restarts_the_whole_gang_with_backoff() -> None:
    plan = run(spec(2, restartBackoffSeconds=10), running_status(),
               [pod(0), pod(1, phase="Failed", exit_code=137, ready=False)])
    assert plan.status["phase"] == "Restarting" and plan.status["restarts"] == 1
    assert plan.status["stopReason"] == "WorkerFailed"
    assert plan.delete == [("p-worker-0", FAILURE_GRACE_SECONDS)]  # the failed pod has ended already
    assert "killed by SIGKILL, retryable" in plan.status["message"]
    assert plan.status["nextAttemptAfter"] == rfc3339(NOW + 10)
    assert plan.events[0].type == "Warning"


def test_a_worker_that_trained_nothing_restarts_the_gang_and_says_why() -> None:
    plan = run(spec(2), running_status(), [pod(0, phase="Failed", exit_code=4, ready=False), pod(1)])
    assert plan.status["phase"] == "Restarting" and plan.status["stopReason"] == "WorkerFailed"
    assert "exit code 4 (nothing trained: no message arrived before the idle timeout, retryable)" in \
        plan.status["message"]


def test_next_attempt_waits_for_old_pods_then_for_the_backoff() -> None:
    status = running_status(phase="Restarting", restarts=1, stopReason="WorkerFailed",
                            nextAttemptAfter=rfc3339(NOW + 5))
    waiting = run(spec(2), status, [pod(0, deleting=True)])
    assert waiting.create == [] and waiting.status["attempt"] == 1
    backing_off = run(spec(2), status, [])
    assert backing_off.create == [] and backing_off.requeue_after == 5
    started = run(spec(2), status, [], now=NOW + 6)
    assert started.create == [0, 1] and started.status["attempt"] == 2
    assert "stopReason" not in started.status and started.status["restarts"] == 1


def test_backoff_doubles_per_restart() -> None:
    plan = run(spec(2, restartBackoffSeconds=10), running_status(restarts=2),
               [pod(0), pod(1, phase="Failed", exit_code=1, ready=False)])
    assert plan.status["nextAttemptAfter"] == rfc3339(NOW + 40)


def test_backoff_limit_reached_fails_the_pipeline() -> None:
    plan = run(spec(2, backoffLimit=2), running_status(restarts=2),
               [pod(0), pod(1, phase="Failed", exit_code=1, ready=False)])
    assert plan.status["phase"] == "Failed" and plan.status["reason"] == "BackoffLimitExceeded"
    assert "backoffLimit (2)" in plan.status["message"] and plan.status["completionTime"] == rfc3339(NOW)
    assert condition(plan, "Failed")["status"] == "True"


def test_permanent_exit_code_fails_without_retry() -> None:
    plan = run(spec(2), running_status(), [pod(0, phase="Failed", exit_code=2, ready=False), pod(1)])
    assert plan.status["phase"] == "Failed" and plan.status["reason"] == "PermanentError"
    assert "invalid worker configuration, permanent" in plan.status["message"]
    assert plan.status["restarts"] == 0


def test_chief_finished_means_succeeded_with_model_version() -> None:
    pods = [pod(0, phase="Succeeded", exit_code=0, outcome_state="finished", ready=False),
            pod(1, phase="Succeeded", exit_code=0, outcome_state="finished", ready=False)]
    plan = run(spec(2), running_status(), pods)
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["model"] == {"exportPath": "/data/ns/p/export", "version": 3}
    assert plan.status["progress"]["metrics"] == {"accuracy": 0.97}
    assert plan.status["workers"]["succeeded"] == 2
    assert "model version 3" in plan.status["message"]


def test_workers_stopped_by_someone_else_are_restarted_not_succeeded() -> None:
    pods = [pod(0, phase="Succeeded", exit_code=0, outcome_state="stopped", ready=False),
            pod(1, phase="Succeeded", exit_code=0, outcome_state="stopped", ready=False)]
    plan = run(spec(2), running_status(), pods)
    assert plan.status["phase"] == "Restarting" and plan.status["stopReason"] == "WorkersStopped"
    assert plan.status["restarts"] == 0


def test_scale_change_stops_gracefully_then_starts_the_new_size() -> None:
    plan = run(spec(3), running_status(), [pod(0), pod(1)], desired_hash="h2")
    assert plan.status["stopReason"] == "Rescaling" and plan.status["phase"] == "Restarting"
    assert sorted(plan.delete) == [("p-worker-0", None), ("p-worker-1", None)]
    assert plan.create == [] and plan.status["restarts"] == 0
    after = run(spec(3), plan.status, [], desired_hash="h2")
    assert after.create == [0, 1, 2] and after.status["attempt"] == 2 and after.status["attemptSpecHash"] == "h2"


def test_suspend_stops_gracefully_and_resume_starts_the_next_attempt() -> None:
    suspended = run(spec(2, suspend=True), running_status(), [pod(0), pod(1)])
    assert suspended.status["phase"] == "Suspended" and len(suspended.delete) == 2
    assert all(grace is None for _, grace in suspended.delete)
    quiet = run(spec(2, suspend=True), suspended.status, [])
    assert quiet.create == [] and quiet.status["phase"] == "Suspended"
    resumed = run(spec(2, suspend=False), quiet.status, [])
    assert resumed.create == [0, 1] and resumed.status["attempt"] == 2 and resumed.status["phase"] == "Pending"
    assert condition(resumed, "Suspended")["status"] == "False"


def test_deadline_fails_and_stops_the_workers() -> None:
    plan = run(spec(2, activeDeadlineSeconds=100), running_status(), [pod(0), pod(1)])
    assert plan.status["phase"] == "Failed" and plan.status["reason"] == "DeadlineExceeded"
    assert len(plan.delete) == 2


def test_pod_pending_too_long_fails_with_the_pods_reason() -> None:
    pods = [pod(0), pod(1, phase="Pending", ready=False, created_at=NOW - 700, reason="Unschedulable: 0/1 nodes")]
    plan = run(spec(2, pendingTimeoutSeconds=600), running_status(phase="Pending"), pods)
    assert plan.status["reason"] == "PodPendingTimeout" and "Unschedulable" in plan.status["message"]


def test_worker_pod_deleted_mid_run_is_a_failure() -> None:
    plan = run(spec(2), running_status(), [pod(0)])
    assert plan.status["phase"] == "Restarting" and plan.status["stopReason"] == "WorkerLost"


def test_missing_pod_of_an_attempt_not_yet_started_is_created() -> None:
    plan = run(spec(2), running_status(phase="Pending"), [pod(0, phase="Pending", ready=False)])
    assert plan.create == [1]


def test_stale_attempt_pods_are_deleted() -> None:
    plan = run(spec(2), running_status(attempt=2), [pod(0, attempt=1), pod(0, attempt=2), pod(1, attempt=2)])
    assert ("p-worker-0", None) in plan.delete and len(plan.delete) == 1


def test_finished_pipeline_cleanup_and_ttl() -> None:
    done = {**running_status(phase="Succeeded"), "completionTime": rfc3339(NOW - 50)}
    pods = [pod(0, phase="Succeeded", ready=False), pod(1, phase="Running")]
    keep = run(spec(2, cleanPodPolicy="None", ttlSecondsAfterFinished=60), done, pods)
    assert keep.delete == [] and not keep.delete_pipeline and keep.requeue_after == 10
    running_only = run(spec(2, cleanPodPolicy="Running"), done, pods)
    assert running_only.delete == [("p-worker-1", None)]
    everything = run(spec(2, cleanPodPolicy="All", ttlSecondsAfterFinished=30), done, pods)
    assert len(everything.delete) == 2 and everything.delete_pipeline
    assert json.dumps(everything.status)  # the status stays JSON-serialisable


def test_ended_pods_of_a_stopped_attempt_are_deleted_so_their_names_can_be_reused() -> None:
    status = running_status(phase="Restarting", restarts=1, stopReason="WorkerFailed")
    plan = run(spec(2), status, [pod(0, deleting=True), pod(1, phase="Failed", exit_code=137, ready=False)])
    assert plan.delete == [("p-worker-1", 0)] and plan.create == []


def test_a_pod_that_is_not_starting_is_reported_at_once_and_cleared_when_it_starts() -> None:
    stuck = pod(1, phase="Pending", ready=False, reason="ErrImagePull: pull access denied")
    plan = run(spec(2), running_status(phase="Pending", reason="Created"), [pod(0), stuck])
    assert plan.status["phase"] == "Pending" and plan.status["reason"] == "WorkersNotStarting"
    assert plan.status["message"] == ("1/2 worker(s) running; pod p-worker-1 is not starting: "
                                      "ErrImagePull: pull access denied")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "WorkersNotStarting")]
    backoff = pod(1, phase="Pending", ready=False, reason="ImagePullBackOff: back-off pulling")
    again = run(spec(2), plan.status, [pod(0), backoff])
    assert again.events == [] and "ImagePullBackOff" in again.status["message"]  # one event per cause, not per poll
    starting = pod(1, phase="Pending", ready=False, reason="ContainerCreating")
    cleared = run(spec(2), again.status, [pod(0), starting])
    assert cleared.status["reason"] == "WorkersStarting" and cleared.status["message"] == "1/2 worker(s) running"


def test_a_pod_starting_normally_is_not_reported() -> None:
    starting = pod(1, phase="Pending", ready=False, reason="ContainerCreating")
    plan = run(spec(2), running_status(phase="Pending", reason="Created", message="created 2 worker pod(s)"),
               [pod(0), starting])
    assert plan.status["reason"] == "Created" and plan.events == []


def test_an_edit_of_a_finished_pipeline_is_answered_with_a_warning_once() -> None:
    done = {**running_status(phase="Succeeded"), "completionTime": rfc3339(NOW - 50), "observedGeneration": 3}
    plan = run(spec(2), done, [], desired_hash="h2")  # generation 4: the workers' spec edited after it finished
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "SpecChangeIgnored")]
    assert "delete and re-create" in plan.events[0].message and plan.create == []
    assert run(spec(2), plan.status, [], desired_hash="h2").events == []
    assert run(spec(2), done, []).events == []  # an edit that does take effect (serving, runPolicy): no warning


def test_the_deadline_does_not_run_while_suspended_and_restarts_on_resume() -> None:
    long_ago = running_status(startTime=rfc3339(NOW - 10_000))
    suspended = run(spec(2, suspend=True, activeDeadlineSeconds=3600), long_ago, [pod(0), pod(1)])
    assert suspended.status["phase"] == "Suspended"
    quiet = run(spec(2, suspend=True, activeDeadlineSeconds=3600), suspended.status, [])
    assert quiet.status["phase"] == "Suspended"
    resumed = run(spec(2, suspend=False, activeDeadlineSeconds=3600), quiet.status, [])
    assert resumed.status["phase"] == "Pending" and resumed.create == [0, 1]
    assert resumed.status["startTime"] == rfc3339(NOW)
    later = run(spec(2, activeDeadlineSeconds=3600), running_status(startTime=resumed.status["startTime"]),
                [pod(0), pod(1)], now=NOW + 3601)
    assert later.status["reason"] == "DeadlineExceeded"


def test_a_refused_create_keeps_the_attempt_says_why_once_and_creates_only_what_is_missing() -> None:
    from pulsetrain_operator.lifecycle import REFUSED_RETRY_SECONDS, refused

    why = "creating pod p-worker-1 was refused: 403 Forbidden: exceeded quota: one-pod"
    first = run(spec(2), {}, [])
    plan = refused(first, {}, "FailedCreate", why)
    assert plan.status["attempt"] == 1 and plan.status["phase"] == "Pending"
    assert (plan.status["reason"], plan.status["message"]) == ("FailedCreate", why)
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Created"), ("Warning", "FailedCreate")]
    assert plan.requeue_after == REFUSED_RETRY_SECONDS
    # worker 0 was created and runs; worker 1 is missing: created again, not a lost worker
    again = run(spec(2), plan.status, [pod(0)])
    assert again.create == [1] and again.status["phase"] == "Pending" and "stopReason" not in again.status
    assert refused(again, plan.status, "FailedCreate", why).events == []  # the same refusal: no second event
    created = run(spec(2), refused(again, plan.status, "FailedCreate", why).status, [pod(0), pod(1, phase="Pending")])
    assert created.create == [] and created.status["reason"] == "WorkersStarting"
    running = run(spec(2), created.status, [pod(0), pod(1)])
    assert running.status["phase"] == "Running"
    lost = run(spec(2), running.status, [pod(0)])  # once created, a missing worker is lost again
    assert lost.status["stopReason"] == "WorkerLost"


def test_a_pipeline_applied_again_at_once_waits_for_its_predecessors_pods() -> None:
    import dataclasses

    def owned(p: WorkerPod, uid: str) -> WorkerPod:
        return dataclasses.replace(p, owner_uid=uid)

    def observe(status: dict[str, Any], pods: list[WorkerPod]) -> Plan:
        return decide(Observation(name="p", namespace="ns", generation=1, spec=spec(2), status=status, pods=pods,
                                  desired_hash=HASH, export_dir="/data/ns/p/export", now=NOW, uid="new"))

    created = observe({}, [])  # a new pipeline lists no pods: a create that met an old name was a 409
    assert created.create == [0, 1] and created.status["attempt"] == 1
    mine = owned(pod(0, phase="Running"), "new")  # the old worker 0 was gone already
    old_worker = owned(pod(1, phase="Failed", exit_code=2, ready=False), "old")
    plan = observe(created.status, [mine, old_worker])
    assert plan.status["phase"] == "Restarting" and plan.status["stopReason"] == "PredecessorStopping"
    assert "pod(s) p-worker-1 of a deleted pipeline" in plan.status["message"] and plan.status["restarts"] == 0
    assert ("p-worker-0", None) in plan.delete  # its own pod, gracefully; the old exit code 2 fails nothing
    waiting = observe(plan.status, [dataclasses.replace(old_worker, deleting=True)])
    assert waiting.create == [] and waiting.delete == [] and waiting.status["phase"] == "Restarting"
    started = observe(waiting.status, [])
    assert started.create == [0, 1] and started.status["attempt"] == 2


def test_a_worker_pod_deleted_by_someone_else_is_a_graceful_stop_not_a_failure() -> None:
    plan = run(spec(2), running_status(), [pod(0), pod(1, deleting=True)])  # a drain evicts worker 1
    assert plan.status["phase"] == "Restarting" and plan.status["stopReason"] == "WorkerDisrupted"
    assert plan.status["restarts"] == 0 and "nextAttemptAfter" not in plan.status
    assert plan.delete == [("p-worker-0", None)]  # its own grace period: time to checkpoint
    assert "p-worker-1 are being deleted" in plan.status["message"]
    after = run(spec(2), plan.status, [])
    assert after.create == [0, 1] and after.status["attempt"] == 2 and after.status["restarts"] == 0


def test_a_refused_stop_keeps_why_the_pipeline_failed_and_is_tried_again() -> None:
    from pulsetrain_operator.lifecycle import refused

    why = "deleting pod p-worker-0 was refused: 403 Forbidden: denied by webhook"
    failing = run(spec(2, activeDeadlineSeconds=100, cleanPodPolicy="None", ttlSecondsAfterFinished=0),
                  running_status(), [pod(0), pod(1)])
    plan = refused(failing, running_status(), "FailedDelete", why)
    assert plan.status["phase"] == "Failed" and plan.status["reason"] == "DeadlineExceeded"
    assert [e.reason for e in plan.events] == ["DeadlineExceeded", "FailedDelete"]
    again = run(spec(2, activeDeadlineSeconds=100, cleanPodPolicy="None", ttlSecondsAfterFinished=0), plan.status,
                [pod(0), pod(1)])
    assert sorted(again.delete) == [("p-worker-0", None), ("p-worker-1", None)]  # the stop, tried again
    refused_again = refused(again, plan.status, "FailedDelete", why)
    assert refused_again.events == []  # reported once
    assert refused_again.delete_pipeline and refused_again.status["reason"] == "DeadlineExceeded"  # TTL still due


def test_a_refusal_that_persists_posts_no_event_per_try() -> None:
    from pulsetrain_operator.lifecycle import refused

    why = "creating pod p-worker-1 was refused: 403 Forbidden: exceeded quota"
    stuck = pod(0, phase="Pending", ready=False, reason="Unschedulable: 0/1 nodes are available")
    first = refused(run(spec(2), running_status(phase="Pending", reason="Created"), [stuck]), {}, "FailedCreate", why)
    assert [e.reason for e in first.events] == ["WorkersNotStarting", "FailedCreate"]
    again = run(spec(2), first.status, [stuck])
    assert again.create == [1] and [e.reason for e in again.events] == ["WorkersNotStarting"]
    assert refused(again, first.status, "FailedCreate", why).events == []


def test_pods_deleting_after_a_spec_change_are_that_restart_not_a_disruption() -> None:
    # the status patch of a SpecChanged restart was lost after its deletes: the next reconcile says why again
    plan = run(spec(2), running_status(), [pod(0, deleting=True), pod(1, deleting=True)], desired_hash="h2")
    assert plan.status["stopReason"] == "SpecChanged" and plan.status["restarts"] == 0
