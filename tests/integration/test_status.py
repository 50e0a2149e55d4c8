"""`pulsetrain status` against the test bed's kube-apiserver, with a status written through the status subresource.

The test writes the status itself (as the operator would), so what is checked is the command: that it
finds the pipeline with a kubeconfig and namespace, prints it readably, gives the raw status with `-o
json`, and says clearly whether the pipeline or the CRD is missing. Operators of other tests may watch
the whole shared test bed, so the status written is a finished one (an operator only cleans up after
a finished pipeline) and is written until it is read back unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pulsetrain import status_view
from pulsetrain_operator import crd
from tests.conftest import Cluster
from tests.e2e.operator_harness import install_crd
from tests.support import get_json, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STATUS = {
    "phase": "Succeeded", "reason": "TrainingFinished", "message": "training finished at step 340", "attempt": 2,
    "restarts": 1, "workers": {"desired": 2, "ready": 0, "running": 0, "succeeded": 2, "failed": 0},
    "workersReady": "0/2",
    "progress": {"step": 340, "samples": 21760, "loss": 0.0625, "metrics": {"accuracy": 0.984},
                 "samplesPerSecond": 1500.5, "messagesAcknowledged": 21760, "deadLettered": 4, "state": "finished",
                 "lastCheckpointStep": 340, "lastCheckpointTime": "2026-01-01T12:00:00Z"},
    "model": {"exportPath": "/var/lib/pulsetrain/ns/digits/export/1", "version": 1},
    "startTime": "2026-01-01T11:50:00Z", "completionTime": "2026-01-01T12:00:05Z",
    "conditions": [{"type": "Succeeded", "status": "True", "reason": "TrainingFinished",
                    "message": "every worker finished", "lastTransitionTime": "2026-01-01T12:00:05Z"}],
}


def status_command(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run([sys.executable, "-m", "pulsetrain.cli", "status", *args, "--kubeconfig", cluster.kubeconfig],
                          capture_output=True, text=True, timeout=60, env=env)


def stored_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found = get_json(cluster, f"{crd.PLURAL}.{crd.GROUP}", name, "-n", namespace) or {}
    status: dict[str, Any] = found.get("status") or {}
    return status


def holds_status(stored: dict[str, Any]) -> bool:
    return all(stored.get(key) == value for key, value in STATUS.items())


@pytest.fixture
def pipeline(testbed_cluster: Cluster, namespace: str) -> str:
    """The digits sample created in a fresh namespace, with STATUS written through the status subresource."""
    install_crd(testbed_cluster)
    sample = yaml.safe_load((ROOT / "manifests" / "samples" / "digits.yaml").read_text())
    testbed_cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(sample))

    def written_and_kept() -> bool:
        testbed_cluster.kubectl("patch", f"{crd.PLURAL}.{crd.GROUP}", "digits", "-n", namespace,
                                "--subresource=status", "--type=merge", "-p", json.dumps({"status": STATUS}))
        time.sleep(1)  # an operator reconciling the new object may still write once
        return holds_status(stored_status(testbed_cluster, namespace, "digits"))

    wait_until(written_and_kept, 120, "the written status to stay")
    return "digits"


def test_status_is_printed_readably_and_as_json(testbed_cluster: Cluster, namespace: str, pipeline: str) -> None:
    result = status_command(testbed_cluster, pipeline, "-n", namespace)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in (f"Namespace:   {namespace}", "Phase:       Succeeded (TrainingFinished)",
                     "Message:     training finished at step 340", "Attempt:     2 (restarts 1, backoff limit 3)",
                     "Workers:     0/2 ready (running 0, succeeded 2, failed 0)",
                     "Progress:    step 340, 21,760 samples, loss 0.0625, accuracy 0.9840, 1,500 samples/s",
                     "Messages:    21,760 acknowledged, 4 dead-lettered", "Chief:       finished",
                     "Model:       version 1 at /var/lib/pulsetrain/ns/digits/export/1", "Conditions:"):
        assert expected in lines, result.stdout
    assert any(line.startswith("  Succeeded  True    TrainingFinished") for line in lines), result.stdout
    assert any(line.startswith("Completed:   2026-01-01T12:00:05Z (") for line in lines), result.stdout
    raw = status_command(testbed_cluster, pipeline, "-n", namespace, "-o", "json")
    assert raw.returncode == 0, raw.stderr
    shown = json.loads(raw.stdout)
    assert shown == stored_status(testbed_cluster, namespace, pipeline) and holds_status(shown)


def test_missing_pipeline_and_missing_crd_are_told_apart(testbed_cluster: Cluster, namespace: str) -> None:
    install_crd(testbed_cluster)
    result = status_command(testbed_cluster, "nothing-here", "-n", namespace)
    assert result.returncode == 1
    assert f'TrainingPipeline "nothing-here" not found in namespace "{namespace}"' in result.stderr
    with pytest.raises(status_view.StatusError, match="the TrainingPipeline CRD is not installed"):
        status_view.fetch("digits", namespace, kubeconfig=testbed_cluster.kubeconfig,
                          group="not-installed.pulsetrain.dev")  # a group this cluster does not serve


def test_unreadable_kubeconfig_is_a_clear_error(testbed_cluster: Cluster, tmp_path: Path) -> None:
    missing = tmp_path / "nope.kubeconfig"
    result = subprocess.run([sys.executable, "-m", "pulsetrain.cli", "status", "digits", "--kubeconfig",
                             str(missing)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "pulsetrain status: no cluster to ask" in result.stderr, result.stderr
