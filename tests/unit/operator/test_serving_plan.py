"""`serving.plan_serving`: predictors exist exactly while spec.serving is there and a model version is, and
`status.serving` sums what the running predictors report, and says why one is not ready."""

from __future__ import annotations

import dataclasses
from typing import Any

from pulsetrain.predict_progress import PredictorProgress
from pulsetrain.progress_doc import DeadLettered
from pulsetrain_operator.builders.predictor import predictor_deployment
from pulsetrain_operator.names import COMPONENT_LABEL
from pulsetrain_operator.serving import TROUBLE_CHARS, plan_serving, predictor_trouble, progress_trouble
from pulsetrain_operator.settings import Settings
from tests.unit.operator import samples

SETTINGS = Settings(worker_image="pulsetrain/worker:test")
NOW = "2026-11-23T12:00:00Z"


def progress(version: int | None, predictions: int, rate: float, dead: int = 0) -> PredictorProgress:
    return PredictorProgress(pipeline="digits", namespace="ml", replica=f"p{predictions}", state="serving",
                             model_version=version, predictions=predictions, predictions_per_second=rate,
                             dead_lettered=DeadLettered(total=dead), started_at=NOW, updated_at=NOW)


def test_no_serving_spec_means_no_predictors_and_removes_leftovers() -> None:
    tp = samples.minimal()
    assert plan_serving(tp, SETTINGS, 3, None, []).delete is False
    leftover = predictor_deployment(samples.serving(), SETTINGS)
    plan = plan_serving(tp, SETTINGS, 3, leftover, [])
    assert plan.delete is True and plan.deployment is None and plan.status is None


def test_no_model_version_yet_means_waiting_without_a_deployment() -> None:
    plan = plan_serving(samples.serving(), SETTINGS, None, None, [])
    assert plan.deployment is None and not plan.update and not plan.active
    assert plan.status is not None and plan.status["replicas"] == 0
    assert "waiting for a first exported model version" in plan.status["message"]


def test_a_model_version_creates_the_deployment_and_an_unchanged_one_is_left_alone() -> None:
    tp = samples.serving()
    first = plan_serving(tp, SETTINGS, 1, None, [])
    assert first.update and first.active and first.deployment is not None and first.config_map is not None
    existing = {**first.deployment, "status": {"readyReplicas": 2}}
    again = plan_serving(tp, SETTINGS, 2, existing, [])
    assert not again.update  # a new model version is the predictors' own business (they hot-swap it)
    changed = samples.edited(tp, lambda spec: spec["serving"].update(replicas=3))
    assert plan_serving(changed, SETTINGS, 2, existing, []).update


def test_status_sums_the_ready_predictors_and_reports_the_lowest_version_while_rolling() -> None:
    tp = samples.serving()
    deployment = {**predictor_deployment(tp, SETTINGS), "status": {"readyReplicas": 2}}
    plan = plan_serving(tp, SETTINGS, 2, deployment, [progress(2, 700, 40.5, dead=1), progress(1, 300, 9.5)])
    assert plan.status == {"replicas": 2, "readyReplicas": 2, "predictions": 1000, "predictionsPerSecond": 50.0,
                           "deadLettered": 1, "modelVersion": 1,
                           "message": "serving model version 1 on 2/2 predictor(s)"}


def test_predictors_without_a_loaded_model_report_no_version() -> None:
    plan = plan_serving(samples.serving(), SETTINGS, 1, None, [progress(None, 0, 0.0)])
    assert plan.status is not None and "modelVersion" not in plan.status
    assert plan.status["message"] == "starting predictors (0/2 ready)"


def predictor_pod(name: str, ready: bool, container: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {COMPONENT_LABEL: "predictor"}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [container]}}


CRASH_LOOPING = {"state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting"}},
                 "lastState": {"terminated": {"exitCode": 2, "reason": "Error", "message": (
                     "INFO loading\npulsetrain predictor: invalid configuration: serving.modelVersion: 7 does not "
                     "exist under /data/export\n")}}}


