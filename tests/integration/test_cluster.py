"""Acceptance tests of the test bed's Kubernetes half: real controllers, scheduler, RBAC, PSA, GC,
and the process kubelet's pods (network namespaces, DNS names, service-account tokens, probes)."""

from __future__ import annotations

import ipaddress
import textwrap
import urllib.request

import pytest

from tests.conftest import Cluster
from tests.support import apply, get_json, logs, pod_report, wait_pod_phase, wait_until

pytestmark = pytest.mark.integration


def test_deployment_gets_replicaset_and_ready_pod(testbed_cluster: Cluster, namespace: str) -> None:
    apply(testbed_cluster, namespace, """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 1
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
              - name: http
                image: python:3.11
                command: [python, -m, http.server, "8080"]
                ports: [{containerPort: 8080, name: http}]
                readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
    """)
    replicasets = wait_until(
        lambda: get_json(testbed_cluster, "rs", "-n", namespace, "-l", "app=web")["items"], 60,
        "a ReplicaSet made by the deployment controller",
    )
    assert replicasets[0]["metadata"]["ownerReferences"][0]["name"] == "web"

    def ready_pod() -> dict[str, object] | None:
        for pod in get_json(testbed_cluster, "pods", "-n", namespace, "-l", "app=web")["items"]:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") == "True":
                return pod  # type: ignore[no-any-return]
        return None

    try:
        pod = wait_until(ready_pod, 90, "a Ready pod of the deployment")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{pod_report(testbed_cluster, namespace, 'app=web')}") from None
    assert pod["spec"]["nodeName"]  # type: ignore[index]
    ip = pod["status"]["podIP"]  # type: ignore[index]
    if testbed_cluster.host_ip:
        network = ipaddress.ip_network(f"{testbed_cluster.host_ip}/24", strict=False)
        assert ipaddress.ip_address(ip) in network and ip != testbed_cluster.host_ip
        with urllib.request.urlopen(f"http://{ip}:8080/", timeout=5) as response:
            assert response.status == 200
    deployment = wait_until(
        lambda: (d := get_json(testbed_cluster, "deployment", "web", "-n", namespace))
        and d["status"].get("readyReplicas") == 1 and d,
        60, "deployment status readyReplicas=1",
    )
    assert deployment["status"]["availableReplicas"] == 1


PEER_SCRIPT = """
import os, socket, sys, threading, time
me, other, ns = os.environ["ME"], os.environ["OTHER"], os.environ["NS"]
server = socket.create_server(("0.0.0.0", 7000))
def serve():
    conn, _ = server.accept()
    with conn:
        conn.sendall(conn.recv(100) + b" -> " + me.encode())
threading.Thread(target=serve, daemon=True).start()
target = f"{other}.peers.{ns}.svc.cluster.local"
deadline = time.time() + 60
while True:
    try:
        with socket.create_connection((target, 7000), timeout=2) as conn:
            conn.sendall(me.encode())
            print("reply:", conn.recv(100).decode(), "via", socket.gethostbyname(target),
                  "my ip", os.environ["POD_IP"], "hostname", socket.gethostname(), flush=True)
            break
    except OSError as exc:
        if time.time() > deadline:
            sys.exit(f"cannot reach {target}: {exc}")
        time.sleep(0.5)
time.sleep(3)  # let the peer finish talking to us
"""


