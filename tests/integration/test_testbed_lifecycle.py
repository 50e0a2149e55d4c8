"""Stopping the test bed leaves no process, network namespace or bridge behind.

Runs last (see `pytest_collection_modifyitems` in conftest.py) because it takes the test bed down.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Cluster
from tests.support import wait_pod_phase

pytestmark = [pytest.mark.integration, pytest.mark.lifecycle]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_down_leaves_nothing_running(testbed_cluster: Cluster, namespace: str) -> None:
    from tests.cluster import network, process, testbed

    assert testbed_cluster.state is not None
    testbed_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=textwrap.dedent("""
        apiVersion: v1
        kind: Pod
        metadata: {name: sleeper}
        spec:
          containers: [{name: c, image: python:3.11, command: [sleep, "3600"]}]
    """))
    wait_pod_phase(testbed_cluster, namespace, "sleeper", {"Running"})
    assert network.list_sandboxes(), "a running pod should have a network namespace"
    pids = [process.Daemon(p.stem, p.parent).pid() for p in (testbed_cluster.state / "logs").glob("*.pid")]
    pids += [process.Daemon("pulsar", testbed_cluster.state / "pulsar").pid()]
    assert len([p for p in pids if p]) >= 5

    testbed.down()

    assert network.list_sandboxes() == []
    assert not network.PodNetwork.from_env().exists()
    for pid in filter(None, pids):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert _processes_mentioning(str(testbed_cluster.state)) == []
    assert _processes_mentioning("sleep 3600") == []
