"""What the process kubelet promises pods: env and volumes, shared claims, restarts with back-off,
liveness probes, termination messages, and graceful deletion (SIGTERM, grace period, SIGKILL, object
removed)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import Cluster, PulsarURLs
from tests.support import apply, container_status, get_json, logs, wait_pod_phase, wait_until

pytestmark = pytest.mark.integration


def test_env_sources_and_volumes(testbed_cluster: Cluster, namespace: str) -> None:
    testbed_cluster.kubectl("create", "configmap", "cfg", "-n", namespace, "--from-literal=mode=bounded",
                            "--from-literal=batch=32")
    testbed_cluster.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=token=s3cret")
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: Pod
        metadata: {name: env, labels: {role: chief}}
        spec:
          restartPolicy: Never
          containers:
          - name: c
            image: python:3.11
            workingDir: /work
            command: [sh, -c]
            args:
            - >-
              echo "mode=$MODE token=$TOKEN batch=$CFG_batch role=$ROLE ip=$POD_IP api=$KUBERNETES_SERVICE_HOST";
              echo "secret-file=$(cat /creds/token) pwd=$(pwd)";
              echo hi > /scratch/x && echo "scratch=$(cat /scratch/x)"
            env:
            - {name: MODE, valueFrom: {configMapKeyRef: {name: cfg, key: mode}}}
            - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}
            - {name: ROLE, valueFrom: {fieldRef: {fieldPath: "metadata.labels['role']"}}}
            - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
            envFrom: [{configMapRef: {name: cfg}, prefix: CFG_}]
            volumeMounts:
            - {name: creds, mountPath: /creds, readOnly: true}
            - {name: scratch, mountPath: /scratch}
            - {name: work, mountPath: /work}
          volumes:
          - {name: creds, secret: {secretName: creds}}
          - {name: scratch, emptyDir: {}}
          - {name: work, emptyDir: {}}
    """)
    assert wait_pod_phase(testbed_cluster, namespace, "env", {"Succeeded", "Failed"}) == "Succeeded"
    pod_ip = get_json(testbed_cluster, "pod", "env", "-n", namespace)["status"]["podIP"]
    output = logs(testbed_cluster, namespace, "env")
    assert f"mode=bounded token=s3cret batch=32 role=chief ip={pod_ip} api=" in output
    assert "secret-file=s3cret pwd=/work" in output
    assert "scratch=hi" in output


def test_missing_configmap_waits_then_starts(testbed_cluster: Cluster, namespace: str) -> None:
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: Pod
        metadata: {name: waits}
        spec:
          restartPolicy: Never
          containers:
          - name: c
            image: python:3.11
            command: [sh, -c, 'echo "value=$V"']
            env: [{name: V, valueFrom: {configMapKeyRef: {name: later, key: v}}}]
    """)

    def waiting_reason() -> str | None:
        status = container_status(testbed_cluster, namespace, "waits")
        reason: str | None = status.get("state", {}).get("waiting", {}).get("reason")
        return reason

    assert wait_until(waiting_reason, 60, "CreateContainerConfigError") == "CreateContainerConfigError"
    testbed_cluster.kubectl("create", "configmap", "later", "-n", namespace, "--from-literal=v=42")
    assert wait_pod_phase(testbed_cluster, namespace, "waits", {"Succeeded", "Failed"}) == "Succeeded"
    assert "value=42" in logs(testbed_cluster, namespace, "waits")


def test_claim_is_shared_between_pods(testbed_cluster: Cluster, namespace: str) -> None:
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: shared}
        spec:
          accessModes: [ReadWriteMany]
          resources: {requests: {storage: 1Gi}}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: writer}
        spec:
          restartPolicy: Never
          containers:
          - {name: c, image: python:3.11, command: [sh, -c, "echo from-writer > /data/file"],
             volumeMounts: [{name: d, mountPath: /data}]}
          volumes: [{name: d, persistentVolumeClaim: {claimName: shared}}]
    """)
    assert wait_pod_phase(testbed_cluster, namespace, "writer", {"Succeeded", "Failed"}) == "Succeeded"
    claim = get_json(testbed_cluster, "pvc", "shared", "-n", namespace)
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "standard"
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: Pod
        metadata: {name: reader}
        spec:
          restartPolicy: Never
          containers:
          - {name: c, image: python:3.11, command: [cat, /mnt/file],
             volumeMounts: [{name: d, mountPath: /mnt, readOnly: true}]}
          volumes: [{name: d, persistentVolumeClaim: {claimName: shared}}]
    """)
    assert wait_pod_phase(testbed_cluster, namespace, "reader", {"Succeeded", "Failed"}) == "Succeeded"
    assert logs(testbed_cluster, namespace, "reader").strip() == "from-writer"


def test_on_failure_restarts_and_counts(testbed_cluster: Cluster, namespace: str) -> None:
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: Pod
        metadata: {name: flaky}
        spec:
          restartPolicy: OnFailure
          containers:
          - name: c
            image: python:3.11
            command: [sh, -c, 'if [ -f /state/ran ]; then echo second run; exit 0; fi; touch /state/ran; exit 3']
            volumeMounts: [{name: state, mountPath: /state}]
          volumes: [{name: state, emptyDir: {}}]
    """)
    assert wait_pod_phase(testbed_cluster, namespace, "flaky", {"Succeeded", "Failed"}) == "Succeeded"
    status = container_status(testbed_cluster, namespace, "flaky")
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["state"]["terminated"]["reason"] == "Completed"
    assert "second run" in logs(testbed_cluster, namespace, "flaky")


