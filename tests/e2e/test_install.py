"""Installing the operator the two ways users do, `helm install` and `kubectl apply -f manifests/`, end to end.

Why this exists: the other e2e tests run the operator as a host process; only these run it the way a
user does, in a pod of the chart's Deployment (run by the process kubelet with the chart's
ServiceAccount token, in-cluster configuration, liveness and readiness probes). Each flow installs,
checks that the operator pod runs with nothing but its own ServiceAccount and bindings, trains the
digits sample (`manifests/samples/digits.yaml`, only its Pulsar URLs and topic changed) to
`Succeeded` in a namespace that enforces the restricted Pod Security Standard, and uninstalls,
checking that nothing with the chart's labels is left: only the CRD (Helm never deletes CRDs) and the
user's own objects. The Helm flow also upgrades (log format and watched namespaces change, the
Deployment is recreated and still reconciles) and runs `helm test`.

Two operators must never reconcile at once, so each test holds the harness's host-wide operator lock
(and waits until no other operator process runs) before installing, and its fixture removes what it
installed, even when the test fails, before letting go of the lock. With
`PULSETRAIN_OPERATOR_DEPLOYED=1` (a cluster where the chart already runs the operator) these tests
are skipped: they would install a second one.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulsetrain_operator import rbac
from tests.conftest import Cluster, PulsarURLs
from tests.e2e.operator_harness import operator_lock
from tests.e2e.test_operator import ml_namespace  # the shared fixture
from tests.integration.test_trainer import digits_payloads, publish
from tests.support import get_json, wait_until

__all__ = ["ml_namespace"]  # the fixture shared with test_operator.py
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("PULSETRAIN_OPERATOR_DEPLOYED") == "1",
                       reason="the operator is already deployed; these tests install (and remove) their own"),
]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pulsetrain"
MANIFESTS = ROOT / "manifests"
SAMPLE = MANIFESTS / "samples" / "digits.yaml"
CRD_NAME = "trainingpipelines.pulsetrain.dev"
NAMESPACE = "pulsetrain-system"
RELEASE = "pulsetrain-e2e"  # its objects are named pulsetrain-e2e*, apart from the plain manifests' (pulsetrain*)
PLAIN = "pulsetrain"  # the release name the plain manifests are rendered with
NAMESPACED_KINDS = "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,roles,rolebindings"
CLUSTER_KINDS = "clusterroles,clusterrolebindings"
OTHER_OPERATOR_WAIT_SECONDS = 180  # an uninstalled operator's pod is gone in seconds; longer means a leak
Obj = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------------------

def helm(cluster: Cluster, *args: str, check: bool = True, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([cluster.helm_bin, "--kubeconfig", cluster.kubeconfig, *args],
                            capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def chart_selector(instance: str) -> str:
    return f"app.kubernetes.io/part-of=pulsetrain,app.kubernetes.io/instance={instance}"


def leftovers(cluster: Cluster, instance: str) -> list[str]:
    """Every object carrying the chart's labels for `instance`, as `kind namespace/name`."""
    found = []
    for kinds, scope in ((NAMESPACED_KINDS, ["--all-namespaces"]), (CLUSTER_KINDS, [])):
        listed = get_json(cluster, kinds, *scope, "-l", chart_selector(instance))
        assert listed is not None, f"kubectl get {kinds} failed"
        found += [f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in listed["items"]]
    return found


