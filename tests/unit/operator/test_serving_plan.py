"""`serving.plan_serving`: predictors exist exactly while spec.serving is there and a model version is, and
`status.serving` sums what the ready predictors report."""

from __future__ import annotations

from pulsetrain.predict_progress import PredictorProgress
from pulsetrain.progress_doc import DeadLettered
from pulsetrain_operator.builders.predictor import predictor_deployment
from pulsetrain_operator.serving import plan_serving
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