def test_termination_messages_from_the_file_and_from_the_logs(testbed_cluster: Cluster, namespace: str) -> None:
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: Pod
        metadata: {name: reports}
        spec:
          restartPolicy: OnFailure
          containers:
          - name: c
            image: python:3.11
            command: [sh, -c]
            args:
            - >-
              if [ -f /state/ran ]; then printf '{"ok": 1}' > /dev/termination-log; exit 0; fi;
              touch /state/ran; printf '{"attempt": 1}' > /dev/termination-log; exit 3
            volumeMounts: [{name: state, mountPath: /state}]
          volumes: [{name: state, emptyDir: {}}]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: crashes}
        spec:
          restartPolicy: Never
          containers:
          - name: c
            image: python:3.11
            terminationMessagePolicy: FallbackToLogsOnError
            command: [sh, -c, 'for i in $(seq 1 100); do echo "line $i"; done; echo "fatal: it broke" >&2; exit 1']
    """)
    assert wait_pod_phase(testbed_cluster, namespace, "reports", {"Succeeded", "Failed"}) == "Succeeded"
    status = container_status(testbed_cluster, namespace, "reports")
    assert json.loads(status["state"]["terminated"]["message"]) == {"ok": 1}
    assert json.loads(status["lastState"]["terminated"]["message"]) == {"attempt": 1}  # the first run's

    assert wait_pod_phase(testbed_cluster, namespace, "crashes", {"Succeeded", "Failed"}) == "Failed"
    message: str = container_status(testbed_cluster, namespace, "crashes")["state"]["terminated"]["message"]
    lines = message.splitlines()
    assert lines[-1] == "fatal: it broke" and lines[0] == "line 22" and len(lines) == 80  # the last 80 lines
    if testbed_cluster.state is not None:  # our own node: the file was mounted without creating it here
        assert not os.path.lexists("/dev/termination-log")


def test_failing_liveness_probe_restarts_container(testbed_cluster: Cluster, namespace: str) -> None:
    apply(testbed_cluster, namespace, """
        apiVersion: v1
        kind: Pod
        metadata: {name: unhealthy}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - name: c
            image: python:3.11
            command: [sleep, "3600"]
            livenessProbe: {tcpSocket: {port: 9}, periodSeconds: 1, failureThreshold: 2}
    """)

    def restarts() -> int | None:
        count = container_status(testbed_cluster, namespace, "unhealthy").get("restartCount", 0)
        return count if count >= 1 else None

    assert wait_until(restarts, 60, "a liveness restart") >= 1


def test_graceful_deletion_sigterm_then_sigkill(testbed_cluster: Cluster, namespace: str) -> None:
    marker = f"ignore-term-{namespace}"
    apply(testbed_cluster, namespace, f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: polite}}
        spec:
          terminationGracePeriodSeconds: 30
          containers:
          - name: c
            image: python:3.11
            command: [python, -c, "import signal,sys,time; signal.signal(signal.SIGTERM, lambda *a: (print('got SIGTERM', flush=True), sys.exit(0))); print('up', flush=True); time.sleep(3600)"]
        ---
        apiVersion: v1
        kind: Pod
        metadata: {{name: stubborn}}
        spec:
          terminationGracePeriodSeconds: 2
          containers:
          - name: c
            image: python:3.11
            command: [python, -c, "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('{marker}', flush=True); time.sleep(3600)"]
    """)  # noqa: E501
    for name in ("polite", "stubborn"):
        wait_pod_phase(testbed_cluster, namespace, name, {"Running"})
    wait_until(lambda: "up" in logs(testbed_cluster, namespace, "polite"), 30, "polite pod output")
    wait_until(lambda: marker in logs(testbed_cluster, namespace, "stubborn"), 30, "stubborn pod output")

    started = time.monotonic()
    testbed_cluster.kubectl("delete", "pod", "polite", "stubborn", "-n", namespace, "--wait=false")
    wait_until(lambda: get_json(testbed_cluster, "pod", "polite", "-n", namespace) is None, 30, "polite pod gone")
    wait_until(lambda: get_json(testbed_cluster, "pod", "stubborn", "-n", namespace) is None, 30,
               "stubborn pod gone")
    elapsed = time.monotonic() - started
    assert elapsed < 25  # the stubborn pod's 2 s grace period, not the 30 s default, bounded the wait
    if testbed_cluster.state is not None:  # on our own test bed we can also check the processes and logs
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
        assert found.stdout.strip() == "", "the SIGTERM-ignoring process survived its grace period"
        polite_logs = list((testbed_cluster.state / "kubelet" / "pods").glob(f"{namespace}_polite_*/logs/c/0.log"))
        assert polite_logs and "got SIGTERM" in polite_logs[0].read_text()


