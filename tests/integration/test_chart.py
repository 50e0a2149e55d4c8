"""The Helm chart `charts/pulsetrain`: lint, what it renders, what its schema refuses, and Pod Security.

Why this exists: the chart is how most users meet the operator, and most of what can go wrong with it
shows before anything is installed: a lint warning, RBAC rules that drifted from the ones the operator
was tested with (`pulsetrain_operator.rbac`), committed plain manifests that are no longer what the
chart renders, a value the schema lets through, or a pod the `restricted` Pod Security Standard would
refuse. Rendering runs the real (pinned) helm; Pod Security is judged by the real API server with
server-side dry runs. Installing, upgrading and uninstalling are in tests/e2e/test_install.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulsetrain_operator import rbac
from tests.conftest import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pulsetrain"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def helm(testbed_cluster: Cluster) -> str:
    return testbed_cluster.helm_bin


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=False, timeout=120)


def template(helm: str, *args: str, release: str = "pulsetrain", namespace: str = "pulsetrain-system") -> list[Obj]:
    """`helm template` of the chart (test hook included); fails the test with helm's stderr."""
    result = run_helm(helm, "template", release, str(CHART), "--namespace", namespace, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[Obj], kind: str, name: str, namespace: str | None = None) -> Obj:
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return obj
    raise AssertionError(f"no {kind} {namespace}/{name} in {[(o['kind'], o['metadata']['name']) for o in objects]}")


def container(objects: list[Obj], name: str = "pulsetrain") -> Obj:
    deployment = find(objects, "Deployment", name, "pulsetrain-system")
    containers: list[Obj] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env(c: Obj) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c["env"]}


def rbac_shape(objects: list[Obj]) -> list[tuple[Any, ...]]:
    """The RBAC objects without labels: what grants what to whom."""
    shape = []
    for obj in objects:
        if obj["kind"] in RBAC_KINDS:
            meta = obj["metadata"]
            shape.append((obj["kind"], meta.get("namespace"), meta["name"], json.dumps(obj.get("rules")),
                          json.dumps(obj.get("roleRef")), json.dumps(obj.get("subjects"))))
    return sorted(shape)


# --- lint and the default render ------------------------------------------------------------------------