def operator_processes() -> dict[int, str]:
    """Running `python -m pulsetrain_operator` processes (the process kubelet runs pods on the host): host pid →
    command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"-m" in argv and b"pulsetrain_operator" in argv:
                found[int(entry.name)] = b" ".join(argv).decode(errors="replace").strip()
    return found


def operator_pod(cluster: Cluster, instance: str, *, other_than: str | None = None, timeout: float = 240) -> Obj:
    """The one operator pod of `instance` once it is Running and Ready (and not the pod `other_than`)."""
    def ready() -> Obj | None:
        pods = get_json(cluster, "pods", "-n", NAMESPACE, "-l", chart_selector(instance))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(live) != 1 or live[0]["metadata"]["uid"] == other_than or live[0]["status"].get("phase") != "Running":
            return None
        conditions = {c["type"]: c["status"] for c in live[0]["status"].get("conditions", [])}
        return live[0] if conditions.get("Ready") == "True" else None

    return wait_until(ready, timeout, f"the {instance} operator pod Running and Ready", interval=1)


def bindings_of(cluster: Cluster, account: str) -> set[tuple[str, str, str]]:
    """(kind, namespace, roleRef kind/name) of every binding that names the ServiceAccount NAMESPACE/account."""
    found = set()
    for kinds, scope in (("clusterrolebindings", []), ("rolebindings", ["--all-namespaces"])):
        for binding in get_json(cluster, kinds, *scope)["items"]:
            for subject in binding.get("subjects") or []:
                if (subject.get("kind"), subject.get("name"), subject.get("namespace")) == (
                        "ServiceAccount", account, NAMESPACE):
                    ref, where = binding["roleRef"], binding["metadata"].get("namespace", "")
                    found.add((binding["kind"], where, f"{ref['kind']}/{ref['name']}"))
    return found


def can(cluster: Cluster, account: str, verb: str, resource: str, namespace: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, resource, "-n", namespace,
                             f"--as=system:serviceaccount:{NAMESPACE}:{account}", check=False)
    return result.stdout.strip() == "yes"


def operator_logs(cluster: Cluster, instance: str) -> str:
    return cluster.kubectl("logs", "-n", NAMESPACE, "-l", chart_selector(instance), "--tail=-1",
                           check=False).stdout


def sample(broker: PulsarURLs, topic: str, name: str = "digits") -> Obj:
    """manifests/samples/digits.yaml with only the broker URLs and the topic changed (and the name, if asked)."""
    pipeline: Obj = yaml.safe_load(SAMPLE.read_text())
    pulsar = pipeline["spec"]["source"]["pulsar"]
    pulsar.update(serviceUrl=broker.service_url, adminUrl=broker.admin_url, topic=topic)
    pipeline["metadata"]["name"] = name
    return pipeline


def train(cluster: Cluster, namespace: str, broker: PulsarURLs, topic: str, pipeline: Obj,
          diagnostics: Callable[[], str], repeat: int = 2) -> Obj:
    """Publish the digits training split `repeat` times to `topic`, apply `pipeline`, and wait for Succeeded."""
    payloads = digits_payloads(repeat=repeat)[1]
    publish(broker.service_url, topic, payloads)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pipeline))
    name = pipeline["metadata"]["name"]

    def done() -> Obj | None:
        found = get_json(cluster, "trainingpipelines.pulsetrain.dev", name, "-n", namespace)
        status: Obj = (found or {}).get("status") or {}
        if status.get("phase") == "Failed":
            raise AssertionError(f"{name} failed: {status.get('message')}\n{diagnostics()}")
        return status if status.get("phase") == "Succeeded" else None

    try:
        status = wait_until(done, 480, f"{namespace}/{name} to succeed", interval=2)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\noperator logs:\n{diagnostics()[-6000:]}") from None
    assert status["progress"]["samples"] == len(payloads), status["progress"]
    assert status["model"]["exportPath"].endswith(f"/{namespace}/{name}/export"), status["model"]
    return status


def log_lines_are_json(text: str) -> bool:
    """Whether every non-empty line of `text` is one JSON object (the operator's `json` log format)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "the operator logged nothing"

    def is_json(line: str) -> bool:
        try:
            return isinstance(json.loads(line), dict)
        except ValueError:
            return False

    return all(is_json(line) for line in lines)


# --- fixtures --------------------------------------------------------------------------------------------

@pytest.fixture
def sole_operator(testbed_cluster: Cluster) -> Iterator[None]:
    """Hold the host-wide operator lock (other sessions' harness operators wait for it); on the project's
    test bed also wait until no operator process runs at all (one that holds no lock, or a leak)."""
    with operator_lock():
        if testbed_cluster.host_ip is not None:
            try:
                wait_until(lambda: not operator_processes(), OTHER_OPERATOR_WAIT_SECONDS,
                           "no other pulsetrain operator process", interval=5)
            except AssertionError:
                running = "; ".join(f"pid {pid}: {argv}" for pid, argv in operator_processes().items())
                raise AssertionError(
                    f"pulsetrain operator processes still run after {OTHER_OPERATOR_WAIT_SECONDS}s ({running}): "
                    "a leak from a test run that was killed? Stop them (`kill PID`) and run again") from None
        yield


def wait_gone(cluster: Cluster, instance: str) -> None:
    wait_until(lambda: not leftovers(cluster, instance), 180, f"every {instance} object gone", interval=2)


def wait_namespace_usable(cluster: Cluster) -> None:
    """NAMESPACE absent or Active: a namespace still terminating refuses new objects."""
    wait_until(lambda: (ns := get_json(cluster, "namespace", NAMESPACE)) is None
               or ns["status"]["phase"] == "Active", 240, f"namespace {NAMESPACE} not terminating", interval=2)


@pytest.fixture
def helm_release(testbed_cluster: Cluster, sole_operator: None) -> Iterator[str]:
    wait_namespace_usable(testbed_cluster)
    yield RELEASE
    helm(testbed_cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m", check=False)
    wait_gone(testbed_cluster, RELEASE)


@pytest.fixture
def plain_install(testbed_cluster: Cluster, sole_operator: None) -> Iterator[list[str]]:
    """`-f` arguments of the plain manifests; afterwards the operator and its RBAC are deleted again."""
    wait_namespace_usable(testbed_cluster)
    files = ["-f", str(MANIFESTS / "crd"), "-f", str(MANIFESTS / "rbac"), "-f", str(MANIFESTS / "operator")]
    yield files
    testbed_cluster.kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=180s", *files[2:], check=False)
    wait_gone(testbed_cluster, PLAIN)
    wait_until(lambda: get_json(testbed_cluster, "namespace", NAMESPACE) is None, 240,
               f"namespace {NAMESPACE} deleted", interval=2)


# --- the tests -------------------------------------------------------------------------------------------

def test_helm_install_upgrade_test_and_uninstall(testbed_cluster: Cluster, helm_release: str, ml_namespace: str,
                                                 pulsar_broker: PulsarURLs, unique: Any) -> None:
    helm(testbed_cluster, "install", helm_release, str(CHART), "-n", NAMESPACE, "--create-namespace",
         "--wait", "--timeout", "5m")
    pod = operator_pod(testbed_cluster, helm_release)
    assert pod["spec"]["serviceAccountName"] == helm_release
    assert bindings_of(testbed_cluster, helm_release) == {
        ("ClusterRoleBinding", "", f"ClusterRole/{helm_release}"),
        ("ClusterRoleBinding", "", f"ClusterRole/{helm_release}-discovery")}
    assert get_json(testbed_cluster, "clusterrole", helm_release)["rules"] == rbac.RULES
    assert get_json(testbed_cluster, "clusterrole", f"{helm_release}-discovery")["rules"] == rbac.DISCOVERY_RULES
    assert can(testbed_cluster, helm_release, "create", "pods", ml_namespace)
    assert not can(testbed_cluster, helm_release, "get", "secrets", ml_namespace)
    assert not can(testbed_cluster, helm_release, "create", "rolebindings", ml_namespace)

    def diagnostics() -> str:
        return operator_logs(testbed_cluster, helm_release)

    topic = unique("helm-digits")
    train(testbed_cluster, ml_namespace, pulsar_broker, topic, sample(pulsar_broker, topic), diagnostics)
    assert log_lines_are_json(diagnostics())

    # upgrade: plain logs and only the test's namespace; Recreate replaces the pod
    helm(testbed_cluster, "upgrade", helm_release, str(CHART), "-n", NAMESPACE, "--reuse-values",
         "--set", "logFormat=plain", "--set", f"watchNamespaces={{{ml_namespace}}}", "--wait", "--timeout", "5m")
    upgraded = operator_pod(testbed_cluster, helm_release, other_than=pod["metadata"]["uid"])
    assert upgraded["spec"]["containers"][0]["command"][3:] == [
        "--log-format", "plain", "--liveness", "http://0.0.0.0:8081/healthz", "--namespace", ml_namespace]
    assert bindings_of(testbed_cluster, helm_release) == {
        ("ClusterRoleBinding", "", f"ClusterRole/{helm_release}-discovery"),
        ("RoleBinding", ml_namespace, f"Role/{helm_release}")}
    assert get_json(testbed_cluster, "clusterrole", helm_release) is None
    assert can(testbed_cluster, helm_release, "create", "pods", ml_namespace)
    assert not can(testbed_cluster, helm_release, "create", "pods", "default")
    topic = unique("helm-upgraded")
    second = sample(pulsar_broker, topic, name="digits-upgraded")
    second["spec"]["training"]["idleTimeoutSeconds"] = 8
    train(testbed_cluster, ml_namespace, pulsar_broker, topic, second, diagnostics)
    assert not log_lines_are_json(diagnostics())

    tested = helm(testbed_cluster, "test", helm_release, "-n", NAMESPACE, "--timeout", "3m", check=False)
    assert tested.returncode == 0 and "Phase:          Succeeded" in tested.stdout, tested.stdout + tested.stderr
    # the test can fail: with the operator scaled away its metrics do not answer (a failed test pod is kept)
    testbed_cluster.kubectl("scale", "deployment", helm_release, "-n", NAMESPACE, "--replicas=0")
    wait_until(lambda: not get_json(testbed_cluster, "pods", "-n", NAMESPACE, "-l",
                                    f"{chart_selector(helm_release)},app.kubernetes.io/component=operator")["items"],
               120, "the operator pod gone", interval=1)
    failed = helm(testbed_cluster, "test", helm_release, "-n", NAMESPACE, "--timeout", "3m", check=False)
    test_log = testbed_cluster.kubectl("logs", f"{helm_release}-test", "-n", NAMESPACE, check=False).stdout
    assert failed.returncode != 0, failed.stdout
    assert "ok: the API server serves" in test_log and "FAIL operator metrics" in test_log, test_log
    testbed_cluster.kubectl("delete", "pod", f"{helm_release}-test", "-n", NAMESPACE, "--wait=true")

    helm(testbed_cluster, "uninstall", helm_release, "-n", NAMESPACE, "--wait", "--timeout", "3m")
    wait_gone(testbed_cluster, helm_release)
    assert bindings_of(testbed_cluster, helm_release) == set()
    assert get_json(testbed_cluster, "crd", CRD_NAME) is not None  # Helm keeps CRDs (and so every pipeline)
    kept = get_json(testbed_cluster, "trainingpipelines.pulsetrain.dev", "-n", ml_namespace)["items"]
    assert sorted(p["metadata"]["name"] for p in kept) == ["digits", "digits-upgraded"]
    assert get_json(testbed_cluster, "pvc", "pulsetrain-data", "-n", ml_namespace) is not None
    assert helm(testbed_cluster, "status", helm_release, "-n", NAMESPACE, check=False).returncode != 0


def test_plain_manifests_apply_and_delete(testbed_cluster: Cluster, plain_install: list[str], ml_namespace: str,
                                          pulsar_broker: PulsarURLs, unique: Any) -> None:
    testbed_cluster.kubectl("apply", *plain_install)
    testbed_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    pod = operator_pod(testbed_cluster, PLAIN)
    assert pod["spec"]["serviceAccountName"] == PLAIN
    assert bindings_of(testbed_cluster, PLAIN) == {("ClusterRoleBinding", "", f"ClusterRole/{PLAIN}"),
                                                   ("ClusterRoleBinding", "", f"ClusterRole/{PLAIN}-discovery")}
    namespace = get_json(testbed_cluster, "namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    topic = unique("plain-digits")
    train(testbed_cluster, ml_namespace, pulsar_broker, topic, sample(pulsar_broker, topic),
          lambda: operator_logs(testbed_cluster, PLAIN))

    # everything but the CRD: deleting manifests/crd would delete every pipeline in the cluster
    testbed_cluster.kubectl("delete", "--wait=true", "--timeout=180s", *plain_install[2:])
    wait_gone(testbed_cluster, PLAIN)
    assert get_json(testbed_cluster, "crd", CRD_NAME) is not None
    assert get_json(testbed_cluster, "trainingpipelines.pulsetrain.dev", "digits", "-n", ml_namespace) is not None