PULSAR_FROM_POD = """
import os, pulsar
client = pulsar.Client(os.environ["PULSAR_URL"], operation_timeout_seconds=30)
producer = client.create_producer(os.environ["TOPIC"])
producer.send(("hello from " + os.environ["HOSTNAME"]).encode())
client.close()
print("sent", flush=True)
"""


def test_pod_reaches_pulsar(testbed_cluster: Cluster, namespace: str, pulsar_broker: PulsarURLs) -> None:
    import pulsar

    topic = f"persistent://public/default/from-pod-{namespace}"
    client = pulsar.Client(pulsar_broker.service_url, operation_timeout_seconds=30)
    consumer = client.subscribe(topic, "host", initial_position=pulsar.InitialPosition.Earliest)
    try:
        testbed_cluster.kubectl("create", "configmap", "script", "-n", namespace,
                                "--from-literal=send.py=" + PULSAR_FROM_POD)
        apply(testbed_cluster, namespace, f"""
            apiVersion: v1
            kind: Pod
            metadata: {{name: producer}}
            spec:
              restartPolicy: Never
              containers:
              - name: c
                image: python:3.11
                command: [python, /scripts/send.py]
                env:
                - {{name: PULSAR_URL, value: "{pulsar_broker.service_url}"}}
                - {{name: TOPIC, value: "{topic}"}}
                volumeMounts: [{{name: scripts, mountPath: /scripts}}]
              volumes: [{{name: scripts, configMap: {{name: script}}}}]
        """)
        phase = wait_pod_phase(testbed_cluster, namespace, "producer", {"Succeeded", "Failed"})
        assert phase == "Succeeded", logs(testbed_cluster, namespace, "producer")
        message = consumer.receive(timeout_millis=30_000)
        assert message.data() == b"hello from producer"
        consumer.acknowledge(message)
    finally:
        client.close()
