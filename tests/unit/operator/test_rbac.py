"""`rbac.RULES` grant exactly what the operator calls: the API calls in `kube.py` and Kopf's watches."""

from __future__ import annotations

import re
from pathlib import Path

from pulsetrain_operator import kube, rbac

VERBS = {"read": "get", "get": "get", "list": "list", "create": "create", "patch": "patch", "replace": "update",
         "delete": "delete"}
RESOURCES = {"pod": ("", "pods"), "service": ("", "services"), "config_map": ("", "configmaps"),
             "event": ("", "events"), "deployment": ("apps", "deployments"),
             "custom_object": ("pulsetrain.dev", "trainingpipelines"),
             "custom_object_status": ("pulsetrain.dev", "trainingpipelines/status")}
KOPF_WATCHES = {("pulsetrain.dev", "trainingpipelines", verb) for verb in ("list", "watch")} | {
    ("", "pods", verb) for verb in ("list", "watch")}
OWNER_REFERENCES = {("pulsetrain.dev", "trainingpipelines/finalizers", "update")}  # blockOwnerDeletion


def called() -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every typed client call `kube.Kube` makes."""
    found = set()
    for method in re.findall(r"self\.(?:core|apps|custom)\.(\w+)\(", Path(kube.__file__).read_text()):
        verb, resource = re.fullmatch(r"([a-z]+)_namespaced_(\w+)", method).groups()  # type: ignore[union-attr]
        group, plural = RESOURCES[resource]
        found.add((group, plural, VERBS[verb]))
    return found


def granted() -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in rbac.RULES for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_rules_grant_exactly_what_the_operator_calls() -> None:
    needed = called() | KOPF_WATCHES | OWNER_REFERENCES
    assert granted() - needed == set(), "granted but never used"
    assert needed - granted() == set(), "used but not granted"
