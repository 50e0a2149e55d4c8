"""Container environment rules: value, $(VAR) expansion, valueFrom and envFrom."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.cluster.kubelet.env import ConfigError, container_env

POD: dict[str, Any] = {
    "metadata": {"name": "w-0", "namespace": "ml", "uid": "u1", "labels": {"role": "chief"}},
    "spec": {"nodeName": "n1", "serviceAccountName": "sa"},
}
CONFIGMAPS = {"cfg": {"MODE": "bounded", "BATCH": "32"}}
SECRETS = {"tok": {"token": base64.b64encode(b"s3cret").decode()}}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return container_env(POD, {"name": "c", **container}, pod_ip="10.0.0.2", host_ip="10.0.0.1",
                         configmaps=CONFIGMAPS.get, secrets=SECRETS.get)


def test_values_field_refs_and_expansion() -> None:
    env = env_of({"env": [
        {"name": "A", "value": "x"},
        {"name": "B", "value": "$(A)-y-$(MISSING)"},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "ROLE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['role']"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
    ], "resources": {"limits": {"cpu": "2"}}})
    assert env == {"A": "x", "B": "x-y-$(MISSING)", "IP": "10.0.0.2", "ROLE": "chief", "NS": "ml", "CPU": "2"}


def test_configmap_and_secret_refs_and_env_from_with_prefix() -> None:
    env = env_of({
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "PT_"}, {"secretRef": {"name": "tok"}}],
        "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}},
                {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}}],
    })
    assert env == {"PT_MODE": "bounded", "PT_BATCH": "32", "token": "s3cret", "T": "s3cret", "M": "bounded"}


def test_missing_required_reference_names_it() -> None:
    with pytest.raises(ConfigError, match='configmap "nope" not found'):
        env_of({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]})
    with pytest.raises(ConfigError, match="couldn't find key absent in secret tok"):
        env_of({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "absent"}}}]})


def test_optional_references_are_skipped() -> None:
    env = env_of({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                                           "optional": True}}}],
                  "envFrom": [{"secretRef": {"name": "gone", "optional": True}}]})
    assert env == {}