@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={a,b}"]], ids=["cluster-wide", "namespaced"])
def test_lint_strict(helm: str, values: list[str]) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert result.returncode == 0 and "0 chart(s) failed" in result.stdout, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_default_render_is_one_cluster_wide_operator(helm: str) -> None:
    objects = template(helm)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == sorted([
        ("ServiceAccount", "pulsetrain"), ("Service", "pulsetrain-metrics"), ("Deployment", "pulsetrain"),
        ("ClusterRole", "pulsetrain"), ("ClusterRoleBinding", "pulsetrain"),
        ("ClusterRole", "pulsetrain-discovery"), ("ClusterRoleBinding", "pulsetrain-discovery"),
        ("Pod", "pulsetrain-test")])
    assert find(objects, "ClusterRole", "pulsetrain")["rules"] == rbac.RULES
    assert find(objects, "ClusterRole", "pulsetrain-discovery")["rules"] == rbac.DISCOVERY_RULES
    for binding in ("pulsetrain", "pulsetrain-discovery"):
        assert find(objects, "ClusterRoleBinding", binding)["subjects"] == [
            {"kind": "ServiceAccount", "name": "pulsetrain", "namespace": "pulsetrain-system"}]

    deployment = find(objects, "Deployment", "pulsetrain", "pulsetrain-system")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "pulsetrain" and pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    c = container(objects)
    assert c["image"] == f"pulsetrain/operator:{APP_VERSION}"
    assert c["command"] == ["python", "-m", "pulsetrain_operator", "--log-format", "json",
                            "--liveness", "http://0.0.0.0:8081/healthz"]
    assert env(c) | {"PYTHONDONTWRITEBYTECODE": "1"} == {
        "PULSETRAIN_WORKER_IMAGE": f"pulsetrain/worker:{APP_VERSION}", "PULSETRAIN_PROGRESS_INTERVAL": "3",
        "PULSETRAIN_OPERATOR_METRICS_PORT": "8080", "PYTHONDONTWRITEBYTECODE": "1"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8081, "metrics": 8080}
    assert c["resources"] == {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    assert c["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}
    service = find(objects, "Service", "pulsetrain-metrics", "pulsetrain-system")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 8080
    test_pod = find(objects, "Pod", "pulsetrain-test", "pulsetrain-system")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    selector = service["spec"]["selector"].items()
    assert not selector <= test_pod["metadata"]["labels"].items(), "the metrics Service must not select the test pod"


def test_watched_namespaces_get_a_role_each_and_no_cluster_wide_rules(helm: str) -> None:
    objects = template(helm, "--set", "watchNamespaces={team-a,team-b}", "--set", "logFormat=plain")
    for ns in ("team-a", "team-b"):
        assert find(objects, "Role", "pulsetrain", ns)["rules"] == rbac.RULES
        binding = find(objects, "RoleBinding", "pulsetrain", ns)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pulsetrain"}
        assert binding["subjects"][0]["namespace"] == "pulsetrain-system"
    cluster_roles = [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert {o["metadata"]["name"] for o in cluster_roles} == {"pulsetrain-discovery"}
    assert find(objects, "ClusterRole", "pulsetrain-discovery")["rules"] == rbac.DISCOVERY_RULES
    assert container(objects)["command"][3:] == ["--log-format", "plain", "--liveness", "http://0.0.0.0:8081/healthz",
                                                 "--namespace", "team-a", "--namespace", "team-b"]


@pytest.mark.parametrize("watched", [(), ("team-a", "team-b")], ids=["cluster-wide", "namespaced"])
def test_chart_rbac_is_what_rbac_objects_grants(helm: str, watched: tuple[str, ...]) -> None:
    """The e2e harness grants its operator with `rbac.objects`; the chart must grant exactly the same."""
    values = ["--set", "watchNamespaces={" + ",".join(watched) + "}"] if watched else []
    chart = rbac_shape(template(helm, *values, release="pt", namespace="ops"))
    assert chart == rbac_shape(rbac.objects("ops", watched, name="pt-pulsetrain"))


def test_values_switch_parts_off_and_rename(helm: str) -> None:
    objects = template(helm, "--set", "metrics.enabled=false", "--set", "serviceAccount.create=false",
                       "--set", "serviceAccount.name=ops-bot", "--set", "image.tag=1.2.3",
                       "--set", "workerImage.repository=registry.example/pt/worker", "--set", "workerImage.tag=dev",
                       "--set", "podLabels.team=ml", "--set", "podLabels.app\\.kubernetes\\.io/name=evil",
                       "--set-json", "progressIntervalSeconds=0.5",
                       "--set-json", 'workerImage.pullSecrets=[{"name": "regcred"}, {"name": "mirror"}]')
    kinds = {o["kind"] for o in objects}
    assert "Service" not in kinds and "ServiceAccount" not in kinds
    c = container(objects)
    assert env(c)["PULSETRAIN_OPERATOR_METRICS_PORT"] == "0" and [p["name"] for p in c["ports"]] == ["health"]
    assert env(c)["PULSETRAIN_WORKER_IMAGE"] == "registry.example/pt/worker:dev"
    assert env(c)["PULSETRAIN_WORKER_IMAGE_PULL_SECRETS"] == "regcred,mirror"
    assert env(c)["PULSETRAIN_PROGRESS_INTERVAL"] == "0.5"
    assert c["image"] == "pulsetrain/operator:1.2.3"
    template_meta = find(objects, "Deployment", "pulsetrain", "pulsetrain-system")["spec"]["template"]
    assert template_meta["spec"]["serviceAccountName"] == "ops-bot"
    assert template_meta["metadata"]["labels"]["team"] == "ml"
    assert template_meta["metadata"]["labels"]["app.kubernetes.io/name"] == "pulsetrain"  # the selector wins
    assert find(objects, "ClusterRoleBinding", "pulsetrain")["subjects"][0]["name"] == "ops-bot"
    test_env = {e["name"]: e["value"] for e in find(objects, "Pod", "pulsetrain-test", "pulsetrain-system")
                ["spec"]["containers"][0]["env"]}
    assert test_env["METRICS_URL"] == ""
    assert not [o for o in template(helm, "--set", "rbac.create=false") if o["kind"] in RBAC_KINDS]


# --- the committed plain manifests and the chart's CRD --------------------------------------------------

def test_plain_manifests_are_the_chart_rendered(helm: str) -> None:
    check = subprocess.run([sys.executable, str(ROOT / "hack" / "render_manifests.py"), "--check"],
                           capture_output=True, text=True, check=False, timeout=120)
    assert check.returncode == 0, f"generated files differ: run `make render`\n{check.stderr}"
    committed = [doc for name in ("rbac/rbac.yaml", "operator/operator.yaml")
                 for doc in yaml.safe_load_all((ROOT / "manifests" / name).read_text()) if doc]
    spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "hack" / "render_manifests.py")
    assert spec is not None and spec.loader is not None
    render_manifests = importlib.util.module_from_spec(spec)  # a script, not a package module
    spec.loader.exec_module(render_manifests)
    rendered = [render_manifests.without_helm_labels(o) for o in template(helm, "--skip-tests")]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(committed, key=key) == sorted(rendered, key=key)
    text = "".join((ROOT / "manifests" / name).read_text() for name in ("rbac/rbac.yaml", "operator/operator.yaml"))
    assert "managed-by" not in text and "helm.sh/chart" not in text  # kubectl apply, not Helm, manages these
    crd = ROOT / "manifests" / "crd" / "trainingpipelines.pulsetrain.dev.yaml"
    assert (CHART / "crds" / crd.name).read_bytes() == crd.read_bytes()


# --- values.schema.json ---------------------------------------------------------------------------------

def declared(schema: Obj, values: Any, path: str) -> list[str]:
    """Problems with the schema node for `values` (the defaults in values.yaml): a missing description or
    default, a default that is not the values.yaml value, an object that accepts undeclared keys, a
    values.yaml key the schema does not declare."""
    found = []
    if "description" not in schema or "default" not in schema:
        found.append(f"{path}: no description or default")
    elif schema["default"] != values:
        found.append(f"{path}: schema default {schema['default']!r} != values.yaml {values!r}")
    if "properties" in schema:
        if schema.get("additionalProperties") is not False:
            found.append(f"{path}: additionalProperties is not false")
        for key, child in schema["properties"].items():
            found += declared(child, (values or {}).get(key, child.get("default")), f"{path}.{key}")
        found += [f"{path}.{key}: not in the schema" for key in (values or {}) if key not in schema["properties"]]
    elif schema.get("type") == "object" and not isinstance(schema.get("additionalProperties"), dict):
        found.append(f"{path}: an object that is neither declared nor a typed map")
    items = schema.get("items", {})
    if "properties" in items:  # the declared fields of list items (tolerations...): described, closed
        if items.get("additionalProperties") is not False:
            found.append(f"{path}[]: additionalProperties is not false")
        found += [p for key, child in items["properties"].items()
                  for p in declared(child, child.get("default"), f"{path}[].{key}")]
    return found


def test_schema_describes_and_defaults_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    problems = [p for key, node in schema["properties"].items() for p in declared(node, values[key], key)]
    problems += [f"{key}: not in the schema" for key in values if key not in schema["properties"]]
    assert problems == []


BAD_VALUES = [
    ("replicaCount: 2", "at '': additional properties 'replicaCount' not allowed"),
    ("image: {name: operator}", "at '/image': additional properties 'name' not allowed"),
    ("image: {tag: 5}", "at '/image/tag': got number, want string"),
    ("image: {pullPolicy: Sometimes}", "at '/image/pullPolicy': value must be one of"),
    ("logFormat: xml", "at '/logFormat': value must be one of 'json', 'full', 'plain'"),
    ("metrics: {port: -1}", "at '/metrics/port': minimum: got -1, want 1"),
    ("metrics: {port: 70000}", "at '/metrics/port': maximum: got 70,000, want 65,535"),
    ("metrics: {enabled: 'yes'}", "at '/metrics/enabled': got string, want boolean"),
    ("watchNamespaces: ml", "at '/watchNamespaces': got string, want array"),
    ("watchNamespaces: [Team_A]", "at '/watchNamespaces/0': 'Team_A' does not match pattern"),
    ("watchNamespaces: [ml, ml]", "at '/watchNamespaces': items at 0 and 1 are equal"),
    ("progressIntervalSeconds: 0", "at '/progressIntervalSeconds': minimum: got 0, want 0.1"),
    ("rbac: {create: 1}", "at '/rbac/create': got number, want boolean"),
    ("resources: {requests: {cpu: lots}}", "at '/resources/requests/cpu': 'lots' does not match pattern"),
    ("resources: {claims: []}", "at '/resources': additional properties 'claims' not allowed"),
    ("tolerations: [{key: gpu, operator: Maybe}]", "at '/tolerations/0/operator': value must be one of"),
    ("imagePullSecrets: [regcred]", "at '/imagePullSecrets/0': got string, want object"),
    ("workerImage: {pullSecrets: [{name: Reg_Cred}]}", "at '/workerImage/pullSecrets/0/name': 'Reg_Cred' does not"),
    ("serviceAccount: {name: Ops_Bot}", "at '/serviceAccount/name': 'Ops_Bot' does not match pattern"),
    # the chart's Roles on a ServiceAccount it does not create: not the namespace's "default" one
    ("serviceAccount: {create: false}", "at '/serviceAccount/name': minLength: got 0, want 1"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[v for v, _ in BAD_VALUES])
def test_schema_refuses_bad_values_naming_them(helm: str, tmp_path: Path, values: str, message: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(values + "\n")
    result = run_helm(helm, "template", "pulsetrain", str(CHART), "-f", str(path))
    assert result.returncode != 0, f"{values!r} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_metrics_port_may_not_take_the_liveness_port(helm: str) -> None:
    result = run_helm(helm, "template", "pulsetrain", str(CHART), "--set", "metrics.port=8081")
    assert result.returncode != 0 and "metrics.port: 8081 is the operator's liveness port" in result.stderr


# --- Pod Security, judged by the API server -------------------------------------------------------------

def dry_run(cluster: Cluster, namespace: str, objects: list[Obj],
            verb: str = "apply") -> subprocess.CompletedProcess[str]:
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    return cluster.kubectl(verb, "--dry-run=server", "-n", namespace, "-f", "-", input=manifest, check=False)


def pod_of(deployment: Obj, namespace: str) -> Obj:
    template_: Obj = copy.deepcopy(deployment["spec"]["template"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {**template_["metadata"], "name": "pss-probe",
                                                             "namespace": namespace}, "spec": template_["spec"]}


def test_rendered_objects_pass_the_restricted_pod_security_standard(testbed_cluster: Cluster, helm: str,
                                                                    namespace: str) -> None:
    testbed_cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                            "pod-security.kubernetes.io/warn=restricted")
    objects = template(helm, release="pss", namespace=namespace)
    testbed_cluster.kubectl("create", "serviceaccount", "pss-pulsetrain", "-n", namespace)  # pods need theirs
    applied = dry_run(testbed_cluster, namespace, objects)
    assert applied.returncode == 0, applied.stderr
    assert "PodSecurity" not in applied.stderr, applied.stderr  # the Deployment's template draws no warning
    deployment = find(objects, "Deployment", "pss-pulsetrain", namespace)
    created = dry_run(testbed_cluster, namespace, [pod_of(deployment, namespace)], verb="create")
    assert created.returncode == 0, created.stderr  # enforced on pods: the operator pod is admitted

    # the check can fail: the same pod without its container security context is refused
    loose = pod_of(deployment, namespace)
    del loose["spec"]["containers"][0]["securityContext"]
    refused = dry_run(testbed_cluster, namespace, [loose], verb="create")
    assert refused.returncode != 0 and 'violates PodSecurity "restricted' in refused.stderr, refused.stderr
