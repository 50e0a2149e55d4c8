"""The progress document's wire format: exact round trips, camelCase keys, forward compatibility, errors."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from pulsetrain.progress_doc import (
    SCHEMA_VERSION,
    CheckpointInfo,
    DeadLettered,
    ExportInfo,
    ProgressDocument,
    parse_rfc3339,
    rfc3339,
)


def full() -> ProgressDocument:
    return ProgressDocument(
        pipeline="digits", namespace="ml", worker=1, is_chief=False, state="training", step=120,
        samples=3840, messages_received=4000, messages_acknowledged=3500,
        dead_lettered=DeadLettered(total=3, by_reason={"shape": 2, "json": 1}), backlog=10_000,
        loss=0.25, metrics={"accuracy": 0.9375}, samples_per_second=812.5, step_time_seconds=0.04,
        last_checkpoint=CheckpointInfo(step=100, time="2024-05-01T12:00:00.000Z", path="/ckpt/ckpt-100"),
        last_export=ExportInfo(version=3, path="/export/3", time="2024-05-01T12:00:01.500Z"),
        started_at="2024-05-01T11:00:00.000Z", updated_at="2024-05-01T12:00:02.000Z",
        message="all good")


def minimal_dict() -> dict[str, Any]:
    return {"schemaVersion": 1, "pipeline": "p", "worker": 0, "isChief": True, "state": "starting",
            "step": 0, "samples": 0, "messagesReceived": 0, "messagesAcknowledged": 0,
            "startedAt": "2024-05-01T11:00:00Z", "updatedAt": "2024-05-01T11:00:00Z"}


def test_round_trip_is_exact() -> None:
    doc = full()
    assert ProgressDocument.from_json(doc.to_json()) == doc
    assert ProgressDocument.from_json(doc.to_json().encode()) == doc


def test_round_trip_without_optional_parts() -> None:
    doc = ProgressDocument.from_dict(minimal_dict())
    assert doc.last_checkpoint is None and doc.last_export is None and doc.backlog is None
    assert doc.dead_lettered == DeadLettered(total=0, by_reason={})
    assert ProgressDocument.from_json(doc.to_json()) == doc


def test_keys_are_camel_case_and_match_the_status_fields() -> None:
    data = json.loads(full().to_json())
    for key in ("schemaVersion", "isChief", "messagesReceived", "messagesAcknowledged", "deadLettered",
                "samplesPerSecond", "stepTimeSeconds", "lastCheckpoint", "lastExport", "startedAt",
                "updatedAt"):
        assert key in data, key
    assert all("_" not in key for key in data)
    assert data["deadLettered"] == {"total": 3, "byReason": {"json": 1, "shape": 2}}
    assert data["lastCheckpoint"] == {"step": 100, "time": "2024-05-01T12:00:00.000Z", "path": "/ckpt/ckpt-100"}
    assert data["lastExport"]["version"] == 3
    assert data["schemaVersion"] == SCHEMA_VERSION


def test_unknown_fields_from_a_newer_worker_are_ignored() -> None:
    data = json.loads(full().to_json())
    data["gpuUtilisation"] = 0.9
    data["lastCheckpoint"]["sizeBytes"] = 1234
    data["deadLettered"]["lastReason"] = "shape: bad"
    assert ProgressDocument.from_json(json.dumps(data)) == full()


@pytest.mark.parametrize("key", ["schemaVersion", "pipeline", "worker", "isChief", "state", "step", "samples",
                                 "messagesReceived", "messagesAcknowledged", "startedAt", "updatedAt"])
def test_missing_required_field_is_named(key: str) -> None:
    data = minimal_dict()
    del data[key]
    with pytest.raises(ValueError, match=f"^{key}: required field is missing"):
        ProgressDocument.from_dict(data)


def test_missing_nested_field_is_named_by_its_path() -> None:
    data = json.loads(full().to_json())
    del data["lastCheckpoint"]["step"]
    with pytest.raises(ValueError, match=r"lastCheckpoint\.step"):
        ProgressDocument.from_dict(data)


@pytest.mark.parametrize(("key", "value"), [
    ("step", -1), ("step", "12"), ("step", True), ("isChief", 1), ("state", "running"), ("pipeline", 3),
    ("loss", "low"), ("updatedAt", "yesterday"), ("updatedAt", "2024-05-01T11:00:00"), ("schemaVersion", 2),
    ("deadLettered", {"total": 1, "byReason": {"shape": -1}}), ("metrics", [1, 2]),
])
def test_wrong_values_are_refused_naming_the_field(key: str, value: Any) -> None:
    data = minimal_dict()
    data[key] = value
    with pytest.raises(ValueError, match=key):
        ProgressDocument.from_dict(data)


def test_not_json_or_not_an_object() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        ProgressDocument.from_json("{")
    with pytest.raises(ValueError, match="expected an object"):
        ProgressDocument.from_json("[]")


def test_non_finite_numbers_become_valid_json() -> None:
    doc = ProgressDocument.from_dict(minimal_dict())
    doc = ProgressDocument(**{**doc.__dict__, "loss": math.nan, "metrics": {"auc": math.inf, "acc": 0.5},
                              "samples_per_second": math.nan})
    data = json.loads(doc.to_json())  # allow_nan=False in to_json: this would raise on NaN
    assert data["loss"] is None
    assert data["metrics"] == {"acc": 0.5}
    assert data["samplesPerSecond"] == 0.0


def test_rfc3339_helpers_agree() -> None:
    assert rfc3339(0.25) == "1970-01-01T00:00:00.250Z"
    assert parse_rfc3339("1970-01-01T00:00:00.250Z") == pytest.approx(0.25)
    assert parse_rfc3339("1970-01-01T01:00:00+01:00") == 0.0
    with pytest.raises(ValueError):
        parse_rfc3339("1970-01-01T00:00:00")
