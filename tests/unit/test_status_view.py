"""`pulsetrain status` shows `status.serving` as the operator writes it (its own `serving_status` makes the
input here, so a renamed field fails this test), and shows nothing about serving for a pipeline without it."""

from __future__ import annotations

from typing import Any

from pulsetrain.predict_progress import PredictorProgress
from pulsetrain.progress_doc import DeadLettered
from pulsetrain.status_view import render, serving_rows
from pulsetrain_operator.serving import serving_status

NOW = 1_767_269_400.0  # 2026-01-01T12:10:00Z


def predictor(replica: str, version: int, predictions: int, per_second: float, dead: int) -> PredictorProgress:
    return PredictorProgress(pipeline="digits", replica=replica, state="serving", model_version=version,
                             predictions=predictions, predictions_per_second=per_second,
                             dead_lettered=DeadLettered(total=dead, by_reason={"predict": dead}),
                             started_at="2026-01-01T12:00:00Z", updated_at="2026-01-01T12:10:00Z")


def resource(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "digits", "namespace": "ml"}, "spec": {"training": {"workers": 2}},
            "status": {"phase": "Succeeded", "model": {"version": 3, "exportPath": "/models/digits/export/3"},
                       **status}}


def test_serving_is_shown_with_replicas_version_answers_and_message() -> None:
    serving = serving_status(2, {"status": {"readyReplicas": 2}},
                             [predictor("p-0", 3, 10_000, 120.5, 2), predictor("p-1", 2, 2_345, 30.0, 1)], 3)
    lines = render(resource({"serving": serving}), NOW).splitlines()
    assert "Serving:     2/2 predictors ready, model version 2 (serving model version 2 on 2/2 predictor(s))" in lines
    assert "Answers:     12,345 answered (150.5/s), 3 dead-lettered" in lines
    assert lines.index("Model:       version 3 at /models/digits/export/3") < lines.index(
        "Answers:     12,345 answered (150.5/s), 3 dead-lettered")


def test_serving_before_a_first_model() -> None:
    rows = dict(serving_rows(serving_status(0, None, [], None)))
    assert rows == {"Serving": "0/0 predictors ready, no model yet (waiting for a first exported model version)",
                    "Answers": "0 answered (0.0/s), 0 dead-lettered"}


def test_a_partial_or_odd_serving_status_is_still_shown() -> None:
    rows = dict(serving_rows({"replicas": 1, "readyReplicas": "one", "predictionsPerSecond": None}))
    assert rows == {"Serving": "-/1 predictors ready, no model yet", "Answers": "0 answered (-/s), 0 dead-lettered"}


def test_no_serving_lines_without_serving() -> None:
    text = render(resource({}), NOW)
    assert "Serving:" not in text and "Answers:" not in text
    assert "Model:       version 3 at /models/digits/export/3" in text
