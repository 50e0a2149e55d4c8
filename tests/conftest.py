"""Shared pytest fixtures: the test bed (or the cluster KUBECONFIG points at), namespaces, Pulsar.

Integration and e2e tests ask for `testbed`; the first one starts the project's own test bed unless
one is already running (`python -m tests.cluster up`, then left running) or `KUBECONFIG` points at a
cluster, say a kind cluster, which is then used as it is. There the tests reach Pulsar at
`PULSETRAIN_PULSAR_SERVICE_URL` (or `PULSETRAIN_PULSAR_URL`) and `PULSETRAIN_PULSAR_ADMIN_URL`, and pods at
`PULSETRAIN_PULSAR_POD_SERVICE_URL` and `PULSETRAIN_PULSAR_POD_ADMIN_URL` (default: the same URLs; on kind the
tests go through a port-forward, the pods through the in-cluster Service, see tests/e2e/kind/run.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    kubectl_bin: str
    helm_bin: str
    pulsar_service_url: str
    pulsar_admin_url: str
    host_ip: str | None  # the pod network's host address on the project's test bed, None elsewhere
    state: Path | None
    pulsar_pod_service_url: str = ""  # how pods reach Pulsar, where it differs from pulsar_service_url
    pulsar_pod_admin_url: str = ""

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises with stderr when `check` and it fails."""
        result = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, input=input, check=False, timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `lifecycle` take the test bed down: run them last. They need the project's own
    test bed, so with an external cluster they are deselected rather than run."""
    last = [item for item in items if item.get_closest_marker("lifecycle")]
    items[:] = [item for item in items if not item.get_closest_marker("lifecycle")]
    if _external() is None:
        items.extend(last)
    elif last:
        config.hook.pytest_deselected(items=last)


def _external() -> Cluster | None:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or os.environ.get("PULSETRAIN_OWN_TESTBED") == "1":
        return None
    env = os.environ.get
    return Cluster(
        kubeconfig=kubeconfig,
        kubectl_bin=shutil.which("kubectl") or "kubectl",
        helm_bin=shutil.which("helm") or "helm",
        pulsar_service_url=env("PULSETRAIN_PULSAR_SERVICE_URL") or env("PULSETRAIN_PULSAR_URL", ""),
        pulsar_admin_url=env("PULSETRAIN_PULSAR_ADMIN_URL", ""),
        host_ip=None,
        state=None,
        pulsar_pod_service_url=env("PULSETRAIN_PULSAR_POD_SERVICE_URL", ""),
        pulsar_pod_admin_url=env("PULSETRAIN_PULSAR_POD_ADMIN_URL", ""),
    )


@pytest.fixture(scope="session")
def testbed_cluster() -> Iterator[Cluster]:
    from tests.cluster import testbed  # imported here so unit tests need none of the test bed

    external = _external()
    if external is not None:
        yield external
        return
    info = testbed.TestBedInfo.load()
    already_running = info is not None and all(testbed.status().values())
    if not already_running:
        info = testbed.up()
    assert info is not None
    yield Cluster(
        kubeconfig=info.kubeconfig, kubectl_bin=info.kubectl, helm_bin=info.helm,
        pulsar_service_url=info.pulsar_service_url, pulsar_admin_url=info.pulsar_admin_url,
        host_ip=info.host_ip, state=Path(info.state),
    )
    if not already_running and os.environ.get("PULSETRAIN_KEEP_TESTBED") != "1":
        testbed.down()


@pytest.fixture
def namespace(testbed_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted (without waiting) afterwards."""
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    testbed_cluster.kubectl("create", "namespace", name)
    yield name
    testbed_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@dataclass(frozen=True)
class PulsarURLs:
    service_url: str
    """How the test process reaches the broker."""
    admin_url: str
    pod_service_url: str = ""
    """How pods reach the broker (what goes into a pipeline's spec); empty: the same as `service_url`."""
    pod_admin_url: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "pod_service_url", self.pod_service_url or self.service_url)
        object.__setattr__(self, "pod_admin_url", self.pod_admin_url or self.admin_url)


@pytest.fixture(scope="session")
def pulsar_broker(testbed_cluster: Cluster) -> PulsarURLs:
    if not testbed_cluster.pulsar_service_url:
        pytest.fail("no Pulsar: set PULSETRAIN_PULSAR_SERVICE_URL and PULSETRAIN_PULSAR_ADMIN_URL for an external "
                    "cluster (and PULSETRAIN_PULSAR_POD_SERVICE_URL, PULSETRAIN_PULSAR_POD_ADMIN_URL where pods "
                    "reach it at other addresses)")
    return PulsarURLs(testbed_cluster.pulsar_service_url, testbed_cluster.pulsar_admin_url,
                      testbed_cluster.pulsar_pod_service_url, testbed_cluster.pulsar_pod_admin_url)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique names for topics, subscriptions and objects within a test."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"
