"""`manifests/dev/pulsar-standalone.yaml` as the real API server sees it (`kubectl apply --dry-run=server`).

Why this exists: the dev Pulsar runs only in kind clusters (the test bed's process kubelet pulls no
images), so the API server is the closest check there is here: strict field validation (an unknown or
misplaced field is an error), defaulting, and Pod Security admission, which warns when the pod template
would break the `restricted` standard the manifest's namespace warns about. Nothing is created.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.support import get_json

pytestmark = pytest.mark.integration

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "dev" / "pulsar-standalone.yaml"


def dry_run(cluster: Cluster, namespace: str | None, docs: list[dict[str, Any]]) -> tuple[int, str, str]:
    args = ["apply", "--dry-run=server", "--validate=strict", "-f", "-"]
    if namespace:
        args += ["-n", namespace]
    result = cluster.kubectl(*args, input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
                             check=False)
    return result.returncode, result.stdout, result.stderr


def namespaced(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """The manifest's namespaced objects moved into the test's namespace (a dry run cannot create `pulsar`)."""
    moved = copy.deepcopy([doc for doc in docs if doc["kind"] != "Namespace"])
    for doc in moved:
        doc["metadata"]["namespace"] = namespace
    return moved


def test_api_server_accepts_the_dev_pulsar_manifest(testbed_cluster: Cluster, namespace: str) -> None:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    (ns,) = [doc for doc in docs if doc["kind"] == "Namespace"]
    code, out, err = dry_run(testbed_cluster, None, [ns])
    assert code == 0 and "namespace/pulsar" in out, err

    security = {k: v for k, v in ns["metadata"]["labels"].items() if k.startswith("pod-security.kubernetes.io/")}
    assert security.get("pod-security.kubernetes.io/warn") == "restricted"
    testbed_cluster.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in security.items()))
    code, out, err = dry_run(testbed_cluster, namespace, namespaced(docs, namespace))
    assert code == 0, err
    for created in ("service/pulsar", "statefulset.apps/pulsar"):
        assert f"{created} created (server dry run)" in out, out
    assert "Warning" not in err, f"the pod template breaks the restricted Pod Security standard:\n{err}"
    assert get_json(testbed_cluster, "statefulsets,services", "-n", namespace)["items"] == []  # a dry run


def test_api_server_checks_would_catch_a_broken_manifest(testbed_cluster: Cluster, namespace: str) -> None:
    """The two checks above can fail: a privileged container draws a Pod Security warning, a misspelled
    field an error."""
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    testbed_cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=restricted")
    escalating = namespaced(docs, namespace)
    statefulset = next(doc for doc in escalating if doc["kind"] == "StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    code, _, err = dry_run(testbed_cluster, namespace, escalating)
    assert code == 0 and "would violate PodSecurity" in err, err

    misspelled = namespaced(docs, namespace)
    statefulset = next(doc for doc in misspelled if doc["kind"] == "StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/"}}
    code, _, err = dry_run(testbed_cluster, namespace, misspelled)
    assert code != 0 and "readinesProbe" in err, err
