"""`reconciler.status_patch`: the merge patch that turns the status as read into the status decided."""

from __future__ import annotations

from typing import Any

from pulsetrain_operator.reconciler import status_patch


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 applied, as the API server applies a merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def test_unchanged_status_needs_no_patch() -> None:
    status = {"phase": "Running", "serving": {"modelVersion": 2, "replicas": 1}}
    assert status_patch(status, dict(status)) == {}


def test_a_key_removed_inside_a_nested_object_is_removed() -> None:
    old = {"phase": "Running", "serving": {"modelVersion": 2, "replicas": 1, "message": "serving"}}
    new = {"phase": "Running", "serving": {"replicas": 1, "message": "starting predictors (0/1 ready)"}}
    patch = status_patch(old, new)
    assert patch == {"serving": {"modelVersion": None, "message": "starting predictors (0/1 ready)"}}
    assert merge(old, patch) == new


def test_removed_metric_names_and_top_level_keys_go() -> None:
    old = {"progress": {"step": 5, "metrics": {"accuracy": 0.5, "auc": 0.6}}, "stopReason": "Suspended"}
    new = {"progress": {"step": 6, "metrics": {"mse": 0.1}}}
    patch = status_patch(old, new)
    assert patch == {"progress": {"step": 6, "metrics": {"accuracy": None, "auc": None, "mse": 0.1}},
                     "stopReason": None}
    assert merge(old, patch) == new


def test_lists_and_type_changes_are_replaced_whole() -> None:
    old = {"conditions": [{"type": "Created", "status": "True"}], "model": {"version": 1}}
    new = {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}],
           "model": "gone"}
    patch = status_patch(old, new)
    assert patch == new
    assert merge(old, patch) == new