def test_a_crash_looping_predictor_says_why_in_the_status() -> None:
    tp = samples.serving()
    pods = [predictor_pod("serve-predictor-a", True, {"state": {"running": {}}}),
            {"metadata": {"name": "serve-0", "labels": {COMPONENT_LABEL: "worker"}}, "status": {}},
            predictor_pod("serve-predictor-b", False, CRASH_LOOPING)]
    trouble = predictor_trouble(pods)
    assert trouble == ("pod serve-predictor-b: CrashLoopBackOff; exited with code 2: pulsetrain predictor: invalid "
                       "configuration: serving.modelVersion: 7 does not exist under /data/export")
    deployment = {**predictor_deployment(tp, SETTINGS), "status": {"readyReplicas": 1}}
    plan = plan_serving(tp, SETTINGS, 1, deployment, [], trouble)
    assert plan.status is not None
    assert plan.status["message"] == f"starting predictors (1/2 ready); {trouble}"


def test_predictors_starting_normally_have_nothing_to_say() -> None:
    starting = predictor_pod("p", False, {"state": {"waiting": {"reason": "ContainerCreating"}}})
    assert predictor_trouble([starting, predictor_pod("q", False, {})]) == ""
    pulling = predictor_pod("r", False, {"state": {"waiting": {"reason": "ImagePullBackOff"}}})
    assert predictor_trouble([starting, pulling]) == "pod r: ImagePullBackOff"
    plan = plan_serving(samples.serving(), SETTINGS, 1, None, [], "")
    assert plan.status is not None and plan.status["message"] == "starting predictors (0/2 ready)"


def test_a_predictor_the_scheduler_cannot_place_says_why() -> None:
    unplaced = predictor_pod("u", False, {})
    unplaced["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                         "message": "0/1 nodes are available: 1 Insufficient cpu."}]
    assert predictor_trouble([unplaced]) == "pod u: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."


def test_a_running_predictor_without_its_broker_says_so_and_keeps_its_counts() -> None:
    tp = samples.serving()
    lost = dataclasses.replace(progress(1, 400, 0.0), replica="serve-predictor-b", state="source-unavailable",
                               message="lost the connection to Pulsar at pulsar://pulsar:6650; the client is "
                                       "reconnecting")
    deployment = {**predictor_deployment(tp, SETTINGS), "status": {"readyReplicas": 1}}
    plan = plan_serving(tp, SETTINGS, 1, deployment, [progress(1, 600, 30.0), lost])
    assert plan.status is not None and plan.status["predictions"] == 1000
    assert plan.status["message"] == ("serving model version 1 on 1/2 predictor(s); predictor serve-predictor-b: "
                                      "lost the connection to Pulsar at pulsar://pulsar:6650; the client is "
                                      "reconnecting")
    assert progress_trouble([progress(1, 600, 30.0)]) == ""
    failed = dataclasses.replace(lost, state="failed", message="x" * 1000)
    assert progress_trouble([failed]) == "predictor serve-predictor-b: " + "x" * TROUBLE_CHARS
    # what the pod says (a crash loop) comes first: it is why the others cannot be read at all
    plan = plan_serving(tp, SETTINGS, 1, deployment, [lost], "pod serve-predictor-c: CrashLoopBackOff")
    assert plan.status is not None and plan.status["message"].endswith("; pod serve-predictor-c: CrashLoopBackOff")


def test_a_serving_spec_the_predictors_would_refuse_starts_and_rolls_nothing() -> None:
    tp = samples.serving()
    topic = tp["spec"]["source"]["pulsar"]["topic"]
    refused = samples.edited(tp, lambda spec: spec["serving"].update(outputTopic=topic))  # answers into training
    first = plan_serving(refused, SETTINGS, 1, None, [])
    assert first.deployment is None and not first.update and not first.delete
    assert first.status is not None
    assert first.status["message"].startswith("the predictors would refuse this spec: spec.serving.outputTopic: ")
    running = predictor_deployment(tp, SETTINGS)  # the predictors of the spec before the edit
    edited = plan_serving(refused, SETTINGS, 1, running, [])
    assert not edited.update and not edited.delete and edited.status is not None
    assert edited.status["message"].endswith("; the running predictors keep the configuration they started with")