def test_two_pods_reach_each_other_by_dns_name_on_one_port(testbed_cluster: Cluster, namespace: str) -> None:
    pods = ""
    for me, other in (("alpha", "beta"), ("beta", "alpha")):
        pods += f"""
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: {me}, labels: {{app: peers}}}}
        spec:
          hostname: {me}
          subdomain: peers
          restartPolicy: Never
          containers:
          - name: peer
            image: python:3.11
            command: [python, /scripts/peer.py]
            env:
            - {{name: ME, value: {me}}}
            - {{name: OTHER, value: {other}}}
            - {{name: NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
            - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
            volumeMounts: [{{name: scripts, mountPath: /scripts}}]
          volumes: [{{name: scripts, configMap: {{name: peer-script}}}}]
        """
    testbed_cluster.kubectl(
        "create", "configmap", "peer-script", "-n", namespace, "--from-literal=peer.py=" + PEER_SCRIPT
    )
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: Service
        metadata: {name: peers}
        spec:
          clusterIP: None
          publishNotReadyAddresses: true
          selector: {app: peers}
          ports: [{port: 7000}]
    """ + pods)
    for name in ("alpha", "beta"):
        phase = wait_pod_phase(testbed_cluster, namespace, name, {"Succeeded", "Failed"})
        assert phase == "Succeeded", logs(testbed_cluster, namespace, name)
    alpha_ip = get_json(testbed_cluster, "pod", "alpha", "-n", namespace)["status"]["podIP"]
    beta_ip = get_json(testbed_cluster, "pod", "beta", "-n", namespace)["status"]["podIP"]
    assert alpha_ip != beta_ip
    alpha_log = logs(testbed_cluster, namespace, "alpha")
    assert f"reply: alpha -> beta via {beta_ip} my ip {alpha_ip} hostname alpha" in alpha_log
    assert f"reply: beta -> alpha via {alpha_ip}" in logs(testbed_cluster, namespace, "beta")


TOKEN_SCRIPT = """
import json, os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
ns = open(f"{sa}/namespace").read()
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
base = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
for verb, path in (("GET", f"/api/v1/namespaces/{ns}/pods"), ("GET", f"/api/v1/namespaces/{ns}/secrets")):
    req = urllib.request.Request(base + path, method=verb, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, context=ctx) as r:
            print(verb, path.rsplit("/", 1)[1], r.status, len(json.load(r)["items"]), flush=True)
    except urllib.error.HTTPError as e:
        print(verb, path.rsplit("/", 1)[1], e.code, flush=True)
"""


def test_service_account_token_is_subject_to_rbac(testbed_cluster: Cluster, namespace: str) -> None:
    testbed_cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    testbed_cluster.kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=get,list", "--resource=pods")
    testbed_cluster.kubectl("create", "rolebinding", "reader", "-n", namespace, "--role=pod-reader",
                            f"--serviceaccount={namespace}:reader")
    testbed_cluster.kubectl("create", "configmap", "script", "-n", namespace, "--from-literal=run.py=" + TOKEN_SCRIPT)
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: Pod
        metadata: {name: caller}
        spec:
          serviceAccountName: reader
          restartPolicy: Never
          containers:
          - name: caller
            image: python:3.11
            command: [python, /scripts/run.py]
            volumeMounts: [{name: scripts, mountPath: /scripts}]
          volumes: [{name: scripts, configMap: {name: script}}]
    """)
    phase = wait_pod_phase(testbed_cluster, namespace, "caller", {"Succeeded", "Failed"})
    output = logs(testbed_cluster, namespace, "caller")
    assert phase == "Succeeded", output
    assert "GET pods 200 1" in output  # allowed: it sees itself
    assert "GET secrets 403" in output  # forbidden by RBAC


def test_privileged_pod_refused_by_restricted_pod_security(testbed_cluster: Cluster, namespace: str) -> None:
    testbed_cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    result = testbed_cluster.kubectl("apply", "-n", namespace, "-f", "-", check=False, input=textwrap.dedent("""
        apiVersion: v1
        kind: Pod
        metadata: {name: privileged}
        spec:
          containers:
          - name: c
            image: python:3.11
            command: [sleep, "60"]
            securityContext: {privileged: true}
    """))
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert "privileged" in result.stderr
    assert get_json(testbed_cluster, "pod", "privileged", "-n", namespace) is None


def test_garbage_collector_deletes_owned_children(testbed_cluster: Cluster, namespace: str) -> None:
    testbed_cluster.kubectl("create", "configmap", "parent", "-n", namespace)
    parent_uid = get_json(testbed_cluster, "configmap", "parent", "-n", namespace)["metadata"]["uid"]
    apply(testbed_cluster, namespace, f"""
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: child
          ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: parent, uid: {parent_uid}}}]
    """)
    assert get_json(testbed_cluster, "configmap", "child", "-n", namespace) is not None
    testbed_cluster.kubectl("delete", "configmap", "parent", "-n", namespace)
    wait_until(lambda: get_json(testbed_cluster, "configmap", "child", "-n", namespace) is None, 60,
               "the garbage collector to delete the owned ConfigMap")
